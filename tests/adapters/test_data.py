"""Unit tests of chainrule2_torch.data: samples, splits, resizing, augmentation, collation, metrics, panels, demo."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from chainrule2.base import Batch
from chainrule2_torch.data import (
    Augmentation,
    NoSeedsWarning,
    Sample,
    SampleDataset,
    collate,
    confusion_matrix,
    data_root,
    evaluate,
    make_demo_dataset,
    read_folder,
    read_voc,
    resize_sample,
    resize_seeds,
    scores,
    shorten_strokes,
    split_ids,
    voc_palette,
    write_panel,
)


def _sample(h: int = 16, w: int = 20, name: str = "a") -> Sample:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2 :] = 1
    seeds = np.full((h, w), 255, np.uint8)
    seeds[h // 2, 1:4] = 0
    seeds[h // 2, -4:-1] = 1
    return Sample(name, image, seeds, mask, 2, ("bg", "fg"))


def test_sample_is_immutable_and_validated():
    s = _sample()
    with pytest.raises(ValueError):
        s.seeds[0, 0] = 1
    with pytest.raises(AttributeError):
        s.id = "b"  # type: ignore[misc]
    assert s.num_seeds == 6 and s.shape == (16, 20)
    with pytest.raises(ValueError, match="class_names"):
        Sample("x", s.image, s.seeds, None, 3, ("a", "b"))


def test_split_ids_deterministic_disjoint_and_seeded():
    ids = [f"i{k}" for k in range(50)]
    a, b = split_ids(ids, seed=1), split_ids(list(reversed(ids)), seed=1)
    assert a == b
    assert set(a["train"]) | set(a["val"]) | set(a["test"]) == set(ids)
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (30, 10, 10)
    assert split_ids(ids, seed=2)["test"] != a["test"]


def test_resize_seeds_keeps_thin_strokes_nearest_does_not():
    seeds = np.full((200, 200), 255, np.uint8)
    seeds[100, 20:180] = 1  # a 1-px stroke
    seeds[150, 20:180] = 0
    kept = resize_seeds(seeds, (50, 50), 2)
    assert np.count_nonzero(kept == 1) >= 35 and np.count_nonzero(kept == 0) >= 35
    nearest = np.asarray(Image.fromarray(seeds).resize((50, 50), Image.NEAREST))
    assert np.count_nonzero(nearest == 1) == 0  # the motivation: nearest drops the stroke


def test_resize_sample_shapes():
    s = resize_sample(_sample(40, 60), 30)
    assert s.shape == (20, 30) and s.mask.shape == (20, 30) and s.num_seeds > 0


def test_shorten_strokes_keeps_a_subset():
    seeds = np.full((30, 60), 255, np.uint8)
    seeds[10:13, 5:55] = 1
    short = shorten_strokes(seeds, 0.3, np.random.default_rng(0), 2)
    kept = short != 255
    assert kept.any() and np.all(seeds[kept] == short[kept])
    assert 0.2 < kept.sum() / (seeds != 255).sum() < 0.45


def test_augmentation_joint_and_deterministic():
    s = _sample(32, 40)
    pseudo = np.asarray(s.mask).copy()
    aug = Augmentation(crop_size=(24, 24), scale_range=(0.5, 1.5))
    a1, p1 = aug(s, np.random.default_rng(3), pseudo=pseudo)
    a2, p2 = aug(s, np.random.default_rng(3), pseudo=pseudo)
    assert np.array_equal(a1.image, a2.image) and np.array_equal(p1, p2)
    assert a1.shape == (24, 24) and p1.shape == (24, 24)
    # mask and pseudo (equal before) get the same geometric transform, padding 254 included
    assert np.array_equal(a1.mask, p1)
    assert set(np.unique(a1.seeds)) <= {0, 1, 254, 255}


def test_augmentation_pads_with_254_when_crop_exceeds_image():
    s = _sample(10, 10)
    a, _ = Augmentation(crop_size=(30, 30), scale_range=(1.0, 1.0), flip=False)(s, np.random.default_rng(0))
    assert np.count_nonzero(a.seeds == 254) == 30 * 30 - 100
    assert np.count_nonzero(a.mask == 254) == 30 * 30 - 100


def test_collate_returns_batch():
    samples = [_sample(name="a"), _sample(name="b")]
    batch = collate(samples)
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (2, 3, 16, 20) and batch.inputs.dtype == torch.float32
    assert batch.seeds.dtype == torch.int64 and batch.seeds.shape == (2, 16, 20)
    assert batch.images.shape == (2, 16, 20, 3) and batch.images.dtype == np.float64
    assert batch.ids == ("a", "b")
    np.testing.assert_array_equal(batch.images[0], samples[0].image)
    expected = (samples[0].image[0, 0, 0] / 255.0 - 0.485) / 0.229
    assert abs(float(batch.inputs[0, 0, 0, 0]) - expected) < 1e-5
    assert isinstance(collate(samples, seeds_as="numpy").seeds, np.ndarray)
    with pytest.raises(ValueError, match="one \\(H, W\\)"):
        collate([_sample(16, 20), _sample(18, 20)])


def test_dataset_wrapper_with_loader():
    aug = Augmentation(crop_size=(12, 12))
    ds = SampleDataset([_sample(name=str(i)) for i in range(4)], transform=lambda s, rng: aug(s, rng)[0], seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2 and batches[0].inputs.shape == (2, 3, 12, 12)
    assert np.array_equal(ds[0].image, ds[0].image)


def test_metrics_known_values_and_absent_classes():
    truth = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 1, 0]])
    cm = confusion_matrix(pred, truth, 4)
    assert cm.sum() == 7  # the 255 pixel is not counted
    s = scores(cm)
    np.testing.assert_allclose(s.iou[:2], [2 / 4, 3 / 5])
    assert np.isnan(s.iou[2]) and np.isnan(s.iou[3])  # absent from prediction and truth
    assert s.miou == pytest.approx((0.5 + 0.6) / 2)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert s.as_dict()["iou"]["3"] is None


def test_metrics_accumulate_and_grabcut_band_ignored():
    truth = np.array([[0, 128, 1]])
    assert confusion_matrix(np.array([[0, 0, 1]]), truth, 2, ignore=(128, 255)).sum() == 2
    pairs = [(np.array([[0, 1]]), np.array([[0, 1]])), (np.array([[1]]), np.array([[0]]))]
    s = evaluate(pairs, 2)
    assert s.confusion.tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix(np.array([[5]]), np.array([[0]]), 2)
    empty = scores(np.zeros((2, 2), np.int64))
    assert np.isnan(empty.miou) and np.isnan(empty.pixel_accuracy)


def test_panel_writes_png(tmp_path):
    s = _sample()
    path = write_panel(tmp_path / "p" / "x.png", s.image, s.seeds, s.mask, s.mask, s.mask, caption="x")
    with Image.open(path) as im:
        im.load()
    assert im.size[0] == 8 + 5 * (20 * 16 + 8) and im.size[1] > 16 * 16  # tiles upscaled x16 to >= 256 px
    assert voc_palette()[1].tolist() == [128, 0, 0] and voc_palette()[255].tolist() == [224, 224, 192]


def test_demo_dataset_deterministic_fast_and_consistent():
    t = time.perf_counter()
    a = make_demo_dataset(24, 96, seed=0)
    elapsed = time.perf_counter() - t
    b = make_demo_dataset(24, 96, seed=0)
    assert len(a) == 24 and all(s.shape == (96, 96) for s in a)
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.seeds, y.seeds) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(make_demo_dataset(1, 96, seed=1)[0].image, a[0].image)
    for s in a:
        lab = s.seeds != 255
        assert lab.any() and np.all(s.mask[lab] == s.seeds[lab])
    assert {int(k) for s in a for k in np.unique(s.mask)} == {0, 1, 2}
    assert elapsed < 30  # generous: the budget is < 2 s; this only catches pathological slowness


def _write_folder(root, n=6, seeds=True):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if seeds:
        (root / "seeds").mkdir()
    for i in range(n):
        s = _sample(16, 20, f"im{i}")
        Image.fromarray(np.asarray(s.image)).save(root / "images" / f"im{i}.png")
        Image.fromarray(np.asarray(s.mask)).save(root / "masks" / f"im{i}.png")
        if seeds:
            Image.fromarray(np.asarray(s.seeds)).save(root / "seeds" / f"im{i}.png")


def test_read_folder_real_and_synthetic_seeds(tmp_path):
    _write_folder(tmp_path)
    real = read_folder(tmp_path, num_classes=2)
    assert len(real) == 6 and real[0].num_seeds == 6
    synth = read_folder(tmp_path, supervision="scribbles")  # num_classes inferred from the masks
    assert synth[0].num_classes == 2 and synth[0].num_seeds > 6
    (tmp_path / "test.txt").write_text("im1\nim3\n")
    assert [s.id for s in read_folder(tmp_path, "test", num_classes=2)] == ["im1", "im3"]
    parts = [read_folder(tmp_path, split, num_classes=2, size=(8, 10)) for split in ("train", "val")]
    assert all(s.shape == (8, 10) for p in parts for s in p)


def test_read_voc_synthetic_layout(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassAug").mkdir()
    (tmp_path / "pascal_2012_scribble").mkdir()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i, name in enumerate(("2007_000032", "2007_000039")):
        s = _sample(16, 20, name)
        mask = np.asarray(s.mask) * (i + 3)  # classes 0 and 3 / 4
        mask[0, 0] = 255  # VOC's void boundary
        seeds = np.where(s.seeds == 1, i + 3, s.seeds).astype(np.uint8)
        Image.fromarray(np.asarray(s.image)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(mask).save(tmp_path / "SegmentationClassAug" / f"{name}.png")
        Image.fromarray(seeds).save(tmp_path / "pascal_2012_scribble" / f"{name}.png")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000039\n")
    data = read_voc(tmp_path, "train")
    assert [s.id for s in data] == ["2007_000032", "2007_000039"]
    assert data[0].num_classes == 21 and data[1].class_names[4] == "boat"
    assert set(np.unique(data[1].seeds)) == {0, 4, 255} and data[0].mask[0, 0] == 255
    with pytest.raises(FileNotFoundError, match="val.txt"):
        read_voc(tmp_path, "val")
    none = read_voc(tmp_path, "train", supervision="none")
    assert none[0].num_seeds == 0


def test_data_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAINRULE2_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("CHAINRULE2_DATA")
    assert data_root().parts[-2:] == ("shared", "data")


def test_no_seed_item_is_kept_for_evaluation_with_warning(tmp_path):
    _write_folder(tmp_path, n=2)
    Image.fromarray(np.full((16, 20), 255, np.uint8)).save(tmp_path / "seeds" / "im1.png")
    with pytest.warns(NoSeedsWarning, match="im1"):
        data = read_folder(tmp_path, num_classes=2)
    assert [s.id for s in data] == ["im0", "im1"] and data[1].num_seeds == 0 and data[1].mask is not None
    (tmp_path / "masks" / "im1.png").unlink()  # neither seeds nor mask: nothing to use it for
    with pytest.warns(NoSeedsWarning, match="im1"):
        assert [s.id for s in read_folder(tmp_path, num_classes=2)] == ["im0"]
