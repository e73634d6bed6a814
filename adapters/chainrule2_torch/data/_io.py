"""Reading images and label maps from files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["UnreadableImageError", "read_image", "read_labels", "to_rgb"]


class UnreadableImageError(ValueError):
    """A file that cannot be decoded as an image (zero bytes, truncated, not an image), as opposed
    to an image whose content is wrong (a ``ValueError`` too). :func:`~chainrule2_torch.data.read_folder`
    skips an item with such a file, with a warning naming it."""


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Convert an image array to ``(H, W, 3)`` uint8 RGB, explicitly.

    Rules: ``(H, W)`` or ``(H, W, 1)`` grayscale is replicated into three channels; ``(H, W, 2)``
    (gray + alpha) keeps the gray channel; ``(H, W, 4)`` RGBA drops the alpha channel (it is
    *not* composited onto a background); bool becomes 0/255; other integer or float dtypes are
    rescaled linearly from their min..max to 0..255 (16-bit microscopy, float images).

    Parameters
    ----------
    image : ndarray (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)

    Returns
    -------
    ndarray (H, W, 3) uint8
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 2):
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"image: expected (H, W) or (H, W, 1|2|3|4), got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        lo, hi = float(np.min(a)), float(np.max(a))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        a = np.clip(np.rint((a.astype(np.float64) - lo) * scale), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a)


def _open(path: Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"{what}: could not read {path} (corrupt or not an image): {exc}") from exc
    return im


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Grayscale (``L``, ``I;16``, ...) is replicated into three channels, palette images are mapped
    through their palette, and the alpha channel of ``RGBA``/``LA`` images is dropped (see
    :func:`to_rgb`).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    UnreadableImageError
        A ``ValueError``: if the file is corrupt or not an image (the message names it).
    """
    im = _open(Path(path), "image")
    if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    return to_rgb(np.asarray(im))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label map (class index per pixel) as ``(H, W)`` uint8.

    Accepts single-channel (``L``) and palette (``P``) PNGs; palette files are read by *index*,
    never by colour. An RGB file whose three channels are equal is read as gray (one GrabCut
    ground-truth file is stored so); other RGB files are refused (colour-coded labels need a
    colour table).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    UnreadableImageError
        A ``ValueError``: if the file is corrupt or not an image (the message names it).
    ValueError
        If the file is not a single-channel/palette image.
    """
    path = Path(path)
    im = _open(path, "labels")
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im)[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])  # a gray label map saved as RGB (one GrabCut mask is)
    if im.mode not in ("L", "P", "1", "I", "I;16"):
        raise ValueError(
            f"labels: expected a single-channel (L) or palette (P) label image, got mode {im.mode} in {path}"
        )
    a = np.asarray(im)
    if a.dtype != np.uint8:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"labels: expected values in [0, 255], got {a.min()}..{a.max()} in {path}")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)
