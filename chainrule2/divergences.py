"""Divergences d(target ‖ softmax(logits)) per pixel, and the seed-aware stage-B objective.

Every function here takes array-API arrays (numpy, array_api_strict, torch) and returns
arrays of the same namespace and device, so torch autograd flows through them. Logits are
``(N, ..., L)`` with the class axis last; a target is either integer labels ``(N, ...)``
(254/255 contribute 0) or a soft distribution ``(N, ..., L)``.

Each divergence also gives

* ``label_costs(logits)``: ``d(one_hot(k) ‖ S)`` for every k, ``(N, ..., L)``: the unary a
  discrete stage-A solver needs;
* ``gradient(target, logits)``: the analytic ``∂d/∂logits``, for models without autograd.

Example
-------
>>> import numpy as np
>>> from chainrule2.divergences import CrossEntropy, RobustCrossEntropy
>>> logits = np.array([[[2.0, 0.0], [0.0, 2.0]]])     # (N=1, 2 pixels, L=2)
>>> labels = np.array([[0, 0]])
>>> CrossEntropy()(labels, logits).round(3)
array([[0.127, 2.127]])
>>> RobustCrossEntropy(error_prob=0.4, num_classes=2)(labels, logits).round(3)
array([[0.551, 0.858]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from chainrule2._validation import check_choice, check_labels, check_logits, check_num_classes
from chainrule2.constants import PADDING

__all__ = [
    "CrossEntropy",
    "KL",
    "Squared",
    "RobustCrossEntropy",
    "SeedAwareObjective",
    "log_softmax",
    "softmax",
    "robust_log_likelihood",
]


def log_softmax(logits: Any) -> Any:
    """Stable log-softmax over the last axis."""
    xp = array_namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: Any) -> Any:
    """Softmax over the last axis."""
    xp = array_namespace(logits)
    return xp.exp(log_softmax(logits))


def _one_hot(labels: Any, num_labels: int, like: Any) -> tuple[Any, Any]:
    """One-hot targets in ``like``'s dtype, and the float mask of valid (non-ignored) pixels."""
    xp = array_namespace(like)
    classes = xp.arange(num_labels, device=device(like))
    hot = xp.astype(labels[..., None] == xp.astype(classes, labels.dtype), like.dtype)
    return hot, xp.sum(hot, axis=-1)


def _as_distribution(target: Any, logits: Any) -> tuple[Any, Any]:
    """Return (soft target ``(N, ..., L)``, valid-pixel mask ``(N, ...)``) after validation."""
    xp = check_logits(logits)
    num_labels = int(logits.shape[-1])
    if xp.isdtype(target.dtype, "integral"):
        if tuple(target.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"target: expected labels of shape {tuple(logits.shape[:-1])} (logits without the "
                f"class axis), got {tuple(target.shape)}"
            )
        check_num_classes(num_labels, "logits")  # integer targets carry 254/255 as ignore values
        check_labels(target, num_labels, "target")
        return _one_hot(target, num_labels, logits)
    if not xp.isdtype(target.dtype, "real floating"):
        raise TypeError(f"target: expected integer labels or floating probabilities, got {target.dtype}")
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(
            f"target: expected soft targets of shape {tuple(logits.shape)} (as logits), got {tuple(target.shape)}"
        )
    if target.dtype != logits.dtype:
        raise TypeError(f"target: expected dtype {logits.dtype} (as logits), got {target.dtype}")
    return target, xp.ones(target.shape[:-1], dtype=logits.dtype, device=device(logits))


def _xlogx(t: Any) -> Any:
    xp = array_namespace(t)
    safe = xp.where(t > 0, t, xp.ones_like(t))
    return xp.where(t > 0, t * xp.log(safe), xp.zeros_like(t))


@dataclass(frozen=True)
class CrossEntropy:
    """d(t ‖ S) = −Σ_k t_k log S_k. Equals :class:`KL` plus the entropy of t (0 for one-hot t)."""

    def __call__(self, target: Any, logits: Any) -> Any:
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        return -xp.sum(t * log_softmax(logits), axis=-1) * valid

    def label_costs(self, logits: Any) -> Any:
        check_logits(logits)
        return -log_softmax(logits)

    def gradient(self, target: Any, logits: Any) -> Any:
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        return (softmax(logits) * xp.sum(t, axis=-1, keepdims=True) - t) * valid[..., None]


@dataclass(frozen=True)
class KL(CrossEntropy):
    """d(t ‖ S) = Σ_k t_k log(t_k / S_k); zero iff S = t. Same gradient and label costs as CE."""

    def __call__(self, target: Any, logits: Any) -> Any:
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        return xp.sum(_xlogx(t) - t * log_softmax(logits), axis=-1) * valid


@dataclass(frozen=True)
class Squared:
    """Euclidean on probabilities: d(t ‖ S) = ½ ‖t − S‖². With it, stage B is plain back-propagation."""

    def __call__(self, target: Any, logits: Any) -> Any:
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        return 0.5 * xp.sum((t - softmax(logits)) ** 2, axis=-1) * valid

    def label_costs(self, logits: Any) -> Any:
        check_logits(logits)
        xp = array_namespace(logits)
        s = softmax(logits)
        return 0.5 * (xp.sum(s * s, axis=-1, keepdims=True) - 2.0 * s + 1.0)

    def gradient(self, target: Any, logits: Any) -> Any:
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        s = softmax(logits)
        g = s - t  # ∂d/∂S, pulled back through the softmax Jacobian diag(S) − S Sᵀ
        return s * (g - xp.sum(s * g, axis=-1, keepdims=True)) * valid[..., None]


def robust_log_likelihood(logp: Any, error_prob: Any, num_classes: int) -> Any:
    """log(a + b·S) for every class, from log-probabilities, stably (PAPER.md §3).

    ``a = ε/(C−1)``, ``b = 1 − Cε/(C−1)``. ``error_prob`` may be a float or a 0-d array of
    ``logp``'s namespace (a learned ε), in which case gradients flow into it.
    """
    xp = array_namespace(logp)
    a = error_prob / (num_classes - 1)
    b = 1.0 - num_classes * a
    if isinstance(a, float):
        return xp.logaddexp(xp.full_like(logp, math.log(a)), math.log(b) + logp)
    return xp.logaddexp(xp.log(a) + xp.zeros_like(logp), xp.log(b) + logp)


@dataclass(frozen=True)
class RobustCrossEntropy:
    """Noisy-label cross-entropy: d(t ‖ S) = −Σ_k t_k log(a + b·S_k) (PAPER.md §3).

    The label flips to each other class with probability ε/(C−1). Bounded above by −log a, so
    pixels where the network confidently disagrees with the pseudo-label are down-weighted.

    Parameters
    ----------
    error_prob : float
        ε in (0, (C−1)/C). ε → (C−1)/C makes the loss constant.
    num_classes : int
        C ≥ 2; must equal the size of the logits' class axis.
    """

    error_prob: float
    num_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {self.num_classes!r}")
        upper = (self.num_classes - 1) / self.num_classes
        if isinstance(self.error_prob, bool) or not isinstance(self.error_prob, (int, float)):
            raise TypeError(f"error_prob: expected a float, got {type(self.error_prob).__name__}")
        if not 0.0 < float(self.error_prob) < upper:
            raise ValueError(
                f"error_prob: expected a value in (0, (C-1)/C) = (0, {upper:.6g}) for "
                f"num_classes={self.num_classes}, got {self.error_prob}"
            )

    def _loglik(self, logits: Any) -> Any:
        check_logits(logits)
        if int(logits.shape[-1]) != self.num_classes:
            raise ValueError(
                f"logits: expected {self.num_classes} classes on the last axis (num_classes), "
                f"got {int(logits.shape[-1])}"
            )
        return robust_log_likelihood(log_softmax(logits), float(self.error_prob), self.num_classes)

    def __call__(self, target: Any, logits: Any) -> Any:
        loglik = self._loglik(logits)
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        return -xp.sum(t * loglik, axis=-1) * valid

    def label_costs(self, logits: Any) -> Any:
        return -self._loglik(logits)

    def gradient(self, target: Any, logits: Any) -> Any:
        loglik = self._loglik(logits)
        t, valid = _as_distribution(target, logits)
        xp = array_namespace(logits)
        logp = log_softmax(logits)
        # m_k = b S_k / (a + b S_k): the per-class confidence weight of PAPER.md §3.
        b = 1.0 - self.num_classes * float(self.error_prob) / (self.num_classes - 1)
        tm = t * xp.exp(math.log(b) + logp - loglik)
        return (xp.exp(logp) * xp.sum(tm, axis=-1, keepdims=True) - tm) * valid[..., None]


NORMALIZATIONS = ("official", "mean", "item", "sum")


@dataclass(frozen=True)
class SeedAwareObjective:
    """The stage-B objective: clean CE on seed pixels, ``divergence`` on the other pixels.

    With ``divergence=None`` only the seed term remains: the partial cross-entropy (PCE) of the
    scribble baselines (``targets`` are then ignored and may be the seeds themselves).

    Parameters
    ----------
    divergence : Divergence or None
        d_B on non-seed pixels (e.g. :class:`RobustCrossEntropy`); None = seeds only (PCE).
    seed_divergence : Divergence or None
        Loss on seed pixels (default clean :class:`CrossEntropy`). ``None`` applies
        ``divergence`` to every valid pixel, seeds included (plain back-propagation and full
        supervision use that).
    normalization : {"official", "mean", "item", "sum"}
        ``"official"``: sum ÷ number of seed pixels in the batch ÷ batch size (the official
        code; a batch without seeds divides by 1, never by 0). ``"mean"``: mean over the batch's
        valid pixels. ``"item"``: mean over each item's valid pixels, then mean over the items
        (an item without valid pixels adds 0). ``"sum"``: no normalisation.

    Pixels whose target or seed is 254 (padding) or whose target is 255 are ignored.

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))   # (N=1, 3 pixels, L=2)
    >>> seeds = np.array([[255, 0, 255]])
    >>> pce = SeedAwareObjective(None, normalization="mean")
    >>> round(float(pce(logits, seeds, seeds)), 4)                            # −log 0.9
    0.1054
    """

    divergence: Any
    seed_divergence: Any = CrossEntropy()
    normalization: str = "official"

    def __post_init__(self) -> None:
        check_choice(self.normalization, "normalization", NORMALIZATIONS)
        if self.divergence is None and self.seed_divergence is None:
            raise ValueError("divergence, seed_divergence: expected at least one Divergence, got None for both")
        for name in ("divergence", "seed_divergence"):
            value = getattr(self, name)
            if value is None:
                continue
            if not callable(value) or not callable(getattr(value, "gradient", None)):
                raise TypeError(f"{name}: expected a Divergence, got {type(value).__name__}")

    def _masks(self, logits: Any, targets: Any, seeds: Any) -> tuple[Any, Any, Any]:
        xp = check_logits(logits)
        num_labels = check_num_classes(int(logits.shape[-1]), "logits")  # seeds carry 254/255
        if tuple(seeds.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"seeds: expected shape {tuple(logits.shape[:-1])} (logits without the class axis), "
                f"got {tuple(seeds.shape)}"
            )
        check_labels(seeds, num_labels, "seeds")
        is_seed = (seeds >= 0) & (seeds < num_labels)
        if self.divergence is None:
            return (
                xp.astype(is_seed, logits.dtype),
                xp.zeros(is_seed.shape, dtype=logits.dtype, device=device(logits)),
                xp,
            )
        keep = seeds != PADDING
        if self.seed_divergence is not None:
            keep = keep & ~is_seed
        if xp.isdtype(targets.dtype, "integral"):
            keep = keep & (targets >= 0) & (targets < num_labels)
        return xp.astype(is_seed, logits.dtype), xp.astype(keep, logits.dtype), xp

    def _scale(self, is_seed: Any, rest: Any, xp: Any) -> Any:
        """The factor each pixel's term is multiplied by: a number, or ``(N, 1, ...)`` for ``"item"``."""
        if self.normalization == "sum":
            return 1.0
        if self.normalization == "official":
            count, batch = float(xp.sum(is_seed)), int(is_seed.shape[0])
            return 1.0 / (max(count, 1.0) * batch)
        valid = rest + is_seed if self.seed_divergence is not None else rest
        if self.normalization == "mean":
            return 1.0 / max(float(xp.sum(valid)), 1.0)
        n = int(valid.shape[0])
        per_item = xp.sum(xp.reshape(valid, (n, -1)), axis=1)
        per_item = xp.where(per_item > 0, per_item, xp.ones_like(per_item))
        return xp.reshape(1.0 / (per_item * n), (n,) + (1,) * (valid.ndim - 1))

    def _seed_labels(self, seeds: Any, is_seed: Any, xp: Any) -> Any:
        return xp.where(is_seed > 0, seeds, xp.full_like(seeds, PADDING))

    def __call__(self, logits: Any, targets: Any, seeds: Any) -> Any:
        """The scalar objective (an array of ``logits``' namespace, differentiable)."""
        is_seed, rest, xp = self._masks(logits, targets, seeds)
        scale = self._scale(is_seed, rest, xp)
        per_pixel = 0.0
        if self.divergence is not None:
            per_pixel = self.divergence(targets, logits) * rest
        if self.seed_divergence is not None:
            per_pixel = per_pixel + self.seed_divergence(self._seed_labels(seeds, is_seed, xp), logits)
        return xp.sum(per_pixel * scale)

    def gradient(self, logits: Any, targets: Any, seeds: Any) -> Any:
        """Analytic ``∂objective/∂logits``, shape ``(N, ..., L)``."""
        is_seed, rest, xp = self._masks(logits, targets, seeds)
        scale = self._scale(is_seed, rest, xp)
        grad = xp.zeros_like(logits)
        if self.divergence is not None:
            grad = self.divergence.gradient(targets, logits) * rest[..., None]
        if self.seed_divergence is not None:
            grad = grad + self.seed_divergence.gradient(self._seed_labels(seeds, is_seed, xp), logits)
        return grad * (scale[..., None] if not isinstance(scale, float) else scale)
