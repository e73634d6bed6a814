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
from typing import Any, Protocol, runtime_checkable

from array_api_compat import array_namespace, device

from chainrule2.constants import PADDING
from chainrule2.validation import (
    check_choice,
    check_error_prob,
    check_int,
    check_labels,
    check_logits,
    check_num_classes,
)

__all__ = [
    "CrossEntropy",
    "CollisionCrossEntropy",
    "KL",
    "Squared",
    "RobustCrossEntropy",
    "SeedAwareObjective",
    "log_softmax",
    "softmax",
    "robust_log_likelihood",
]


@runtime_checkable
class Divergence(Protocol):
    """Per-pixel d(target ‖ softmax(logits)), no reduction, differentiable in ``logits``.

    ``target`` is integer labels ``(N, ...)`` (254/255 give 0) or soft targets ``(N, ..., L)``.
    (Defined here, beside the divergences, and exported as ``chainrule2.Divergence``.)
    """

    def __call__(self, target: Any, logits: Any) -> Any: ...

    def label_costs(self, logits: Any) -> Any:
        """``d(one_hot(k) ‖ softmax(logits))`` for every label k: shape ``(N, ..., L)``."""

    def gradient(self, target: Any, logits: Any) -> Any:
        """Analytic ``∂d/∂logits`` (for models without autograd), shape ``(N, ..., L)``."""


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
    """(soft target ``(N, ..., L)``, valid-pixel mask ``(N, ...)``) after checking ``target``
    against ``logits``; the logits themselves are not scanned again (the caller has checked them)."""
    xp = array_namespace(logits)
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


class _CheckedDivergence:
    """The public methods of the divergences below: check the logits once (dtype, rank, a scan for
    NaN/inf), then run the unchecked kernels ``_value``/``_gradient`` on the target's distribution.

    :class:`SeedAwareObjective` checks the logits once per call and calls the kernels directly.
    """

    def _logits(self, logits: Any) -> Any:
        """The logits as the kernels take them, after the checks that need no scan (a class count)."""
        return logits

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        raise NotImplementedError

    def _gradient(self, t: Any, valid: Any, logits: Any) -> Any:
        raise NotImplementedError

    def _label_costs(self, logits: Any) -> Any:
        raise NotImplementedError

    def __call__(self, target: Any, logits: Any) -> Any:
        check_logits(logits)
        logits = self._logits(logits)
        return self._value(*_as_distribution(target, logits), logits)

    def label_costs(self, logits: Any) -> Any:
        check_logits(logits)
        return self._label_costs(self._logits(logits))

    def gradient(self, target: Any, logits: Any) -> Any:
        check_logits(logits)
        logits = self._logits(logits)
        return self._gradient(*_as_distribution(target, logits), logits)


@dataclass(frozen=True)
class CrossEntropy(_CheckedDivergence):
    """d(t ‖ S) = −Σ_k t_k log S_k. Equals :class:`KL` plus the entropy of t (0 for one-hot t)."""

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        return -xp.sum(t * log_softmax(logits), axis=-1) * valid

    def _label_costs(self, logits: Any) -> Any:
        return -log_softmax(logits)

    def _gradient(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        return (softmax(logits) * xp.sum(t, axis=-1, keepdims=True) - t) * valid[..., None]


@dataclass(frozen=True)
class KL(CrossEntropy):
    """d(t ‖ S) = Σ_k t_k log(t_k / S_k); zero iff S = t. Same gradient and label costs as CE."""

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        return xp.sum(_xlogx(t) - t * log_softmax(logits), axis=-1) * valid


@dataclass(frozen=True)
class CollisionCrossEntropy(_CheckedDivergence):
    """Collision cross-entropy (Zhang & Boykov 2023): d(t ‖ S) = −log Σ_k t_k S_k.

    −log of the probability that a class drawn from t and one drawn from S collide. Properties
    (tested in tests/unit/test_collision_ce.py), for a distribution t:

    * d ≥ 0, and d(one_hot(k) ‖ S) = −log S_k: it equals :class:`CrossEntropy` for one-hot
      targets (same label costs); d = 0 only when t = S = one_hot(k), which a softmax never
      reaches exactly;
    * symmetric: d(t ‖ S) = d(S ‖ t);
    * for soft t it is **not** zero at S = t (d(t ‖ t) = −log Σ t_k²); it is minimised by the
      one-hot S on argmax t, at −log max_k t_k;
    * an uninformative (uniform) t gives the constant log L and a zero gradient, so uncertain
      pseudo-labels pull less than under CE;
    * the gradient in the logits is ``S − q`` with the posterior q_k = t_k S_k / Σ_j t_j S_j.

    Computed in log space (finite for any finite logits). A target row of zeros gives 0.
    """

    def _log_terms(self, t: Any, logits: Any) -> tuple[Any, Any, Any, Any]:
        """(log-softmax, shift a, Σ_k t_k exp(log S_k − a), whether that sum is > 0)."""
        xp = array_namespace(logits)
        logp = log_softmax(logits)
        masked = xp.where(t > 0, logp, xp.full_like(logp, -math.inf))
        a = xp.max(masked, axis=-1, keepdims=True)
        a = xp.where(xp.isfinite(a), a, xp.zeros_like(a))
        total = xp.sum(t * xp.exp(masked - a), axis=-1)
        return logp, a, total, total > 0

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        _, a, total, positive = self._log_terms(t, logits)
        log_total = a[..., 0] + xp.log(xp.where(positive, total, xp.ones_like(total)))
        return xp.where(positive, -log_total, xp.zeros_like(log_total)) * valid

    def _label_costs(self, logits: Any) -> Any:
        return -log_softmax(logits)

    def _gradient(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        logp, a, total, positive = self._log_terms(t, logits)
        masked = xp.where(t > 0, logp, xp.full_like(logp, -math.inf))
        safe = xp.where(positive, total, xp.ones_like(total))[..., None]
        posterior = t * xp.exp(masked - a) / safe
        keep = xp.astype(positive, logits.dtype) * valid
        return (xp.exp(logp) - posterior) * keep[..., None]


@dataclass(frozen=True)
class Squared(_CheckedDivergence):
    """Euclidean on probabilities: d(t ‖ S) = ½ ‖t − S‖². With it, stage B is plain back-propagation."""

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        return 0.5 * xp.sum((t - softmax(logits)) ** 2, axis=-1) * valid

    def _label_costs(self, logits: Any) -> Any:
        xp = array_namespace(logits)
        s = softmax(logits)
        return 0.5 * (xp.sum(s * s, axis=-1, keepdims=True) - 2.0 * s + 1.0)

    def _gradient(self, t: Any, valid: Any, logits: Any) -> Any:
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
class RobustCrossEntropy(_CheckedDivergence):
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
        check_int(self.num_classes, "num_classes", minimum=2)
        check_error_prob(self.error_prob, self.num_classes)

    def _logits(self, logits: Any) -> Any:
        if int(logits.shape[-1]) != self.num_classes:
            raise ValueError(
                f"logits: expected {self.num_classes} classes on the last axis (num_classes), "
                f"got {int(logits.shape[-1])}"
            )
        return logits

    def _loglik(self, logits: Any) -> Any:
        return robust_log_likelihood(log_softmax(logits), float(self.error_prob), self.num_classes)

    def _value(self, t: Any, valid: Any, logits: Any) -> Any:
        xp = array_namespace(logits)
        return -xp.sum(t * self._loglik(logits), axis=-1) * valid

    def _label_costs(self, logits: Any) -> Any:
        return -self._loglik(logits)

    def _gradient(self, t: Any, valid: Any, logits: Any) -> Any:
        loglik = self._loglik(logits)
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

    divergence: Divergence | None
    seed_divergence: Divergence | None = CrossEntropy()
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
        per_pixel: Any = 0.0
        if self.divergence is not None:
            per_pixel = _checked_term(self.divergence, "value", targets, logits) * rest
        if self.seed_divergence is not None:
            seed_labels = self._seed_labels(seeds, is_seed, xp)
            per_pixel = per_pixel + _checked_term(self.seed_divergence, "value", seed_labels, logits, seeds=True)
        return xp.sum(per_pixel * scale)

    def gradient(self, logits: Any, targets: Any, seeds: Any) -> Any:
        """Analytic ``∂objective/∂logits``, shape ``(N, ..., L)``."""
        is_seed, rest, xp = self._masks(logits, targets, seeds)
        scale = self._scale(is_seed, rest, xp)
        grad = xp.zeros_like(logits)
        if self.divergence is not None:
            grad = _checked_term(self.divergence, "gradient", targets, logits) * rest[..., None]
        if self.seed_divergence is not None:
            seed_labels = self._seed_labels(seeds, is_seed, xp)
            grad = grad + _checked_term(self.seed_divergence, "gradient", seed_labels, logits, seeds=True)
        return grad * (scale[..., None] if not isinstance(scale, float) else scale)


def _checked_term(divergence: Divergence, what: str, target: Any, logits: Any, seeds: bool = False) -> Any:
    """``divergence(target, logits)`` (``what="value"``) or its gradient, on logits the caller has checked.

    The divergences of this module (unless a subclass overrides the public method) skip their own
    scan of the logits; with ``seeds``, ``target`` is the seed labels of checked seeds and its label
    check is skipped too. Any other divergence is called as it is.
    """
    public = "__call__" if what == "value" else "gradient"
    if isinstance(divergence, _CheckedDivergence) and getattr(type(divergence), public) is getattr(
        _CheckedDivergence, public
    ):
        logits = divergence._logits(logits)
        t, valid = _one_hot(target, int(logits.shape[-1]), logits) if seeds else _as_distribution(target, logits)
        kernel = divergence._value if what == "value" else divergence._gradient
        return kernel(t, valid, logits)
    return divergence(target, logits) if what == "value" else divergence.gradient(target, logits)
