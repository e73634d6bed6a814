"""A data set with one corrupt file: read_folder skips that item with a DataWarning naming the file, and
training runs to the end. What is wrong with the data itself stays an error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from chainrule2_torch.data import DataWarning, make_demo_dataset, read_folder  # noqa: E402


def _write(root, samples):
    """``samples`` as a folder data set: images/, seeds/, masks/ (PNG), classes.txt."""
    for sub in ("images", "seeds", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for s in samples:
        Image.fromarray(np.asarray(s.image)).save(root / "images" / f"{s.id}.png")
        Image.fromarray(np.asarray(s.seeds)).save(root / "seeds" / f"{s.id}.png")
        Image.fromarray(np.asarray(s.mask)).save(root / "masks" / f"{s.id}.png")
    (root / "classes.txt").write_text("\n".join(samples[0].class_names) + "\n")
    return root


@pytest.fixture(scope="module")
def demo():
    return make_demo_dataset(6, 24, seed=0)


def _corrupt(path, how):
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


def _same(a, b):
    assert a.id == b.id and a.num_classes == b.num_classes
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("folder", ["images", "seeds", "masks"])
@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_an_undecodable_file_skips_its_item_with_a_warning(tmp_path, demo, folder, how):
    root = _write(tmp_path, demo)
    clean = read_folder(root)
    bad = root / folder / "demo002.png"
    _corrupt(bad, how)
    with pytest.warns(DataWarning, match=rf"item 'demo002' skipped: \w+: could not read {bad} \(corrupt"):
        samples = read_folder(root)
    assert [s.id for s in samples] == [s.id for s in clean if s.id != "demo002"]
    for got, want in zip(samples, [s for s in clean if s.id != "demo002"], strict=True):
        _same(got, want)


def test_a_corrupt_label_file_is_left_out_of_the_inferred_num_classes(tmp_path, demo):
    root = _write(tmp_path, demo)
    (root / "classes.txt").unlink()
    _corrupt(root / "masks" / "demo004.png", "empty")
    with pytest.warns(DataWarning) as record:
        samples = read_folder(root)
    messages = [str(w.message) for w in record]
    assert any("masks/demo004.png" in m and "left out of the inferred num_classes" in m for m in messages)
    assert any(m.startswith("item 'demo004' skipped") for m in messages)
    assert len(samples) == 5 and {s.num_classes for s in samples} == {3}


def test_unreadable_raise_keeps_the_error_that_names_the_file(tmp_path, demo):
    root = _write(tmp_path, demo)
    _corrupt(root / "images" / "demo001.png", "truncated")
    with pytest.raises(ValueError, match=r"image: could not read .*images/demo001\.png \(corrupt or not an image\)"):
        read_folder(root, unreadable="raise")
    with pytest.raises(ValueError, match=r"unreadable: expected 'skip' or 'raise', got 'ignore'"):
        read_folder(root, unreadable="ignore")


def test_problems_of_the_data_itself_stay_errors(tmp_path, demo):
    root = _write(tmp_path, demo)
    _corrupt(root / "images" / "demo001.png", "empty")  # skipped, with a warning ...
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "demo003.png")  # ... a wrong size is not
    with pytest.warns(DataWarning, match="demo001"), pytest.raises(ValueError, match=r"mask of 'demo003': expected"):
        read_folder(root)
    Image.fromarray(np.asarray(demo[3].mask)).save(root / "masks" / "demo003.png")
    seeds = np.asarray(demo[4].seeds).copy()
    seeds[0, 0] = 9  # a class id the data set does not have
    Image.fromarray(seeds).save(root / "seeds" / "demo004.png")
    with pytest.warns(DataWarning, match="demo001"), pytest.raises(ValueError, match=r"seeds of 'demo004': expected"):
        read_folder(root)


def test_a_data_set_with_one_corrupt_item_trains_to_the_end(tmp_path, demo):
    from chainrule2_torch.networks import UNet
    from chainrule2_torch.training import TrainConfig, train

    root = _write(tmp_path / "data", demo)
    (root / "train.txt").write_text("demo000\ndemo001\ndemo002\ndemo003\n")
    (root / "val.txt").write_text("demo004\ndemo005\n")
    _corrupt(root / "images" / "demo001.png", "truncated")
    with pytest.warns(DataWarning, match=r"item 'demo001' skipped: image: could not read .*demo001\.png"):
        train_samples = read_folder(root, "train")
    val_samples = read_folder(root, "val")
    assert [s.id for s in train_samples] == ["demo000", "demo002", "demo003"]
    config = TrainConfig(method="grid-tr", epochs=1, warmup_epochs=1, stage_a_every=1, batch_size=2,
                         crop_size=(24, 24))  # fmt: skip
    torch.manual_seed(0)
    final = train(config, UNet(3, 3, width=4, depth=2), train_samples, val_samples, out_dir=tmp_path / "run",
                  progress=False, panels=0)  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1] and lines[1]["stage_a_failures"] == 0
    assert final["val"]["images"] == 2 and final["val"]["miou"] is not None
    assert sorted(p.stem for p in (tmp_path / "run" / "stage_a").glob("*.png")) == ["demo000", "demo002", "demo003"]
