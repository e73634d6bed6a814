"""Dense-TR stage A batched on any array namespace (numpy, array_api_strict, torch CPU): DenseMeanField's
run_batch gives the per-item host path's solutions and traces, keeps its guarantees per item, ignores
padding, and StageA takes it for a DenseCRFLoss with a fixed β."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule2.stage_a as stage_a_module
from chainrule2 import StageA
from chainrule2.base import Batch
from chainrule2.constants import PADDING, UNLABELED
from chainrule2.divergences import CrossEntropy
from chainrule2.energies import DenseMeanFieldBatch, DenseMeanFieldEnergy
from chainrule2.losses import DenseCRFLoss, ScribblePotts
from chainrule2.solvers import DenseMeanField, MeanField, run, solve_batch
from chainrule2.testing.dense_strategies import bilateral_kernels, dense_energies
from chainrule2.testing.grid_strategies import scribble_batches

# the xp fixture is one namespace per test run, not per example: safe to share
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
SOLVERS = st.builds(
    DenseMeanField,
    max_sweeps=st.integers(1, 8),
    temperature=st.floats(0.1, 3.0, width=64),
    tolerance=st.sampled_from((0.0, 1e-6)),
    max_halvings=st.integers(0, 12),
    restrict_labels=st.booleans(),
    max_kernel_pixels=st.sampled_from((0, 4096)),  # blocked filtering, or the (N, M, M) kernels
)
BETAS = st.floats(0.05, 5.0, width=64)
# Float round-off differs between namespaces (summation order); an acceptance test or a convergence
# check at a near-tie may then go either way, which moves Q by far less than this.
ATOL = 1e-7
REL = 1e-9


@st.composite
def dense_losses(draw: st.DrawFn) -> DenseCRFLoss:
    kernel = draw(bilateral_kernels())
    weight = draw(st.floats(0.0, 3.0, width=64))
    return DenseCRFLoss(weight, kernel.sigma_rgb, kernel.sigma_xy, kernel.scale, kernel.chunk)


def _host(x) -> np.ndarray:
    return np.asarray(x.cpu()) if hasattr(x, "cpu") else np.from_dlpack(x)


def _on(xp, *arrays):
    return tuple(xp.asarray(a) for a in arrays)


def _same_trace(got: tuple[float, ...], expected: tuple[float, ...], exact: bool) -> None:
    """Equal traces, entry by entry. ``exact``: the same length too (numpy and array_api_strict compute
    as the host path does); otherwise (torch) a near-tie may end one trace a step earlier, and the
    extra steps of the longer one then moved F by round-off only."""
    assert got[0] == pytest.approx(expected[0], rel=1e-12, abs=1e-12)
    common = min(len(got), len(expected))
    np.testing.assert_allclose(got[:common], expected[:common], rtol=REL, atol=REL)
    if exact:
        assert len(got) == len(expected), (got, expected)
    longer = got if len(got) > len(expected) else expected
    np.testing.assert_allclose(longer[common - 1 :], longer[common - 1], rtol=REL, atol=REL)


def _exact(xp) -> bool:
    return xp.__name__ in ("numpy", "array_api_strict")


def _to(xp, batch: DenseMeanFieldBatch) -> DenseMeanFieldBatch:
    """A host batch moved to ``xp`` (what batch_energy builds there)."""
    unary = xp.asarray(batch.unary)
    arrays = {
        f: xp.asarray(getattr(batch, f)) for f in ("pairwise_scale", "padding", "clamped", "seed_labels", "allowed")
    }
    return dataclasses.replace(batch, unary=unary, items=batch.items.to(unary), **arrays)


@SETTINGS
@given(scribble_batches(), dense_losses(), SOLVERS, BETAS)
def test_dense_batched_equals_the_per_item_path(xp, problem, loss, solver, beta) -> None:
    logits, seeds, images = problem
    reference = [
        run(solver, e) for e in solver.energies(loss, logits, Batch(None, seeds, images), CrossEntropy(), beta)
    ]
    z, s, img = _on(xp, logits, seeds, images)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), beta)
    assert isinstance(energy, DenseMeanFieldBatch) and array_namespace(energy.unary) is array_namespace(z)
    result = solver.run_batch(energy)
    assert array_namespace(result.solutions) is array_namespace(z)
    q = _host(result.solutions)
    values = _host(energy.value(result.solutions))
    for i, state in enumerate(reference):
        np.testing.assert_allclose(q[i], state.solution, atol=ATOL)
        _same_trace(result.traces[i], state.trace, _exact(xp))
        assert values[i] == pytest.approx(state.energy, rel=REL, abs=REL)  # the batched F of it is the per-item F


@SETTINGS
@given(scribble_batches(), dense_losses(), SOLVERS, BETAS)
def test_batched_dense_keeps_the_guarantees_per_item(xp, problem, loss, solver, beta) -> None:
    """F of each item never increases and its trace ends at F of its solution; seeds one-hot, no mass
    on disallowed labels, distributions."""
    logits, seeds, images = problem
    z, s, img = _on(xp, logits, seeds, images)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), beta)
    result = solver.run_batch(energy)
    q = _host(result.solutions)
    allowed, clamped, labels, padding = (
        _host(a) for a in (energy.allowed, energy.clamped, energy.seed_labels, energy.padding)
    )
    values = _host(energy.value(result.solutions))
    for i, trace in enumerate(result.traces):
        assert 1 <= len(trace) <= solver.max_sweeps + 1
        assert all(b <= a for a, b in zip(trace, trace[1:], strict=False)), f"item {i}: F rose: {trace}"
        assert trace[-1] == pytest.approx(values[i], rel=REL, abs=REL)
        assert np.all(q[i][~padding[i]][:, ~allowed[i]] == 0)
        assert np.array_equal(q[i][clamped[i]], np.eye(q.shape[-1])[labels[i][clamped[i]]])
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-12)
    assert bool(np.all(_host(energy.feasible(result.solutions))))


@st.composite
def padded_items(draw: st.DrawFn):
    """An item ``(logits, seeds, images)`` of an even size and the same item padded at the bottom and
    right (seed 254, junk logits and colours there) to a larger even grid, with a second item of that
    grid; and a kernel whose down-scaling of the larger grid restricted to the item is its own."""
    h, w = 2 * draw(st.integers(1, 2)), 2 * draw(st.integers(1, 3))
    big_h, big_w = h + 2 * draw(st.integers(0, 2)), w + 2 * draw(st.integers(1, 2))
    num_labels = draw(st.integers(2, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = rng.normal(0.0, 2.0, (2, big_h, big_w, num_labels))
    images = rng.uniform(0.0, 255.0, (2, big_h, big_w, 3))
    codes = np.array(list(range(num_labels)) + [UNLABELED] * 4)
    seeds = rng.choice(codes, size=(2, big_h, big_w))
    seeds[0, h:, :], seeds[0, :, w:] = PADDING, PADDING
    kernel = draw(bilateral_kernels())
    loss = DenseCRFLoss(draw(st.floats(0.0, 3.0, width=64)), kernel.sigma_rgb, kernel.sigma_xy,
                        draw(st.sampled_from((1.0, 0.5))), kernel.chunk)  # fmt: skip
    alone = (logits[:1, :h, :w], seeds[:1, :h, :w], images[:1, :h, :w])
    return alone, (logits, seeds, images), loss


@SETTINGS
@given(padded_items(), SOLVERS, BETAS)
def test_an_item_padded_into_a_larger_batch_solves_as_alone(xp, problem, solver, beta) -> None:
    """Padding pixels contribute nothing and c = λ·|Ω|/|Ω'| is the item's own: padded into a batch
    with a larger image, an item gets the solution and trace it gets alone on the host path."""
    (logits, seeds, images), padded, loss = problem
    (reference,) = [
        run(solver, e) for e in solver.energies(loss, logits, Batch(None, seeds, images), CrossEntropy(), beta)
    ]
    z, s, img = _on(xp, *padded)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), beta)
    assert float(_host(energy.pairwise_scale)[0]) == pytest.approx(
        solver.energies(loss, logits, Batch(None, seeds, images), CrossEntropy(), beta)[0].pairwise_scale, rel=1e-12
    )
    result = solver.run_batch(energy)
    h, w = seeds.shape[1:]
    np.testing.assert_allclose(_host(result.solutions)[0, :h, :w], reference.solution, atol=ATOL)
    _same_trace(result.traces[0], reference.trace, exact=False)  # more zeros summed: round-off only


@SETTINGS
@given(dense_energies(max_height=3, max_width=4), st.integers(0, 2**32 - 1), SOLVERS)
def test_a_batch_of_energies_with_warm_starts_equals_each_energy(xp, energy, seed, solver) -> None:
    """Any DenseMeanFieldEnergy (seeds, padding, label restriction, any kernel), three items of one
    shape with warm starts (a labelling with disallowed labels, a distribution, none): each item as
    run() on its energy from that start (the same projection onto the constraints)."""
    rng = np.random.default_rng(seed)
    other = DenseMeanFieldEnergy(
        rng.uniform(0.0, 4.0, energy.unary.shape), 255.0 - energy.image, energy.bilateral, 2.0 * energy.potts_weight,
        energy.seeds, energy.allowed_labels, energy.temperature,
    )  # fmt: skip
    energies = [energy, other, energy]
    solver = dataclasses.replace(solver, temperature=energy.temperature)
    labels = rng.integers(0, energy.num_labels, energy.shape[:2])
    q = rng.dirichlet(np.ones(energy.num_labels), size=energy.shape[:2])
    initials = [labels, q, None]
    batch = _to(xp, DenseMeanFieldBatch.from_energies(energies))
    result = solver.run_batch(batch, [None if a is None else xp.asarray(a) for a in initials])
    got = _host(result.solutions)
    for i, (e, start) in enumerate(zip(energies, initials, strict=True)):
        state = run(solver, e, start)
        np.testing.assert_allclose(got[i], state.solution, atol=ATOL)
        _same_trace(result.traces[i], state.trace, _exact(xp))


@pytest.mark.parametrize("max_kernel_pixels", [4096, 0])
def test_converged_items_leave_the_batch_and_change_nothing(xp, monkeypatch, max_kernel_pixels) -> None:
    """Once at most half the items still move, the sweeps run on those alone (the converged items'
    rows dropped, their kernels' slots reused): every item's solution and trace are still the
    per-item path's, in the items' order."""
    rng = np.random.default_rng(3)
    n, h, w, num_labels = 6, 6, 6, 3
    logits = rng.normal(0.0, 2.0, (n, h, w, num_labels))
    images = rng.uniform(0.0, 255.0, (n, h, w, 3))
    seeds = np.full((n, h, w), UNLABELED)
    seeds[:, 1, 1], seeds[:, 4, 4] = 0, 2
    seeds[0] = PADDING  # nothing to solve: converged after one sweep
    seeds[2] = rng.integers(0, num_labels, (h, w))  # every pixel a seed: the same
    seeds[3, :, 3:] = PADDING
    seeds[3, :, :3] = 1
    solver = DenseMeanField(max_sweeps=20, tolerance=0.0, max_kernel_pixels=max_kernel_pixels)
    loss = DenseCRFLoss(1.0, sigma_xy=3.0, scale=1.0)
    reference = [run(solver, e) for e in solver.energies(loss, logits, Batch(None, seeds, images), CrossEntropy(), 0.5)]
    taken = []
    take = DenseMeanFieldBatch.take
    monkeypatch.setattr(
        DenseMeanFieldBatch, "take", lambda self, index: taken.append(int(index.shape[0])) or take(self, index)
    )
    z, s, img = _on(xp, logits, seeds, images)
    result = solver.run_batch(solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), 0.5))
    assert taken and taken[0] <= n // 2  # the batch shrank
    q = _host(result.solutions)
    for i, state in enumerate(reference):
        np.testing.assert_allclose(q[i], state.solution, atol=ATOL)
        _same_trace(result.traces[i], state.trace, _exact(xp))
    assert [len(t) for t in result.traces][:4:2] == [2, 2]


def _stage_a(**kwargs) -> StageA:
    return StageA(DenseMeanField(max_sweeps=10), DenseCRFLoss(0.3, sigma_xy=5.0), CrossEntropy(), 2.0, **kwargs)


def test_stage_a_takes_the_device_path_for_dense_tr(xp, monkeypatch) -> None:
    """A fixed β and a DenseCRFLoss: StageA solves on the logits' namespace (the host copy, to_host, is
    never called) and gives the host path's soft targets and traces (the host path: a batch solver given)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (3, 3, 8, 6))  # NCHW
    seeds = np.full((3, 8, 6), UNLABELED)
    seeds[0, 1, 1], seeds[0, 6, 4], seeds[1, 2, 2], seeds[2, 0, 0], seeds[2, 7, 5] = 1, 2, 0, 1, 0
    seeds[1, :, 4:] = PADDING
    images = rng.uniform(0.0, 255.0, (3, 8, 6, 3))
    host = _stage_a(batch_solver=solve_batch)
    assert not host._batched() and _stage_a()._batched()
    expected = host.propose(logits, Batch(None, seeds, images), class_axis=1)

    def no_host_copy(x, name):
        raise AssertionError(f"stage A copied {name} to the host")

    monkeypatch.setattr(stage_a_module, "to_host", no_host_copy)
    z, s, img = _on(xp, logits, seeds, images)
    got = _stage_a().propose(z, Batch(None, s, img), class_axis=1)
    assert array_namespace(got.targets) is array_namespace(z) and tuple(got.targets.shape) == logits.shape
    np.testing.assert_allclose(_host(got.targets), expected.targets, atol=ATOL)
    assert np.array_equal(_host(got.targets).argmax(1), expected.targets.argmax(1))  # the host path's labels
    for a, b in zip(got.report.traces, expected.report.traces, strict=True):
        _same_trace(a, b, _exact(xp))
    assert got.report.failures == ()


def test_bad_input_is_named(xp) -> None:
    rng = np.random.default_rng(0)
    logits, seeds, images = rng.normal(size=(2, 4, 4, 2)), np.full((2, 4, 4), 255), rng.uniform(0, 255, (2, 4, 4, 3))
    z, s, img = _on(xp, logits, seeds, images)
    solver, loss = DenseMeanField(), DenseCRFLoss(0.5, scale=1.0)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match=r"initials: expected 2 items"):
        solver.run_batch(energy, [None])
    with pytest.raises(
        ValueError, match=r"initials\[1\]: expected an \(H, W\) labelling or an \(H, W, L\) distribution"
    ):
        solver.run_batch(energy, [None, xp.asarray(np.zeros((4, 5)))])
    with pytest.raises(ValueError, match=r"initials\[0\]: expected finite probabilities >= 0 summing to 1"):
        solver.run_batch(energy, [xp.asarray(np.full((4, 4, 2), 0.7)), None])
    with pytest.raises(ValueError, match=r"initials\[0\]: expected labels in \[0, 2\)"):
        solver.run_batch(energy, [xp.asarray(np.full((4, 4), 5)), None])
    with pytest.raises(
        TypeError, match="energy: DenseMeanField.run_batch solves a DenseMeanFieldBatch, got MeanFieldBatch"
    ):
        solver.run_batch(MeanField().batch_energy(ScribblePotts(), z, Batch(None, s, img), CrossEntropy(), 1.0))
    with pytest.raises(ValueError, match="solution: expected shape"):
        energy.value(xp.asarray(np.full((2, 4, 4, 3), 1 / 3)))
    with pytest.raises(
        TypeError, match="loss: DenseMeanField solves the dense CRF of a chainrule2.losses.DenseCRFLoss"
    ):
        solver.batch_energy(ScribblePotts(), z, Batch(None, s, img), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match="batch.images: DenseMeanField needs images"):
        solver.batch_energy(loss, z, Batch(None, s, None), CrossEntropy(), 1.0)
    with pytest.raises(TypeError, match="batch.seeds: expected an array of the logits' namespace"):
        solver.batch_energy(loss, z, Batch(None, seeds.tolist(), img), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match=r"batch.seeds: expected shape \(2, 4, 4\)"):
        solver.batch_energy(loss, z, Batch(None, xp.asarray(seeds[:, :3]), img), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match="batch.images: expected finite real values"):
        solver.batch_energy(loss, z, Batch(None, s, xp.asarray(np.full((2, 4, 4, 3), np.nan))), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match="trust_weight"):
        solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), -1.0)
    items = loss.bilateral.items(images, seeds).to(energy.unary)
    bad_seeds = np.array(seeds)
    bad_seeds[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"seeds: expected class ids in \[0, 2\)"):
        DenseMeanFieldBatch.build(energy.unary, items, loss.bilateral, 0.5, xp.asarray(bad_seeds))
    one_seed = np.array(seeds)
    one_seed[0, 0, 0] = 1
    with pytest.raises(ValueError, match="allowed: expected to include every seed label"):
        DenseMeanFieldBatch.build(
            energy.unary, items, loss.bilateral, 0.5, xp.asarray(one_seed), xp.asarray(np.eye(2, dtype=bool)[[0, 0]])
        )
    with pytest.raises(ValueError, match=r"items.mask: expected shape \(2, 16\)"):
        dataclasses.replace(energy, items=loss.bilateral.items(images[:1], seeds[:1]).to(energy.unary))
