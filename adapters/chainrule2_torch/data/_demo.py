"""A small generated data set that needs no files (the README demo on a fresh clone)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ._readers import _make
from ._sample import Sample

__all__ = ["DEMO_CLASSES", "make_demo_dataset"]

DEMO_CLASSES = ("background", "disk", "box")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], ``(size, size)``: bilinear upsampling of a coarse random grid."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0


def _one(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # background: greenish/greyish, low-frequency blotches plus fine grain
    base = np.array([90.0, 120.0, 80.0]) + rng.uniform(-30, 30, size=3)
    blotch = _smooth_noise(rng, size, 6)[..., None] * 60.0 - 30.0
    image = base + blotch
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 3))
        cy, cx = rng.uniform(0.2, 0.8, size=2) * size
        ry, rx = rng.uniform(0.08, 0.22, size=2) * size
        if k == 1:  # disks/ellipses: warm colours, stripes
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            colour = np.array([200.0, 90.0, 50.0]) + rng.uniform(-35, 35, size=3)
            theta, freq = rng.uniform(0, np.pi), rng.uniform(0.5, 0.9)
            texture = 25.0 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))
        else:  # boxes: cold colours, checkerboard
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            colour = np.array([60.0, 90.0, 200.0]) + rng.uniform(-35, 35, size=3)
            period = int(rng.integers(3, 7))
            texture = 20.0 * (((yy // period + xx // period) % 2) * 2.0 - 1.0)
        image[inside] = colour + texture[inside][:, None]
        mask[inside] = k
    image += rng.normal(0.0, 12.0, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def make_demo_dataset(
    n: int = 24, size: int = 96, *, seed: int = 0, supervision: str = "scribbles", length: float = 1.0
) -> list[Sample]:
    """Generate ``n`` textured images with 3 classes (background, disk, box), masks and seeds.

    Each image has a blotchy, grainy background and 1–3 overlapping shapes: warm striped
    ellipses (class 1) and cold checkered boxes (class 2), plus Gaussian noise. Seeds are
    synthesised from the masks (see :func:`~chainrule2_torch.data.synthesize_scribbles`).
    Deterministic for a given ``seed``; about 20 ms per 96×96 image.

    Parameters
    ----------
    n : int
        Number of images (ids ``demo000``, ``demo001``, ...).
    size : int
        Side of the square images.
    seed : int
        Seed of the images and the seeds.
    supervision : {"scribbles", "clicks", "none"}
    length : float
        Scribble length fraction.

    Returns
    -------
    list of Sample
        ``num_classes = 3``, ``class_names = DEMO_CLASSES``.

    Examples
    --------
    >>> data = make_demo_dataset(4, 32)
    >>> data[0].image.shape, data[0].num_classes
    ((32, 32, 3), 3)
    """
    if int(n) < 1 or int(size) < 8:
        raise ValueError(f"n, size: expected n >= 1 and size >= 8, got n={n}, size={size}")
    if supervision not in ("scribbles", "clicks", "none"):
        raise ValueError(f"supervision: expected 'scribbles', 'clicks' or 'none', got {supervision!r}")
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(int(n)):
        image, mask = _one(rng, int(size))
        sample = _make(f"demo{i:03d}", image, mask, None, num_classes=3, class_names=DEMO_CLASSES, size=None,
                       supervision=supervision, length=length, seed=seed)  # fmt: skip
        if sample is not None:
            samples.append(sample)
    return samples
