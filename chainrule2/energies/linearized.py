"""The stage-A problem of plain back-propagation: a linearised loss plus a Euclidean trust region.

:class:`LinearizedEnergy` is one item on the host (numpy); :class:`LinearizedBatch` is N items in
any array-API namespace and on any device. Both evaluate E with :func:`linearized_value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace


def linearized_value(probs: Any, value_at_probs: Any, grad: Any, trust_weight: float, solution: Any) -> Any:
    """``(N,)``: L(S) + ⟨∇L(S), x − S⟩ + (β/2)‖x − S‖² per item of ``(N, ..., L)`` arrays (any namespace)."""
    xp = array_namespace(probs)
    n = int(probs.shape[0])
    delta = xp.astype(solution, xp.float64) - probs
    linear = xp.sum(xp.reshape(grad * delta, (n, -1)), axis=1)
    square = xp.sum(xp.reshape(delta * delta, (n, -1)), axis=1)
    return value_at_probs + linear + 0.5 * trust_weight * square


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
        x = np.asarray(solution, dtype=np.float64)[None]
        probs, grad = np.asarray(self.probs)[None], np.asarray(self.grad)[None]
        return float(linearized_value(probs, self.value_at_probs, grad, self.trust_weight, x)[0])


@dataclass(frozen=True, eq=False)
class LinearizedBatch:
    """The :class:`LinearizedEnergy` of N items at once, as float64 arrays of one namespace and device.

    Parameters
    ----------
    probs : array (N, ..., L)
    value_at_probs : array (N,)
    grad : array (N, ..., L)
    trust_weight : float
        β > 0, the same for every item.

    Example
    -------
    >>> import numpy as np
    >>> e = LinearizedBatch(np.array([[0.5, 0.5]]), np.array([1.0]), np.array([[1.0, -1.0]]), trust_weight=4.0)
    >>> e.value(np.array([[0.25, 0.75]])).tolist()
    [0.75]
    """

    probs: Any
    value_at_probs: Any
    grad: Any
    trust_weight: float

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.probs.shape)
        if tuple(int(s) for s in self.grad.shape) != shape:
            raise ValueError(f"grad: expected shape {shape} (as probs), got {tuple(self.grad.shape)}")
        if tuple(int(s) for s in self.value_at_probs.shape) != shape[:1]:
            raise ValueError(
                f"value_at_probs: expected shape {shape[:1]} (one per item), got {tuple(self.value_at_probs.shape)}"
            )
        if not self.trust_weight > 0:
            raise ValueError(f"trust_weight: expected > 0 for a gradient step, got {self.trust_weight}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.probs.shape)

    @property
    def num_labels(self) -> int:
        return int(self.probs.shape[-1])

    def value(self, solution: Any) -> Any:
        """``(N,)``: E of each item's ``solution`` ``(N, ..., L)``, in its namespace."""
        if tuple(int(s) for s in solution.shape) != self.shape:
            raise ValueError(f"solution: expected shape {self.shape}, got {tuple(solution.shape)}")
        return linearized_value(self.probs, self.value_at_probs, self.grad, self.trust_weight, solution)
