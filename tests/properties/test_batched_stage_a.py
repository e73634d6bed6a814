"""Stage A batched on any array namespace (numpy, array_api_strict, torch CPU): MeanField and
GradientStep give the per-item numpy path's results, keep its guarantees per item, and the
contrast weights are the same computed there."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule2.base import Batch
from chainrule2.divergences import CrossEntropy, Squared
from chainrule2.energies.grid import GridPotts, GridPottsBatch, batch_contrast_weights, contrast_weights
from chainrule2.energies.mean_field import MeanFieldBatch, MeanFieldEnergy
from chainrule2.losses import ScribblePotts
from chainrule2.solvers import GradientStep, MeanField, run
from chainrule2.testing.grid_strategies import grid_potts, scribble_batches

# the xp fixture is one namespace per test run, not per example: safe to share
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
LOSSES = st.builds(
    ScribblePotts,
    potts_weight=st.floats(0.0, 20.0, width=64),
    neighbourhood=st.sampled_from((4, 8)),
    sigma=st.none() | st.floats(1.0, 50.0, width=64),
    edge_scaling=st.booleans(),
    seed_penalty=st.none() | st.floats(0.0, 30.0, width=64),
    restrict_labels=st.booleans(),
)
SOLVERS = st.builds(
    MeanField,
    max_sweeps=st.integers(1, 8),
    temperature=st.floats(0.1, 3.0, width=64),
    tolerance=st.sampled_from((0.0, 1e-6)),
)
BETAS = st.floats(0.05, 5.0, width=64)
# Float round-off differs between namespaces (summation order); an acceptance test or a convergence
# check at a near-tie may then go either way, which moves Q by far less than this.
ATOL = 1e-7


def _host(x) -> np.ndarray:
    return np.asarray(x.cpu()) if hasattr(x, "cpu") else np.from_dlpack(x)


def _on(xp, *arrays):
    return tuple(xp.asarray(a) for a in arrays)


@SETTINGS
@given(scribble_batches(), st.sampled_from((4, 8)), st.none() | st.floats(0.5, 40.0, width=64))
def test_contrast_weights_batched_are_the_per_image_weights(xp, problem, neighbourhood, sigma) -> None:
    _, seeds, images = problem
    padding = seeds == 254
    (img, pad) = _on(xp, images, padding)
    got = batch_contrast_weights(img, neighbourhood, sigma, pad)
    assert array_namespace(got) is array_namespace(img)
    expected = np.stack([contrast_weights(images[i], neighbourhood, sigma, padding[i]) for i in range(len(images))])
    np.testing.assert_allclose(_host(got), expected, rtol=1e-12, atol=1e-15)


@SETTINGS
@given(scribble_batches(), LOSSES, SOLVERS, BETAS)
def test_mean_field_batched_equals_the_per_item_path(xp, problem, loss, solver, beta) -> None:
    logits, seeds, images = problem
    reference = [
        run(solver, e) for e in solver.energies(loss, logits, Batch(None, seeds, images), CrossEntropy(), beta)
    ]
    z, s, img = _on(xp, logits, seeds, images)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), beta)
    result = solver.run_batch(energy)
    assert array_namespace(result.solutions) is array_namespace(z)
    q = _host(result.solutions)
    for i, state in enumerate(reference):
        np.testing.assert_allclose(q[i], state.solution, atol=ATOL)
        assert result.traces[i][0] == pytest.approx(state.trace[0], rel=1e-12, abs=1e-12)
        assert result.traces[i][-1] == pytest.approx(state.energy, rel=1e-9, abs=1e-9)
        # the batched F of the solution is the per-item F of it
        assert float(_host(energy.value(result.solutions))[i]) == pytest.approx(state.energy, rel=1e-9, abs=1e-9)


@SETTINGS
@given(scribble_batches(), LOSSES, SOLVERS, BETAS)
def test_batched_mean_field_keeps_the_guarantees_per_item(xp, problem, loss, solver, beta) -> None:
    """F of each item never increases, clamped seeds stay one-hot, disallowed labels get no mass."""
    logits, seeds, images = problem
    z, s, img = _on(xp, logits, seeds, images)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), CrossEntropy(), beta)
    result = solver.run_batch(energy)
    q = _host(result.solutions)
    grid = energy.grid
    allowed, clamped, labels, padding = (_host(a) for a in (grid.allowed, grid.clamped, grid.seed_labels, grid.padding))
    for i, trace in enumerate(result.traces):
        assert all(b <= a for a, b in zip(trace, trace[1:], strict=False)), f"item {i}: F rose: {trace}"
        assert np.all(q[i][~padding[i]][:, ~allowed[i]] == 0)
        assert np.array_equal(q[i][clamped[i]], np.eye(q.shape[-1])[labels[i][clamped[i]]])
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-12)
    assert bool(np.all(_host(energy.feasible(result.solutions))))


@SETTINGS
@given(scribble_batches(max_batch=2), LOSSES, BETAS, st.floats(-5.0, 5.0, width=64))
def test_padding_pixels_are_ignored(xp, problem, loss, beta, shift) -> None:
    """Changing the logits and colours of padding pixels changes nothing on the other pixels, nor F."""
    logits, seeds, images = problem
    padding = seeds == 254
    moved_logits = np.where(padding[..., None], logits + shift * np.arange(logits.shape[-1]), logits)
    moved_images = np.where(padding[..., None], 255.0 - images, images)
    solver = MeanField(max_sweeps=5)
    out = []
    for z, img in ((logits, images), (moved_logits, moved_images)):
        zz, s, ii = _on(xp, z, seeds, img)
        out.append(solver.run_batch(solver.batch_energy(loss, zz, Batch(None, s, ii), CrossEntropy(), beta)))
    a, b = (_host(r.solutions) for r in out)
    np.testing.assert_allclose(a[~padding], b[~padding], atol=1e-12)
    for ta, tb in zip(out[0].traces, out[1].traces, strict=True):
        np.testing.assert_allclose(ta, tb, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(grid_potts(), st.floats(0.05, 4.0, width=64), st.integers(0, 2**32 - 1))
def test_batch_of_grids_equals_each_grid(xp, grid, temperature, seed) -> None:
    """Any GridPotts (soft or clamped seeds, padding, label restriction), two items of one grid, with
    warm starts (a labelling, a distribution, none): each item as run() on its MeanFieldEnergy."""
    rng = np.random.default_rng(seed)
    other = GridPotts(
        rng.uniform(0, 4, grid.unary.shape), grid.weights, grid.offsets, grid.potts_weight, grid.edge_scale,
        grid.seeds, grid.seed_penalty, grid.allowed_labels,
    )  # fmt: skip
    grids = [grid, other, grid]
    labels = rng.integers(0, grid.num_labels, grid.shape)
    q = rng.dirichlet(np.ones(grid.num_labels), size=grid.shape)
    initials = [labels, q, None]
    solver = MeanField(max_sweeps=6, temperature=temperature, tolerance=0.0)
    host = GridPottsBatch.from_grids(grids)
    batch = GridPottsBatch(*(xp.asarray(a) if isinstance(a, np.ndarray) else a for a in (
        host.cost_unary, host.edge_costs, host.offsets, host.padding, host.clamped, host.seed_labels, host.allowed)))  # fmt: skip
    result = solver.run_batch(
        MeanFieldBatch(batch, temperature), [None if a is None else xp.asarray(a) for a in initials]
    )
    got = _host(result.solutions)
    for i, (g, start) in enumerate(zip(grids, initials, strict=True)):
        state = run(solver, MeanFieldEnergy(g, temperature), start)
        np.testing.assert_allclose(got[i], state.solution, atol=ATOL)
        assert result.traces[i][0] == pytest.approx(state.trace[0], rel=1e-12, abs=1e-12)
        assert result.traces[i][-1] == pytest.approx(state.energy, rel=1e-9, abs=1e-9)


@SETTINGS
@given(scribble_batches(), LOSSES, BETAS, st.integers(0, 2**32 - 1))
def test_gradient_step_batched_equals_the_per_item_path(xp, problem, loss, beta, seed) -> None:
    logits, seeds, images = problem
    rng = np.random.default_rng(seed)
    initials = [None if rng.random() < 0.5 else rng.dirichlet(np.ones(logits.shape[-1]), size=logits.shape[1:3])
                for _ in range(len(logits))]  # fmt: skip
    solver = GradientStep()
    batch = Batch(None, seeds, images)
    reference = [
        run(solver, e, a) for e, a in zip(solver.energies(loss, logits, batch, Squared(), beta), initials, strict=True)
    ]
    z, s, img = _on(xp, logits, seeds, images)
    energy = solver.batch_energy(loss, z, Batch(None, s, img), Squared(), beta)
    result = solver.run_batch(energy, [None if a is None else xp.asarray(a) for a in initials])
    assert array_namespace(result.solutions) is array_namespace(z)
    x = _host(result.solutions)
    for i, state in enumerate(reference):
        np.testing.assert_allclose(x[i], state.solution, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(result.traces[i], state.trace, rtol=1e-9, atol=1e-9)


def test_bad_input_is_named(xp) -> None:
    rng = np.random.default_rng(0)
    logits, seeds, images = rng.normal(size=(2, 3, 4, 2)), np.full((2, 3, 4), 255), rng.uniform(0, 1, (2, 3, 4, 3))
    z, s, img = _on(xp, logits, seeds, images)
    solver = MeanField()
    energy = solver.batch_energy(ScribblePotts(), z, Batch(None, s, img), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match=r"initials: expected 2 items"):
        solver.run_batch(energy, [None])
    with pytest.raises(
        ValueError, match=r"initials\[1\]: expected an \(H, W\) labelling or an \(H, W, L\) distribution"
    ):
        solver.run_batch(energy, [None, xp.asarray(np.zeros((3, 5)))])
    with pytest.raises(ValueError, match=r"initials\[0\]: expected finite probabilities >= 0 summing to 1"):
        solver.run_batch(energy, [xp.asarray(np.full((3, 4, 2), 0.7)), None])
    with pytest.raises(ValueError, match=r"initials\[0\]: expected labels in \[0, 2\)"):
        solver.run_batch(energy, [xp.asarray(np.full((3, 4), 5)), None])
    with pytest.raises(TypeError, match="MeanFieldBatch"):
        solver.run_batch(energy.grid)
    with pytest.raises(TypeError, match="batch.seeds: expected an array of unary's namespace"):
        ScribblePotts().batch_energy(z, Batch(None, [[0]], img))
    with pytest.raises(ValueError, match="solution: expected shape"):
        energy.value(xp.asarray(np.full((2, 3, 4, 3), 1 / 3)))
    with pytest.raises(TypeError, match="LinearizedBatch"):
        GradientStep().run_batch(energy)
