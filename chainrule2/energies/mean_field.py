"""The mean-field free energy of a Potts grid CRF: the objective of the soft stage-A solver."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule2.energies.grid import GridPotts, pair_slices
from chainrule2.validation import check_positive

#: How far the labels' probabilities of one pixel may sum from 1 in a distribution :meth:`value` accepts.
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class MeanFieldEnergy:
    """F(Q) = Σ_p ⟨U_p, Q_p⟩ + Σ_pq c_pq·(1 − ⟨Q_p, Q_q⟩) + T·Σ_p ⟨Q_p, log Q_p⟩ over factorised distributions Q.

    The variational (Gibbs) free energy of the CRF ``grid`` at temperature T for a fully factorised
    ``Q`` of shape ``(H, W, L)``: its first two terms are the expected :class:`GridPotts` energy,
    the third −T times the entropy. F(Q) ≥ −T·log Σ_x exp(−E(x)/T) for every Q, and F of a
    one-hot Q is the grid energy of its labelling. Constraints are those of the grid: a clamped
    seed pixel must be one-hot on its seed and no pixel may put mass on a label outside
    ``allowed_labels`` (:meth:`value` is ``inf`` otherwise); padding pixels (seed 254) contribute
    nothing, whatever their Q.

    Parameters
    ----------
    grid : GridPotts
        The discrete stage-A problem.
    temperature : float
        T > 0. T = 1 is the usual mean-field approximation of the Gibbs distribution exp(−E);
        smaller T sharpens Q toward a labelling.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> grid = GridPotts(np.array([[[0.0, 1.0], [1.0, 0.0]]]), contrast_weights(np.zeros((1, 2))), potts_weight=0.5)
    >>> energy = MeanFieldEnergy(grid)
    >>> energy.value(np.array([[[1.0, 0.0], [0.0, 1.0]]])) == grid.value(np.array([[0, 1]]))
    True
    """

    grid: GridPotts
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.grid, GridPotts):
            raise TypeError(f"grid: expected a GridPotts, got {type(self.grid).__name__}")
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.grid.shape + (self.grid.num_labels,)

    @property
    def num_labels(self) -> int:
        return self.grid.num_labels

    @property
    def allowed_mask(self) -> np.ndarray:
        """``(L,)`` bool: the labels a pixel may put mass on."""
        mask = np.zeros(self.num_labels, dtype=bool)
        mask[list(self.grid.labels)] = True
        return mask

    def check_distribution(self, q: Any, name: str = "solution") -> np.ndarray:
        """``q`` as float64 after checking it is a distribution over the labels at every pixel."""
        if not isinstance(q, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array of shape {self.shape}, got {type(q).__name__}")
        if q.shape != self.shape:
            raise ValueError(f"{name}: expected shape {self.shape} (H, W, L), got {q.shape}")
        if not np.issubdtype(q.dtype, np.floating):
            raise TypeError(f"{name}: expected probabilities of a floating dtype, got {q.dtype}")
        q = np.asarray(q, dtype=np.float64)
        if not np.all(np.isfinite(q)) or q.min() < 0:
            raise ValueError(f"{name}: expected finite probabilities >= 0")
        worst = float(np.max(np.abs(q.sum(axis=-1) - 1.0)))
        if worst > SUM_TOLERANCE:
            raise ValueError(f"{name}: expected probabilities summing to 1 at every pixel, off by up to {worst:.3g}")
        return q

    def feasible(self, q: np.ndarray) -> bool:
        """Whether ``q`` is exactly one-hot on every clamped seed and has no mass on a disallowed label."""
        grid = self.grid
        real = ~grid.padding
        if np.any(q[real][:, ~self.allowed_mask] != 0):
            return False
        clamped = grid.clamped
        if grid.seeds is not None and clamped.any():
            ys, xs = np.nonzero(clamped)
            if np.any(q[ys, xs] != np.eye(self.num_labels)[grid.seeds[ys, xs]]):
                return False
        return True

    def expected_pairwise(self, q: np.ndarray) -> float:
        """Σ_pq c_pq·(1 − ⟨Q_p, Q_q⟩): the expected Potts term."""
        costs = self.grid.edge_costs
        total = 0.0
        for k, offset in enumerate(self.grid.offsets):
            src, dst = pair_slices(offset, self.grid.shape)
            total += float(np.sum(costs[k][src] * (1.0 - np.sum(q[src] * q[dst], axis=-1))))
        return total

    def value(self, solution: Any) -> float:
        """F(Q) in float64; ``inf`` if ``Q`` breaks a clamped seed or the label restriction."""
        q = self.check_distribution(solution)
        if not self.feasible(q):
            return math.inf
        real = ~self.grid.padding
        unary = float(np.sum((q * self.grid.cost_unary)[real]))
        negative_entropy = float(np.sum(_xlogx(q[real])))
        return unary + self.expected_pairwise(q) + self.temperature * negative_entropy

    def neighbour_field(self, q: np.ndarray) -> np.ndarray:
        """``(H, W, L)``: Σ_{q ~ p} c_pq·Q_q(l), the Potts saving of label l at every pixel p."""
        field = np.zeros(self.shape)
        costs = self.grid.edge_costs
        for k, offset in enumerate(self.grid.offsets):
            src, dst = pair_slices(offset, self.grid.shape)
            c = costs[k][src][..., None]
            field[src] += c * q[dst]
            field[dst] += c * q[src]
        return field


def _xlogx(x: np.ndarray) -> np.ndarray:
    """x·log x with 0·log 0 = 0."""
    return x * np.log(np.where(x > 0, x, 1.0))
