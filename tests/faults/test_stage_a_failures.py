"""Stage A survives one bad item: a loss or solver that raises, a non-finite energy, a worker that dies.

The bad items are made by :class:`PoisonPotts`: the paper's ScribblePotts, except that for the ids it
names, building the problem raises (``"build"``) or the problem is a :class:`Poisoned` grid whose
``value`` raises (``"raise"``), is NaN (``"nan"``) or ends the worker process (``"die"``). Both are
defined at module level so that they pickle to a ProcessBatchSolver's workers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import re
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy
from chainrule2.energies.grid import GridPotts
from chainrule2.losses import ScribblePotts
from chainrule2.solvers import ProcessBatchSolver, ThreadBatchSolver, solve_batch
from chainrule2.solvers.base import SolveFailure

pytest.importorskip("maxflow")
from chainrule2.solvers import AlphaExpansion  # noqa: E402


@dataclasses.dataclass(frozen=True, eq=False)
class Poisoned(GridPotts):
    """A grid Potts energy whose ``value`` fails as ``mode`` says."""

    mode: str = "raise"

    def value(self, labels):  # noqa: ANN001, ANN201
        if self.mode == "nan":
            return float("nan")
        if self.mode == "die" and multiprocessing.parent_process() is not None:
            os._exit(1)  # a worker process dies (never the test's own process)
        raise RuntimeError(f"solver exploded ({self.mode})")


FAILED_ONCE: set[str] = set()  # the ids that mode "once" has failed already


@dataclasses.dataclass(frozen=True)
class PoisonPotts(ScribblePotts):
    """ScribblePotts whose problems for the ids in ``poison`` ((id, mode), ...) fail.

    ``"once"`` / ``"die-once"``: only the first problem built for the id fails (``"raise"``/``"die"``).
    """

    poison: tuple[tuple[str, str], ...] = ()

    def energy(self, unary, batch, index):  # noqa: ANN001, ANN201
        energy = super().energy(unary, batch, index)
        mode = dict(self.poison).get(batch.ids[index]) if batch.ids is not None else None
        if mode in ("once", "die-once"):
            mode = None if batch.ids[index] in FAILED_ONCE else "raise" if mode == "once" else "die"
            FAILED_ONCE.add(batch.ids[index])
        if mode is None:
            return energy
        if mode == "build":
            raise ValueError(f"loss: cannot build the problem of {batch.ids[index]}")
        init = {f.name: getattr(energy, f.name) for f in dataclasses.fields(GridPotts) if f.init}
        return Poisoned(**init, mode=mode)


def _batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 6, 7, 3))
    seeds = np.full((n, 6, 7), cr.UNLABELED)
    seeds[:, 0, 0], seeds[:, -1, -1], seeds[:, 0, -1] = 0, 1, 2
    images = rng.uniform(0, 255, size=(n, 6, 7, 3))
    return logits, cr.Batch(None, seeds, images=images, ids=tuple(f"i{k}" for k in range(n)))


def _stage_a(poison=(), on_failure="keep", batch_solver=None):
    loss = PoisonPotts(potts_weight=3.0, poison=tuple(poison))
    return cr.StageA(AlphaExpansion(), loss, CrossEntropy(), 2.0, batch_solver=batch_solver, on_failure=on_failure)


@pytest.fixture(scope="module")
def clean():
    logits, batch = _batch()
    return _stage_a().propose(logits, batch)


def _check_kept(proposal, clean, bad, kept):
    """Every item but ``bad`` is exactly the clean solve; ``bad`` holds ``kept`` and is reported."""
    for i in range(3):
        if i == bad:
            np.testing.assert_array_equal(proposal.targets[i], kept)
            assert proposal.report.traces[i] == ()
        else:
            np.testing.assert_array_equal(proposal.targets[i], clean.targets[i])
            assert proposal.report.traces[i] == clean.report.traces[i]
    assert [f[:2] for f in proposal.report.failures] == [(bad, f"i{bad}")]
    assert proposal.report.energy == pytest.approx(sum(clean.report.traces[i][-1] for i in range(3) if i != bad))
    assert proposal.targets.dtype == clean.targets.dtype and proposal.targets.shape == clean.targets.shape


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("build", "building its stage-A problem: ValueError: loss: cannot build the problem of i1"),
        ("raise", r"solving: RuntimeError: solver exploded \(raise\)"),
        ("nan", "solving: ValueError: energy: expected a finite stage-A energy and solution, got energy nan"),
    ],
)
def test_a_failing_item_keeps_its_seeds_the_first_time_and_the_others_are_solved(clean, caplog, mode, message):
    logits, batch = _batch()
    with caplog.at_level(logging.WARNING, logger="chainrule2.stage_a"):
        proposal = _stage_a([("i1", mode)]).propose(logits, batch)
    _check_kept(proposal, clean, 1, batch.seeds[1])
    assert set(np.unique(proposal.targets[1]).tolist()) == {0, 1, 2, cr.UNLABELED}  # seeds, 255 elsewhere
    (failure,) = proposal.report.failures
    assert re.search(message, failure[2]), failure[2]
    assert "item 'i1' (index 1) failed and keeps its seeds" in caplog.text


def test_a_failing_item_keeps_its_previous_labels(clean):
    logits, batch = _batch()
    previous = [clean.targets[0], np.full((6, 7), 2, dtype=np.uint8), None]
    proposal = _stage_a([("i1", "raise")]).propose(logits, batch, initial=previous)
    np.testing.assert_array_equal(proposal.targets[1], previous[1])
    np.testing.assert_array_equal(proposal.targets[2], clean.targets[2])
    assert proposal.targets.dtype == np.int64


def test_an_invalid_warm_start_is_a_failure_of_that_item_only(clean):
    logits, batch = _batch()
    proposal = _stage_a().propose(logits, batch, initial=[None, None, np.zeros((5, 7), np.int64)])
    _check_kept(proposal, clean, 2, batch.seeds[2])
    assert "initial: expected labels of shape (6, 7)" in proposal.report.failures[0][2]


def test_non_finite_logits_fail_their_item_only(clean):
    logits, batch = _batch()
    logits[0, 2, 3, 1] = np.nan
    proposal = _stage_a().propose(logits, batch)
    _check_kept(proposal, clean, 0, batch.seeds[0])
    with pytest.raises(ValueError, match=r"logits: expected finite values, got NaN or inf in item 'i0' \(index 0\)"):
        _stage_a(on_failure="raise").propose(logits, batch)


@pytest.mark.parametrize("mode", ["build", "raise", "nan"])
def test_raise_names_the_item(mode):
    logits, batch = _batch()
    with pytest.raises((ValueError, RuntimeError), match=r"stage A, item 'i2' \(index 2\)"):
        _stage_a([("i2", mode)], on_failure="raise").propose(logits, batch)


def test_on_failure_is_checked():
    with pytest.raises(ValueError, match=r"on_failure: expected one of \('raise', 'keep'\), got 'skip'"):
        _stage_a(on_failure="skip")


@pytest.mark.parametrize("kind", ["thread", "custom"])
def test_other_batch_solvers_lose_only_the_failing_item(clean, kind):
    calls = []

    def custom(solver, energies, initials):  # a batch solver of the caller's, without errors=
        calls.append(len(energies))
        return solve_batch(solver, energies, initials)

    batch_solver = ThreadBatchSolver(workers=2) if kind == "thread" else custom
    logits, batch = _batch()
    proposal = _stage_a([("i0", "raise")], batch_solver=batch_solver).propose(logits, batch)
    _check_kept(proposal, clean, 0, batch.seeds[0])
    if kind == "custom":
        assert calls == [3, 1, 1, 1]  # the batch raised: solved again one item per call to find the bad one


def test_solve_batch_returns_or_raises_a_failure():
    logits, batch = _batch()
    stage_a = _stage_a([("i1", "raise")])
    energies = stage_a.solver.energies(stage_a.loss, logits, batch, CrossEntropy(), 2.0)
    results = solve_batch(AlphaExpansion(), energies, errors="return")
    assert isinstance(results[1], SolveFailure) and results[1].index == 1
    assert results[1].message == "RuntimeError: solver exploded (raise)"
    assert [type(r).__name__ for r in results] == ["SolverState", "SolveFailure", "SolverState"]
    with pytest.raises(RuntimeError, match=r"solver exploded"):
        solve_batch(AlphaExpansion(), energies)


def _energies(poison):
    logits, batch = _batch()
    stage_a = _stage_a(poison)
    return stage_a.solver.energies(stage_a.loss, logits, batch, CrossEntropy(), 2.0)


def test_a_dying_worker_costs_only_its_item_and_the_pool_is_rebuilt():
    energies = _energies([("i1", "die")])
    serial = [solve_batch(AlphaExpansion(), [e])[0] for k, e in enumerate(energies) if k != 1]
    with ProcessBatchSolver(workers=2) as batch_solver:
        first = batch_solver._pool[0]
        results = batch_solver(AlphaExpansion(), energies, errors="return")
        assert isinstance(results[1], SolveFailure) and isinstance(results[1].error, BrokenProcessPool)
        assert "energies[1]: the worker process solving this item died" in str(results[1].error)
        for got, want in zip([results[0], results[2]], serial, strict=True):
            np.testing.assert_array_equal(got.solution, want.solution)
            assert got.trace == want.trace
        assert batch_solver._pool[0] is not first  # the held pool was replaced ...
        again = batch_solver(AlphaExpansion(), _energies([]))  # ... and works on the next call
        assert [s.trace for s in again] == [s.trace for s in solve_batch(AlphaExpansion(), _energies([]))]
        with pytest.raises(BrokenProcessPool, match=r"energies\[1\]"):
            batch_solver(AlphaExpansion(), energies)
        assert len(batch_solver(AlphaExpansion(), _energies([])[:1])) == 1  # a batch of one, in a worker


@dataclasses.dataclass(frozen=True, eq=False)
class Unpicklable(GridPotts):
    """A grid Potts energy that cannot travel to a worker process (it holds a lambda)."""

    hook: object = None


@pytest.mark.parametrize("mode", ["raise", "die", "unpicklable"])
def test_a_bad_item_among_many_fails_alone(mode):
    """Of 12 items on 2 workers, one that raises, kills its worker or cannot be pickled fails alone;
    every other item (some in flight on the other worker) gets exactly the serial result."""
    logits, batch = _batch(n=12)
    stage_a = _stage_a([("i5", mode)] if mode != "unpicklable" else [])
    energies = stage_a.solver.energies(stage_a.loss, logits, batch, CrossEntropy(), 2.0)
    if mode == "unpicklable":
        init = {f.name: getattr(energies[5], f.name) for f in dataclasses.fields(GridPotts) if f.init}
        energies[5] = Unpicklable(**init, hook=lambda: None)
    clean = _stage_a()
    serial = solve_batch(AlphaExpansion(), clean.solver.energies(clean.loss, logits, batch, CrossEntropy(), 2.0))
    with ProcessBatchSolver(workers=2) as batch_solver:
        results = batch_solver(AlphaExpansion(), energies, errors="return")
    assert isinstance(results[5], SolveFailure) and results[5].index == 5
    for k, (got, want) in enumerate(zip(results, serial, strict=True)):
        if k != 5:
            np.testing.assert_array_equal(got.solution, want.solution)
            assert got.trace == want.trace


@pytest.mark.parametrize("always_spawn", [False, True])
def test_one_worker_solves_in_process_unless_always_spawn(always_spawn):
    """Both give the serial results; with always_spawn the one worker is a process (an item that kills
    it is that item's failure, the caller lives), so a stage A can run beside the caller's own work."""
    energies = _energies([])
    with ProcessBatchSolver(workers=1, always_spawn=always_spawn) as batch_solver:
        results = batch_solver(AlphaExpansion(), energies)
        assert bool(batch_solver._pool) and [r.trace for r in results] == [
            r.trace for r in solve_batch(AlphaExpansion(), energies)
        ]
        if always_spawn:
            died = batch_solver(AlphaExpansion(), _energies([("i1", "die")]), errors="return")
            assert isinstance(died[1], SolveFailure) and isinstance(died[1].error, BrokenProcessPool)
    with pytest.raises(TypeError, match="always_spawn: expected True or False"):
        ProcessBatchSolver(workers=1, always_spawn=1)


def test_stage_a_with_a_dying_worker(clean):
    logits, batch = _batch()
    proposal = _stage_a([("i2", "die")], batch_solver=ProcessBatchSolver(workers=2)).propose(logits, batch)
    _check_kept(proposal, clean, 2, batch.seeds[2])
    assert "BrokenProcessPool: energies[2]" in proposal.report.failures[0][2]


# --- in the training loop --------------------------------------------------------------------------------


torch = pytest.importorskip("torch")


def _train(tmp_path, monkeypatch, poison, batch_solver=None, epochs=2):
    import functools

    import chainrule2.losses
    from chainrule2_torch.data import make_demo_dataset
    from chainrule2_torch.networks import UNet
    from chainrule2_torch.training import TrainConfig, train

    monkeypatch.setattr(chainrule2.losses, "ScribblePotts", functools.partial(PoisonPotts, poison=tuple(poison)))
    data = make_demo_dataset(6, 24, seed=0)
    config = TrainConfig(method="grid-tr", epochs=epochs, warmup_epochs=1, stage_a_every=1, batch_size=2,
                         crop_size=(24, 24))  # fmt: skip
    torch.manual_seed(0)
    final = train(config, UNet(3, 3, width=4, depth=2), data[:4], data[4:], out_dir=tmp_path, progress=False,
                  panels=0, batch_solver=batch_solver)  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return data, final, lines


def test_training_recovers_an_item_that_failed_once(tmp_path, monkeypatch, caplog):
    from PIL import Image

    FAILED_ONCE.clear()
    with caplog.at_level(logging.WARNING):
        data, final, lines = _train(tmp_path, monkeypatch, [("demo003", "once")])
    assert [r.get("stage_a_failures") for r in lines] == [None, 1, 0]
    assert "stage A failed on 1 item(s) ['demo003']" in caplog.text
    assert (tmp_path / "final.json").is_file() and final["pseudo_miou"] is not None
    stored = np.asarray(Image.open(tmp_path / "stage_a" / "demo003.png"))
    assert stored.max() < 3  # the second stage A started cold (not from the kept seeds) and solved it
    assert np.all(stored[data[3].seeds != 255] == data[3].seeds[data[3].seeds != 255])


def test_training_with_a_failing_item_runs_to_the_end(tmp_path, monkeypatch, caplog):
    from PIL import Image

    with caplog.at_level(logging.WARNING):
        data, final, lines = _train(tmp_path, monkeypatch, [("demo001", "raise")])
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert [r.get("stage_a_failures") for r in lines] == [None, 1, 1]  # the warm-up has no stage A
    assert "stage A failed on 1 item(s) ['demo001']" in caplog.text
    assert (tmp_path / "final.json").is_file() and final["val"]["miou"] is not None
    stored = {p.stem: np.asarray(Image.open(p)) for p in (tmp_path / "stage_a").glob("*.png")}
    assert sorted(stored) == ["demo000", "demo001", "demo002", "demo003"]
    np.testing.assert_array_equal(stored["demo001"], data[1].seeds)  # its seeds only, 255 elsewhere
    for key in ("demo000", "demo002", "demo003"):  # the others got real stage-A labels
        assert stored[key].max() < 3


def test_training_with_a_dying_worker_runs_to_the_end(tmp_path, monkeypatch):
    FAILED_ONCE.clear()
    with ProcessBatchSolver(workers=2) as batch_solver:
        first = batch_solver._pool[0]
        _, final, lines = _train(tmp_path, monkeypatch, [("demo002", "die-once")], batch_solver)
        assert [r.get("stage_a_failures") for r in lines] == [None, 1, 0]  # the next stage A solves it
        assert batch_solver._pool[0] is not first  # rebuilt, and used by every later call
        assert len(batch_solver(AlphaExpansion(), _energies([]))) == 3
    assert final["pseudo_miou"] is not None
