"""A user's own folder data set (read_folder) and the shared data options (add_data_arguments, load_splits)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chainrule2_torch.data import (
    DataWarning,
    NoSeedsWarning,
    add_data_arguments,
    load_splits,
    make_demo_dataset,
    read_folder,
    read_grabcut,
)

H, W = 12, 16


def _mask(k: int, fg: int = 1) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[:, W // 2 :] = fg
    mask[: H // 3, : W // 3] = 2 if fg == 1 else 0  # a third class in the top-left corner
    return mask


def _seeds(k: int) -> np.ndarray:
    seeds = np.full((H, W), 255, np.uint8)
    seeds[H // 2, 1 : 3 + k % 3] = 0  # differs per item: a synthesised scribble would not match
    seeds[H // 2, W - 4 : W - 1] = 1
    seeds[1, 1] = 2
    return seeds


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _own_data(root: Path, n_train: int = 4, n_eval: int = 2, classes: bool = True) -> Path:
    """train: images + seeds, no masks; val/test: images + masks, no seeds; split lists and classes.txt."""
    rng = np.random.default_rng(0)
    ids = {"train": [f"tr{k}" for k in range(n_train)]}
    ids["val"] = [f"va{k}" for k in range(n_eval)]
    ids["test"] = [f"te{k}" for k in range(n_eval)]
    for split, names in ids.items():
        for k, i in enumerate(names):
            _save(root / "images" / f"{i}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            if split == "train":
                _save(root / "seeds" / f"{i}.png", _seeds(k))
            else:
                _save(root / "masks" / f"{i}.png", _mask(k))
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in names))
    if classes:
        (root / "classes.txt").write_text("background\ncat\ndog\n")
    return root


def _binary(root: Path, n: int = 3, seeds: bool = False) -> Path:
    for k in range(n):
        _save(root / "images" / f"im{k}.png", np.full((H, W, 3), 40 * k, np.uint8))
        _save(root / "masks" / f"im{k}.png", (_mask(k) > 0).astype(np.uint8) * 255)
        if seeds:
            s = np.full((H, W), 255, np.uint8)
            s[2, 2], s[2, -3] = 0, 1
            _save(root / "seeds" / f"im{k}.png", s)
    return root


def read_labels_of(root: Path, i: str) -> np.ndarray:
    return np.array(Image.open(root / "masks" / f"{i}.png"))


# ---------------------------------------------------------------------------------------- read_folder


def test_trains_on_the_files_seeds_and_evaluates_on_masks(tmp_path):
    root = _own_data(tmp_path)
    train, val, test = (read_folder(root, split) for split in ("train", "val", "test"))
    assert [s.id for s in train] == ["tr0", "tr1", "tr2", "tr3"]
    assert [s.id for s in val] == ["va0", "va1"] and [s.id for s in test] == ["te0", "te1"]
    for k, s in enumerate(train):  # the files' seeds, not synthesised ones
        assert np.array_equal(s.seeds, _seeds(k)) and s.mask is None
    for s in val + test:
        assert np.array_equal(s.mask, _mask(0)) and s.num_seeds == 0
    assert train[0].num_classes == 3 and train[0].class_names == ("background", "cat", "dog")
    assert [s.id for s in read_folder(root)] == sorted(s.id for s in train + val + test)
    small = read_folder(root, "train", size=8)  # resized seeds keep their strokes
    assert small[0].shape == (6, 8) and set(np.unique(small[0].seeds)) == {0, 1, 2, 255}


def test_num_classes_inferred_from_seeds_and_masks(tmp_path):
    root = _own_data(tmp_path, classes=False)
    s = read_folder(root, "train")[0]
    assert s.num_classes == 3 and s.class_names == ("class0", "class1", "class2")
    s = read_folder(root, "val", num_classes=4, class_names=["a", "b", "c", "d"])[0]
    assert s.num_classes == 4 and s.class_names[3] == "d"


def test_training_item_without_seeds_file_is_kept_and_skipped_by_training(tmp_path):
    root = _own_data(tmp_path)
    _save(root / "masks" / "tr1.png", _mask(1))
    (root / "seeds" / "tr1.png").unlink()
    train = read_folder(root, "train")
    assert [s.id for s in train] == ["tr0", "tr1", "tr2", "tr3"]
    # num_seeds == 0: the training loop skips it with a NoSeedsWarning; its mask still counts for evaluation
    assert train[1].num_seeds == 0 and np.all(train[1].seeds == 255) and train[1].mask is not None
    (root / "seeds" / "tr2.png").unlink()  # neither seeds nor mask: nothing to use it for
    with pytest.warns(NoSeedsWarning, match=r"'tr2' has neither seeds .* nor a mask"):
        assert [s.id for s in read_folder(root, "train")] == ["tr0", "tr1", "tr3"]


def test_synthesised_seeds_need_masks(tmp_path):
    root = _own_data(tmp_path)
    val = read_folder(root, "val", supervision="scribbles")
    assert all(s.num_seeds > 0 and np.all(s.mask[s.seeds != 255] == s.seeds[s.seeds != 255]) for s in val)
    for kind in ("scribbles", "clicks"):
        with pytest.raises(ValueError, match=rf"supervision: '{kind}' .*item 'tr0' has no mask \(expected .*tr0\.png"):
            read_folder(root, "train", supervision=kind)
    (root / "seeds").rename(root / "unused")  # auto without seeds/: synthesised scribbles
    assert read_folder(root, "val")[0].num_seeds > 0
    with pytest.raises(ValueError, match="supervision: 'real' .*--supervision real.*does not exist"):
        read_folder(root, "val", supervision="real")


def test_binary_0_255_masks_are_refused_with_advice(tmp_path):
    root = _binary(tmp_path)
    advice = r"look binary 0/255.*255 means 'ignored'.*foreground as 1.*mask_values=\{0: 0, 255: 1\}.*--mask-values"
    with pytest.raises(ValueError, match=advice):
        read_folder(root, supervision="scribbles")  # num_classes inferred as 1
    with pytest.raises(ValueError, match=advice):
        read_folder(root, supervision="scribbles", num_classes=2)  # class 1 would never appear
    _binary(tmp_path, seeds=True)  # foreground seeds stored as 1, masks still 0/255
    with pytest.raises(ValueError, match=advice):
        read_folder(root)


def test_binary_masks_remapped_or_declared_void(tmp_path):
    root = _binary(tmp_path)
    data = read_folder(root, supervision="scribbles", mask_values={0: 0, 255: 1})
    assert data[0].num_classes == 2 and set(np.unique(data[0].mask)) == {0, 1}
    assert np.array_equal(data[0].mask, (_mask(0) > 0).astype(np.uint8))
    void = read_folder(root, supervision="scribbles", mask_ignore=[255], num_classes=2)
    assert set(np.unique(void[0].mask)) == {0, 255}


def test_mask_values_and_mask_ignore(tmp_path):
    root = _binary(tmp_path)
    m = read_labels_of(root, "im1")
    m[0, 0] = 7  # a void label
    _save(root / "masks" / "im1.png", m)
    with pytest.raises(ValueError, match=r"mask_values: .*unlisted values \[7\] in .*im1\.png"):
        read_folder(root, supervision="scribbles", mask_values={0: 0, 255: 1})
    data = read_folder(root, supervision="scribbles", mask_values={0: 0, 255: 1}, mask_ignore=[7])
    assert data[1].mask[0, 0] == 255 and data[1].num_classes == 2
    with pytest.raises(ValueError, match=r"mask of 'im1': expected class ids in \[0, 2\).*got \[7\] in .*im1\.png"):
        read_folder(root, supervision="scribbles", num_classes=2, mask_ignore=[255])
    with pytest.raises(ValueError, match=r"mask_values: expected class ids in \[0, 2\) or 255 as values, got \[5\]"):
        read_folder(root, supervision="scribbles", num_classes=2, mask_values={0: 0, 255: 5, 7: 255})
    with pytest.raises(ValueError, match=r"mask_values: expected keys not also in mask_ignore, got \[7\]"):
        read_folder(root, supervision="scribbles", mask_values={0: 0, 255: 1, 7: 255}, mask_ignore=[7])
    with pytest.raises(TypeError, match="mask_ignore: expected a sequence of ints, got 255"):
        read_folder(root, supervision="scribbles", mask_ignore=255)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mask_values: expected a mapping"):
        read_folder(root, supervision="scribbles", mask_values=[(0, 0)])  # type: ignore[arg-type]


def test_class_names_and_num_classes_checked(tmp_path):
    root = _own_data(tmp_path)
    with pytest.raises(ValueError, match=r"classes\.txt: expected 2 names \(num_classes\), got 3"):
        read_folder(root, "train", num_classes=2)
    with pytest.raises(ValueError, match=r"class_names: expected 4 names \(num_classes\), got 2"):
        read_folder(root, "train", num_classes=4, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"num_classes: expected an int in \[2, 254\], got 1"):
        read_folder(root, "train", num_classes=1)
    with pytest.raises(TypeError, match="class_names: expected a sequence of str"):
        read_folder(root, "train", class_names="abc")
    (root / "classes.txt").unlink()
    only_bg = _own_data(tmp_path / "bg", classes=False)
    for p in (only_bg / "seeds").iterdir():
        _save(p, np.where(np.array(Image.open(p)) == 0, 0, 255).astype(np.uint8))
    for p in (only_bg / "masks").iterdir():
        _save(p, np.zeros((H, W), np.uint8))
    with pytest.raises(ValueError, match="num_classes: not given, and only class 0 is found"):
        read_folder(only_bg, "train")


def test_bad_seeds_and_masks_name_the_file(tmp_path):
    root = _own_data(tmp_path)
    bad = _seeds(0)
    bad[0, 0] = 3
    _save(root / "seeds" / "tr0.png", bad)
    with pytest.raises(ValueError, match=r"seeds of 'tr0': expected class ids in \[0, 3\).*got \[3\] in .*tr0\.png"):
        read_folder(root, "train")
    _save(root / "seeds" / "tr0.png", np.full((H + 1, W), 255, np.uint8))
    with pytest.raises(
        ValueError, match=rf"seeds of 'tr0': expected shape \({H}, {W}\) .*tr0\.png.*got \({H + 1}, {W}\)"
    ):
        read_folder(root, "train")
    _save(root / "masks" / "va1.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(ValueError, match=rf"mask of 'va1': expected shape \({H}, {W}\).*got \({H}, {W + 2}\) in .*va1"):
        read_folder(root, "val")
    Image.fromarray(_mask(0)).save(root / "masks" / "va1.jpg")
    with pytest.raises(ValueError, match=r"masks: expected PNG label maps .*va1\.jpg"):
        read_folder(root, "val")
    (root / "masks" / "va1.jpg").unlink()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "va0.jpg")
    with pytest.raises(ValueError, match=r"images: expected one file per id, got two for id 'va0'"):
        read_folder(root, "val")


def test_split_lists(tmp_path):
    root = _own_data(tmp_path, n_train=6)
    (root / "train.txt").unlink()
    (root / "val.txt").unlink()  # only test.txt: train and val split the other images, never test's
    with pytest.warns(DataWarning, match="have no mask"):  # train items in val: no mask to evaluate
        train, val, test = (read_folder(root, k, supervision="none") for k in ("train", "val", "test"))
    ids = [{s.id for s in x} for x in (train, val, test)]
    others = {f"tr{k}" for k in range(6)} | {"va0", "va1"}
    assert ids[2] == {"te0", "te1"} and not ids[0] & ids[1] and ids[0] | ids[1] == others
    assert len(ids[0]) == 6 and len(ids[1]) == 2  # 3:1, the train:val proportion of fractions
    (root / "test.txt").write_text("te0\nte0\n")
    with pytest.raises(ValueError, match=r"test\.txt: expected each id once, got 'te0' twice"):
        read_folder(root, "test")
    (root / "test.txt").write_text("te0.png\n")
    with pytest.raises(FileNotFoundError, match=r"id 'te0\.png' listed in .*test\.txt has no file .*without"):
        read_folder(root, "test")
    (root / "test.txt").write_text("te0\ntr0\n")
    (root / "train.txt").write_text("tr0\ntr1\n")
    with pytest.warns(DataWarning, match="the splits overlap"), pytest.warns(DataWarning, match="have no mask"):
        read_folder(root, "test")


def test_eval_items_without_masks_and_orphan_files_are_reported(tmp_path):
    root = _own_data(tmp_path)
    (root / "val.txt").write_text("va0\ntr0\n")
    with pytest.warns(DataWarning, match=r"split 'val': 1 of 2 items have no mask .*not evaluated"):
        with pytest.warns(DataWarning, match=r"split 'val': 1 ids are also listed in .*train\.txt"):
            read_folder(root, "val")
    _save(root / "masks" / "typo.png", _mask(0))
    with pytest.warns(DataWarning, match=r"masks: 1 files in .* match no image"):
        read_folder(root, "test")


def test_missing_folder_names_root_and_the_environment_variable(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*absent.*root=.*--root.*CHAINRULE2_DATA"):
        read_folder(tmp_path / "absent")
    (tmp_path / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*images.*--root.*CHAINRULE2_DATA"):
        read_folder(tmp_path)


def test_shared_reader_default_root_names_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAINRULE2_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(
        FileNotFoundError, match=r"nowhere/grabcut_scribbles \(the default, \$CHAINRULE2_DATA/gra.*--root"
    ):
        read_grabcut()


# ---------------------------------------------------------------------------------------- CLI


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_and_help():
    args = _args()
    assert (args.dataset, args.root, args.supervision, args.length, args.size) == ("demo", None, "auto", 1.0, 96)
    assert (args.limit, args.eval_limit, args.data_seed) == (None, None, 0)
    assert (args.num_classes, args.class_names, args.mask_ignore, args.mask_values) == (None, None, None, None)
    p = argparse.ArgumentParser()
    add_data_arguments(p)
    text = p.format_help()
    assert "$CHAINRULE2_DATA/<name>" in text and "../shared/data/<name>" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--mask-values", "255-1"])
    with pytest.raises(TypeError, match="parser: expected an argparse.ArgumentParser"):
        add_data_arguments(object())  # type: ignore[arg-type]


def test_load_splits_folder(tmp_path):
    root = _own_data(tmp_path)
    train, val, test = load_splits(_args("--dataset", "folder", "--root", str(root), "--size", "8"))
    assert [s.id for s in train] == ["tr0", "tr1", "tr2", "tr3"] and [s.id for s in test] == ["te0", "te1"]
    assert train[0].shape == (6, 8) and val[0].mask is not None and train[0].num_seeds > 0
    one = load_splits(_args("--dataset", "folder", "--root", str(root), "--limit", "1", "--eval-limit", "1"))
    assert [len(x) for x in one] == [1, 1, 1]
    names = load_splits(_args("--dataset", "folder", "--root", str(root), "--class-names", "bg", "a", "b"))
    assert names[0][0].class_names == ("bg", "a", "b")
    with pytest.raises(ValueError, match="supervision: 'scribbles' .*item 'tr0' has no mask"):
        load_splits(_args("--dataset", "folder", "--root", str(root), "--supervision", "scribbles"))
    binary = _binary(tmp_path / "binary", n=4)
    with pytest.raises(ValueError, match="look binary 0/255"):
        load_splits(_args("--dataset", "folder", "--root", str(binary)))
    fixed = load_splits(_args("--dataset", "folder", "--root", str(binary), "--mask-values", "0:0", "255:1"))
    assert fixed[0][0].num_classes == 2 and fixed[0][0].num_seeds > 0  # synthesised: there is no seeds/
    void = load_splits(
        _args("--dataset", "folder", "--root", str(binary), "--mask-ignore", "255", "--num-classes", "2")
    )
    assert set(np.unique(void[1][0].mask)) <= {0, 255}
    with pytest.raises(ValueError, match="--mask-values: expected each mask value once, got 0 twice"):
        load_splits(_args("--dataset", "folder", "--root", str(binary), "--mask-values", "0:0", "0:1"))


def test_load_splits_demo_keeps_its_split():
    train, val, test = load_splits(_args("--limit", "8", "--size", "32"))
    every = make_demo_dataset(8, 32, seed=0)
    assert [s.id for s in train] == [s.id for s in every[:4]]
    assert [s.id for s in val] == [s.id for s in every[4:6]] and [s.id for s in test] == [s.id for s in every[6:]]
    assert all(np.array_equal(a.seeds, b.seeds) for a, b in zip(train, every[:4], strict=True))
    clicks = load_splits(_args("--limit", "4", "--size", "32", "--supervision", "clicks"))
    assert clicks[0][0].num_seeds < train[0].num_seeds


def test_load_splits_option_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--supervision: 'real' .*--dataset demo has none.*grabcut.*folder"):
        load_splits(_args("--supervision", "real"))
    with pytest.raises(ValueError, match=r"--supervision: 'real' .*--dataset camvid"):
        load_splits(_args("--dataset", "camvid", "--supervision", "real"))
    with pytest.raises(
        ValueError, match="--num-classes, --mask-ignore: only for --dataset folder, got --dataset camvid"
    ):
        load_splits(_args("--dataset", "camvid", "--num-classes", "3", "--mask-ignore", "11"))
    with pytest.raises(ValueError, match="--root: --dataset folder needs --root"):
        load_splits(_args("--dataset", "folder"))
    with pytest.raises(ValueError, match="--root: the demo data set is generated"):
        load_splits(_args("--root", str(tmp_path)))
    with pytest.raises(ValueError, match="--limit: expected a positive int, got 0"):
        load_splits(_args("--limit", "0"))
    with pytest.raises(TypeError, match="args: expected the options of add_data_arguments"):
        load_splits(argparse.Namespace(dataset="demo"))
    with pytest.raises(ValueError, match="--dataset: expected training items, got none"):
        load_splits(_args("--limit", "1"))


def test_load_splits_missing_data_names_root_and_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAINRULE2_DATA", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"--root: .*weizmann_horse .*\$CHAINRULE2_DATA/weizmann_horse.*CHAINRULE2"
    ):
        load_splits(_args("--dataset", "weizmann_horse"))
    with pytest.raises(FileNotFoundError, match=r"root: folder not found: .*elsewhere.*--root.*CHAINRULE2_DATA"):
        load_splits(_args("--dataset", "isbi2012", "--root", str(tmp_path / "elsewhere")))
    monkeypatch.delenv("CHAINRULE2_DATA")
    conftest = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_root_conftest", conftest)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._data_root().parts[-2:] == ("shared", "data")
    monkeypatch.setenv("CHAINRULE2_DATA", str(tmp_path))
    assert module._data_root() == tmp_path


def test_load_splits_grabcut_auto_uses_the_human_scribbles(shared_data):
    root = shared_data / "grabcut_scribbles"
    train, _, _ = load_splits(_args("--dataset", "grabcut", "--root", str(root), "--size", "48", "--limit", "2",
                                    "--eval-limit", "1"))  # fmt: skip
    real = read_grabcut(root, "train", size=48, supervision="real", limit=2)
    assert all(np.array_equal(a.seeds, b.seeds) for a, b in zip(train, real, strict=True))
