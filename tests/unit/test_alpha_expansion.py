"""AlphaExpansion: known solutions, warm start, early stop, PyMaxflow pitfalls, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

maxflow = pytest.importorskip("maxflow")

from chainrule2.base import Batch  # noqa: E402
from chainrule2.constants import UNLABELED  # noqa: E402
from chainrule2.divergences import CrossEntropy  # noqa: E402
from chainrule2.energies.grid import N4_OFFSETS, GridPotts, contrast_weights  # noqa: E402
from chainrule2.losses.scribble import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion, run  # noqa: E402
from chainrule2.solvers._expansion_graph import expansion_move  # noqa: E402
from chainrule2.solvers._maxflow import add_edges, check_capacities, kept_graph  # noqa: E402
from chainrule2.testing.grid_strategies import brute_force  # noqa: E402


def _noisy_energy(h=12, w=14, num_labels=3, potts_weight=1.0, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    truth = (np.arange(w)[None, :] * num_labels // w).repeat(h, 0)
    unary = rng.random((h, w, num_labels)) * 2.0
    unary[np.arange(h)[:, None], np.arange(w)[None, :], truth] -= 1.0
    unary -= unary.min()
    image = truth[..., None] * 50.0
    return GridPotts(unary, contrast_weights(image), potts_weight=potts_weight, **kwargs), truth


# --- PyMaxflow behaviour we rely on or guard against ---------------------------------------------
class _PublicOnly:
    """A graph that exposes only PyMaxflow's public methods (no ``_add_edges``)."""

    def __init__(self, graph):
        self.graph = graph

    def add_edges(self, *args):
        self.graph.add_edges(*args)


def test_kept_graph_is_reused_per_thread_within_a_size_band():
    import threading

    first = kept_graph(maxflow, 1000, 4000)
    assert kept_graph(maxflow, 1000, 4000) is first
    assert kept_graph(maxflow, 300, 1200) is first  # smaller, within 4x: reused
    assert kept_graph(maxflow, 200, 800) is not first  # more than 4x smaller: replaced
    bigger = kept_graph(maxflow, 5000, 20000)
    assert bigger is not first and kept_graph(maxflow, 5000, 20000) is bigger
    other = []
    thread = threading.Thread(target=lambda: other.append(kept_graph(maxflow, 5000, 20000)))
    thread.start()
    thread.join()
    assert other[0] is not bigger  # threads never share a graph


def test_solves_that_reuse_the_kept_graph_match_fresh_ones():
    energy, _ = _noisy_energy(num_labels=4)
    small, _ = _noisy_energy(h=6, w=7, num_labels=3, seed=1)
    first = run(AlphaExpansion(), energy)
    run(AlphaExpansion(), small)  # the kept graph now holds another problem's nodes and flow
    again = run(AlphaExpansion(), energy)
    assert np.array_equal(first.solution, again.solution) and first.trace == again.trace


class _OtherPrivateSignature(_PublicOnly):
    """A PyMaxflow whose private ``_add_edges`` takes other arguments."""

    def _add_edges(self, edges):
        raise AssertionError("not reached")


@pytest.mark.parametrize("fast", [True, False, "other"])
def test_add_edges_gives_the_graph_of_the_public_method(fast):
    rng = np.random.default_rng(0)
    n, m = 30, 90
    i, j = rng.integers(0, n, m).astype(np.int32)[::-1], rng.integers(0, n, m).astype(np.int32)
    cap, rev = rng.uniform(0, 2, m)[::-1], rng.uniform(0, 2, m)
    source, sink = rng.uniform(0, 3, n), rng.uniform(0, 3, n)
    graphs = []
    for use_helper in (True, False):
        g = maxflow.GraphFloat()
        g.add_nodes(n)
        if use_helper:
            add_edges({True: g, False: _PublicOnly(g), "other": _OtherPrivateSignature(g)}[fast], i, j, cap, rev)
        else:
            g.add_edges(i, j, cap, rev)
        g.add_grid_tedges(np.arange(n, dtype=np.int32), source, sink)
        graphs.append((g.maxflow(), g.get_grid_segments(np.arange(n, dtype=np.int32))))
    assert graphs[0][0] == graphs[1][0]
    assert np.array_equal(graphs[0][1], graphs[1][1])


def test_get_grid_segments_is_true_on_the_sink_side():
    g = maxflow.GraphFloat()
    ids = g.add_grid_nodes((1, 2))
    # node 0 tied to the source, node 1 to the sink
    g.add_grid_tedges(ids, np.array([[5.0, 0.0]]), np.array([[0.0, 5.0]]))
    g.maxflow()
    assert g.get_grid_segments(ids).tolist() == [[False, True]]


def test_graph_int_truncates_fractional_capacities_so_we_use_graph_float():
    def cut(graph_type):
        g = graph_type()
        ids = g.add_grid_nodes((1, 1))
        g.add_grid_tedges(ids, np.array([[0.6]]), np.array([[0.4]]))
        return g.maxflow()

    assert cut(maxflow.GraphInt) == 0  # 0.6 and 0.4 both truncated to 0: a wrong answer, no error
    assert cut(maxflow.GraphFloat) == pytest.approx(0.4)


def test_negative_capacity_is_refused():
    with pytest.raises(FloatingPointError, match="finite and >= 0"):
        check_capacities(np.array([1.0, -1e-12]), "edge capacity")
    with pytest.raises(FloatingPointError):
        check_capacities(np.array([np.inf]), "sink capacity")


def test_expansion_move_builds_non_negative_capacities(monkeypatch):
    seen = []
    real = check_capacities

    def spy(capacity, name):
        seen.append(float(capacity.min()))
        return real(capacity, name)

    monkeypatch.setattr("chainrule2.solvers._expansion_graph.check_capacities", spy)
    energy, _ = _noisy_energy()
    labels = energy.unary_argmin()
    for alpha in range(3):
        expansion_move(energy, labels, alpha)
    assert seen and min(seen) >= 0.0


def test_expansion_move_is_the_optimal_binary_move():
    energy, _ = _noisy_energy(h=2, w=4, num_labels=3, seed=5)
    labels = np.array([[0, 1, 2, 0], [2, 2, 1, 0]])
    moved = expansion_move(energy, labels, 1)
    best = min(energy.value(np.where(np.array(m).reshape(2, 4), 1, labels)) for m in np.ndindex(*(2,) * 8))
    assert energy.value(moved) == pytest.approx(best, rel=1e-12)
    assert labels.tolist() == [[0, 1, 2, 0], [2, 2, 1, 0]]  # not mutated


# --- solver behaviour ---------------------------------------------------------------------------
def test_recovers_piecewise_constant_truth():
    energy, truth = _noisy_energy(potts_weight=2.0)
    state = run(AlphaExpansion(), energy)
    np.testing.assert_array_equal(state.solution, truth)
    assert state.energy == energy.value(state.solution)
    assert all(b <= a for a, b in zip(state.trace, state.trace[1:], strict=False))


def test_binary_is_exact_on_3x4():
    energy, _ = _noisy_energy(h=3, w=4, num_labels=2, potts_weight=0.7, seed=3)
    _, best = brute_force(energy)
    assert run(AlphaExpansion(), energy).energy == pytest.approx(best, rel=1e-12)


def test_early_stop_when_a_sweep_does_not_lower_the_energy():
    energy, _ = _noisy_energy(potts_weight=2.0)
    state = run(AlphaExpansion(max_sweeps=50), energy)
    assert state.converged
    assert state.iteration < 50
    assert state.trace[-1] == state.trace[-2]


def test_warm_start_from_the_solution_converges_in_one_sweep():
    energy, _ = _noisy_energy()
    solver = AlphaExpansion()
    first = run(solver, energy)
    again = run(solver, energy, first.solution)
    assert again.iteration == 1 and again.energy == first.energy
    np.testing.assert_array_equal(again.solution, first.solution)


def test_seeds_are_clamped_even_against_the_unary():
    energy, truth = _noisy_energy()
    seeds = np.full(truth.shape, UNLABELED)
    seeds[0, 0] = 2  # truth there is 0
    clamped = GridPotts(energy.unary, energy.weights, potts_weight=1.0, seeds=seeds)
    state = run(AlphaExpansion(), clamped, truth)
    assert state.solution[0, 0] == 2 and np.isfinite(state.energy)


def test_allowed_labels_only():
    energy, _ = _noisy_energy(num_labels=3)
    restricted = GridPotts(energy.unary, energy.weights, potts_weight=1.0, allowed_labels=(0, 2))
    state = run(AlphaExpansion(), restricted, np.ones(energy.shape, int))
    assert set(np.unique(state.solution)) <= {0, 2}


def test_random_order_and_explicit_order():
    energy, _ = _noisy_energy(num_labels=4)
    a = run(AlphaExpansion(label_order="random", seed=7), energy)
    b = run(AlphaExpansion(label_order="random", seed=7), energy)
    np.testing.assert_array_equal(a.solution, b.solution)
    c = run(AlphaExpansion(label_order=(3, 2, 1, 0)), energy)
    assert np.isfinite(c.energy)


def test_single_label_is_trivially_converged():
    energy = GridPotts(np.ones((2, 2, 1)), np.ones((4, 2, 2)))
    state = run(AlphaExpansion(), energy)
    assert state.converged and state.solution.tolist() == [[0, 0], [0, 0]]


def test_through_the_loss_and_the_mixin():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 6, 7, 3)).astype(np.uint8)
    seeds = np.full((2, 6, 7), UNLABELED)
    seeds[:, 0, 0], seeds[:, -1, -1] = 0, 3
    logits = rng.normal(size=(2, 6, 7, 4))
    solver = AlphaExpansion()
    energies = solver.energies(
        ScribblePotts(potts_weight=100.0), logits, Batch(logits, seeds, images), CrossEntropy(), 0.05
    )
    assert len(energies) == 2 and energies[0].allowed_labels == (0, 3)
    for e in energies:
        state = run(solver, e)
        assert set(np.unique(state.solution)) <= {0, 3}
        assert state.solution[0, 0] == 0 and state.solution[-1, -1] == 3


def test_on_move_reports_every_move_and_changes_nothing():
    from chainrule2.solvers.alpha_expansion import ExpansionMove

    energy, _ = _noisy_energy(num_labels=4)
    moves = []
    observed = run(AlphaExpansion(on_move=moves.append), energy)
    plain = run(AlphaExpansion(), energy)
    np.testing.assert_array_equal(observed.solution, plain.solution)
    assert observed.trace == plain.trace
    solver = AlphaExpansion(on_move=moves.append)  # an observer, not part of the solver's value
    assert (
        solver == AlphaExpansion() and hash(solver) == hash(AlphaExpansion()) and repr(solver) == repr(AlphaExpansion())
    )
    assert moves and all(isinstance(m, ExpansionMove) for m in moves)
    assert {m.sweep for m in moves} == set(range(observed.iteration))
    first = moves[0]
    assert (first.sweep, first.alpha, first.nodes) == (0, 0, int(np.count_nonzero(energy.unary_argmin() != 0)))
    # the accepted moves' predicted changes add up to the solve's energy change
    assert sum(m.delta for m in moves if m.accepted) == pytest.approx(observed.energy - observed.trace[0], rel=1e-9)
    assert all(m.changed > 0 for m in moves if m.accepted)
    assert all(m.build_seconds >= 0 and m.flow_seconds >= 0 for m in moves)
    with pytest.raises(TypeError, match="on_move: expected a callable or None, got int"):
        AlphaExpansion(on_move=3)


def test_solver_rejects_other_energies():
    with pytest.raises(TypeError, match="energy: AlphaExpansion solves a GridPotts energy"):
        AlphaExpansion().init(object())


def test_bad_config():
    with pytest.raises(ValueError, match="max_sweeps"):
        AlphaExpansion(max_sweeps=0)
    with pytest.raises(ValueError, match="label_order"):
        AlphaExpansion(label_order="sorted")
    with pytest.raises(ValueError, match="tolerance"):
        AlphaExpansion(tolerance=-1.0)
    with pytest.raises(ValueError, match="exact_binary"):
        AlphaExpansion(exact_binary="always")


def test_exact_binary_cold_cuts_once_from_a_cold_start_and_expands_from_a_warm_start(monkeypatch):
    import chainrule2.solvers.alpha_expansion as module

    energy, truth = _noisy_energy(num_labels=2, potts_weight=1.5, seed=4)
    cuts = []
    real = module.binary_cut
    monkeypatch.setattr(module, "binary_cut", lambda *a: cuts.append(1) or real(*a))
    cold = run(AlphaExpansion(), energy)  # default "cold": the exact cut
    assert cuts == [1] and cold.iteration == 1
    assert cold.energy == run(AlphaExpansion(exact_binary=True), energy).energy
    warm_start = np.where(np.arange(14)[None, :] < 6, 0, 1).repeat(12, 0)  # near the truth
    warm = run(AlphaExpansion(), energy, warm_start)
    assert cuts == [1, 1]  # (the exact_binary=True run above); none for the warm start
    expanded = run(AlphaExpansion(exact_binary=False), energy, warm_start)
    np.testing.assert_array_equal(warm.solution, expanded.solution)
    assert warm.energy <= energy.value(warm_start)
    assert run(AlphaExpansion(exact_binary=True), energy, warm_start).energy <= warm.energy


def test_bad_initial():
    energy, _ = _noisy_energy()
    with pytest.raises(ValueError, match=r"initial: expected labels of shape \(12, 14\)"):
        AlphaExpansion().init(energy, np.zeros((3, 3), int))
    with pytest.raises(ValueError, match=r"initial: expected labels in \[0, 3\)"):
        AlphaExpansion().init(energy, np.full((12, 14), 3))


def test_missing_pymaxflow_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "maxflow", None)
    energy = GridPotts(np.ones((2, 2, 2)), np.ones((2, 2, 2)), offsets=N4_OFFSETS)
    with pytest.raises(ImportError, match="pip install PyMaxflow"):
        AlphaExpansion().init(energy)


# --- ICM and batch solvers ----------------------------------------------------------------------
def test_icm_is_monotone_and_no_better_than_expansion():
    from chainrule2.solvers import ICM

    energy, _ = _noisy_energy(potts_weight=1.5)
    icm = run(ICM(), energy)
    assert all(b <= a for a, b in zip(icm.trace, icm.trace[1:], strict=False))
    assert icm.energy == energy.value(icm.solution)
    assert run(AlphaExpansion(), energy).energy <= icm.energy


# forkserver: Python 3.14's default start method on Linux; spawn: the default on macOS and Windows.
# Their workers start from a fresh interpreter, so the solver, energies and states cross by pickle alone.
@pytest.mark.parametrize("kind", ["process", "process-forkserver", "process-spawn", "thread"])
def test_batch_solvers_match_serial(kind):
    from chainrule2.solvers import ProcessBatchSolver, ThreadBatchSolver, solve_batch

    energies = [_noisy_energy(seed=s)[0] for s in range(3)]
    initials = [None, energies[1].unary_argmin(), None]
    serial = solve_batch(AlphaExpansion(), energies, initials)
    if kind == "thread":
        batch_solver = ThreadBatchSolver(workers=2)
    else:
        batch_solver = ProcessBatchSolver(workers=2, mp_context=kind.partition("-")[2] or None)
    parallel = batch_solver(AlphaExpansion(), energies, initials)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a.solution, b.solution)
        assert a.trace == b.trace


def test_pools_take_the_costliest_items_first_and_return_them_in_order():
    """Largest-first submission (the load balance of a pool) must not reorder the results."""
    from concurrent.futures import ThreadPoolExecutor

    from chainrule2.solvers import ProcessBatchSolver, solve_batch
    from chainrule2.solvers.parallel import _submit, largest_first

    energies = [_noisy_energy(h=h, w=w, num_labels=k, seed=h)[0] for h, w, k in [(6, 7, 2), (12, 14, 3), (9, 9, 4)]]
    assert largest_first(energies) == [1, 2, 0]  # 504, 324 and 84 pixel-labels
    assert largest_first([object(), energies[0], object()]) == [1, 0, 2]  # no shape: kept in place, last

    submitted = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, args):
            submitted.append(next(i for i, e in enumerate(energies) if e is args[1]))
            return super().submit(fn, args)

    with Recording(max_workers=1) as pool:
        futures = _submit(pool, AlphaExpansion(), [(e, None) for e in energies])
        states = [f.result() for f in futures]
    assert submitted == [1, 2, 0]
    for a, b, c in zip(solve_batch(AlphaExpansion(), energies), states, ProcessBatchSolver(2)(AlphaExpansion(), energies),
                       strict=True):  # fmt: skip
        np.testing.assert_array_equal(a.solution, b.solution)
        np.testing.assert_array_equal(a.solution, c.solution)


@pytest.mark.skipif(not Path("/proc/sys/fs/pipe-max-size").exists(), reason="pipe capacities are Linux only")
def test_the_pool_pipes_hold_a_whole_item():
    """ProcessBatchSolver widens its task and result pipes (an item crosses in one write)."""
    import fcntl

    from chainrule2.solvers import ProcessBatchSolver
    from chainrule2.solvers.parallel import PIPE_BYTES

    wanted = min(PIPE_BYTES, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
    with ProcessBatchSolver(workers=2) as batch_solver:
        pool = batch_solver._pool[0]
        for queue in (pool._call_queue, pool._result_queue):
            assert fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ) >= wanted


def test_batch_solver_bad_input():
    from chainrule2.solvers import ProcessBatchSolver

    with pytest.raises(ValueError, match="workers"):
        ProcessBatchSolver(workers=0)
    with pytest.raises(ValueError, match=r"mp_context: expected one of \(.*'spawn'.*\) or None, got 'threads'"):
        ProcessBatchSolver(mp_context="threads")
    with pytest.raises(ValueError, match="initials: expected 1 items"):
        ProcessBatchSolver()(AlphaExpansion(), [_noisy_energy()[0]], [None, None])
