"""The sample record every reader returns, the package's warning category and the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chainrule2.constants import PADDING, UNLABELED

__all__ = ["DATA_ROOT_ENV", "DataWarning", "NoSeedsWarning", "Sample", "data_root"]

#: How far a soft target's sum over the classes may be from 1 at a pixel (0 marks "no target"):
#: float16 storage rounds each probability to 11 significant bits.
_SOFT_SUM_TOLERANCE = 1e-2

#: Environment variable that overrides :func:`data_root`.
DATA_ROOT_ENV = "CHAINRULE2_DATA"

#: Appended to every "data not found" error of the readers and of ``load_splits``.
_NOT_FOUND_HINT = (
    f"pass the data set's folder as root= (CLI: --root), or set the {DATA_ROOT_ENV} environment variable to "
    "the folder that holds the data sets (default: ../shared/data next to the repository)"
)


class DataWarning(UserWarning):
    """Base category of every warning raised by :mod:`chainrule2_torch.data`."""


class NoSeedsWarning(DataWarning):
    """An item had no seed pixel and was skipped (it cannot contribute a partial cross-entropy)."""


def data_root() -> Path:
    """Where the shared real data sets live: the default of the example scripts' ``--root`` (``<data root>/<name>``).

    Resolution order: the environment variable ``CHAINRULE2_DATA`` if set; otherwise
    ``<repository root>/../shared/data`` (the repository's sibling ``shared/data`` folder). The path is
    returned whether or not it exists; readers raise an error naming it when it is missing.

    Returns
    -------
    pathlib.Path
        The data root (contains ``grabcut_scribbles/``, ``weizmann_horse/``, ...).
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    # adapters/chainrule2_torch/data/_sample.py -> parents[3] is the repository root
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _frozen(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Sample:
    """One image with its seeds and (optional) ground truth. Immutable: arrays are read-only views.

    Parameters
    ----------
    id : str
        Stable item id (file stem), used to cache stage-A labels per item.
    image : ndarray (H, W, 3) uint8
        RGB image.
    seeds : ndarray (H, W) uint8
        Partial labels: a class id in ``[0, num_classes)`` on seed pixels, 255 (unlabeled) elsewhere,
        254 (padding) outside the image after augmentation.
    mask : ndarray (H, W) uint8 or None
        Ground truth for evaluation: class ids, 255 = ignored (void, boundary band), 254 = padding.
    num_classes : int
        Number of classes ``C`` (ignore values excluded).
    class_names : tuple of str
        ``C`` names, index = class id.
    target : ndarray (H, W) uint8, ndarray (H, W, C) float, or None
        A per-item training target carried with the sample, e.g. its cached stage-A labels:
        :class:`Augmentation` transforms it jointly with the image and :func:`collate` stacks it
        into ``Batch.targets``. Labels take the values of ``mask``. A soft target (e.g. mean-field
        stage-A labels) is a distribution over the ``C = num_classes`` classes at each pixel
        (float16/32/64, entries >= 0, summing to 1 within 0.01); a pixel
        whose entries are all 0 carries no target and is ignored by the loss: that is how soft
        targets mark padding (254 for labels). The dtype is kept as given.

    Examples
    --------
    >>> import numpy as np
    >>> s = Sample("a", np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 255, np.uint8), None, 2, ("bg", "fg"))
    >>> s.shape
    (4, 4)
    """

    id: str
    image: np.ndarray
    seeds: np.ndarray
    mask: np.ndarray | None
    num_classes: int
    class_names: tuple[str, ...]
    target: np.ndarray | None = None

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image of {self.id!r}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype} "
                "(use chainrule2_torch.data.to_rgb to convert grayscale/RGBA)"
            )
        if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
            raise ValueError(f"num_classes of {self.id!r}: expected a positive int, got {self.num_classes!r}")
        if self.num_classes > PADDING:
            raise ValueError(f"num_classes of {self.id!r}: expected at most {PADDING}, got {self.num_classes}")
        names = tuple(str(n) for n in self.class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"class_names of {self.id!r}: expected {self.num_classes} names, got {len(names)}")
        hw = image.shape[:2]
        seeds = np.asarray(self.seeds)
        if seeds.shape != hw:
            raise ValueError(f"seeds of {self.id!r}: expected shape {hw} (the image's H, W), got {seeds.shape}")
        seeds = _check_labels(seeds, self.num_classes, f"seeds of {self.id!r}")
        mask = self.mask
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != hw:
                raise ValueError(f"mask of {self.id!r}: expected shape {hw} (the image's H, W), got {mask.shape}")
            mask = _check_labels(mask, self.num_classes, f"mask of {self.id!r}")
            mask = _frozen(mask)
        target = self.target
        if target is not None:
            target = np.asarray(target)
            if target.shape != hw and not np.issubdtype(target.dtype, np.floating):
                raise ValueError(f"target of {self.id!r}: expected shape {hw} (the image's H, W), got {target.shape}")
            if np.issubdtype(target.dtype, np.floating):
                target = _frozen(_check_soft(target, hw, self.num_classes, f"target of {self.id!r}"))
            else:
                target = _frozen(_check_labels(target, self.num_classes, f"target of {self.id!r}"))
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "image", _frozen(image))
        object.__setattr__(self, "seeds", _frozen(seeds))
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "id", str(self.id))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.shape[:2]

    @property
    def num_seeds(self) -> int:
        """Number of seed pixels (labels < ``num_classes``)."""
        return int(np.count_nonzero(self.seeds < self.num_classes))

    def replace(self, **changes: object) -> Sample:
        """A copy with some fields replaced (validated again)."""
        fields = {k: getattr(self, k) for k in ("id", "image", "seeds", "mask", "num_classes", "class_names", "target")}
        fields.update(changes)
        return Sample(**fields)

    def __repr__(self) -> str:
        h, w = self.shape
        return (
            f"Sample(id={self.id!r}, shape=({h}, {w}), num_classes={self.num_classes}, "
            f"seeds={self.num_seeds} px, mask={'yes' if self.mask is not None else 'no'})"
        )


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise ValueError(f"{name}: expected labels >= 0, got minimum {lo}")
        if hi >= num_classes:
            bad = np.unique(labels[(labels >= num_classes) & (labels != UNLABELED) & (labels != PADDING)])
            if bad.size:
                raise ValueError(
                    f"{name}: expected class ids in [0, {num_classes}) or {UNLABELED} (unlabeled/ignored) or "
                    f"{PADDING} (padding), got {bad[:5].tolist()}"
                )
    return labels.astype(np.uint8, copy=False)


def _check_soft(target: np.ndarray, hw: tuple[int, int], num_classes: int, name: str) -> np.ndarray:
    """A soft target ``(H, W, C)``: finite entries >= 0 summing to 1 (or all 0: no target) at every pixel."""
    if target.shape != (*hw, num_classes):
        raise ValueError(
            f"{name}: expected a soft target of shape {(*hw, num_classes)} (H, W, num_classes), got {target.shape}"
        )
    if target.size:
        if not np.all(np.isfinite(target)) or float(target.min()) < 0:
            raise ValueError(f"{name}: expected finite probabilities >= 0")
        total = target.sum(axis=-1, dtype=np.float64)
        off = np.abs(total - 1.0)[total != 0]
        if off.size and float(off.max()) > _SOFT_SUM_TOLERANCE:
            raise ValueError(
                f"{name}: expected probabilities summing to 1 (or all 0: no target) at every pixel, "
                f"off by up to {float(off.max()):.3g}"
            )
    return target
