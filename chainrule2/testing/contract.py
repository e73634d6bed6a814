"""The stage-A solver contract, as a function users run on their own solvers.

Example
-------
>>> import numpy as np
>>> from chainrule2.energies import ChainPotts
>>> from chainrule2.solvers import ChainViterbi
>>> from chainrule2.testing import check_subproblem
>>> energy = ChainPotts(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0.5]))
>>> check_subproblem(ChainViterbi(), energy).energy
0.5
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from chainrule2.base import Energy, SolverState, Subproblem

__all__ = ["ContractError", "brute_force_minimum", "check_subproblem"]


class ContractError(AssertionError):
    """A solver broke a promise of the :class:`~chainrule2.base.Subproblem` contract."""


def _arrays(obj: Any) -> dict[str, np.ndarray]:
    """The numpy arrays an energy holds (dataclass fields or attributes), by name."""
    if dataclasses.is_dataclass(obj):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    else:
        items = dict(vars(obj))
    return {name: value for name, value in items.items() if isinstance(value, np.ndarray)}


def _close(a: float, b: float, rtol: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * (1.0 + abs(a) + abs(b))


def _run_checked(solver: Subproblem, energy: Energy, initial: Any, rtol: float) -> SolverState:
    state = solver.init(energy, initial)
    steps = 0
    while True:
        if np.shape(state.solution) != tuple(energy.shape):
            raise ContractError(f"solution shape {np.shape(state.solution)} != energy.shape {tuple(energy.shape)}")
        recomputed = energy.value(state.solution)
        if not _close(state.energy, recomputed, rtol):
            raise ContractError(f"reported energy {state.energy!r} != recomputed energy {recomputed!r} (step {steps})")
        if not state.trace or state.trace[-1] != state.energy:
            raise ContractError(f"trace must end with the reported energy: {state.trace[-1:]} vs {state.energy}")
        if len(state.trace) != steps + 1:
            raise ContractError(f"trace has {len(state.trace)} entries after {steps} steps; expected {steps + 1}")
        if solver.monotone and len(state.trace) > 1:
            previous, current = state.trace[-2], state.trace[-1]
            if current > previous + rtol * (1.0 + abs(previous)):
                raise ContractError(
                    f"monotone solver raised the energy from {previous!r} to {current!r} at step {steps}"
                )
        if state.converged or steps >= solver.max_steps():
            return state
        state = solver.step(energy, state)
        steps += 1


def check_subproblem(solver: Subproblem, energy: Energy, initial: Any = None, rtol: float = 1e-9) -> SolverState:
    """Run ``solver`` on ``energy`` and check every promise of the stage-A contract.

    Checks: solution shape; reported energy equals ``energy.value(solution)`` after every step;
    the trace records one entry per step and ends at the reported energy; energy never rises
    if ``solver.monotone``; the solver mutates neither the energy's arrays nor ``initial``;
    a warm start never ends above its start; warm-starting from the solver's own result never
    ends above it; the solver is deterministic.

    Parameters
    ----------
    solver : Subproblem
    energy : Energy
    initial : array or None
        Optional warm start (checked in addition to the cold start).
    rtol : float
        Relative tolerance of energy comparisons (float round-off).

    Returns
    -------
    SolverState
        The final state of the cold-start run.

    Raises
    ------
    ContractError
        Naming the broken promise.
    """
    before = copy.deepcopy(_arrays(energy))
    start = None if initial is None else np.array(initial, copy=True)
    cold = _run_checked(solver, energy, None, rtol)
    again = _run_checked(solver, energy, None, rtol)
    if not _close(cold.energy, again.energy, rtol) or not np.array_equal(cold.solution, again.solution):
        raise ContractError("solver is not deterministic: two cold runs differ")
    starts = [cold.solution] + ([] if initial is None else [initial])
    for warm_start in starts:
        start_energy = energy.value(warm_start)
        warm = _run_checked(solver, energy, warm_start, rtol)
        if warm.energy > start_energy + rtol * (1.0 + abs(start_energy)):
            raise ContractError(f"warm start ended at {warm.energy!r}, above its start {start_energy!r}")
    for name, array in _arrays(energy).items():
        if not np.array_equal(array, before[name], equal_nan=True):
            raise ContractError(f"solver mutated energy.{name}")
    if initial is not None and start is not None and not np.array_equal(np.asarray(initial), start):
        raise ContractError("solver mutated the initial solution")
    return cold


def brute_force_minimum(energy: Energy, labels: Sequence[int] | None = None) -> tuple[np.ndarray | None, float]:
    """The exact minimiser of a discrete energy by enumeration (tiny problems only).

    ``labels`` restricts the labels tried (default all ``energy.num_labels``). The minimiser is
    ``None`` (with ``inf``) when every labelling has an infinite energy.
    """
    labels = range(energy.num_labels) if labels is None else labels
    size = int(np.prod(energy.shape))
    if len(labels) ** size > 2_000_000:
        raise ValueError(f"energy: {len(labels)}^{size} labellings is too many to enumerate")
    best, best_value = None, math.inf
    for combo in itertools.product(labels, repeat=size):
        x = np.array(combo, dtype=np.int64).reshape(energy.shape)
        value = energy.value(x)
        if value < best_value:
            best, best_value = x, value
    return best, best_value
