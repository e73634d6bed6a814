"""PNG panels: image | seeds | stage-A labels | prediction | ground truth, side by side, with a legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.validation import check_int
from chainrule2_torch._atomic import atomic_write

__all__ = ["colorize", "voc_palette", "write_panel"]

MIN_TILE = 256  #: every tile is upscaled by an integer factor until its shorter side is at least this (px)
_MARGIN = 8  # outer margin and gap between tiles (px)
_NA_GREY = (200, 200, 200)  # the tile of a missing (None) column
_NA_TEXT = (90, 90, 90)
_DIM = 0.4  # the seeds tile shows the image at 40 % brightness under the strokes
_ARGUMENTS = ("seeds", "pseudo", "prediction", "mask")
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow >= 9.1, and older
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont  #: the fonts :func:`_font` returns


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


def _font() -> Font:
    """PIL's default font, at 14 px where Pillow can scale it (>= 10.1 with FreeType), else its bitmap font."""
    try:
        return ImageFont.load_default(size=14)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def _text_size(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(math.ceil(right - min(left, 0))), int(math.ceil(bottom - min(top, 0)))


def _line_height(font: Font) -> int:
    return _text_size(font, "Ag|")[1] + 4


def _wrap(font: Font, text: str, width: int) -> list[str]:
    """Greedy word wrap of ``text`` (``\\n`` honoured) into lines at most ``width`` px wide where possible."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = word if not line else f"{line} {word}"
            if line and _text_size(font, candidate)[0] > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``mask`` by a ``(2 radius + 1)`` square (separable; no scipy)."""
    if radius <= 0:
        return mask
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for d in range(1, radius + 1):
            if axis == 0:
                out[d:] |= src[:-d]
                out[:-d] |= src[d:]
            else:
                out[:, d:] |= src[:, :-d]
                out[:, :-d] |= src[:, d:]
    return out


def _contrast(colour: np.ndarray) -> tuple[int, int, int]:
    """White for dark colours (VOC's black background among them), black for light ones."""
    r, g, b = (int(v) for v in colour)
    return (255, 255, 255) if 0.299 * r + 0.587 * g + 0.114 * b < 150 else (0, 0, 0)


def _upscale(labels: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(labels, scale, axis=0), scale, axis=1) if scale > 1 else labels


def _seed_overlay(
    image: np.ndarray, seeds: np.ndarray, pal: np.ndarray, num_classes: int | None, scale: int = 1
) -> np.ndarray:
    """Seed strokes on the dimmed image, both at the tile's size (``seeds`` already upscaled ``scale`` times).

    Every seeded class is drawn in its palette colour, inside an outline of a contrasting colour (white around
    dark colours such as VOC's black class 0, black around light ones) so that thin strokes and the
    background class show on any image. At ``scale < 3`` strokes are widened by 1 px each side first (a
    one-pixel stroke is then at least 3 px wide). Values ``>= num_classes``
    (default: ``>= 254``, i.e. padding and unlabeled) are not seeds.
    """
    out = (image.astype(np.float64) * _DIM).astype(np.uint8)
    limit = num_classes if num_classes is not None else PADDING
    classes = [int(k) for k in np.unique(seeds) if k < limit]
    if not classes:
        return out
    fill_radius = 1 if scale < 3 else 0  # a stroke one source pixel wide is `scale` px wide here
    outline = max(2, round(min(seeds.shape) / 128))
    fills = {k: _dilate(seeds == k, fill_radius) for k in classes}
    for k in classes:  # every outline first, so that no outline covers another class's stroke
        out[_dilate(fills[k], outline)] = _contrast(pal[k])
    for k in classes:
        out[fills[k]] = pal[k]
    return out


def _value_name(value: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and value < len(class_names):
        return str(class_names[value])
    if value == UNLABELED:
        return "255 (void)"
    if value == PADDING:
        return "254 (padding)"
    return f"class {value}"


def _check_class_names(class_names: object, num_classes: int | None) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names: expected a sequence of str or None, got {type(class_names).__name__}")
    if not all(isinstance(c, str) for c in class_names):
        types = sorted({type(c).__name__ for c in class_names})
        raise TypeError(f"class_names: expected a sequence of str, got items of types {types}")
    if num_classes is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names: expected {num_classes} names (num_classes), got {len(class_names)}")
    if not class_names:
        raise ValueError("class_names: expected at least one name, got an empty sequence")
    return tuple(class_names)


def _save_png_atomic(canvas: Image.Image, path: Path) -> None:
    """Save ``canvas`` to ``path`` atomically (a temp file in the same folder, then a rename)."""
    atomic_write(path, lambda f: canvas.save(f, format="PNG"))


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
    titles: Sequence[str] = ("image", "seeds", "stage-A labels", "prediction", "ground truth"),
    caption: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write a PNG panel: image | seeds | stage-A labels | prediction | truth, with titles and a legend.

    Layout, top to bottom: a title above every column; the five tiles; a legend strip (a colour swatch and
    a name per class); the caption. Tiles are the image upscaled by the smallest integer factor that makes
    their shorter side at least 256 px (:data:`MIN_TILE`): the image bilinearly, label maps by
    nearest neighbour (every source pixel becomes an exact square). The five columns are always drawn: a
    missing (``None``) map is a light grey tile reading "n/a", so that panels with and without, e.g., stage-A
    labels line up.

    Seeds are drawn on the image dimmed to 40 %, each class in its palette colour inside a contrasting
    outline (white around dark colours such as VOC's black class 0, black around light ones); strokes
    thinner than 3 px after upscaling are widened first. Labels use ``palette`` (VOC colours by default;
    255 is VOC's beige void colour, 254 black).

    The legend lists classes ``0 .. num_classes - 1`` (or ``0 .. len(class_names) - 1``; without either, the
    classes found in the maps), then any other value found in the stage-A labels, prediction or truth
    (e.g. 255 "void", GrabCut's 128 band).

    Parameters
    ----------
    path : path
        Output ``.png``; parent folders are created. Written atomically (a temporary file in the same folder,
        then :func:`os.replace`; removed if writing fails).
    image : ndarray (H, W, 3)
        RGB, 0..255 (clipped, cast to uint8).
    seeds, pseudo, prediction, mask : ndarray (H, W) int, optional
        Seeds (255 = unlabeled), stage-A labels, prediction and ground truth, each the image's ``(H, W)``.
    palette : ndarray (n, 3) uint8, optional
        Class colours; entries past ``n`` are VOC's.
    num_classes : int, optional
        Seeds below it are drawn (default: all values < 254); the legend's classes.
    titles : 5 str
        Column titles.
    caption : str, optional
        Text under the legend (e.g. id and mIoU); wrapped to the panel's width.
    class_names : sequence of str, optional
        Legend names of classes ``0, 1, ...`` (``len == num_classes`` when both are given); default
        ``"class 0"``, ``"class 1"``, ...

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A map whose shape is not the image's ``(H, W)`` (named by its argument), an image that is not
        ``(H, W, 3)``, a bad ``palette``, ``num_classes``, ``titles`` or ``class_names``.
    TypeError
        ``num_classes`` not an int, ``class_names`` not a sequence of str.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image: expected (H, W, 3) with H, W > 0, got shape {image.shape}")
    image = np.clip(image, 0, 255).astype(np.uint8)
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", minimum=1, maximum=PADDING, allow_none=True)
    if isinstance(titles, str) or len(titles) != 5:
        raise ValueError(f"titles: expected 5 str, got {titles!r}")
    names = _check_class_names(class_names, num_classes)
    pal = voc_palette() if palette is None else np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= 256:
        raise ValueError(f"palette: expected (n, 3) with 1 <= n <= 256, got shape {pal.shape}")
    pal = pal.astype(np.uint8)
    if pal.shape[0] < 256:
        full = voc_palette()
        full[: pal.shape[0]] = pal
        pal = full
    h, w = image.shape[:2]
    maps = []
    for name, labels in zip(_ARGUMENTS, (seeds, pseudo, prediction, mask), strict=True):
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (h, w):
                raise ValueError(f"{name}: expected shape {(h, w)} (the image's H, W), got {labels.shape}")
            if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
                raise TypeError(f"{name}: expected an integer label map, got dtype {labels.dtype}")
            labels = np.clip(labels.astype(np.int64), 0, 255)
        maps.append(labels)

    scale = max(1, math.ceil(MIN_TILE / min(h, w)))
    tw, th = w * scale, h * scale
    big_image = np.asarray(Image.fromarray(image).resize((tw, th), _BILINEAR)) if scale > 1 else image
    font = _font()
    tiles: list[np.ndarray | None] = [big_image]
    for index, labels in enumerate(maps):
        if labels is None:
            tiles.append(None)
        elif index == 0:
            tiles.append(_seed_overlay(big_image, _upscale(labels, scale), pal, num_classes, scale))
        else:
            tiles.append(colorize(_upscale(labels, scale), pal))

    # legend entries: the classes, then other values found in the label maps (not the seeds' 255)
    present = sorted({int(v) for labels in maps if labels is not None for v in np.unique(labels)})
    if num_classes is not None:
        n_legend = num_classes
    elif names is not None:
        n_legend = len(names)
    else:
        found = [v for v in present if v < PADDING]
        n_legend = max(found) + 1 if found else 0
    in_maps = {int(v) for labels in maps[1:] if labels is not None for v in np.unique(labels)}
    extras = sorted(in_maps - set(range(n_legend)))
    entries = [(pal[v], _value_name(v, names)) for v in [*range(n_legend), *extras]]

    width = 2 * _MARGIN + 5 * tw + 4 * _MARGIN
    line = _line_height(font)
    swatch = line - 4
    rows: list[list[tuple[np.ndarray, str, int]]] = [[]]
    x = _MARGIN
    for colour, name in entries:
        entry_w = swatch + 6 + _text_size(font, name)[0] + 18
        if rows[-1] and x + entry_w > width - _MARGIN:
            rows.append([])
            x = _MARGIN
        rows[-1].append((colour, name, x))
        x += entry_w
    caption_lines = _wrap(font, caption, width - 2 * _MARGIN) if caption else []
    tiles_y = _MARGIN + line
    legend_y = tiles_y + th + _MARGIN
    caption_y = legend_y + (len(rows) * line if entries else 0) + (_MARGIN // 2)
    height = caption_y + len(caption_lines) * line + _MARGIN

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
        x = _MARGIN + i * (tw + _MARGIN)
        text_w = _text_size(font, str(title))[0]
        draw.text((x + max(0, (tw - text_w) // 2), _MARGIN), str(title), fill=(0, 0, 0), font=font)
        if tile is None:
            draw.rectangle((x, tiles_y, x + tw - 1, tiles_y + th - 1), fill=_NA_GREY)
            na_w, na_h = _text_size(font, "n/a")
            draw.text((x + (tw - na_w) // 2, tiles_y + (th - na_h) // 2), "n/a", fill=_NA_TEXT, font=font)
        else:
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, tiles_y))
    if entries:
        for r, row in enumerate(rows):
            y = legend_y + r * line
            for colour, name, x in row:
                draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), fill=tuple(int(c) for c in colour),
                               outline=(96, 96, 96))  # fmt: skip
                draw.text((x + swatch + 6, y), name, fill=(0, 0, 0), font=font)
    for j, text in enumerate(caption_lines):
        draw.text((_MARGIN, caption_y + j * line), text, fill=(0, 0, 0), font=font)
    path = Path(path)
    _save_png_atomic(canvas, path)
    return path
