"""The training pipeline on tiny generated data: every method runs, resume is exact, stage A is cached."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import _tiny_runs as tiny  # noqa: E402  (tests/ is on sys.path through its conftest)

from chainrule2_torch.data import NoSeedsWarning, make_demo_dataset  # noqa: E402
from chainrule2_torch.training import METHODS, TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


_config, _net = tiny.tiny_config, tiny.tiny_net


@pytest.fixture(scope="module")
def data():
    return tiny.demo_splits()


def _run(data, tmp, method="grid-tr", **kw):
    train_s, val_s, test_s = data
    net = _net()
    final = train(_config(method), net, train_s, val_s, test_s, out_dir=tmp, progress=False, panels=1, **kw)
    return net, final


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs(data, tmp_path, method):
    net, final = _run(data, tmp_path, method)
    assert 0 <= final["test"]["miou"] <= 100
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(len(lines)))
    assert all(np.isfinite(r["loss"]) for r in lines)
    assert list((tmp_path / "panels").glob("*.png"))
    if method in ("adm", "grid-tr", "dense-tr"):
        assert "pseudo_miou" in final
        assert sorted(p.stem for p in (tmp_path / "stage_a").glob("*.png")) == sorted(s.id for s in data[0])


def test_stage_a_runs_every_k_epochs_only(data, tmp_path):
    train_s, val_s, _ = data
    config = _config("grid-tr", epochs=4, stage_a_every=2)
    train(config, _net(), train_s, val_s, (), out_dir=tmp_path, progress=False, panels=0)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    ran = [r["epoch"] for r in lines if "stage_a_solve_s" in r]
    assert ran == [1, 3]  # warm-up epoch 0, then every 2nd epoch; cached labels reused in between


def test_final_json_is_strict_and_on_one_scale(data, tmp_path):
    train_s, val_s, _ = data
    final = train(_config("pce", epochs=1, warmup_epochs=0), _net(), train_s, val_s, out_dir=tmp_path,
                  progress=False, panels=0)  # fmt: skip
    text = (tmp_path / "final.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert set(final["val"]["iou"]) == set(train_s[0].class_names)
    defined = [v for v in final["val"]["iou"].values() if v is not None]
    assert defined and max(defined) > 1.0 and final["val"]["miou"] == pytest.approx(np.mean(defined))


def test_warmup_checkpoint_is_reused_identically(data, tmp_path):
    ckpt = tmp_path / "warmup.pt"
    net_a, a = _run(data, tmp_path / "a", warmup_checkpoint=ckpt)
    assert ckpt.exists()
    net_b, b = _run(data, tmp_path / "b", warmup_checkpoint=ckpt)
    assert a["test"]["miou"] == b["test"]["miou"]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["epoch"] == 1  # the warm-up epoch was not re-run


def test_item_without_seeds_is_skipped_with_a_warning(data, tmp_path):
    train_s, val_s, _ = data
    empty = train_s[0].replace(seeds=np.full(train_s[0].shape, 255, np.uint8))
    with pytest.warns(NoSeedsWarning, match="no seed pixel"):
        train(_config("pce", epochs=1, warmup_epochs=0), _net(), [empty] + list(train_s[1:]), val_s,
              out_dir=tmp_path, progress=False, panels=0)  # fmt: skip


def test_bad_inputs(data, tmp_path):
    train_s, _, _ = data
    with pytest.raises(ValueError, match="train_samples: expected at least one training item"):
        train(_config("pce"), _net(), [], out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="method: expected one of"):
        TrainConfig(method="sgd")
    with pytest.raises(ValueError, match="epochs: expected an int >= 0"):
        TrainConfig(epochs=-1)
    other = make_demo_dataset(1, 24, seed=1)[0]
    from chainrule2_torch.data import Sample

    five = Sample("x", other.image, other.seeds, other.mask, 5, tuple("abcde"))
    with pytest.raises(ValueError, match="num_classes of 'x': expected 3"):
        train(_config("pce"), _net(), list(train_s) + [five], out_dir=tmp_path, progress=False)


def test_example_script_demo_cli(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(ROOT / "examples" / "segmentation_scribbles.py"), "--demo", "--limit", "8", "--size", "24",
           "--epochs", "1", "--warmup-epochs", "1", "--stage-a-every", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    final = json.loads((out / "final.json").read_text())
    assert "test" in final and final["command"].startswith("python examples/segmentation_scribbles.py")
    assert list((out / "panels").glob("*.png"))


def test_grid_tr_with_the_adaptive_trust_region(data, tmp_path, monkeypatch):
    from chainrule2.stage_a import StageA

    train_s, val_s, _ = data
    hints, real = [], StageA.propose

    def spy(self, *args, **kw):  # the hints each stage A got, and the betas it chose
        proposal = real(self, *args, **kw)
        hints.append((kw.get("beta_hint"), list(proposal.report.betas)))
        return proposal

    monkeypatch.setattr(StageA, "propose", spy)
    config = _config("grid-tr", trust_weight="auto", max_changed=0.2)
    train(config, _net(), train_s, val_s, out_dir=tmp_path, progress=False, panels=0)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    betas = [r["stage_a_beta_median"] for r in lines if "stage_a_beta_median" in r]
    assert len(betas) == 2 and all(2**-6 <= b <= 2**10 for b in betas)
    # the first stage A searches cold; the second starts each item at the beta it chose the first time
    half = len(hints) // 2
    assert all(h == [None] * len(b) for h, b in hints[:half])
    assert [h for h, _ in hints[half:]] == [b for _, b in hints[:half]]
    saved = torch.load(tmp_path / "last.pt", weights_only=False)["stage_a_betas"]
    assert sorted(saved) == sorted(s.id for s in train_s)
    assert sorted(saved.values()) == sorted(b for _, bs in hints[half:] for b in bs)
    with pytest.raises(ValueError, match="trust_weight: expected a number >= 0 or 'auto'"):
        TrainConfig(trust_weight="big")
    with pytest.raises(ValueError, match="max_changed: only with trust_weight='auto'"):
        TrainConfig(trust_weight=1.0, max_changed=0.2)
    with pytest.raises(ValueError, match="max_changed"):
        TrainConfig(trust_weight="auto", max_changed=1.5)


def test_a_checkpoint_from_before_a_new_field_resumes(data, tmp_path):
    train_s, val_s, _ = data
    train(_config("pce"), _net(), train_s, val_s, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=0)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    del state["config"]["max_changed"]  # written by a version without the field
    torch.save(state, tmp_path / "last.pt")
    final = train(_config("pce"), _net(), train_s, val_s, out_dir=tmp_path, progress=False, panels=0, resume=True)
    assert final["val"]["miou"] is not None


@pytest.mark.parametrize("soft", [True, False])
def test_grid_tr_with_mean_field_targets(data, tmp_path, soft):
    train_s, val_s, test_s = data
    config = _config("grid-tr", stage_a_solver="mean-field", soft_targets=soft, mean_field_temperature=20.0)
    final = train(config, _net(), train_s, val_s, test_s, out_dir=tmp_path, progress=False, panels=1)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    stage_a = [r for r in lines if "stage_a_solve_s" in r]
    assert len(stage_a) == 2 and all(np.isfinite(r["loss"]) for r in lines)
    assert all(0 <= r["stage_a_changed"] <= 1 and r["pseudo_miou"] is not None for r in stage_a)
    assert stage_a[0]["target_fit"] is None and 0 <= stage_a[1]["target_fit"] <= 1
    assert final["pseudo_miou"] is not None and 0 <= final["target_fit"] <= 1
    files = sorted((tmp_path / "stage_a").iterdir())
    assert [p.name for p in files] == sorted(f"{s.id}.{'npz' if soft else 'png'}" for s in train_s)
    if soft:  # the cache holds distributions (float16), soft at T = 20
        q = np.load(files[0])["target"]
        assert q.dtype == np.float16 and q.shape == (*train_s[0].shape, 3) and (q.max(-1) < 0.99).any()
    for s in train_s:  # seeds stay exact in the stage-A labels either way
        target = np.load(tmp_path / "stage_a" / f"{s.id}.npz")["target"].argmax(-1) if soft else None
        if not soft:
            from chainrule2_torch.data import read_labels

            target = read_labels(tmp_path / "stage_a" / f"{s.id}.png")
        np.testing.assert_array_equal(target[s.seeds < 3], s.seeds[s.seeds < 3])


def test_example_script_with_soft_mean_field_targets(tmp_path):
    out = tmp_path / "soft"
    cmd = [sys.executable, str(ROOT / "examples" / "segmentation_scribbles.py"), "--demo", "--limit", "8", "--size", "24",
           "--epochs", "1", "--warmup-epochs", "1", "--stage-a-every", "1", "--out", str(out), "--no-progress",
           "--stage-a-solver", "mean-field", "--soft-targets", "--mean-field-temperature", "10"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert list((out / "stage_a").glob("*.npz")) and not list((out / "stage_a").glob("*.png"))
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["config"]["soft_targets"] and state["config"]["mean_field_temperature"] == 10.0
    bad = subprocess.run(cmd[:-5] + ["--soft-targets"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--soft-targets: only with --stage-a-solver mean-field" in bad.stderr


def test_dense_tr_soft_targets_follow_the_seeds(data, tmp_path):
    train_s, val_s, test_s = data
    config = _config("dense-tr", soft_targets=True, dense_weight=0.3, trust_weight=16.0)
    final = train(config, _net(), train_s, val_s, test_s, out_dir=tmp_path, progress=False, panels=0)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum("stage_a_solve_s" in r for r in lines) == 2 and final["pseudo_miou"] is not None
    for s in train_s:  # dense mean-field keeps the seeds one-hot; soft elsewhere
        q = np.load(tmp_path / "stage_a" / f"{s.id}.npz")["target"]
        np.testing.assert_array_equal(q.argmax(-1)[s.seeds < 3], s.seeds[s.seeds < 3])
    with pytest.raises(ValueError, match="soft_targets"):
        _config("grid-tr", soft_targets=True)  # soft needs a mean-field stage A
