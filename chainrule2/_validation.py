"""Checks at the public boundary: each names the argument and shows expected vs got.

All checks work on any array-API array (numpy, array_api_strict, torch); they never
convert or coerce their input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from chainrule2.constants import IGNORED_LABELS, MAX_CLASSES


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def check_logits(logits: Any, name: str = "logits", min_ndim: int = 2) -> Any:
    """Return the array namespace of ``logits`` after checking dtype, rank and finiteness."""
    try:
        xp = array_namespace(logits)
    except TypeError:
        raise TypeError(f"{name}: expected an array (numpy, torch, array-API), got {type(logits).__name__}") from None
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(f"{name}: expected a real floating dtype, got {logits.dtype}")
    if logits.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions (N, ..., L), got shape {_shape(logits)}")
    if _shape(logits)[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {_shape(logits)}")
    if logits.shape[-1] < 1:
        raise ValueError(f"{name}: expected at least one label on the last axis, got shape {_shape(logits)}")
    if not bool(xp.all(xp.isfinite(logits))):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return xp


def check_num_classes(num_classes: int, name: str = "logits") -> int:
    """``num_classes`` after checking that the reserved seed values 254/255 cannot be class ids.

    ``name`` is what the count comes from (e.g. ``"logits"``: the size of its class axis).
    """
    if num_classes > MAX_CLASSES:
        raise ValueError(
            f"{name}: expected at most {MAX_CLASSES} classes (254/255 are reserved for padding/unlabeled seeds), "
            f"got {num_classes}"
        )
    return num_classes


def check_labels(labels: Any, num_classes: int, name: str = "labels", allow_ignored: bool = True) -> None:
    """Integer labels in [0, num_classes), plus the ignore values 254/255 when allowed.

    With ``allow_ignored``, ``num_classes`` may not exceed :data:`~chainrule2.constants.MAX_CLASSES`
    (otherwise 254/255 would be class ids and ignore values at once).
    """
    if allow_ignored:
        check_num_classes(int(num_classes), f"{name} (num_classes)")
    xp = array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"{name}: expected an integer dtype, got {labels.dtype}")
    valid = (labels >= 0) & (labels < num_classes)
    if allow_ignored:
        for value in IGNORED_LABELS:
            valid = valid | (labels == value)
    if not bool(xp.all(valid)):
        bad = labels[~valid]
        allowed = f"[0, {num_classes})" + (" or 254/255" if allow_ignored else "")
        raise ValueError(f"{name}: expected labels in {allowed}, got {int(bad[0])}")


def check_labelling(labels: Any, shape: tuple[int, ...], num_labels: int, name: str = "labels") -> Any:
    """A host labelling of ``shape`` with integer values in [0, num_labels) (returned as a numpy array)."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"{name}: expected labels of shape {tuple(shape)}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer dtype, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"{name}: expected labels in [0, {num_labels}), got {int(labels.min())}..{int(labels.max())}")
    return labels


def check_positive(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value}")
    return value


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value
