"""The registry: every solver exported by chainrule2.solvers goes through the public contract."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule2.solvers as solvers
from chainrule2.testing import brute_force_minimum, check_subproblem
from chainrule2.testing.strategies import chain_potts, linearized

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grid_energies():
    pytest.importorskip("maxflow")
    from chainrule2.testing.grid_strategies import grid_potts

    return grid_potts()


def _mean_field_energies():
    from chainrule2.energies import MeanFieldEnergy
    from chainrule2.testing.grid_strategies import grid_potts

    return st.builds(MeanFieldEnergy, grid_potts(), st.floats(0.05, 4.0, width=64))


def _dense_energies():
    from chainrule2.testing.dense_strategies import dense_energies

    return dense_energies()


# Each solver class -> (instances to check, strategy of energies it solves).
REGISTRY = {
    "ChainViterbi": (lambda: [solvers.ChainViterbi()], chain_potts),
    "GradientStep": (lambda: [solvers.GradientStep()], linearized),
    "AlphaExpansion": (
        lambda: [solvers.AlphaExpansion(), solvers.AlphaExpansion(label_order="random", seed=1)],
        _grid_energies,
    ),
    "ICM": (lambda: [solvers.ICM()], _grid_energies),
    "MeanField": (lambda: [solvers.MeanField(), solvers.MeanField(max_sweeps=2, tolerance=0.0)], _mean_field_energies),
    "DenseMeanField": (
        lambda: [solvers.DenseMeanField(), solvers.DenseMeanField(max_sweeps=2, tolerance=0.0, max_kernel_pixels=0)],
        _dense_energies,
    ),
}


def _solver_classes() -> list[str]:
    return sorted(
        name
        for name in solvers.__all__
        if inspect.isclass(getattr(solvers, name)) and hasattr(getattr(solvers, name), "monotone")
    )


def test_registry_covers_every_solver() -> None:
    missing = set(_solver_classes()) - set(REGISTRY)
    assert not missing, f"add these solvers to REGISTRY: {sorted(missing)}"


@pytest.mark.parametrize("name", _solver_classes())
def test_solver_contract(name: str) -> None:
    make, strategy = REGISTRY[name]

    @SETTINGS
    @given(st.data())
    def check(data) -> None:
        energy = data.draw(strategy())
        for solver in make():
            check_subproblem(solver, energy)

    check()


@SETTINGS
@given(chain_potts())
def test_chain_viterbi_is_exactly_optimal(energy) -> None:
    _, best = brute_force_minimum(energy)
    state = solvers.run(solvers.ChainViterbi(), energy)
    assert state.energy == pytest.approx(best, abs=1e-9)
    clamped = energy.seed_mask()
    if clamped.any():
        assert np.array_equal(state.solution[clamped], energy.seeds[clamped])


@SETTINGS
@given(linearized())
def test_gradient_step_is_the_exact_minimiser(energy) -> None:
    x = solvers.run(solvers.GradientStep(), energy).solution
    # the gradient of E vanishes at x*: ∇L + β(x − S) = 0
    np.testing.assert_allclose(energy.grad + energy.trust_weight * (x - energy.probs), 0.0, atol=1e-9)
