"""Mean-field stage A: the free energy and the checkerboard solver against independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule2.energies.grid import GridPotts, contrast_weights
from chainrule2.energies.mean_field import MeanFieldEnergy
from chainrule2.solvers import MeanField, run
from chainrule2.solvers.mean_field import colour_classes
from chainrule2.testing.grid_strategies import grid_labels, grid_potts

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEMPERATURES = st.floats(0.05, 4.0, width=64)


def _one_hot(labels: np.ndarray, num_labels: int) -> np.ndarray:
    return np.eye(num_labels)[labels]


def _log_partition(grid: GridPotts, temperature: float) -> float:
    """−T·log Σ_x exp(−E(x)/T) by enumeration of the labellings of the real (non-padding) pixels."""
    values = []
    for combo in itertools.product(range(grid.num_labels), repeat=grid.shape[0] * grid.shape[1]):
        x = np.array(combo).reshape(grid.shape)
        if grid.padding.any() and np.any(x[grid.padding] != 0):
            continue  # padding pixels do not count: one labelling of them
        values.append(grid.value(x))
    v = np.array(values)
    finite = v[np.isfinite(v)]
    low = finite.min()
    return low - temperature * math.log(np.sum(np.exp(-(finite - low) / temperature)))


@SETTINGS
@given(st.data(), TEMPERATURES)
def test_one_hot_free_energy_is_the_grid_energy(data, temperature) -> None:
    grid = data.draw(grid_potts())
    labels = data.draw(grid_labels(grid))
    expected = grid.value(labels)
    got = MeanFieldEnergy(grid, temperature).value(_one_hot(labels, grid.num_labels))
    if math.isinf(expected):
        assert math.isinf(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@SETTINGS
@given(grid_potts(max_height=2, max_width=3), TEMPERATURES)
def test_free_energy_bounds_the_exact_log_partition(grid, temperature) -> None:
    """Gibbs' inequality: F(Q) >= −T log Z for every Q, so also for the solver's."""
    energy = MeanFieldEnergy(grid, temperature)
    state = run(MeanField(), energy)
    assert state.energy >= _log_partition(grid, temperature) - 1e-9 * (1 + abs(state.energy))


@SETTINGS
@given(grid_potts(max_height=2, max_width=3, seeds=False, padding=False), TEMPERATURES)
def test_without_pairs_mean_field_is_exact(grid, temperature) -> None:
    """With λ = 0 the Gibbs distribution factorises: the first iterate already attains −T log Z."""
    free = GridPotts(grid.unary, grid.weights, grid.offsets, potts_weight=0.0, allowed_labels=grid.allowed_labels)
    state = run(MeanField(), MeanFieldEnergy(free, temperature))
    assert state.energy == pytest.approx(_log_partition(free, temperature), rel=1e-9, abs=1e-9)


@SETTINGS
@given(grid_potts(max_height=3, max_width=4), st.floats(0.2, 4.0, width=64))
def test_each_class_update_is_the_exact_block_minimiser(grid, temperature) -> None:
    """After one sweep the last colour class sits at its minimum given the others: moving a little
    probability between two labels of one of its pixels never lowers F (first-order optimality,
    checked on F itself, not on the update formula)."""
    energy = MeanFieldEnergy(grid, temperature)
    state = MeanField(max_sweeps=1).step(energy, MeanField().init(energy))
    last = colour_classes(energy)[-1] & ~grid.clamped & ~grid.padding
    allowed = np.flatnonzero(energy.allowed_mask)
    step = 1e-4
    for y, x in zip(*np.nonzero(last), strict=True):
        for i, j in itertools.permutations(allowed, 2):
            other = state.solution.copy()
            moved = min(step, other[y, x, i])
            other[y, x, i] -= moved
            other[y, x, j] += moved
            # F is convex in one pixel's distribution: a first-order gain would show as a drop of order step
            assert energy.value(other) >= state.energy - 1e-10 * (1 + abs(state.energy))


@SETTINGS
@given(grid_potts(), TEMPERATURES)
def test_solution_respects_seeds_and_allowed_labels(grid, temperature) -> None:
    q = run(MeanField(), MeanFieldEnergy(grid, temperature)).solution
    assert np.all(q[..., ~MeanFieldEnergy(grid).allowed_mask] == 0)
    clamped = grid.clamped
    if clamped.any():
        assert np.array_equal(q[clamped], _one_hot(grid.seeds[clamped], grid.num_labels))
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, atol=1e-12)


@SETTINGS
@given(grid_potts(), TEMPERATURES, st.randoms(use_true_random=False))
def test_permuting_labels_permutes_the_solution(grid, temperature, random) -> None:
    perm = list(range(grid.num_labels))
    random.shuffle(perm)
    perm = np.array(perm)  # old label l becomes perm[l]
    inverse = np.argsort(perm)
    seeds = None
    if grid.seeds is not None:
        seeds = np.where(grid.seeds < grid.num_labels, perm[np.minimum(grid.seeds, grid.num_labels - 1)], grid.seeds)
    permuted = GridPotts(
        grid.unary[..., inverse],
        grid.weights,
        grid.offsets,
        grid.potts_weight,
        grid.edge_scale,
        seeds,
        grid.seed_penalty,
        None if grid.allowed_labels is None else tuple(int(perm[a]) for a in grid.allowed_labels),
    )
    a = run(MeanField(), MeanFieldEnergy(grid, temperature))
    b = run(MeanField(), MeanFieldEnergy(permuted, temperature))
    real = ~grid.padding
    np.testing.assert_allclose(b.solution[..., perm][real], a.solution[real], atol=1e-9)
    assert b.energy == pytest.approx(a.energy, rel=1e-9, abs=1e-9)


def test_middle_pixel_follows_strong_neighbours_and_low_temperature_sharpens() -> None:
    unary = np.zeros((1, 3, 2))
    unary[0, 0] = unary[0, 2] = [0.0, 4.0]
    unary[0, 1] = [1.0, 0.0]  # alone, the middle pixel prefers label 1
    grid = GridPotts(unary, contrast_weights(np.zeros((1, 3)), 4), offsets=((0, 1), (1, 0)), potts_weight=2.0)
    warm = run(MeanField(), MeanFieldEnergy(grid, 1.0)).solution
    cold = run(MeanField(), MeanFieldEnergy(grid, 0.05)).solution
    assert warm[0, 1, 0] > 0.5
    assert cold[0, 1, 0] > warm[0, 1, 0] > 0.5
    assert cold[0, 1, 0] > 1 - 1e-6


def test_warm_start_from_labels_or_distributions() -> None:
    rng = np.random.default_rng(0)
    grid = GridPotts(rng.uniform(0, 2, (5, 6, 3)), contrast_weights(rng.uniform(0, 1, (5, 6, 3))), potts_weight=1.0)
    energy = MeanFieldEnergy(grid)
    labels = rng.integers(0, 3, (5, 6))
    from_labels = MeanField().init(energy, labels)
    assert np.array_equal(from_labels.solution, _one_hot(labels, 3))
    q = rng.dirichlet(np.ones(3), size=(5, 6))
    from_q = MeanField().init(energy, q)
    np.testing.assert_array_equal(from_q.solution, q)
    assert run(MeanField(), energy, q).energy <= energy.value(q)


def test_bad_input_is_named() -> None:
    grid = GridPotts(np.zeros((2, 2, 2)), contrast_weights(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="temperature"):
        MeanFieldEnergy(grid, 0.0)
    with pytest.raises(TypeError, match="grid"):
        MeanFieldEnergy(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="temperature"):
        MeanField(temperature=-1.0)
    with pytest.raises(ValueError, match="max_sweeps"):
        MeanField(max_sweeps=0)
    with pytest.raises(TypeError, match="MeanFieldEnergy"):
        MeanField().init(grid)
    energy = MeanFieldEnergy(grid)
    with pytest.raises(ValueError, match=r"initial: expected shape \(2, 2, 2\)"):
        MeanField().init(energy, np.full((2, 3, 2), 0.5))
    with pytest.raises(ValueError, match="initial: expected probabilities summing to 1"):
        MeanField().init(energy, np.full((2, 2, 2), 0.6))
    with pytest.raises(TypeError, match="initial: expected probabilities of a floating dtype"):
        MeanField().init(energy, np.ones((2, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="solution: expected finite probabilities"):
        energy.value(np.full((2, 2, 2), np.nan))
