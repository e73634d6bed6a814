"""The solver loop shared by every stage-A solver, and the discrete-solver problem builder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chainrule2._validation import check_labelling, check_logits, check_positive
from chainrule2.base import Batch, Energy, SolverState, Subproblem


def run(solver: Subproblem, energy: Energy, initial: Any = None) -> SolverState:
    """Run ``solver`` on ``energy`` from ``initial`` until it converges or takes ``max_steps()`` steps."""
    state = solver.init(energy, initial)
    for _ in range(solver.max_steps()):
        if state.converged:
            break
        state = solver.step(energy, state)
    return state


def solve_batch(
    solver: Subproblem, energies: Sequence[Energy], initials: Sequence[Any] | None = None
) -> list[SolverState]:
    """Solve one energy per batch item (serially); results are independent of the order."""
    initials = [None] * len(energies) if initials is None else list(initials)
    return [run(solver, energy, initial) for energy, initial in zip(energies, initials, strict=True)]


def next_state(state: SolverState, solution: Any, energy: float, converged: bool, memo: Any = None) -> SolverState:
    """The state after one step: appends ``energy`` to the trace."""
    return SolverState(solution, energy, state.trace + (energy,), state.iteration + 1, converged, memo)


def first_state(solution: Any, energy: float, converged: bool = False) -> SolverState:
    return SolverState(solution, energy, (energy,), 0, converged)


class DiscreteSubproblem:
    """Mixin for solvers over integer labellings: the stage-A unary is β·label_costs(logits).

    The loss turns it into one exact energy per item with ``loss.energy(unary_i, batch, i)``.
    """

    def energies(self, loss: Any, logits: Any, batch: Batch, trust_divergence: Any, trust_weight: float) -> list:
        check_logits(logits)
        check_positive(trust_weight, "trust_weight", allow_zero=True)
        if not callable(getattr(loss, "energy", None)):
            raise TypeError(
                f"loss: {type(self).__name__} needs a loss with a discrete form, energy(unary, batch, index); "
                f"{type(loss).__name__} has none"
            )
        unary = trust_weight * np.asarray(trust_divergence.label_costs(logits), dtype=np.float64)
        return [loss.energy(unary[i], batch, i) for i in range(unary.shape[0])]


def check_initial_labels(initial: Any, energy: Energy, name: str = "initial") -> np.ndarray:
    """An int64 copy of a warm-start labelling after checking its shape, dtype and range."""
    return check_labelling(initial, energy.shape, energy.num_labels, name).astype(np.int64, copy=True)
