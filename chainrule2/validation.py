"""The argument checks of chainrule2 and chainrule2_torch, in one place.

Every check names the argument and says what was expected and what it got
(``"steps: expected an int >= 1, got 0"``); it returns the checked value (converted where it says
so) and raises ``TypeError`` for a value of the wrong kind, ``ValueError`` for one of the right kind
out of its range. The array checks work on any array-API array (numpy, array_api_strict, torch) and
never convert or coerce their input.

Checks run once, at the public boundary: a public function checks its arguments, and the private
helpers it calls afterwards trust them (e.g. :class:`~chainrule2.divergences.SeedAwareObjective`
scans the logits for NaN/inf once per call, not once per divergence it evaluates; on a GPU each
scan is a device-to-host sync).

Example
-------
>>> check_int(3, "steps")
3
>>> check_positive(0, "trust_weight", allow_zero=True)
0.0
>>> check_int(0, "steps")
Traceback (most recent call last):
    ...
ValueError: steps: expected an int >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

import numpy as np
from array_api_compat import array_namespace

from chainrule2.constants import IGNORED_LABELS, MAX_CLASSES

__all__ = [
    "check_axis",
    "check_choice",
    "check_error_prob",
    "check_instance",
    "check_int",
    "check_labelling",
    "check_labels",
    "check_logits",
    "check_num_classes",
    "check_positive",
    "check_probability",
]

T = TypeVar("T")

#: The scalar types the number checks accept (``bool`` and ``numpy.bool_`` are refused).
REAL_TYPES = (int, float, np.integer, np.floating)
INT_TYPES = (int, np.integer)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


# --- arrays ----------------------------------------------------------------------------------------


def check_logits(logits: Any, name: str = "logits", min_ndim: int = 2) -> Any:
    """Return the array namespace of ``logits`` after checking its dtype, rank and finiteness.

    ``logits`` is ``(N, ..., L)``: a real floating array with at least ``min_ndim`` axes, a
    non-empty batch, at least one label and no NaN or inf. The finiteness scan reads every value
    (a device-to-host sync on a GPU): call it once per public call.

    >>> import numpy as np
    >>> xp = check_logits(np.zeros((1, 2)))                 # the namespace, for the caller's own use
    >>> check_logits(np.array([[0.0, np.nan]]))
    Traceback (most recent call last):
        ...
    ValueError: logits: expected finite values, got NaN or inf
    """
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
    """Integer labels in [0, num_classes), plus the ignore values 254/255 when allowed (any array-API array).

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


def check_labelling(labels: Any, shape: Sequence[int], num_labels: int, name: str = "labels") -> np.ndarray:
    """A host labelling of ``shape`` with integer values in [0, num_labels), returned as a numpy array."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"{name}: expected labels of shape {tuple(shape)}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer dtype, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"{name}: expected labels in [0, {num_labels}), got {int(labels.min())}..{int(labels.max())}")
    return labels


# --- numbers ---------------------------------------------------------------------------------------


@overload
def check_positive(value: Any, name: str, allow_zero: bool = ..., allow_none: Literal[False] = ...) -> float: ...


@overload
def check_positive(value: Any, name: str, allow_zero: bool = ..., *, allow_none: bool) -> float | None: ...


def check_positive(value: Any, name: str, allow_zero: bool = False, allow_none: bool = False) -> float | None:
    """A finite real number > 0 (``>= 0`` with ``allow_zero``), as a float; ``None`` passes with ``allow_none``.

    >>> check_positive(-1, "potts_weight", allow_zero=True)
    Traceback (most recent call last):
        ...
    ValueError: potts_weight: expected a finite number >= 0, got -1.0
    """
    or_none = " or None" if allow_none else ""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, REAL_TYPES):
        raise TypeError(f"{name}: expected a real number{or_none}, got {type(value).__name__}")
    number = float(value)
    ok = number >= 0 if allow_zero else number > 0
    if not math.isfinite(number) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}{or_none}, got {number}")
    return number


def check_probability(
    value: Any, name: str, upper: float = 1.0, *, upper_name: str | None = None, context: str = ""
) -> float:
    """A real number in the open interval ``(0, upper)``, as a float.

    ``upper_name`` says where ``upper`` comes from (``"(C-1)/C"`` gives ``(0, (C-1)/C) = (0, 0.75)``
    in the message); ``context`` is appended to what was expected (e.g. ``" for num_classes=4"``).

    >>> check_probability(1.0, "p")
    Traceback (most recent call last):
        ...
    ValueError: p: expected a value in (0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, REAL_TYPES):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    interval = f"(0, {upper:.6g})" if upper_name is None else f"(0, {upper_name}) = (0, {upper:.6g})"
    if not 0.0 < float(value) < upper:
        raise ValueError(f"{name}: expected a value in {interval}{context}, got {value}")
    return float(value)


def check_error_prob(error_prob: Any, num_classes: int, name: str = "error_prob") -> float:
    """ε of a label-noise model over ``num_classes`` classes: in ``(0, (C-1)/C)`` (at (C−1)/C the label says nothing)."""
    upper = (num_classes - 1) / num_classes
    return check_probability(error_prob, name, upper, upper_name="(C-1)/C", context=f" for num_classes={num_classes}")


@overload
def check_int(value: Any, name: str, minimum: int | None = ..., maximum: int | None = ...) -> int: ...


@overload
def check_int(
    value: Any, name: str, minimum: int | None = ..., maximum: int | None = ..., *, allow_none: bool
) -> int | None: ...


def check_int(
    value: Any, name: str, minimum: int | None = 1, maximum: int | None = None, *, allow_none: bool = False
) -> int | None:
    """An int (or numpy integer, returned as an int; never a bool) in ``[minimum, maximum]``.

    ``minimum=None`` / ``maximum=None``: no bound on that side; ``allow_none``: ``None`` passes.

    >>> check_int(1, "num_classes", minimum=2, maximum=254)
    Traceback (most recent call last):
        ...
    ValueError: num_classes: expected an int in [2, 254], got 1
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, INT_TYPES):
        raise TypeError(f"{name}: expected an int{' or None' if allow_none else ''}, got {type(value).__name__}")
    number = int(value)
    if maximum is not None and not (number <= maximum and (minimum is None or number >= minimum)):
        bound = f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name}: expected an int {bound}, got {number}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {number}")
    return number


def check_axis(axis: Any, ndim: int, name: str = "class_axis", context: str = "") -> int:
    """An axis of an array with ``ndim`` axes, in ``[-ndim, ndim)`` (not normalised).

    ``context`` is appended to what was expected (e.g. ``" for logits of shape (2, 3)"``).
    """
    expected = f"{name}: expected an int in [-{ndim}, {ndim}){context}, got {axis!r}"
    if isinstance(axis, bool) or not isinstance(axis, INT_TYPES):
        raise TypeError(expected)
    if not -ndim <= axis < ndim:
        raise ValueError(expected)
    return int(axis)


# --- choices and objects ----------------------------------------------------------------------------


def check_choice(value: T, name: str, choices: Sequence[object]) -> T:
    """``value`` after checking it is one of ``choices``.

    >>> check_choice("sum", "normalization", ("mean", "sum"))
    'sum'
    """
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_instance(value: T, name: str, call: str = "()") -> T:
    """``value`` after checking it is not a class: ``StageA(AlphaExpansion, ...)`` passes every method check.

    ``call`` is how the message says to call the class (``"()"`` or ``"(...)"`` when it needs arguments).

    >>> check_instance(int, "solver")
    Traceback (most recent call last):
        ...
    TypeError: solver: expected an instance, got the class int; call it: int()
    """
    if isinstance(value, type):
        raise TypeError(
            f"{name}: expected an instance, got the class {value.__name__}; call it: {value.__name__}{call}"
        )
    return value
