"""Bad input to the data readers: one test each, with errors that name the argument or file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from chainrule2_torch.data import NoSeedsWarning, Sample, read_folder, read_image, read_labels, to_rgb


def _folder(root, n=2, size=(16, 20)):
    for sub in ("images", "seeds", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 100 + i, np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[:, w // 2 :] = 1
        seeds = np.full((h, w), 255, np.uint8)
        seeds[2, 2], seeds[2, -2] = 0, 1
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        Image.fromarray(seeds).save(root / "seeds" / f"im{i}.png")


def test_image_and_seed_sizes_differ(tmp_path):
    _folder(tmp_path)
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "seeds" / "im1.png")
    with pytest.raises(ValueError, match=r"seeds of 'im1': expected shape \(16, 20\).*got \(10, 10\)"):
        read_folder(tmp_path, num_classes=2, unreadable="raise")
    with pytest.raises(ValueError, match="seeds of 'x': expected shape"):
        Sample("x", np.zeros((4, 4, 3), np.uint8), np.full((4, 5), 255, np.uint8), None, 2, ("a", "b"))


def test_seed_class_not_below_num_classes(tmp_path):
    _folder(tmp_path)
    seeds = np.full((16, 20), 255, np.uint8)
    seeds[3, 3] = 7
    Image.fromarray(seeds).save(tmp_path / "seeds" / "im0.png")
    with pytest.raises(ValueError, match=r"seeds of 'im0': expected class ids in \[0, 2\).*got \[7\]"):
        read_folder(tmp_path, num_classes=2)
    with pytest.raises(ValueError, match=r"expected class ids in \[0, 2\)"):
        Sample("x", np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 2, np.uint8), None, 2, ("a", "b"))


def test_image_without_seed_pixel_is_kept_for_evaluation_with_a_warning(tmp_path):
    _folder(tmp_path)
    Image.fromarray(np.full((16, 20), 255, np.uint8)).save(tmp_path / "seeds" / "im0.png")
    with pytest.warns(NoSeedsWarning, match="'im0' has no seed pixel"):
        data = read_folder(tmp_path, num_classes=2)
    assert [(s.id, s.num_seeds > 0) for s in data] == [("im0", False), ("im1", True)]  # training skips im0


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    rgba = np.dstack([np.full((4, 5, 3), 7, np.uint8), np.zeros((4, 5), np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    g, a = read_image(tmp_path / "g.png"), read_image(tmp_path / "a.png")
    assert g.shape == (4, 5, 3) and np.array_equal(g[..., 1], gray)
    assert a.shape == (4, 5, 3) and np.all(a == 7)  # alpha dropped, not composited
    assert to_rgb(np.zeros((3, 3), np.uint16) + 5).dtype == np.uint8
    with pytest.raises(ValueError, match="image: expected"):
        to_rgb(np.zeros((3, 3, 5), np.uint8))
    # a grayscale data set folder reads fine
    _folder(tmp_path / "ds")
    Image.fromarray(gray.repeat(4, 0).repeat(4, 1)[:16, :20], mode="L").save(tmp_path / "ds" / "images" / "im0.png")
    assert read_folder(tmp_path / "ds", num_classes=2)[0].image.shape == (16, 20, 3)


def test_corrupt_file_error_names_the_file(tmp_path):
    _folder(tmp_path)
    (tmp_path / "images" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=r"im1\.png"):
        read_folder(tmp_path, num_classes=2, unreadable="raise")
    with pytest.raises(ValueError, match="mode RGB"):
        Image.fromarray(
            np.dstack([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8)])
        ).save(tmp_path / "rgb.png")
        read_labels(tmp_path / "rgb.png")


def test_missing_file_error_names_the_file(tmp_path):
    _folder(tmp_path)
    (tmp_path / "masks" / "im1.png").unlink()  # fine with the files' seeds, an error when seeds come from masks
    assert read_folder(tmp_path, num_classes=2)[1].mask is None
    with pytest.raises(ValueError, match=r"item 'im1' has no mask \(expected .*masks/im1\.png\)"):
        read_folder(tmp_path, num_classes=2, supervision="scribbles")
    (tmp_path / "train.txt").write_text("im0\nim7\n")
    with pytest.raises(FileNotFoundError, match=r"'im7' listed in .*train\.txt has no file"):
        read_folder(tmp_path, "train", num_classes=2)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")


def test_empty_dataset_folder_error_names_the_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=f"no images .* in folder {tmp_path / 'images'}"):
        read_folder(tmp_path, num_classes=2)
    with pytest.raises(FileNotFoundError, match=f"folder not found: {tmp_path / 'absent'}"):
        read_folder(tmp_path / "absent", num_classes=2)


def test_collate_refuses_anything_but_samples():
    import torch

    from chainrule2_torch.data import collate, make_demo_dataset

    sample = make_demo_dataset(1, 16, seed=0)[0]
    with pytest.raises(TypeError, match=r"samples: expected chainrule2_torch.data.Sample items .*\['Tensor'\]"):
        collate([sample, torch.zeros(3, 16, 16)])
    with pytest.raises(ValueError, match="expected a target on every sample or on none"):
        collate([sample, sample.replace(target=sample.seeds)])
