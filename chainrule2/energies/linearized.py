"""The stage-A problem of plain back-propagation: a linearised loss plus a Euclidean trust region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class LinearizedEnergy:
    """E(x) = L(S) + ⟨∇L(S), x − S⟩ + (β/2)‖x − S‖², minimised by x* = S − ∇L(S)/β.

    Parameters
    ----------
    probs : ndarray (..., L)
        The model's probabilities S for one item.
    value_at_probs : float
        L(S).
    grad : ndarray (..., L)
        ∇_S L(S).
    trust_weight : float
        β > 0 (the step size is α = 1/β).
    """

    probs: np.ndarray
    value_at_probs: float
    grad: np.ndarray
    trust_weight: float

    def __post_init__(self) -> None:
        if self.grad.shape != self.probs.shape:
            raise ValueError(f"grad: expected shape {self.probs.shape} (as probs), got {self.grad.shape}")
        if not self.trust_weight > 0:
            raise ValueError(f"trust_weight: expected > 0 for a gradient step, got {self.trust_weight}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.probs.shape)

    @property
    def num_labels(self) -> int:
        return int(self.probs.shape[-1])

    def value(self, solution: np.ndarray) -> float:
        delta = np.asarray(solution, dtype=np.float64) - self.probs
        return float(self.value_at_probs + np.sum(self.grad * delta) + 0.5 * self.trust_weight * np.sum(delta * delta))
