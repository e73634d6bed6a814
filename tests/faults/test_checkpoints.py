"""Faults in training runs: broken checkpoints, a warm-up from another data set, a diverging stage B."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

from chainrule2_torch.data import make_demo_dataset  # noqa: E402
from chainrule2_torch.networks import UNet  # noqa: E402
from chainrule2_torch.training import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def data():
    every = make_demo_dataset(8, 24, seed=0)
    return every[:4], every[4:6], every[6:]


def _config(method="grid-tr", **kw):
    base = dict(method=method, epochs=1, warmup_epochs=1, stage_a_every=1, batch_size=2, crop_size=(24, 24))
    return TrainConfig(**{**base, **kw})


def _net():
    torch.manual_seed(0)
    return UNet(3, 3, width=4, depth=2)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_a_broken_last_checkpoint_is_named(data, tmp_path, content):
    train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=0)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100] if content == "truncated" else content)
    with pytest.raises(ValueError, match=f"checkpoint {ckpt} cannot be read .*delete it or start without --resume"):
        train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, resume=True)


def test_a_foreign_checkpoint_is_named(data, tmp_path):
    train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=0)
    torch.save({"weights": 1}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="is not a chainrule2 checkpoint"):
        train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, resume=True)


def test_resume_with_another_configuration_names_the_fields(data, tmp_path):
    train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=0)
    with pytest.raises(ValueError, match=r"different configuration \(fields \['trust_weight'\]\)"):
        train(_config(trust_weight=3.0), _net(), *data, out_dir=tmp_path, progress=False, panels=0, resume=True)


def test_a_warmup_from_other_data_is_refused(data, tmp_path):
    ckpt = tmp_path / "warmup.pt"
    train(_config(), _net(), *data, out_dir=tmp_path / "a", progress=False, panels=0, warmup_checkpoint=ckpt)
    other = make_demo_dataset(8, 24, seed=5)[:4]
    with pytest.raises(ValueError, match=r"another warm-up \(differing fields: \['data'\]\)"):
        train(_config(), _net(), other, out_dir=tmp_path / "b", progress=False, panels=0, warmup_checkpoint=ckpt)
    wider = UNet(3, 3, width=8, depth=2)
    with pytest.raises(ValueError, match=r"differing fields: \['parameters'\]"):
        train(_config(), wider, *data, out_dir=tmp_path / "c", progress=False, panels=0, warmup_checkpoint=ckpt)
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="warmup_checkpoint: .* cannot be read"):
        train(_config(), _net(), *data, out_dir=tmp_path / "d", progress=False, panels=0, warmup_checkpoint=ckpt)


def test_a_warmup_is_keyed_by_its_own_learning_rate(data, tmp_path):
    ckpt = tmp_path / "warmup.pt"
    train(_config(lr=1e-3), _net(), *data, out_dir=tmp_path / "a", progress=False, panels=0, warmup_checkpoint=ckpt)
    # the same warm-up (rate 1e-3), a lower rate after it: the checkpoint is that warm-up's
    stamp = ckpt.stat().st_mtime_ns
    train(_config(lr=1e-4, warmup_lr=1e-3), _net(), *data, out_dir=tmp_path / "b", progress=False, panels=0,
          warmup_checkpoint=ckpt)  # fmt: skip
    assert ckpt.stat().st_mtime_ns == stamp  # loaded, not trained again
    with pytest.raises(ValueError, match=r"another warm-up \(differing fields: \['lr'\]\)"):
        train(_config(lr=1e-3, warmup_lr=1e-2), _net(), *data, out_dir=tmp_path / "c", progress=False, panels=0,
              warmup_checkpoint=ckpt)  # fmt: skip


def test_a_diverging_stage_b_stops_and_keeps_the_last_good_epoch(data, tmp_path):
    config = _config("pce", optimizer="sgd", lr=1e12, epochs=3, warmup_epochs=0)
    with pytest.raises(FloatingPointError, match="stage B diverged at epoch"):
        train(config, _net(), *data, out_dir=tmp_path, progress=False, panels=0)
    assert not (tmp_path / "final.json").exists()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    if lines:  # the epochs before the divergence were finite and checkpointed
        assert all(np.isfinite(r["loss"]) for r in lines)
        state = torch.load(tmp_path / "last.pt", weights_only=False)
        assert state["epoch"] == lines[-1]["epoch"]


def test_no_temp_file_is_left_when_a_save_fails(data, tmp_path, monkeypatch):
    import chainrule2_torch.training as training

    def full_disk(obj, f):  # writes part of the checkpoint, then the disk is full
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=0)
    before = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(training.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        train(_config(), _net(), *data, out_dir=tmp_path, progress=False, panels=0, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == before  # the previous checkpoint is intact
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
