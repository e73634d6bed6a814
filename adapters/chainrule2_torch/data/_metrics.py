"""Confusion-matrix segmentation metrics: per-class IoU, mIoU, pixel accuracy.

Conventions: pixels whose *truth* is 255 (ignored, e.g. GrabCut's boundary band, CamVid void,
VOC boundaries), 254 (padding) or in ``ignore`` are not counted. A class absent from both the
prediction and the truth over everything accumulated has IoU = NaN, and the mIoU is the mean over
the classes with a defined IoU (the usual "present classes" convention; with VOC val every class
is present, so this equals the plain mean).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from chainrule2.constants import IGNORED_LABELS

__all__ = ["Scores", "confusion_matrix", "evaluate", "scores"]


class Scores(NamedTuple):
    """Segmentation quality.

    Attributes
    ----------
    iou : ndarray (C,) float64
        Per-class IoU, NaN for classes absent from prediction and truth.
    miou : float
        Mean of the defined per-class IoUs (NaN when none is defined).
    pixel_accuracy : float
        Correct / counted pixels (NaN when no pixel counted).
    confusion : ndarray (C, C) int64
        ``confusion[t, p]`` = number of pixels of truth ``t`` predicted ``p``.
    class_names : tuple of str or None
    """

    iou: np.ndarray
    miou: float
    pixel_accuracy: float
    confusion: np.ndarray
    class_names: tuple[str, ...] | None = None

    def as_dict(self, scale: float = 1.0) -> dict:
        """JSON-friendly dict (NaN as ``None``); every value multiplied by ``scale`` (100: percent)."""

        def f(v: float) -> float | None:
            return None if np.isnan(v) else float(v) * scale

        names = self.class_names or tuple(str(k) for k in range(self.iou.size))
        return {
            "miou": f(self.miou),
            "pixel_accuracy": f(self.pixel_accuracy),
            "iou": {n: f(v) for n, v in zip(names, self.iou, strict=True)},
        }


def confusion_matrix(
    prediction: np.ndarray, truth: np.ndarray, num_classes: int, ignore: Iterable[int] = IGNORED_LABELS
) -> np.ndarray:
    """Confusion matrix of one (or a stack of) label maps.

    Parameters
    ----------
    prediction : ndarray (..., H, W) int
        Predicted class ids in ``[0, num_classes)`` (on counted pixels).
    truth : ndarray (..., H, W) int
        Ground truth; values in ``ignore`` (default 254 and 255) are not counted.
    num_classes : int
    ignore : iterable of int
        Truth values to skip (add e.g. CamVid's 11 if the mask was not remapped).

    Returns
    -------
    ndarray (C, C) int64
        ``[t, p]`` counts; sum them over items to accumulate over a data set.

    Examples
    --------
    >>> confusion_matrix(np.array([[0, 1]]), np.array([[0, 255]]), 2).tolist()
    [[1, 0], [0, 0]]
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction: expected the shape of truth {truth.shape}, got {prediction.shape}")
    valid = ~np.isin(truth, np.asarray(list(ignore), dtype=np.int64))
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    if (outside := (t < 0) | (t >= num_classes)).any():
        bad = np.unique(t[outside])[:5].tolist()
        raise ValueError(f"truth: expected class ids in [0, {num_classes}) or ignored values, got {bad}")
    if (outside := (p < 0) | (p >= num_classes)).any():
        bad = np.unique(p[outside])[:5].tolist()
        raise ValueError(f"prediction: expected class ids in [0, {num_classes}) on counted pixels, got {bad}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> Scores:
    """IoU per class, mIoU (over classes with a defined IoU) and pixel accuracy from a confusion matrix."""
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion: expected a square (C, C) matrix, got shape {cm.shape}")
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - np.diag(cm)
    iou = np.full(cm.shape[0], np.nan)
    present = union > 0
    iou[present] = tp[present] / union[present]
    miou = float(iou[present].mean()) if present.any() else float("nan")
    total = cm.sum()
    acc = float(tp.sum() / total) if total else float("nan")
    names = tuple(class_names) if class_names is not None else None
    if names is not None and len(names) != cm.shape[0]:
        raise ValueError(f"class_names: expected {cm.shape[0]} names, got {len(names)}")
    return Scores(iou=iou, miou=miou, pixel_accuracy=acc, confusion=cm, class_names=names)


def evaluate(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    ignore: Iterable[int] = IGNORED_LABELS,
    class_names: Sequence[str] | None = None,
) -> Scores:
    """Accumulate ``(prediction, truth)`` pairs (any sizes) over a data set and score them.

    Returns
    -------
    Scores
    """
    ignore = tuple(ignore)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for prediction, truth in pairs:
        cm += confusion_matrix(prediction, truth, num_classes, ignore)
    return scores(cm, class_names)
