"""Resizing (stroke-preserving for seeds) and seeded joint augmentation of samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from chainrule2.constants import PADDING, UNLABELED

from ._sample import Sample

__all__ = ["Augmentation", "resize_image", "resize_labels", "resize_sample", "resize_seeds", "target_size"]

Size = tuple[int, int]


def target_size(shape: tuple[int, int], size: int | Size | None) -> Size:
    """The ``(H, W)`` to resize ``shape`` to: ``size`` itself for a pair, for an int the size whose
    longer side is ``size`` (aspect ratio kept), ``shape`` for ``None``."""
    h, w = int(shape[0]), int(shape[1])
    if size is None:
        return h, w
    if isinstance(size, (int, np.integer)):
        if size < 1:
            raise ValueError(f"size: expected a positive int or (H, W), got {size}")
        s = float(size) / max(h, w)
        return max(1, int(round(h * s))), max(1, int(round(w * s)))
    if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
        raise ValueError(f"size: expected (H, W) of positive ints or an int, got {size!r}")
    return int(size[0]), int(size[1])


def resize_image(image: np.ndarray, size: Size) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size = (H', W')`` with PIL's antialiased bilinear filter
    (area-like when shrinking)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BILINEAR))


def resize_labels(labels: np.ndarray, size: Size) -> np.ndarray:
    """Resize a label map ``(H, W)`` uint8 with nearest neighbour (no new values appear)."""
    h, w = size
    if labels.shape[:2] == (h, w):
        return labels
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).resize((w, h), Image.Resampling.NEAREST)
    )


def resize_seeds(seeds: np.ndarray, size: Size, num_classes: int) -> np.ndarray:
    """Resize sparse seeds ``(H, W)`` keeping thin strokes (for real, human scribbles).

    Nearest-neighbour shrinking drops most pixels of a 1-3 px stroke. Here every class's stroke
    map is resized with an area (box) filter and a target pixel is seeded when any class covers
    part of it (a max-pool); where several classes cover it, the one covering most wins.
    Enlarging behaves like nearest neighbour. Values outside ``[0, num_classes)`` stay 255.

    Returns
    -------
    ndarray (H', W') uint8
    """
    h, w = size
    if seeds.shape[:2] == (h, w):
        return seeds
    out = np.full((h, w), UNLABELED, dtype=np.uint8)
    best = np.zeros((h, w), dtype=np.float32)
    for k in np.unique(seeds):
        if k >= num_classes:
            continue
        binary = Image.fromarray(((seeds == k) * 255).astype(np.uint8))
        cover = np.asarray(binary.resize((w, h), Image.Resampling.BOX), dtype=np.float32)
        better = cover > best
        out[better] = k
        best[better] = cover[better]
    return out


def resize_sample(sample: Sample, size: int | Size | None, *, seeds: str = "strokes") -> Sample:
    """Resize image (bilinear), mask (nearest) and seeds (``"strokes"``: :func:`resize_seeds`,
    ``"nearest"``: nearest neighbour). Synthetic seeds should rather be synthesised again from
    the resized mask (the readers do that)."""
    hw = target_size(sample.shape, size)
    if hw == sample.shape:
        return sample
    if seeds == "strokes":
        new_seeds = resize_seeds(sample.seeds, hw, sample.num_classes)
    elif seeds == "nearest":
        new_seeds = resize_labels(sample.seeds, hw)
    else:
        raise ValueError(f"seeds: expected 'strokes' or 'nearest', got {seeds!r}")
    mask = None if sample.mask is None else resize_labels(sample.mask, hw)
    return sample.replace(image=resize_image(sample.image, hw), seeds=new_seeds, mask=mask)


@dataclass(frozen=True)
class Augmentation:
    """Seeded joint random scale, crop and horizontal flip of image, seeds, mask and cached labels.

    The image is scaled bilinearly, label maps (seeds, mask, pseudo-labels) with nearest
    neighbour; where the crop leaves the scaled image, labels are 254 (padding) and the image
    is ``image_fill`` (``"mean"``: the item's per-channel mean, or a constant 0..255).

    A soft ``target`` ``(H, W, C)`` takes exactly the source pixels the label maps take (the
    nearest-neighbour map of the labels, so its arg-max is the augmented arg-max) and is all 0
    outside the scaled image: the soft targets' padding, which
    :class:`~chainrule2_torch.SeedAwareLoss` ignores as it ignores 254.

    Parameters
    ----------
    crop_size : (int, int)
        Output ``(H, W)``.
    scale_range : (float, float)
        Uniform random scale factor range (the paper's setting uses (0.5, 2.0)).
    flip : bool
        Random horizontal flip with probability 1/2.
    image_fill : "mean" or float
        Image padding value.
    max_tries : int
        Crops are redrawn (up to this many times) while the crop holds no seed pixel.

    Examples
    --------
    >>> aug = Augmentation(crop_size=(64, 64))
    >>> # sample2, pseudo2 = aug(sample, np.random.default_rng(0), pseudo=cached_labels)
    """

    crop_size: Size
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    image_fill: str | float = "mean"
    max_tries: int = 10

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size: expected (H, W) of positive ints, got {self.crop_size!r}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range: expected 0 < low <= high, got {self.scale_range!r}")

    def __call__(
        self, sample: Sample, rng: np.random.Generator, pseudo: np.ndarray | None = None
    ) -> tuple[Sample, np.ndarray | None]:
        """Augment ``sample`` (with its ``mask`` and ``target``) and ``pseudo`` (extra labels ``(H, W)``),
        all with the same transform.

        Returns
        -------
        (Sample, ndarray (crop_H, crop_W) uint8 or None)
        """
        if pseudo is not None:
            pseudo = np.asarray(pseudo)
            if pseudo.shape != sample.shape:
                raise ValueError(f"pseudo: expected shape {sample.shape} (the image's H, W), got {pseudo.shape}")
        lo, hi = self.scale_range
        s = float(rng.uniform(lo, hi))
        h, w = sample.shape
        hw = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        image = resize_image(sample.image, hw)
        labels = [resize_labels(sample.seeds, hw)]
        labels += [resize_labels(sample.mask, hw)] if sample.mask is not None else []
        labels += [resize_labels(pseudo.astype(np.uint8), hw)] if pseudo is not None else []
        soft = sample.target is not None and sample.target.ndim == 3
        if sample.target is not None:
            labels += [_resize_soft(sample.target, hw) if soft else resize_labels(sample.target, hw)]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            labels = [a[:, ::-1] for a in labels]
        ch, cw = self.crop_size
        for _ in range(max(1, self.max_tries)):
            y0 = int(rng.integers(min(0, hw[0] - ch), max(0, hw[0] - ch) + 1))
            x0 = int(rng.integers(min(0, hw[1] - cw), max(0, hw[1] - cw) + 1))
            seeds = _crop(labels[0], y0, x0, ch, cw, PADDING)
            if np.any(seeds < sample.num_classes):
                break
        fill = image.reshape(-1, 3).mean(axis=0) if self.image_fill == "mean" else float(self.image_fill)
        out_image = _crop(image, y0, x0, ch, cw, np.rint(fill).astype(np.uint8))
        cropped = [_crop(a, y0, x0, ch, cw, 0 if a.ndim == 3 else PADDING) for a in labels]
        rest = iter(cropped[1:])
        mask = next(rest) if sample.mask is not None else None
        new_pseudo = next(rest) if pseudo is not None else None
        target = next(rest) if sample.target is not None else None
        return sample.replace(image=out_image, seeds=cropped[0], mask=mask, target=target), new_pseudo


def _nearest_source(shape: tuple[int, int], size: Size) -> np.ndarray:
    """``(H', W')`` flat index of the source pixel :func:`resize_labels` takes for each target pixel
    (PIL's nearest filter on an image of pixel indices, so both maps agree by construction)."""
    h, w = shape
    index = np.arange(h * w, dtype=np.int32).reshape(h, w)
    return np.asarray(Image.fromarray(index).resize((size[1], size[0]), Image.Resampling.NEAREST))


def _resize_soft(target: np.ndarray, size: Size) -> np.ndarray:
    """Resize a soft target ``(H, W, C)`` with the nearest-neighbour map of the label maps."""
    h, w = target.shape[:2]
    if (h, w) == tuple(size):
        return target
    return target.reshape(h * w, -1)[_nearest_source((h, w), size)]


def _crop(a: np.ndarray, y0: int, x0: int, ch: int, cw: int, fill: object) -> np.ndarray:
    """Crop ``a`` at ``(y0, x0)`` of size ``(ch, cw)``; negative offsets / overhang are padded."""
    out = np.empty((ch, cw) + a.shape[2:], dtype=a.dtype)
    out[...] = fill
    h, w = a.shape[:2]
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(h, y0 + ch), min(w, x0 + cw)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = a[sy0:sy1, sx0:sx1]
    return out
