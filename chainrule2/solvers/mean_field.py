"""Mean-field inference for :class:`~chainrule2.energies.grid.GridPotts`: a soft stage-A solver."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np

from chainrule2.base import Batch, Divergence, Loss, SolverState
from chainrule2.energies.grid import GridPotts
from chainrule2.energies.mean_field import MeanFieldEnergy
from chainrule2.solvers import _colouring
from chainrule2.solvers.base import check_initial_labels, discrete_energies, first_state, next_state
from chainrule2.validation import check_int, check_positive


def colour_classes(energy: MeanFieldEnergy) -> list[np.ndarray]:
    """Sets of pixels no pair of the grid joins, covering the grid: (i + j) mod 2 for a
    4-neighbourhood, (i mod 2, j mod 2) when diagonal pairs exist (the colouring shared with ICM:
    :func:`chainrule2.solvers._colouring.colour_classes` of the grid's offsets)."""
    return _colouring.colour_classes(energy.grid.shape, energy.grid.offsets)


def check_mean_field_energy(energy: object, solver: str) -> MeanFieldEnergy:
    if not isinstance(energy, MeanFieldEnergy):
        hint = " (wrap a GridPotts: MeanFieldEnergy(grid, temperature))" if type(energy).__name__ == "GridPotts" else ""
        raise TypeError(f"energy: {solver} solves a MeanFieldEnergy, got {type(energy).__name__}{hint}")
    return energy


@dataclass(frozen=True)
class MeanField:
    """Mean-field inference with a checkerboard schedule: a soft stage-A solution ``(H, W, L)``.

    Minimises the free energy F(Q) of :class:`~chainrule2.energies.mean_field.MeanFieldEnergy`
    over factorised distributions. One :meth:`step` updates every colour class of
    :func:`colour_classes` in turn; the pixels of one class share no pair, so the update
    Q_p ∝ exp(−(U_p − Σ_q c_pq·Q_q)/T) of all of them at once is the exact minimiser of F over
    their Q given the rest, and F never increases (an update that the float round-off would raise
    is dropped). The parallel "all pixels at once" update of dense-CRF code has no such guarantee.
    Clamped seeds stay one-hot, disallowed labels get no mass.

    The solution is a distribution per pixel, for a stage B whose d_B takes soft targets (every
    divergence of :mod:`chainrule2.divergences` does).

    Parameters
    ----------
    max_sweeps : int
        Upper bound on sweeps.
    temperature : float
        T > 0 of the energies built by :meth:`energies` (a MeanFieldEnergy given directly keeps its own).
    tolerance : float
        A sweep that lowers F by at most ``tolerance * max(1, |F|)`` counts as converged.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> from chainrule2.energies.mean_field import MeanFieldEnergy
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((1, 3, 2)); unary[0, 0] = [0.0, 4.0]; unary[0, 2] = [0.0, 4.0]
    >>> grid = GridPotts(unary, contrast_weights(np.zeros((1, 3)), 4), offsets=((0, 1), (1, 0)), potts_weight=2.0)
    >>> q = run(MeanField(), MeanFieldEnergy(grid)).solution
    >>> bool(q[0, 1, 0] > 0.9)  # the middle pixel follows its neighbours
    True
    """

    max_sweeps: int = 50
    temperature: float = 1.0
    tolerance: float = 1e-6

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)
        check_positive(self.temperature, "temperature")
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1):
            raise ValueError(f"tolerance: expected a number in [0, 1), got {self.tolerance!r}")

    def max_steps(self) -> int:
        return self.max_sweeps

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[MeanFieldEnergy]:
        """The loss's discrete stage-A energies (as for the discrete solvers), as free energies at ``temperature``."""
        grids = discrete_energies(type(self).__name__, loss, logits, batch, trust_divergence, trust_weight)
        return [MeanFieldEnergy(cast(GridPotts, grid), self.temperature) for grid in grids]  # it checks the kind

    def init(self, energy: MeanFieldEnergy, initial: Any = None) -> SolverState:
        """Start from ``initial`` (an ``(H, W, L)`` distribution or an ``(H, W)`` labelling, projected
        onto the constraints) or from Q ∝ exp(−U/T), the minimiser of F without the pairs."""
        energy = check_mean_field_energy(energy, type(self).__name__)
        if initial is None:
            q = _softmin(energy, energy.grid.cost_unary)
        elif isinstance(initial, np.ndarray) and initial.ndim == 2:
            labels = check_initial_labels(initial, energy.grid)
            q = np.eye(energy.num_labels)[energy.grid.project(labels)]
        else:
            q = _project(energy, energy.check_distribution(initial, "initial"))
        return first_state(q, energy.value(q))

    def step(self, energy: MeanFieldEnergy, state: SolverState) -> SolverState:
        energy = check_mean_field_energy(energy, type(self).__name__)
        q, current = state.solution, state.energy
        start = current
        fixed = energy.grid.clamped | energy.grid.padding
        for members in colour_classes(energy):
            update = members & ~fixed
            if not update.any():
                continue
            proposal = q.copy()
            proposal[update] = _softmin(energy, energy.grid.cost_unary - energy.neighbour_field(q))[update]
            value = energy.value(proposal)
            if value <= current:
                q, current = proposal, value
        converged = not (current < start - self.tolerance * max(1.0, abs(start)))
        return next_state(state, q, current, converged)


def _softmin(energy: MeanFieldEnergy, cost: np.ndarray) -> np.ndarray:
    """softmax(−cost/T) over the allowed labels, one-hot on clamped seeds."""
    allowed = energy.allowed_mask
    z = np.where(allowed, -cost / energy.temperature, -math.inf)
    z -= z.max(axis=-1, keepdims=True)
    q = np.exp(z)
    q /= q.sum(axis=-1, keepdims=True)
    return _clamp(energy, q)


def _clamp(energy: MeanFieldEnergy, q: np.ndarray) -> np.ndarray:
    grid = energy.grid
    if grid.seeds is not None and grid.clamped.any():
        ys, xs = np.nonzero(grid.clamped)
        q[ys, xs] = np.eye(energy.num_labels)[grid.seeds[ys, xs]]
    return q


def _project(energy: MeanFieldEnergy, q: np.ndarray) -> np.ndarray:
    """A feasible copy of a distribution: mass on disallowed labels removed and the pixel
    renormalised (the unary's soft-min where nothing is left), seeds one-hot; a feasible Q is kept."""
    q = np.array(q, dtype=np.float64)
    cut = np.any(q[..., ~energy.allowed_mask] > 0, axis=-1)
    if cut.any():
        q[..., ~energy.allowed_mask] = 0.0
        total = q[cut].sum(axis=-1, keepdims=True)
        q[cut] = np.where(
            total > 0, q[cut] / np.where(total > 0, total, 1.0), _softmin(energy, energy.grid.cost_unary)[cut]
        )
    return _clamp(energy, q)
