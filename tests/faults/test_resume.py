"""Kill and resume: at every epoch, inside stage A, after a crash between a metrics line and its
checkpoint, in both phase-switch modes, with the soft (mean-field) cache; and the refusal to mix a
new run into an old one."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import _tiny_runs as tiny  # noqa: E402  (tests/ is on sys.path through its conftest)

from chainrule2_torch.training import train  # noqa: E402

_config, _net = tiny.tiny_config, tiny.tiny_net


@pytest.fixture(scope="module")
def data():
    return tiny.demo_splits()


RESUME = dict(epochs=3, warmup_epochs=2, stage_a_every=2)  # epochs 0-1 warm-up; stage A at 2 and 4


def _same_networks(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    net = _net()
    final = train(_config("grid-tr", **RESUME), net, *data, out_dir=out, progress=False, panels=0)
    return net, final, (out / "metrics.jsonl").read_text().splitlines()


def _resume_and_compare(data, out, uninterrupted):
    full_net, full, full_lines = uninterrupted
    net = _net(seed=99)  # a fresh process rebuilds the network from scratch: a different init must not matter
    resumed = train(_config("grid-tr", **RESUME), net, *data, out_dir=out, progress=False, panels=0, resume=True)
    _same_networks(full_net, net)
    assert resumed["test"]["miou"] == full["test"]["miou"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    drop = ("epoch_s", "stage_a_s", "stage_a_solve_s")  # timings differ, nothing else may
    strip = [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]
    assert strip == [{k: v for k, v in json.loads(x).items() if k not in drop} for x in full_lines]


@pytest.mark.parametrize("phase_switch", ["restart", "continue"])
def test_resume_at_the_phase_boundary_in_both_switch_modes(data, tmp_path, phase_switch):
    config = _config("grid-tr", phase_switch=phase_switch, **RESUME)
    full_net = _net()
    full = train(config, full_net, *data, out_dir=tmp_path / "a", progress=False, panels=0)
    train(config, _net(), *data, out_dir=tmp_path / "b", progress=False, panels=0, stop_after_epoch=1)
    net = _net(seed=99)
    resumed = train(config, net, *data, out_dir=tmp_path / "b", progress=False, panels=0, resume=True)
    _same_networks(full_net, net)
    assert resumed["test"]["miou"] == full["test"]["miou"]
    # and from the warm-up checkpoint (its optimizer state travels with it for "continue")
    ckpt = tmp_path / "warmup.pt"
    train(config, _net(), *data, out_dir=tmp_path / "c", progress=False, panels=0, warmup_checkpoint=ckpt)
    net = _net(seed=98)
    again = train(config, net, *data, out_dir=tmp_path / "d", progress=False, panels=0, warmup_checkpoint=ckpt)
    _same_networks(full_net, net)
    assert again["test"]["miou"] == full["test"]["miou"]


@pytest.mark.parametrize("stop", [0, 1, 2, 3])  # 1: the warm-up's last epoch (the phase boundary)
def test_resume_after_any_epoch_is_exact(data, tmp_path, uninterrupted, stop):
    stopped = train(_config("grid-tr", **RESUME), _net(), *data, out_dir=tmp_path, progress=False, panels=0,
                    stop_after_epoch=stop)  # fmt: skip
    assert stopped == {"stopped_after_epoch": stop}
    _resume_and_compare(data, tmp_path, uninterrupted)


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the loop may catch it."""


def _dies_on_call(n):
    from chainrule2.solvers import solve_batch

    calls = []

    def batch_solver(solver, energies, initials):
        calls.append(1)
        if len(calls) == n:
            raise _Killed
        return solve_batch(solver, energies, initials)

    return batch_solver


@pytest.mark.parametrize("call", [2, 4])  # inside the first stage A after the warm-up; inside the second
def test_kill_during_stage_a_then_resume_is_exact(data, tmp_path, uninterrupted, call):
    with pytest.raises(_Killed):
        train(_config("grid-tr", **RESUME), _net(), *data, out_dir=tmp_path, progress=False, panels=0,
              batch_solver=_dies_on_call(call))  # fmt: skip
    assert list((tmp_path / "stage_a").glob("*.png"))  # the killed stage A had written some labels
    _resume_and_compare(data, tmp_path, uninterrupted)


def test_a_crash_between_the_metrics_line_and_the_checkpoint_is_trimmed(data, tmp_path, uninterrupted):
    train(_config("grid-tr", **RESUME), _net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=2)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # epoch 3's line written, its checkpoint not
        f.write(json.dumps({"epoch": 3, "phase": "grid-tr", "loss": 0.0}) + "\n")
    _resume_and_compare(data, tmp_path, uninterrupted)


def test_an_old_run_is_not_silently_mixed_into_a_new_one(data, tmp_path):
    train(_config("pce", epochs=1, warmup_epochs=0), _net(), *data, out_dir=tmp_path, progress=False, panels=0)
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        train(_config("pce", epochs=1, warmup_epochs=0), _net(), *data, out_dir=tmp_path, progress=False)
    old = (tmp_path / "final.json").read_text()
    train(_config("pce", epochs=1, warmup_epochs=0, seed=4), _net(), *data, out_dir=tmp_path, progress=False,
          panels=0, overwrite=True)  # fmt: skip
    assert (tmp_path / "previous.final.json").read_text() == old
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


SOFT = dict(stage_a_solver="mean-field", soft_targets=True, mean_field_temperature=20.0, **RESUME)


@pytest.fixture(scope="module")
def uninterrupted_soft(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted_soft")
    net = _net()
    final = train(_config("grid-tr", **SOFT), net, *data, out_dir=out, progress=False, panels=0)
    cache = {p.stem: np.load(p)["target"] for p in (out / "stage_a").glob("*.npz")}
    return net, final, (out / "metrics.jsonl").read_text().splitlines(), cache


@pytest.mark.parametrize("how", ["stop after the first stage A", "killed inside the second stage A"])
def test_the_soft_cache_resumes_exactly(data, tmp_path, uninterrupted_soft, how):
    full_net, full, full_lines, full_cache = uninterrupted_soft
    if how.startswith("stop"):
        train(_config("grid-tr", **SOFT), _net(), *data, out_dir=tmp_path, progress=False, panels=0,
              stop_after_epoch=2)  # fmt: skip
    else:
        with pytest.raises(_Killed):
            train(_config("grid-tr", **SOFT), _net(), *data, out_dir=tmp_path, progress=False, panels=0,
                  batch_solver=_dies_on_call(4))  # fmt: skip
    assert not list((tmp_path / "stage_a").glob("*.png"))
    net = _net(seed=99)
    resumed = train(_config("grid-tr", **SOFT), net, *data, out_dir=tmp_path, progress=False, panels=0, resume=True)
    _same_networks(full_net, net)
    assert resumed["test"]["miou"] == full["test"]["miou"]
    assert resumed["target_fit"] == full["target_fit"] and resumed["pseudo_miou"] == full["pseudo_miou"]
    drop = ("epoch_s", "stage_a_s", "stage_a_solve_s")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]
    assert strip == [{k: v for k, v in json.loads(x).items() if k not in drop} for x in full_lines]
    cache = {p.stem: np.load(p)["target"] for p in (tmp_path / "stage_a").glob("*.npz")}
    assert sorted(cache) == sorted(full_cache)
    for key, q in cache.items():
        np.testing.assert_array_equal(q, full_cache[key])
    saved = torch.load(tmp_path / "last.pt", weights_only=False)["stage_a_cache"]
    assert all(saved[k].dtype == np.float16 and np.array_equal(saved[k], cache[k]) for k in cache)


def test_the_adaptive_trust_region_resumes_with_its_beta_hints(data, tmp_path):
    """trust_weight='auto': the betas of the first stage A (the second's hints) are in last.pt."""
    config = _config("grid-tr", trust_weight="auto", max_changed=0.2, **RESUME)
    net_a = _net()
    train(config, net_a, *data, out_dir=tmp_path / "a", progress=False, panels=0)
    train(config, _net(), *data, out_dir=tmp_path / "b", progress=False, panels=0, stop_after_epoch=2)
    stopped = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert sorted(stopped["stage_a_betas"]) == sorted(s.id for s in data[0])
    net_b = _net(seed=5)
    train(config, net_b, *data, out_dir=tmp_path / "b", progress=False, panels=0, resume=True)
    _same_networks(net_a, net_b)
    a, b = (torch.load(tmp_path / k / "last.pt", weights_only=False)["stage_a_betas"] for k in "ab")
    assert a == b
