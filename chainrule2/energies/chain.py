"""A Potts model on a 1-D chain: the smallest discrete stage-A problem, solved exactly by DP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule2.constants import IGNORED_LABELS, PADDING
from chainrule2.validation import check_labelling


@dataclass(frozen=True, eq=False)
class ChainPotts:
    """E(x) = Σ_i unary[i, x_i] + Σ_i edge_weights[i]·[x_i ≠ x_{i+1}], seeds as hard constraints.

    Parameters
    ----------
    unary : ndarray (n, L), float64, finite
        Cost of each label at each node.
    edge_weights : ndarray (n - 1,), float64, ≥ 0
        Potts weight of the edge (i, i+1) (λ·w_i, already scaled).
    seeds : ndarray (n,) of int or None
        A label in [0, L) clamps the node to it (``value`` is ``inf`` otherwise); 255 is free;
        254 marks padding: its unary is ignored and it has no edges.

    Example
    -------
    >>> import numpy as np
    >>> e = ChainPotts(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0.5]))
    >>> e.value(np.array([0, 1])), e.value(np.array([0, 0]))
    (0.5, 1.0)
    """

    unary: np.ndarray
    edge_weights: np.ndarray
    seeds: np.ndarray | None = None

    def __post_init__(self) -> None:
        unary, weights = self.unary, self.edge_weights
        if not isinstance(unary, np.ndarray) or unary.ndim != 2 or unary.shape[1] < 1:
            raise ValueError(
                f"unary: expected a numpy array (n, L) with L >= 1, got {getattr(unary, 'shape', type(unary))}"
            )
        if unary.dtype != np.float64 or not np.all(np.isfinite(unary)):
            raise ValueError(f"unary: expected finite float64 values, got dtype {unary.dtype}")
        n = unary.shape[0]
        if not isinstance(weights, np.ndarray) or weights.shape != (max(n - 1, 0),):
            raise ValueError(
                f"edge_weights: expected shape ({max(n - 1, 0)},), got {getattr(weights, 'shape', type(weights))}"
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("edge_weights: expected finite values >= 0, got a negative or NaN weight")
        if self.seeds is not None:
            seeds = self.seeds
            if not isinstance(seeds, np.ndarray) or seeds.shape != (n,) or not np.issubdtype(seeds.dtype, np.integer):
                raise ValueError(
                    f"seeds: expected integer labels of shape ({n},), got {getattr(seeds, 'shape', type(seeds))}"
                )
            ok = ((seeds >= 0) & (seeds < unary.shape[1])) | np.isin(seeds, IGNORED_LABELS)
            if not ok.all():
                raise ValueError(
                    f"seeds: expected labels in [0, {unary.shape[1]}) or 254/255, got {int(seeds[~ok][0])}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.unary.shape[0]),)

    @property
    def num_labels(self) -> int:
        return int(self.unary.shape[1])

    def effective(self) -> tuple[np.ndarray, np.ndarray]:
        """Unary and edge weights with padding removed (zero unary, no edges at padded nodes)."""
        unary, weights = self.unary, self.edge_weights
        if self.seeds is None:
            return unary, weights
        padded = self.seeds == PADDING
        unary = np.where(padded[:, None], 0.0, unary)
        weights = np.where(padded[:-1] | padded[1:], 0.0, weights)
        return unary, weights

    def seed_mask(self) -> np.ndarray:
        """Boolean (n,) mask of clamped nodes."""
        if self.seeds is None:
            return np.zeros(self.shape, dtype=bool)
        return self.seeds < self.num_labels

    def value(self, solution: np.ndarray) -> float:
        x = check_labelling(solution, self.shape, self.num_labels, "solution")
        clamped = self.seed_mask()
        if self.seeds is not None and clamped.any() and np.any(x[clamped] != self.seeds[clamped]):
            return float("inf")
        unary, weights = self.effective()
        cost = unary[np.arange(x.size), x].sum()
        return float(cost + np.sum(weights * (x[:-1] != x[1:])))
