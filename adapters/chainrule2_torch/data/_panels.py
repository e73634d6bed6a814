"""PNG panels: image | seeds | stage-A labels | prediction | ground truth, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from chainrule2.constants import PADDING, UNLABELED

__all__ = ["colorize", "voc_palette", "write_panel"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``(n, 3)`` uint8 (bit-interleaved class ids); 255 -> (224, 224, 192)
    (VOC's void colour), 254 (padding) -> black."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    if n > UNLABELED:
        palette[UNLABELED] = (224, 224, 192)
        palette[PADDING] = (0, 0, 0)
    return palette


def colorize(labels: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Label map ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 through ``palette`` ``(256, 3)`` (VOC by default)."""
    pal = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels: expected (H, W), got shape {labels.shape}")
    return pal[np.clip(labels.astype(np.int64), 0, pal.shape[0] - 1)]


def _seed_overlay(image: np.ndarray, seeds: np.ndarray, pal: np.ndarray, num_classes: int | None) -> np.ndarray:
    out = (image.astype(np.float64) * 0.4).astype(np.uint8)
    lab = seeds < (num_classes if num_classes is not None else PADDING)
    colours = pal.copy()
    dark = colours.astype(np.int64).sum(axis=1) < 60
    colours[dark] = (255, 255, 255)  # VOC's black background class: white strokes on the dimmed image
    out[lab] = colours[seeds[lab].astype(np.int64)]
    return out


def write_panel(
    path: str | Path,
    image: np.ndarray,
    seeds: np.ndarray | None = None,
    pseudo: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    palette: np.ndarray | None = None,
    num_classes: int | None = None,
    titles: Sequence[str] = ("image", "seeds", "stage A", "prediction", "ground truth"),
    caption: str | None = None,
) -> Path:
    """Write a PNG panel: image | seeds (on the dimmed image) | stage-A labels | prediction | truth.

    Missing (``None``) tiles are left out. Seeds are drawn on the dimmed image (near-black
    palette colours, e.g. VOC's background, as white). Labels use ``palette`` (VOC colours by default; 255 is
    VOC's beige void colour, 254 black). Each tile gets its title underneath.

    Parameters
    ----------
    path : path
        Output ``.png``; parent folders are created.
    image : ndarray (H, W, 3) uint8
    seeds, pseudo, prediction, mask : ndarray (H, W) int, optional
    palette : ndarray (256, 3) uint8, optional
    num_classes : int, optional
        Seeds below it are drawn (default: all values < 254).
    titles : 5 str
    caption : str, optional
        A line of text under the titles (e.g. id and mIoU).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3), got shape {image.shape}")
    image = np.clip(image, 0, 255).astype(np.uint8)
    pal = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.shape[0] < 256:
        full = voc_palette()
        full[: pal.shape[0]] = pal
        pal = full
    h, w = image.shape[:2]
    tiles, names = [image], [titles[0]]
    for index, labels in enumerate((seeds, pseudo, prediction, mask), start=1):
        if labels is None:
            continue
        labels = np.asarray(labels)
        if labels.shape != (h, w):
            raise ValueError(f"{titles[index]}: expected shape {(h, w)} (the image's H, W), got {labels.shape}")
        tile = _seed_overlay(image, labels, pal, num_classes) if index == 1 else colorize(labels, pal)
        tiles.append(tile)
        names.append(titles[index])
    gap, text_h = 4, 14 * (2 if caption else 1) + 4
    canvas = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + text_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, name) in enumerate(zip(tiles, names, strict=True)):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(tile), (x, 0))
        draw.text((x + 2, h + 2), name, fill=(0, 0, 0))
    if caption:
        draw.text((2, h + 16), caption, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
