"""Exact stage A on a chain: dynamic programming (Viterbi) for the Potts model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from chainrule2.base import SolverState
from chainrule2.energies.chain import ChainPotts
from chainrule2.solvers.base import DiscreteSubproblem, check_initial_labels, first_state, next_state


def viterbi_potts(unary: np.ndarray, edge_weights: np.ndarray) -> np.ndarray:
    """Exact argmin of Σ unary[i, x_i] + Σ w_i [x_i ≠ x_{i+1}] in O(n·L).

    The Potts min-sum message is min(m[x], min(m) + w): no L×L table is needed.
    """
    n, num_labels = unary.shape
    cost = unary[0].copy()
    back = np.zeros((n, num_labels), dtype=np.int64)
    for i in range(1, n):
        best = int(np.argmin(cost))
        switch = cost[best] + edge_weights[i - 1]
        stay = cost <= switch
        back[i] = np.where(stay, np.arange(num_labels), best)
        cost = np.where(stay, cost, switch) + unary[i]
    labels = np.empty(n, dtype=np.int64)
    labels[-1] = int(np.argmin(cost))
    for i in range(n - 1, 0, -1):
        labels[i - 1] = back[i, labels[i]]
    return labels


@dataclass(frozen=True)
class ChainViterbi(DiscreteSubproblem):
    """Globally optimal solver for :class:`~chainrule2.energies.ChainPotts` (one step).

    Seeds are enforced exactly (clamped nodes get an infinite cost for any other label).

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies import ChainPotts
    >>> from chainrule2.solvers import ChainViterbi, run
    >>> e = ChainPotts(np.array([[0.0, 1.0], [0.6, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]))
    >>> run(ChainViterbi(), e).solution
    array([0, 0, 0])
    """

    monotone: ClassVar[bool] = True

    def max_steps(self) -> int:
        return 1

    def _check(self, energy: object) -> ChainPotts:
        if not isinstance(energy, ChainPotts):
            raise TypeError(f"energy: ChainViterbi solves ChainPotts, got {type(energy).__name__}")
        return energy

    def init(self, energy: ChainPotts, initial: Any = None) -> SolverState:
        energy = self._check(energy)
        if initial is None:
            start = np.argmin(energy.unary, axis=1).astype(np.int64)
            clamped = energy.seed_mask()
            if energy.seeds is not None and clamped.any():
                start[clamped] = energy.seeds[clamped]
        else:
            start = check_initial_labels(initial, energy)
        return first_state(start, energy.value(start))

    def step(self, energy: ChainPotts, state: SolverState) -> SolverState:
        energy = self._check(energy)
        unary, weights = energy.effective()
        clamped = energy.seed_mask()
        if energy.seeds is not None and clamped.any():
            unary = unary.copy()
            forbidden = np.ones(unary.shape, dtype=bool)
            forbidden[np.flatnonzero(clamped), energy.seeds[clamped]] = False
            unary[clamped[:, None] & forbidden] = np.inf
        labels = viterbi_potts(unary, weights)
        value = energy.value(labels)
        if value > state.energy:  # only float round-off can get here; never report a worse state
            labels, value = state.solution, state.energy
        return next_state(state, labels, value, converged=True)
