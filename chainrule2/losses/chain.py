"""Partial labels plus a Potts term on a 1-D chain: a non-image composite loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from chainrule2.base import Batch
from chainrule2.divergences import _one_hot
from chainrule2.energies.chain import ChainPotts
from chainrule2.validation import check_positive


def chain_contrast_weights(signal: np.ndarray | None, length: int, sigma: float | None = None) -> np.ndarray:
    """w_i = exp(−‖I_i − I_{i+1}‖² / (2σ²)) for a signal (n, C); σ² = mean squared difference if None.

    Without a signal every edge weighs 1.
    """
    if signal is None:
        return np.ones(max(length - 1, 0))
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    if signal.ndim != 2 or signal.shape[0] != length:
        raise ValueError(f"images: expected a signal of shape ({length}, C) per item, got {signal.shape}")
    diff2 = np.sum(np.diff(signal, axis=0) ** 2, axis=1)
    sigma2 = float(sigma) ** 2 if sigma is not None else float(diff2.mean()) if diff2.size else 1.0
    return np.exp(-diff2 / (2.0 * (sigma2 if sigma2 > 0 else 1.0)))


def _seed_one_hot(seeds: Any, like: Any) -> Any:
    """One-hot (n, L) of the seed labels in ``like``'s namespace; zero rows where unlabeled/padding."""
    xp = array_namespace(like)
    return _one_hot(xp.asarray(np.asarray(seeds), device=device(like)), like.shape[-1], like)[0]


@dataclass(frozen=True)
class ChainScribblePotts:
    """L(S) = −Σ_{seeds} log S_i(y_i) + λ·Σ_i w_i·R(S_i, S_{i+1}) on chains of n nodes.

    The discrete form (stage A) uses R = [x_i ≠ x_{i+1}] with seeds as hard constraints;
    the relaxed form (gradient descent) uses the bilinear R = 1 − S_i·S_{i+1}.

    Batches: ``batch.seeds`` is ``(N, n)``; ``batch.images`` is an optional signal ``(N, n, C)``
    for contrast-sensitive weights (uniform weights without it).

    Parameters
    ----------
    potts_weight : float
        λ ≥ 0.
    sigma : float or None
        Contrast scale; ``None`` sets σ² to the signal's mean squared difference.
    """

    potts_weight: float = 1.0
    sigma: float | None = None

    def __post_init__(self) -> None:
        check_positive(self.potts_weight, "potts_weight", allow_zero=True)
        if self.sigma is not None:
            check_positive(self.sigma, "sigma")

    def edge_weights(self, batch: Batch, index: int, length: int) -> np.ndarray:
        """λ·w for item ``index`` (host float64, shape (n − 1,))."""
        signal = None if batch.images is None else batch.images[index]
        return self.potts_weight * chain_contrast_weights(signal, length, self.sigma)

    def energy(self, unary: np.ndarray, batch: Batch, index: int) -> ChainPotts:
        seeds = np.asarray(batch.seeds[index]).astype(np.int64)
        return ChainPotts(np.asarray(unary, dtype=np.float64), self.edge_weights(batch, index, unary.shape[0]), seeds)

    def value(self, probs: Any, batch: Batch) -> Any:
        """Per-item relaxed loss ``(N,)`` in ``probs``' namespace (autograd flows)."""
        xp = array_namespace(probs)
        values = []
        for i in range(probs.shape[0]):
            s = probs[i, ...]
            hot = _seed_one_hot(batch.seeds[i], s)
            pce = -xp.sum(hot * xp.log(xp.where(hot > 0, s, xp.ones_like(s))))
            w = xp.asarray(self.edge_weights(batch, i, s.shape[0]), dtype=s.dtype, device=device(s))
            potts = xp.sum(w * (1.0 - xp.sum(s[:-1, ...] * s[1:, ...], axis=-1)))
            values.append(pce + potts)
        return xp.stack(values)

    def gradient(self, probs: np.ndarray, batch: Batch) -> np.ndarray:
        """∂value/∂probs, ``(N, n, L)`` (numpy)."""
        probs = np.asarray(probs, dtype=np.float64)
        grad = np.zeros_like(probs)
        for i in range(probs.shape[0]):
            s = probs[i]
            hot = np.asarray(_seed_one_hot(batch.seeds[i], s))
            grad[i] = -np.divide(hot, s, out=np.zeros_like(s), where=hot > 0)
            w = self.edge_weights(batch, i, s.shape[0])[:, None]
            grad[i, :-1] -= w * s[1:]
            grad[i, 1:] -= w * s[:-1]
        return grad
