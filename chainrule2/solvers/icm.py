"""Iterated conditional modes (Besag 1986) for :class:`~chainrule2.energies.grid.GridPotts`: a cheap baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from chainrule2.base import SolverState
from chainrule2.energies.grid import N4_OFFSETS, GridPotts, pair_slices
from chainrule2.solvers._colouring import colour_classes
from chainrule2.solvers.alpha_expansion import check_grid_energy
from chainrule2.solvers.base import DiscreteSubproblem, check_initial_labels, first_state, next_state
from chainrule2.validation import check_int


def _local_costs(energy: GridPotts, labels: np.ndarray) -> np.ndarray:
    """``(H, W, L)``: unary + Potts cost of each label at every pixel with its neighbours' labels fixed."""
    costs = np.array(energy.cost_unary)
    edge = energy.edge_costs
    h, w = energy.shape
    for k, offset in enumerate(energy.offsets):
        src, dst = pair_slices(offset, (h, w))
        c = edge[k][src]
        # pixel p pays c for every label but its neighbour's: c − c·[l == a_q]
        for end, other in ((src, dst), (dst, src)):
            block = costs[end]
            block += c[..., None]
            neighbour = labels[other]
            rows, cols = np.nonzero(c > 0)
            block[rows, cols, neighbour[rows, cols]] -= c[rows, cols]
    return costs


@dataclass(frozen=True)
class ICM(DiscreteSubproblem):
    """Iterated conditional modes with a checkerboard schedule: every pixel of one colour takes
    its best label given its neighbours, then the other colour (N4 pairs never join pixels of one
    colour; with N8 the diagonal pairs do, so each half-update is re-checked with the exact energy).

    One :meth:`step` = both half-sweeps. Monotone: a half-update that does not lower the exact
    energy is dropped (what that means with N8, where the 2 colours are not an exact block update:
    :func:`~chainrule2.solvers._colouring.colour_classes`). Much weaker than :class:`AlphaExpansion`
    (with N4 a local minimum w.r.t. single pixel changes) but needs no max-flow.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((3, 3, 2)); unary[:, :, 1] = 1.0; unary[1, 1] = [1.0, 0.0]
    >>> run(ICM(), GridPotts(unary, contrast_weights(np.zeros((3, 3))), potts_weight=1.0)).solution[1, 1]
    np.int64(0)
    """

    max_sweeps: int = 10

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)

    def max_steps(self) -> int:
        return self.max_sweeps

    def init(self, energy: GridPotts, initial: Any = None) -> SolverState:
        energy = check_grid_energy(energy, type(self).__name__)
        labels = energy.unary_argmin() if initial is None else energy.project(check_initial_labels(initial, energy))
        return first_state(labels, energy.value(labels))

    def step(self, energy: GridPotts, state: SolverState) -> SolverState:
        energy = check_grid_energy(energy, type(self).__name__)
        labels, current = state.solution, state.energy
        start = current
        allowed = np.asarray(energy.labels)
        free = ~energy.clamped & ~energy.padding
        # the 2 checkerboard colours whatever the neighbourhood: with N8 not an exact block update
        for members in colour_classes(energy.shape, N4_OFFSETS):
            mask = members & free
            costs = _local_costs(energy, labels)[:, :, allowed]
            best = allowed[np.argmin(costs, axis=2)]
            proposal = labels.copy()
            proposal[mask] = best[mask]
            if np.array_equal(proposal, labels):
                continue
            value = energy.value(proposal)
            if value < current:
                labels, current = proposal, value
        return next_state(state, labels, current, converged=not current < start)
