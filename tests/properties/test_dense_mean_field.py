"""Dense-TR stage A: the dense free energy against an explicit O(N²) computation, and the monotone mean-field solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.energies import BilateralKernel, DenseMeanFieldEnergy
from chainrule2.energies.bilateral import bilinear_matrix, nearest_indices
from chainrule2.solvers import DenseMeanField, run
from chainrule2.testing.dense_strategies import dense_energies, distributions

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _explicit(energy: DenseMeanFieldEnergy) -> tuple[np.ndarray, np.ndarray, float]:
    """(W, D, c) built entry by entry from the documented formulas: W ``(M, M)`` on the small grid
    (double loop), D ``(M, H·W)`` the masked bilinear down-scaling, c = λ|Ω|/|Ω'|."""
    kernel = energy.bilateral
    h, w, _ = energy.shape
    hs, ws = kernel.grid((h, w))
    ri, ci = nearest_indices(h, hs), nearest_indices(w, ws)
    image = energy.image[ri][:, ci]
    seeds = np.full((h, w), UNLABELED) if energy.seeds is None else energy.seeds
    keep = (seeds[ri][:, ci] != PADDING).ravel()
    sxy = kernel.sigma_xy * kernel.scale
    m = hs * ws
    big_w = np.zeros((m, m))
    for a in range(m):
        ya, xa = divmod(a, ws)
        for b in range(m):
            yb, xb = divmod(b, ws)
            if a != b and keep[a] and keep[b]:
                d_xy = ((ya - yb) ** 2 + (xa - xb) ** 2) / (2 * sxy**2)
                d_rgb = float(np.sum((image[ya, xa] - image[yb, xb]) ** 2)) / (2 * kernel.sigma_rgb**2)
                big_w[a, b] = math.exp(-d_xy - d_rgb)
    down = np.kron(bilinear_matrix(h, hs), bilinear_matrix(w, ws)) * keep[:, None]
    pixels = max(1, int((seeds != PADDING).sum()))
    return big_w, down, energy.potts_weight * pixels / max(1, int(keep.sum()))


def _brute_value(energy: DenseMeanFieldEnergy, q: np.ndarray) -> float:
    big_w, down, c = _explicit(energy)
    real = (energy.seeds != PADDING) if energy.seeds is not None else np.ones(energy.shape[:2], bool)
    flat = np.where(real[..., None], q, 0.0).reshape(-1, energy.num_labels)
    s = down @ flat  # (M, L)
    degree = big_w @ np.ones(big_w.shape[0])  # W·1 (W is 0 on the padding rows and columns)
    pairwise = c * float(np.sum(s * (degree[:, None] - big_w @ s)))
    entropy = sum(x * math.log(x) for x in q[real].ravel() if x > 0)
    return float(np.sum(q[real] * energy.unary[real])) + pairwise + energy.temperature * entropy


@SETTINGS
@given(st.data())
def test_free_energy_matches_the_explicit_computation(data) -> None:
    energy = data.draw(dense_energies())
    q = data.draw(distributions(energy))
    assert energy.value(q) == pytest.approx(_brute_value(energy, q), rel=1e-10, abs=1e-10)


@SETTINGS
@given(st.data())
def test_one_hot_at_full_resolution_is_the_fully_connected_potts_energy(data) -> None:
    """scale = 1: F(one-hot x) = Σ U(x) + λ·Σ_{p≠q} W_pq [x_p ≠ x_q] (c = λ without padding)."""
    energy = data.draw(dense_energies(seeds=False, allowed=False))
    energy = DenseMeanFieldEnergy(
        energy.unary, energy.image, BilateralKernel(energy.bilateral.sigma_rgb, energy.bilateral.sigma_xy, 1.0),
        energy.potts_weight, None, None, energy.temperature,
    )  # fmt: skip
    h, w, num_labels = energy.shape
    labels = np.array(data.draw(st.lists(st.integers(0, num_labels - 1), min_size=h * w, max_size=h * w)))
    big_w, _, c = _explicit(energy)
    assert c == pytest.approx(energy.potts_weight, rel=1e-14)
    potts = c * float(np.sum(big_w * (labels[:, None] != labels[None, :])))
    unary = float(np.sum(np.take_along_axis(energy.unary.reshape(-1, num_labels), labels[:, None], axis=1)))
    value = energy.value(np.eye(num_labels)[labels.reshape(h, w)])
    assert value == pytest.approx(unary + potts, rel=1e-10, abs=1e-10)


@SETTINGS
@given(dense_energies(), st.integers(0, 1))
def test_free_energy_never_rises_and_the_trace_is_honest(energy, blocked) -> None:
    solver = DenseMeanField(max_sweeps=30, tolerance=0.0, max_kernel_pixels=0 if blocked else 4096)
    state = solver.init(energy)
    for _ in range(solver.max_steps()):
        if state.converged:
            break
        previous = state.energy
        state = solver.step(energy, state)
        assert state.energy <= previous
        assert state.energy == pytest.approx(energy.value(state.solution), rel=1e-10, abs=1e-10)


@SETTINGS
@given(dense_energies(), st.integers(0, 1))
def test_matrix_and_blocked_filtering_agree(energy, _) -> None:
    a = run(DenseMeanField(), energy)
    b = run(DenseMeanField(max_kernel_pixels=0), energy)
    np.testing.assert_allclose(a.solution, b.solution, atol=1e-8)
    assert a.energy == pytest.approx(b.energy, rel=1e-9, abs=1e-9)


def _update(energy: DenseMeanFieldEnergy, q: np.ndarray) -> np.ndarray:
    """The parallel mean-field update of ``q``, from the explicit W and D (not the solver's code)."""
    big_w, down, c = _explicit(energy)
    real = ~energy.padding
    flat = np.where(real[..., None], q, 0.0).reshape(-1, energy.num_labels)
    grad = c * (down.T @ (big_w @ np.ones(big_w.shape[0]))[:, None] - 2 * down.T @ big_w @ down @ flat)
    grad = np.where(real[..., None], grad.reshape(energy.shape), 0.0)
    update = energy.minimiser(energy.unary + grad)
    return np.where((energy.clamped | energy.padding)[..., None], q, update)


@SETTINGS
@given(dense_energies(max_height=3, max_width=3))
def test_at_convergence_q_is_its_own_update(energy) -> None:
    state = run(DenseMeanField(max_sweeps=2000, tolerance=0.0, max_halvings=30), energy)
    assert state.converged
    np.testing.assert_allclose(_update(energy, state.solution), state.solution, atol=1e-5)


@SETTINGS
@given(dense_energies())
def test_solution_respects_seeds_and_allowed_labels(energy) -> None:
    q = run(DenseMeanField(), energy).solution
    assert np.all(q[..., ~energy.allowed_mask] == 0)
    if energy.clamped.any():
        assert np.array_equal(q[energy.clamped], np.eye(energy.num_labels)[energy.seeds[energy.clamped]])
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-12)


@SETTINGS
@given(dense_energies(seeds=False))
def test_without_pairs_the_first_iterate_is_the_minimiser(energy) -> None:
    free = DenseMeanFieldEnergy(
        energy.unary, energy.image, energy.bilateral, 0.0, None, energy.allowed_labels, energy.temperature
    )
    state = run(DenseMeanField(), free)
    assert state.iteration == 1 and state.converged
    t = energy.temperature
    z = np.where(free.allowed_mask, -free.unary / t, -np.inf)
    expected = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(state.solution, expected / expected.sum(-1, keepdims=True), atol=1e-12)


def test_the_plain_parallel_update_raises_f_where_the_line_search_does_not() -> None:
    """Two similar pixels, each slightly preferring its own label, strongly coupled: from (0, 1) the
    parallel update swaps them to (1, 0), which pays both unaries for the same disagreement."""
    unary = np.array([[[0.0, 0.1], [0.1, 0.0]]])
    energy = DenseMeanFieldEnergy(
        unary, np.zeros((1, 2)), BilateralKernel(sigma_xy=10.0, scale=1.0), 1.0, None, None, 0.05
    )
    q = np.array([[[0.9, 0.1], [0.1, 0.9]]])
    plain = _update(energy, q)
    assert energy.value(plain) > energy.value(q)  # Krähenbühl–Koltun's update alone is not monotone here
    solver = DenseMeanField()
    state = solver.step(energy, solver.init(energy, q))
    assert state.energy < energy.value(q)  # the line search still finds a decrease
    assert np.all(np.diff(run(solver, energy, q).trace) <= 0)


def test_cross_entropy_unary_without_pairs_at_t_beta_returns_the_network() -> None:
    from chainrule2.base import Batch
    from chainrule2.divergences import CrossEntropy, softmax
    from chainrule2.losses import DenseCRFLoss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 4, 5, 3))
    batch = Batch(None, np.full((1, 4, 5), UNLABELED), rng.integers(0, 256, (1, 4, 5, 3)))
    solver = DenseMeanField(temperature=0.5)
    (energy,) = solver.energies(DenseCRFLoss(0.0), logits, batch, CrossEntropy(), 0.5)
    np.testing.assert_allclose(run(solver, energy).solution, softmax(logits)[0], atol=1e-12)


def test_warm_start_from_labels_or_distributions_and_projection() -> None:
    rng = np.random.default_rng(1)
    seeds = np.full((4, 5), UNLABELED)
    seeds[0, 0] = 2
    energy = DenseMeanFieldEnergy(
        rng.uniform(0, 2, (4, 5, 3)), rng.integers(0, 256, (4, 5, 3)), BilateralKernel(scale=1.0), 0.01, seeds, (0, 2)
    )
    solver = DenseMeanField()
    labels = rng.integers(0, 3, (4, 5))
    q = solver.init(energy, labels).solution
    assert np.all(q[..., 1] == 0) and np.array_equal(q[0, 0], [0.0, 0.0, 1.0])
    kept = labels != 1
    kept[0, 0] = False
    assert np.array_equal(q[kept], np.eye(3)[labels[kept]])  # feasible labels stay one-hot
    start = rng.dirichlet(np.ones(3), size=(4, 5))
    q = solver.init(energy, start).solution
    assert np.all(q[..., 1] == 0)
    np.testing.assert_allclose(q.sum(-1), 1.0)
    feasible = solver.init(energy).solution
    assert np.array_equal(solver.init(energy, feasible).solution, feasible)


@SETTINGS
@given(st.data())
def test_padding_pixels_contribute_nothing_whatever_their_q(data) -> None:
    energy = data.draw(dense_energies())
    if not energy.padding.any():
        return
    q = data.draw(distributions(energy))
    other = q.copy()
    other[energy.padding] = np.eye(energy.num_labels)[0]  # any distribution there, even a disallowed label
    assert energy.value(other) == pytest.approx(energy.value(q), rel=1e-12, abs=1e-12)
