"""Stage A off the critical path (``TrainConfig.stage_a_overlap``): it solves from the network as it was
at the start of its epoch, its labels arrive for the next epoch, and a run is as deterministic and as
resumable as a blocking one, in a thread or in worker processes."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import _tiny_runs as tiny  # noqa: E402  (tests/ is on sys.path through its conftest)

from chainrule2.solvers import ProcessBatchSolver  # noqa: E402
from chainrule2_torch import training  # noqa: E402
from chainrule2_torch.training import StageACache, make_stage_a, refresh_pseudo_labels, train  # noqa: E402

# warm-up 0; blocking stage A at 1 (the first), background ones at 2 and 3
OVERLAP = dict(
    epochs=3, warmup_epochs=1, stage_a_every=1, trust_weight=64.0, potts_weight=1.0, lr=0.03, stage_a_overlap=True
)


@pytest.fixture(scope="module")
def data():
    return tiny.demo_splits()


def _records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("overlap")
    net = tiny.tiny_net()
    final = train(tiny.tiny_config("grid-tr", **OVERLAP), net, *data, out_dir=out, progress=False, panels=0)
    return out, net, final


def test_the_first_stage_a_blocks_and_the_later_ones_run_beside_stage_b(uninterrupted):
    out, _, _ = uninterrupted
    records = _records(out)
    assert [r.get("stage_a_overlapped", False) for r in records] == [False, False, True, True]
    assert "stage_a_s" not in records[0] and "stage_a_s" in records[1]
    for r in records[2:]:
        assert r["stage_a_wait_s"] >= 0 and r["stage_a_items"] == [6] and r["pseudo_miou"] is not None


def test_a_background_stage_a_solves_from_the_network_at_the_start_of_its_epoch(data, tmp_path):
    """The labels in the checkpoint of epoch 2 are exactly a blocking stage A on the weights of epoch 1."""
    config = tiny.tiny_config("grid-tr", **OVERLAP)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "e1", progress=False, panels=0, stop_after_epoch=1)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "e2", progress=False, panels=0, stop_after_epoch=2)
    at_1 = torch.load(tmp_path / "e1" / "last.pt", weights_only=False)
    at_2 = torch.load(tmp_path / "e2" / "last.pt", weights_only=False)
    net = tiny.tiny_net()
    net.load_state_dict(at_1["model"])
    cache = StageACache(None)
    cache.restore(at_1["stage_a_cache"])
    refresh_pseudo_labels(net, make_stage_a(config), data[0], cache, config.batch_size)
    assert set(cache.state()) == set(at_2["stage_a_cache"])
    changed = 0
    for key, labels in cache.state().items():
        np.testing.assert_array_equal(labels, at_2["stage_a_cache"][key])
        changed += int(np.count_nonzero(labels != at_1["stage_a_cache"][key]))
    assert changed > 0  # the second stage A did move labels: the comparison is not vacuous


def test_kill_and_resume_inside_the_overlapped_period_is_exact(data, tmp_path, uninterrupted):
    _, net_a, final_a = uninterrupted
    config = tiny.tiny_config("grid-tr", **OVERLAP)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path, progress=False, panels=0, stop_after_epoch=2)
    net_b = tiny.tiny_net(seed=9)  # resumed weights come from the checkpoint
    final_b = train(config, net_b, *data, out_dir=tmp_path, progress=False, panels=0, resume=True)
    for x, y in zip(net_a.state_dict().values(), net_b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert final_b["test"]["miou"] == final_a["test"]["miou"]


def test_worker_processes_give_the_same_run_as_the_thread(data, tmp_path, uninterrupted):
    _, net_a, _ = uninterrupted
    net_b = tiny.tiny_net()
    with ProcessBatchSolver(workers=1, always_spawn=True) as solver:  # the CLI's --stage-a-overlap
        train(tiny.tiny_config("grid-tr", **OVERLAP), net_b, *data, out_dir=tmp_path, progress=False, panels=0,
              batch_solver=solver)  # fmt: skip
    for x, y in zip(net_a.state_dict().values(), net_b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_an_error_in_the_background_stage_a_stops_the_run_with_that_error(data, tmp_path, monkeypatch):
    real = training._solve_shard
    calls = []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:  # the first background stage A
            raise RuntimeError("solver exploded")
        return real(*args, **kw)

    monkeypatch.setattr(training, "_solve_shard", failing)
    with pytest.raises(RuntimeError, match="solver exploded"):
        train(tiny.tiny_config("grid-tr", **OVERLAP), tiny.tiny_net(), *data, out_dir=tmp_path, progress=False,
              panels=0)  # fmt: skip
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1  # epoch 2 not written


def test_stage_a_overlap_must_be_a_bool():
    with pytest.raises(ValueError, match="stage_a_overlap: expected True or False"):
        tiny.tiny_config("grid-tr", stage_a_overlap="yes")
