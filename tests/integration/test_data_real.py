"""The real-data readers on ../shared/data (skipped when absent, failing under CI)."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule2_torch.data import (
    collate,
    read_camvid,
    read_grabcut,
    read_isbi2012,
    read_weizmann_horse,
)

pytestmark = pytest.mark.data


def _consistent(samples):
    """Seeds never contradict the ground truth (ignored truth pixels aside)."""
    for s in samples:
        lab = s.seeds < s.num_classes
        assert lab.any(), s.id
        truth = s.mask[lab]
        assert np.all((truth == s.seeds[lab]) | (truth == 255)), s.id


def test_grabcut_real_scribbles(shared_data):
    data = read_grabcut(shared_data / "grabcut_scribbles", "all")
    assert len(data) == 33 and data[0].num_classes == 2
    llama = next(s for s in data if s.id == "llama")
    assert llama.shape == (371, 513)
    _consistent(data)  # set 1 is 100 % consistent with the ground truth
    assert any(np.any(s.mask == 255) for s in data)  # the 128 band is ignored
    small = read_grabcut(shared_data / "grabcut_scribbles", "all", size=128, limit=5)
    assert all(max(s.shape) == 128 and s.num_seeds > 0 for s in small)
    splits = [read_grabcut(shared_data / "grabcut_scribbles", k) for k in ("train", "val", "test")]
    ids = [{s.id for s in part} for part in splits]
    assert sum(map(len, ids)) == 33 and not ids[0] & ids[2] and not ids[1] & ids[2]


def test_weizmann_horse(shared_data):
    data = read_weizmann_horse(shared_data / "weizmann_horse", "val", size=64, limit=12)
    assert len(data) == 12 and all(max(s.shape) == 64 for s in data)
    assert {int(v) for s in data for v in np.unique(s.mask)} == {0, 1}
    _consistent(data)


def test_isbi2012(shared_data):
    data = read_isbi2012(shared_data / "isbi2012_membrane", "test", size=128)
    assert [s.id for s in data] == ["25", "26", "27", "28", "29"]
    assert data[0].shape == (128, 128) and data[0].class_names == ("membrane", "cell")
    _consistent(data)


def test_camvid_official_splits(shared_data):
    root = shared_data / "camvid"
    data = read_camvid(root, "val", size=(90, 120), limit=6)
    assert len(data) == 6 and data[0].num_classes == 11 and data[0].class_names[3] == "Road"
    assert all(np.all(s.mask <= 10) | np.any(s.mask == 255) for s in data)
    _consistent(data)
    batch = collate(data)
    assert tuple(batch.inputs.shape) == (6, 3, 90, 120)
    train_ids = {line.split()[0].split("/")[1][:-4] for line in (root / "train.txt").read_text().splitlines()}
    test_ids = {line.split()[0].split("/")[1][:-4] for line in (root / "test.txt").read_text().splitlines()}
    assert {s.id for s in read_camvid(root, "test", size=(45, 60), supervision="none", limit=4)} <= test_ids
    assert not train_ids & test_ids
