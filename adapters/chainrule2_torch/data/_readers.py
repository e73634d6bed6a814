"""Readers: local folders to lists of :class:`Sample`. Nothing is ever downloaded.

Every reader takes the data set's folder, a ``split`` name, an optional ``size`` (``(H, W)`` or
the longer side as an int) and a ``supervision`` mode:

* ``"real"``: human seeds shipped with the data (GrabCut set 1, ScribbleSup, a ``seeds/`` folder),
  resized with :func:`~chainrule2_torch.data.resize_seeds` (keeps thin strokes) and, for
  ``length < 1``, shortened with :func:`shorten_strokes`;
* ``"scribbles"`` / ``"clicks"``: synthesised from the ground truth **after** it is resized
  (:func:`~chainrule2_torch.data.synthesize_scribbles`), with an rng seeded by ``(seed, crc32(id))``
  so an item's seeds do not depend on which other items are read;
* ``"none"``: no seeds (all 255), for evaluation-only reading; nothing is skipped.

Items left without any seed pixel are skipped with a :class:`NoSeedsWarning` (except by
:func:`read_folder` with real seeds, which keeps them for evaluation: the training loop skips them).
Splits are deterministic: official lists where they exist (CamVid, VOC), contiguous slice blocks
for the ISBI stack (neighbouring slices are correlated), otherwise :func:`split_ids` (a seeded
permutation of the sorted ids). The ``"test"`` split is for final numbers only; choose
hyper-parameters on ``"val"``.
"""

from __future__ import annotations

import csv
import os
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.validation import check_choice, check_int

from ._io import UnreadableImageError, read_image, read_labels
from ._sample import _NOT_FOUND_HINT, DATA_ROOT_ENV, DataWarning, NoSeedsWarning, Sample, data_root
from ._synthesis import _stroke_path, synthesize_seeds
from ._transforms import Size, resize_image, resize_labels, resize_seeds, target_size

__all__ = [
    "VOC_CLASSES",
    "item_rng",
    "read_camvid",
    "read_folder",
    "read_grabcut",
    "read_isbi2012",
    "read_voc",
    "read_weizmann_horse",
    "shorten_strokes",
    "split_ids",
]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_SPLITS = ("train", "val", "test", "all")
_SUPERVISION = ("real", "scribbles", "clicks", "none")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """The rng for one item: seeded by ``(seed, crc32(item_id))``, independent of reading order."""
    return np.random.default_rng([int(seed), zlib.crc32(item_id.encode("utf-8"))])


def split_ids(
    ids: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, tuple[str, ...]]:
    """Deterministic seeded train/val/test split of ``ids``.

    The sorted ids are permuted by ``numpy.random.default_rng(seed)`` and cut in the given
    proportions (val and test get at least one id each when there are >= 3 ids).

    Returns
    -------
    dict with keys ``"train"``, ``"val"``, ``"test"``, ``"all"``: tuples of ids (sorted).
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"fractions: expected three non-negative numbers, got {fractions!r}")
    ordered = sorted(set(ids))
    n = len(ordered)
    perm = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    total = float(sum(fractions))
    n_val = int(round(n * fractions[1] / total))
    n_test = int(round(n * fractions[2] / total))
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = n - n_val - n_test
    return {
        "train": tuple(sorted(perm[:n_train])),
        "val": tuple(sorted(perm[n_train : n_train + n_val])),
        "test": tuple(sorted(perm[n_train + n_val :])),
        "all": tuple(ordered),
    }


def shorten_strokes(seeds: np.ndarray, length: float, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Shorten every connected stroke of real seeds to a ``length`` fraction of its length.

    Each stroke's centre line is the geodesic diameter of the stroke (as in
    :func:`~chainrule2_torch.data.synthesize_scribbles`); a contiguous piece of it at a random offset
    is kept, re-thickened to the stroke's width, and intersected with the original stroke (so no
    pixel changes class).

    Returns
    -------
    ndarray (H, W) uint8
    """
    if not 0.0 < float(length) <= 1.0:
        raise ValueError(f"length: expected a fraction in (0, 1], got {length}")
    seeds = np.asarray(seeds)
    if length >= 1.0:
        return seeds.copy()
    out = np.full(seeds.shape, UNLABELED, dtype=np.uint8)
    for k in np.unique(seeds):
        if k >= num_classes:
            continue
        lab, _ = ndimage.label(seeds == k, structure=np.ones((3, 3), bool))
        for index, box in enumerate(ndimage.find_objects(lab), start=1):
            stroke = lab[box] == index
            ys, xs = _stroke_path(stroke, 0.0)
            n = ys.size
            keep = max(1, int(round(float(length) * n)))
            offset = int(rng.integers(0, n - keep + 1))
            piece = np.zeros(stroke.shape, dtype=bool)
            piece[ys[offset : offset + keep], xs[offset : offset + keep]] = True
            radius = int(np.ceil(ndimage.distance_transform_edt(np.pad(stroke, 1)).max()))
            piece = ndimage.binary_dilation(piece, iterations=max(radius, 1))
            out[box][piece & stroke] = k
    return out


def _check_common(split: str, supervision: str, length: float) -> None:
    check_choice(split, "split", _SPLITS)
    check_choice(supervision, "supervision", _SUPERVISION)
    if not 0.0 < float(length) <= 1.0:
        raise ValueError(f"length: expected a fraction in (0, 1], got {length}")


def _check_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder not found: {path}; {_NOT_FOUND_HINT}")
    return path


def _make(
    item_id: str,
    image: np.ndarray,
    mask: np.ndarray | None,
    real_seeds: np.ndarray | None,
    *,
    num_classes: int,
    class_names: Sequence[str],
    size: int | Size | None,
    supervision: str,
    length: float,
    seed: int,
    skip_empty: bool = True,
) -> Sample | None:
    """Resize, attach seeds, validate; ``None`` (with a warning) when the item has no seed and ``skip_empty``."""
    hw = target_size(image.shape[:2], size)
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(f"mask of {item_id!r}: expected shape {image.shape[:2]} (the image's H, W), got {mask.shape}")
    if real_seeds is not None and real_seeds.shape != image.shape[:2]:
        raise ValueError(
            f"seeds of {item_id!r}: expected shape {image.shape[:2]} (the image's H, W), got {real_seeds.shape}"
        )
    image = resize_image(image, hw)
    mask = None if mask is None else resize_labels(mask, hw)
    rng = item_rng(seed, item_id)
    if supervision == "none":
        seeds = np.full(hw, UNLABELED, dtype=np.uint8)
    elif supervision == "real":
        if real_seeds is None:
            raise ValueError(f"supervision: 'real' needs seed files, and {item_id!r} has none")
        bad = real_seeds[(real_seeds >= num_classes) & (real_seeds != UNLABELED)]
        if bad.size:  # validate before resizing, which would silently drop them
            raise ValueError(
                f"seeds of {item_id!r}: expected class ids in [0, {num_classes}) or {UNLABELED}, "
                f"got {np.unique(bad)[:5].tolist()}"
            )
        seeds = resize_seeds(real_seeds, hw, num_classes)
        if length < 1.0:
            seeds = shorten_strokes(seeds, length, rng, num_classes)
    else:
        if mask is None:
            raise ValueError(f"supervision: {supervision!r} synthesises seeds from masks, and {item_id!r} has none")
        seeds = synthesize_seeds(mask, rng, kind=supervision, length=length, num_classes=num_classes)
    sample = Sample(item_id, image, seeds, mask, num_classes, tuple(class_names))
    if skip_empty and supervision != "none" and sample.num_seeds == 0:
        warnings.warn(f"item {item_id!r} has no seed pixel; skipped", NoSeedsWarning, stacklevel=3)
        return None
    return sample


def _collect(ids: Sequence[str], load: Callable[[str], Sample | None], limit: int | None) -> list[Sample]:
    if limit is not None:
        ids = list(ids)[: int(limit)]
    samples = [load(i) for i in ids]
    return [s for s in samples if s is not None]


def _find_image(folder: Path, stem: str) -> Path:
    for ext in _IMAGE_EXTS:
        p = folder / (stem + ext)
        if p.is_file():
            return p
    raise FileNotFoundError(f"image: no file for id {stem!r} in {folder} (tried {', '.join(_IMAGE_EXTS)})")


def _read_list(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


# --------------------------------------------------------------------------------------------- generic


def _label_files(folder: Path, what: str) -> dict[str, Path]:
    """``{stem: path}`` of the PNG label maps in ``folder`` (empty when it does not exist).

    A label map in another image format is an error rather than an item silently left without
    labels (JPEG is lossy: its class ids are not exact)."""
    if not folder.is_dir():
        return {}
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() == ".png":
            files[p.stem] = p
        elif p.suffix.lower() in _IMAGE_EXTS:
            raise ValueError(
                f"{what}: expected PNG label maps (one class id per pixel, lossless), got {p}; "
                f"save it as {p.with_suffix('.png').name}"
            )
    return files


def _image_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in _IMAGE_EXTS:
            continue
        if p.stem in files:
            raise ValueError(f"images: expected one file per id, got two for id {p.stem!r}: {files[p.stem]} and {p}")
        files[p.stem] = p
    return files


def _int_tuple(values: object, name: str, lo: int, hi: int) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name}: expected a sequence of ints, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected ints, got {v!r} ({type(v).__name__})")
        if not lo <= int(v) <= hi:
            raise ValueError(f"{name}: expected values in [{lo}, {hi}], got {int(v)}")
        out.append(int(v))
    return tuple(out)


def _mask_lut(ignore: tuple[int, ...], mask_values: Mapping[int, int] | None) -> np.ndarray:
    """Look-up table raw mask value -> stored value (-1: a value ``mask_values`` does not list)."""
    lut = np.arange(256, dtype=np.int16)
    if mask_values is not None:
        if not isinstance(mask_values, Mapping):
            raise TypeError(f"mask_values: expected a mapping {{mask value: class id}}, got {mask_values!r}")
        keys = _int_tuple(list(mask_values), "mask_values (keys)", 0, 255)
        vals = _int_tuple(list(mask_values.values()), "mask_values (values)", 0, UNLABELED)
        if PADDING in vals:
            raise ValueError(f"mask_values: expected class ids or {UNLABELED} (ignored) as values, got {PADDING}")
        both = sorted(set(keys) & set(ignore))
        if both:
            raise ValueError(f"mask_values: expected keys not also in mask_ignore, got {both} in both")
        lut[:] = -1
        lut[[PADDING, UNLABELED]] = [PADDING, UNLABELED]  # unless listed, 254/255 keep their meaning
        lut[list(keys)] = vals
    lut[list(ignore)] = UNLABELED
    return lut


def _apply_lut(raw: np.ndarray, lut: np.ndarray, path: Path) -> np.ndarray:
    out = lut[raw]
    if out.size and out.min() < 0:
        bad = np.unique(raw[out < 0])
        listed = [k for k in range(256) if lut[k] >= 0]
        raise ValueError(
            f"mask_values: expected every mask value to be listed (or in mask_ignore; listed: {listed}), "
            f"got unlisted values {bad[:10].tolist()} in {path}"
        )
    return out.astype(np.uint8)


def _binary_masks_error(where: str) -> ValueError:
    return ValueError(
        f"masks: the masks in {where} look binary 0/255 (their only values are 0 and 255), but 255 means "
        "'ignored' here, so the data set would have a single class. Store the foreground as 1 (0 = background, "
        "1 = foreground), or read 255 as class 1 with mask_values={0: 0, 255: 1} (CLI: --mask-values 0:0 255:1). "
        "If 255 really is void, say so with mask_ignore=[255] (CLI: --mask-ignore 255) and give num_classes "
        "(CLI: --num-classes)."
    )


def _readable(read: Callable[[Path], np.ndarray], path: Path, corrupt: dict[Path, str] | None) -> np.ndarray | None:
    """``read(path)``, or None for a file that cannot be decoded (remembered in ``corrupt``: read once).

    ``corrupt=None``: such a file raises (``read_folder(unreadable="raise")``)."""
    if corrupt is None:
        return read(path)
    if path in corrupt:
        return None
    try:
        return read(path)
    except UnreadableImageError as err:
        corrupt[path] = str(err)
        return None


def _infer_num_classes(
    root: Path,
    mask_files: Sequence[Path],
    seed_files: Sequence[Path],
    lut: np.ndarray,
    binary_check: bool,
    corrupt: dict[Path, str] | None,
) -> int:
    """1 + the largest class id in the (remapped) masks and the seeds (files that cannot be decoded left out)."""
    if not mask_files and not seed_files:
        raise ValueError(
            f"num_classes: not given, and {root} has no masks/*.png or seeds/*.png to infer it from "
            "(pass num_classes, CLI --num-classes, or list the class names in classes.txt)"
        )
    top, raw_values = -1, set()

    def values_of(p: Path) -> np.ndarray | None:
        raw = _readable(read_labels, p, corrupt)
        if raw is None:
            assert corrupt is not None  # _readable returns None only for a file it records in corrupt
            warnings.warn(f"{corrupt[p]}; left out of the inferred num_classes", DataWarning, stacklevel=4)
            return None
        return np.unique(raw)

    for p in mask_files:
        values = values_of(p)
        if values is None:
            continue
        raw_values.update(values.tolist())
        mapped = _apply_lut(values, lut, p)
        ids = mapped[mapped < PADDING]
        top = max(top, int(ids.max()) if ids.size else -1)
    for p in seed_files:
        values = values_of(p)
        if values is None:
            continue
        ids = values[values < PADDING]
        top = max(top, int(ids.max()) if ids.size else -1)
    if top < 1:
        if binary_check and UNLABELED in raw_values:
            raise _binary_masks_error(f"{root / 'masks'}")
        found = "no class id" if top < 0 else "only class 0"
        raise ValueError(
            f"num_classes: not given, and {found} is found in {root}'s masks/ and seeds/ (inferred num_classes "
            f"{top + 1}; expected at least 2); pass num_classes (CLI: --num-classes) or fix the label maps"
        )
    return top + 1


def _class_names(
    root: Path, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[int | None, tuple[str, ...] | None]:
    source = "class_names"
    if class_names is None and (root / "classes.txt").is_file():
        source = str(root / "classes.txt")
        class_names = [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
    if class_names is None:
        return num_classes, None
    if isinstance(class_names, (str, bytes)) or not all(isinstance(n, str) for n in class_names):
        raise TypeError(f"class_names: expected a sequence of str, got {class_names!r}")
    names = tuple(class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: expected distinct class names, got {list(names)}")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{source}: expected {num_classes} names (num_classes), got {len(names)}: {list(names)}")
    return len(names), names


def _folder_ids(
    root: Path, split: str, stems: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[list[str], Path | None]:
    """The ids of ``split`` and the list file they come from (``None``: all ids or :func:`split_ids`)."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"fractions: expected three non-negative numbers, got {fractions!r}")
    if split == "all":
        return list(stems), None
    lists: dict[str, Path | None] = {}
    for k in ("train", "val", "test"):
        lists[k] = next((p for p in (root / f"{k}.txt", root / "splits" / f"{k}.txt") if p.is_file()), None)
    if not any(lists.values()):
        return list(split_ids(stems, fractions, seed)[split]), None
    path = lists[split]
    if path is None:  # the images that no list names, split among the splits without a list
        listed = {i for p in lists.values() if p is not None for i in _read_list(p)}
        rest = [i for i in stems if i not in listed]
        own = tuple(float(f) if lists[k] is None else 0.0 for k, f in zip(lists, fractions, strict=True))
        return (list(split_ids(rest, own, seed)[split]) if rest and sum(own) > 0 else []), None
    ids = _read_list(path)
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{path}: expected each id once, got {i!r} twice")
        seen.add(i)
    for other, p in lists.items():
        shared = sorted(seen & set(_read_list(p))) if p is not None and other != split else []
        if shared:
            warnings.warn(
                f"split {split!r}: {len(shared)} ids are also listed in {p} (e.g. {shared[:3]}): the splits overlap",
                DataWarning,
                stacklevel=3,
            )
    return ids, path


def read_folder(
    root: str | Path,
    split: str = "all",
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    size: int | Size | None = None,
    supervision: str = "auto",
    length: float = 1.0,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    mask_ignore: Sequence[int] = (),
    mask_values: Mapping[int, int] | None = None,
    limit: int | None = None,
    unreadable: str = "skip",
) -> list[Sample]:
    """Read a folder data set of your own: images, scribbles (seeds) and/or ground-truth masks.

    Layout (see ``docs/own_data.md``)::

        root/images/<id>.png|jpg|...   RGB (grayscale/RGBA converted, see read_image)
        root/seeds/<id>.png            optional, per item: class id per seed pixel, 255 = unlabeled
        root/masks/<id>.png            optional, per item: ground truth, class ids, 255 = ignored
        root/classes.txt               optional: one class name per line (gives num_classes)
        root/{train,val,test}.txt      optional split lists, one id per line (or root/splits/<split>.txt)

    Each item may have seeds only (typical for training), a mask only (typical for val/test), or
    both. Label maps are single-channel or palette PNGs read by index (never by colour).

    Without split lists, :func:`split_ids` with ``fractions`` and ``seed`` decides. A split with a
    list gets exactly the listed ids; the images that no list names are shared among the splits
    without a list by :func:`split_ids` (their ``fractions``), so the splits never overlap through a
    missing list (e.g. with only ``test.txt``, train and val split the other images 3:1).

    Seeds, by ``supervision``:

    * ``"real"`` (``"auto"`` when ``root/seeds`` exists): the files' own seeds. An item without a
      seeds file (or with an all-255 one, with a :class:`NoSeedsWarning`) is kept with all-255
      seeds: it is evaluated if it has a mask, and the training loop skips it with a warning. An
      item with neither seed pixels nor a mask is skipped with a :class:`NoSeedsWarning`.
    * ``"scribbles"`` / ``"clicks"`` (``"auto"`` without ``root/seeds``): synthesised from the masks
      (seeds files are not read); an item without a mask is an error.
    * ``"none"``: all-255 seeds, nothing skipped (evaluation only).

    Binary masks stored as 0/255: 255 means "ignored" here, so such masks would make a one-class
    data set; they are refused with a :class:`ValueError` unless you store the foreground as 1,
    remap with ``mask_values={0: 0, 255: 1}``, or declare 255 void with ``mask_ignore=[255]``.

    Files that cannot be decoded (zero bytes, truncated, not an image) cost only their item: it is
    skipped with a :class:`DataWarning` naming the file (and the file is left out of an inferred
    ``num_classes``), unless ``unreadable="raise"``. What is wrong with the data itself (sizes, class
    ids, binary masks) is always an error.

    Parameters
    ----------
    root : path
        The folder.
    split : {"train", "val", "test", "all"}
    num_classes : int, optional
        Number of classes ``C`` (at least 2). Default: ``len(class_names)``, else the lines of
        ``root/classes.txt``, else 1 + the largest class id found in the (remapped) masks and the
        seeds of every item. Mask values ``>= C`` other than 254/255 are errors unless mapped by
        ``mask_ignore`` or ``mask_values``; seed values ``>= C`` other than 255 are errors.
    class_names : sequence of str, optional
        ``C`` names. Defaults to ``root/classes.txt`` or ``"class0", "class1", ...``.
    size : int or (H, W), optional
        Resize (int = longer side).
    supervision : {"auto", "real", "scribbles", "clicks", "none"}
        See above. ``"real"`` without a ``root/seeds`` folder is an error.
    length, seed, limit
        Scribble length fraction, seed of splits and synthesis, maximum number of items.
    fractions : (float, float, float)
        Train/val/test proportions when there are no split lists.
    mask_ignore : sequence of int
        Mask values to treat as ignored (mapped to 255), e.g. a void label.
    mask_values : mapping of int to int, optional
        Explicit remap of mask values to class ids (or 255 = ignored), e.g. ``{0: 0, 255: 1}`` for
        binary 0/255 masks. When given, every mask value must be listed (or be in ``mask_ignore``,
        or be 254/255, which keep their meaning); an unlisted value is an error naming the file.
        Applies to masks only: seeds are always class ids with 255 = unlabeled.
    unreadable : {"skip", "raise"}
        An image, seeds or mask file that cannot be decoded: ``"skip"`` its item with a
        :class:`DataWarning` naming the file, or ``"raise"`` a ``ValueError`` naming it.

    Returns
    -------
    list of Sample

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``root/images`` is missing, or a listed id has no image.
    ValueError
        On bad arguments, binary 0/255 masks (see above), a seeds file or mask whose size differs
        from its image's, seed ids ``>= num_classes``, unlisted mask values, a file that cannot be
        decoded with ``unreadable="raise"``; each names the file.
    """
    root = _check_dir(Path(root), "root")
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(
            f"root: folder not found: {images} (a folder data set has images/, and seeds/ and/or masks/; "
            f"see docs/own_data.md); {_NOT_FOUND_HINT}"
        )
    seeds_dir, masks_dir = root / "seeds", root / "masks"
    if supervision not in ("auto", *_SUPERVISION):
        raise ValueError(f"supervision: expected one of {('auto', *_SUPERVISION)}, got {supervision!r}")
    if supervision == "auto":
        supervision = "real" if seeds_dir.is_dir() else "scribbles"
    elif supervision == "real" and not seeds_dir.is_dir():
        raise ValueError(
            f"supervision: 'real' (CLI: --supervision real) trains on the seeds in {seeds_dir}, and that folder "
            "does not exist; add it, or synthesise seeds from the masks with 'scribbles' or 'clicks'"
        )
    _check_common(split, supervision, length)
    if unreadable not in ("skip", "raise"):
        raise ValueError(f"unreadable: expected 'skip' or 'raise', got {unreadable!r}")
    image_files = _image_files(images)
    if not image_files:
        raise ValueError(f"root: no images ({', '.join(_IMAGE_EXTS)}) in folder {images}")
    stems = sorted(image_files)
    seed_files, mask_files = _label_files(seeds_dir, "seeds"), _label_files(masks_dir, "masks")
    if not seeds_dir.is_dir() and not masks_dir.is_dir():
        raise ValueError(f"root: expected a seeds/ or masks/ folder (or both) in {root}, got neither")
    for what, files in (("seeds", seed_files), ("masks", mask_files)):
        orphans = sorted(set(files) - set(image_files))
        if orphans:
            warnings.warn(
                f"{what}: {len(orphans)} files in {root / what} match no image in {images} "
                f"(e.g. {[files[o].name for o in orphans[:3]]}); they are not read",
                DataWarning,
                stacklevel=2,
            )
    ignore = _int_tuple(mask_ignore, "mask_ignore", 0, 255)
    lut = _mask_lut(ignore, mask_values)
    binary_check = mask_values is None and UNLABELED not in ignore
    check_int(num_classes, "num_classes", minimum=2, maximum=PADDING, allow_none=True)
    num_classes, names = _class_names(root, num_classes, class_names)
    # files that cannot be decoded: their items are skipped, with a warning (None: they raise)
    corrupt: dict[Path, str] | None = {} if unreadable == "skip" else None
    if num_classes is None:
        num_classes = _infer_num_classes(
            root,
            [mask_files[i] for i in stems if i in mask_files],
            [seed_files[i] for i in stems if i in seed_files],
            lut,
            binary_check,
            corrupt,
        )
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes}")
    if names is None:
        names = tuple(f"class{k}" for k in range(num_classes))
    if mask_values is not None:
        bad = sorted({int(v) for v in mask_values.values() if num_classes <= v < UNLABELED})
        if bad:
            raise ValueError(f"mask_values: expected class ids in [0, {num_classes}) or 255 as values, got {bad}")
    ids, listing = _folder_ids(root, split, stems, fractions, seed)
    raw_seen: set[int] = set()

    def skipped(i: str, path: Path) -> None:
        assert corrupt is not None  # _readable returns None only for a file it records in corrupt
        warnings.warn(f"item {i!r} skipped: {corrupt[path]}", DataWarning, stacklevel=5)

    def load(i: str) -> Sample | None:
        ipath = image_files.get(i)
        if ipath is None:
            hint = f"; list ids without their extension ({Path(i).stem!r})" if Path(i).stem in image_files else ""
            raise FileNotFoundError(f"image: id {i!r} listed in {listing} has no file in {images}{hint}")
        image = _readable(read_image, ipath, corrupt)
        if image is None:
            skipped(i, ipath)
            return None
        hw = image.shape[:2]
        mask = None
        mpath = mask_files.get(i)
        if mpath is not None:
            raw = _readable(read_labels, mpath, corrupt)
            if raw is None:
                skipped(i, mpath)
                return None
            if raw.shape != hw:
                raise ValueError(
                    f"mask of {i!r}: expected shape {hw} (the H, W of {ipath}), got {raw.shape} in {mpath}"
                )
            raw_seen.update(np.unique(raw).tolist())
            mask = _apply_lut(raw, lut, mpath)
            bad = np.unique(raw[(mask >= num_classes) & (mask < PADDING)])
            if bad.size:
                raise ValueError(
                    f"mask of {i!r}: expected class ids in [0, {num_classes}), 255 (ignored) or 254 (padding), got "
                    f"{bad[:5].tolist()} in {mpath}; map other values with mask_ignore (CLI: --mask-ignore) or "
                    "mask_values (CLI: --mask-values), or raise num_classes (CLI: --num-classes)"
                )
        if supervision in ("scribbles", "clicks") and mask is None:
            raise ValueError(
                f"supervision: {supervision!r} (CLI: --supervision {supervision}) synthesises seeds from masks, and "
                f"item {i!r} has no mask (expected {masks_dir / f'{i}.png'}); add the mask, or train on the "
                f"files' own seeds ({seeds_dir}) with supervision 'real' or 'auto'"
            )
        real = None
        spath = seed_files.get(i) if supervision == "real" else None
        if spath is not None:
            real = _readable(read_labels, spath, corrupt)
            if real is None:
                skipped(i, spath)
                return None
            if real.shape != hw:
                raise ValueError(
                    f"seeds of {i!r}: expected shape {hw} (the H, W of {ipath}), got {real.shape} in {spath}"
                )
            bad = np.unique(real[(real >= num_classes) & (real != UNLABELED)])
            if bad.size:
                raise ValueError(
                    f"seeds of {i!r}: expected class ids in [0, {num_classes}) or {UNLABELED} (unlabeled), got "
                    f"{bad[:5].tolist()} in {spath}"
                )
        sup = supervision
        if supervision == "real":
            if real is not None and not np.any(real != UNLABELED):
                if mask is None:
                    warnings.warn(
                        f"item {i!r} has no seed pixel ({spath} is all 255) and no mask: skipped",
                        NoSeedsWarning,
                        stacklevel=4,
                    )
                    return None
                warnings.warn(
                    f"item {i!r} has no seed pixel ({spath} is all 255): kept for evaluation (it has a mask); "
                    "training skips it",
                    NoSeedsWarning,
                    stacklevel=4,
                )
                real = None
            if real is None:
                if mask is None:
                    warnings.warn(
                        f"item {i!r} has neither seeds ({seeds_dir / f'{i}.png'}) nor a mask "
                        f"({masks_dir / f'{i}.png'}): skipped",
                        NoSeedsWarning,
                        stacklevel=4,
                    )
                    return None
                sup = "none"  # all-255 seeds: evaluated, and skipped by the training loop
        return _make(i, image, mask, real, num_classes=num_classes, class_names=names, size=size,
                     supervision=sup, length=length, seed=seed, skip_empty=False)  # fmt: skip

    samples = _collect(ids, load, limit)
    if binary_check and raw_seen == {0, UNLABELED}:
        raise _binary_masks_error(str(masks_dir))
    if split in ("val", "test"):
        unmasked = [s.id for s in samples if s.mask is None]
        if unmasked:
            warnings.warn(
                f"split {split!r}: {len(unmasked)} of {len(samples)} items have no mask in {masks_dir} "
                f"(e.g. {unmasked[:3]}): they are not evaluated",
                DataWarning,
                stacklevel=2,
            )
    return samples


# --------------------------------------------------------------------------------------------- VOC


def read_voc(
    root: str | Path,
    split: str = "train",
    *,
    scribble_dir: str = "pascal_2012_scribble",
    mask_dir: str | None = None,
    split_file: str | Path | None = None,
    size: int | Size | None = None,
    supervision: str = "real",
    length: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
) -> list[Sample]:
    """Read PASCAL VOC 2012 with ScribbleSup scribbles (the paper's setting, 21 classes).

    Assumed layout (``root`` = ``VOCdevkit/VOC2012``; this is what the official code and rloss use)::

        JPEGImages/<id>.jpg
        SegmentationClassAug/<id>.png     (or SegmentationClass/<id>.png; index PNG, 255 = void)
        pascal_2012_scribble/<id>.png     ScribbleSup scribbles converted to PNG: class id, 255 = unlabeled
        ImageSets/Segmentation/{train,val}.txt   one id per line

    ``split_file`` overrides the list (e.g. ``ImageSets/SegmentationAug/train_aug.txt``);
    ``mask_dir`` overrides the ground-truth folder. VOC has no public test ground truth: the paper
    reports on ``"val"``; carve a validation subset off ``"train"`` with :func:`split_ids` for
    choices. Use ``supervision="none"`` to read val images without scribbles.

    Returns
    -------
    list of Sample
    """
    root = _check_dir(Path(root), "root")
    _check_common(split, supervision, length)
    images = _check_dir(root / "JPEGImages", "root")
    if mask_dir is None:
        mask_dir = "SegmentationClassAug" if (root / "SegmentationClassAug").is_dir() else "SegmentationClass"
    masks = root / mask_dir
    if split_file is None:
        split_file = root / "ImageSets" / "Segmentation" / f"{'trainval' if split == 'all' else split}.txt"
    split_file = Path(split_file)
    if not split_file.is_absolute() and not split_file.is_file():
        split_file = root / split_file
    if not split_file.is_file():
        raise FileNotFoundError(f"split_file: file not found: {split_file}; {_NOT_FOUND_HINT}")
    ids = _read_list(split_file)
    if not ids:
        raise ValueError(f"split_file: no ids in {split_file}")
    scribbles = root / scribble_dir
    if supervision == "real":
        _check_dir(scribbles, "scribble_dir")

    def load(i: str) -> Sample | None:
        image = read_image(_find_image(images, i))
        mask = read_labels(masks / f"{i}.png") if masks.is_dir() else None
        real = read_labels(scribbles / f"{i}.png") if supervision == "real" else None
        return _make(i, image, mask, real, num_classes=21, class_names=VOC_CLASSES, size=size,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(ids, load, limit)


# --------------------------------------------------------------------------------------------- shared data


def _dataset_dir(root: str | Path | None, name: str) -> Path:
    if root is None:
        root = data_root() / name
        if not root.is_dir():
            default = f"${DATA_ROOT_ENV}/{name}" if os.environ.get(DATA_ROOT_ENV) else f"../shared/data/{name}"
            raise FileNotFoundError(
                f"root: data set folder not found: {root} (the default, {default}); {_NOT_FOUND_HINT}"
            )
    return _check_dir(Path(root), "root")


def read_grabcut(
    root: str | Path | None = None,
    split: str = "all",
    *,
    size: int | Size | None = None,
    supervision: str = "real",
    scribble_set: int = 1,
    length: float = 1.0,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    limit: int | None = None,
) -> list[Sample]:
    """Read ``grabcut_scribbles`` (33 photos, binary, real human scribbles).

    Classes: 0 = background, 1 = foreground. Ground truth 255 -> 1, 0 -> 0, the 128 boundary band
    -> 255 (ignored in metrics, as in the GrabCut benchmark). Real scribbles (``scribble_set=1``:
    the Gulshan et al. strokes, 100 % consistent with the ground truth; set 2 is noisier): index
    1 = foreground, 2 = background, 0 = unlabeled. No official split: :func:`split_ids`.

    Parameters
    ----------
    root : path, optional
        Defaults to ``data_root() / "grabcut_scribbles"``.

    Returns
    -------
    list of Sample
    """
    root = _dataset_dir(root, "grabcut_scribbles")
    _check_common(split, supervision, length)
    if scribble_set not in (1, 2):
        raise ValueError(f"scribble_set: expected 1 or 2, got {scribble_set}")
    images = _check_dir(root / "images", "root")
    stems = sorted(p.stem for p in images.glob("*.jpg"))
    if not stems:
        raise ValueError(f"root: no .jpg images in folder {images}")
    ids = split_ids(stems, fractions, seed)[split]

    def load(i: str) -> Sample | None:
        image = read_image(images / f"{i}.jpg")
        gt = read_labels(root / "ground-truth" / f"{i}.png")
        mask = np.full(gt.shape, UNLABELED, dtype=np.uint8)
        mask[gt == 0] = 0
        mask[gt == 255] = 1
        real = None
        if supervision == "real":
            anno = read_labels(root / f"scribbles-set-{scribble_set}" / f"{i}-anno.png")
            real = np.full(anno.shape, UNLABELED, dtype=np.uint8)
            real[anno == 1] = 1
            real[anno == 2] = 0
        return _make(i, image, mask, real, num_classes=2, class_names=("background", "foreground"), size=size,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(ids, load, limit)


def read_weizmann_horse(
    root: str | Path | None = None,
    split: str = "train",
    *,
    size: int | Size | None = None,
    supervision: str = "scribbles",
    length: float = 1.0,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    limit: int | None = None,
) -> list[Sample]:
    """Read ``weizmann_horse`` (328 photos; 0 = background, 1 = horse).

    Masks (JPEG) are binarised with ``> 127``; the photo is resized to the mask's grid (the masks
    and photos differ in size, the mask grid is canonical), then both to ``size``. Seeds are
    synthesised (no human scribbles). Split: :func:`split_ids` (seeded).

    Returns
    -------
    list of Sample
    """
    root = _dataset_dir(root, "weizmann_horse")
    _check_common(split, supervision, length)
    rgb = _check_dir(root / "rgb", "root")
    stems = sorted(p.stem for p in rgb.glob("*.jpg"))
    if not stems:
        raise ValueError(f"root: no .jpg images in folder {rgb}")
    ids = split_ids(stems, fractions, seed)[split]

    def load(i: str) -> Sample | None:
        mask = (read_labels(root / "figure_ground" / f"{i}.jpg") > 127).astype(np.uint8)
        image = read_image(rgb / f"{i}.jpg")
        hw = target_size(mask.shape, size)
        image, mask = resize_image(image, hw), resize_labels(mask, hw)
        return _make(i, image, mask, None, num_classes=2, class_names=("background", "horse"), size=None,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(ids, load, limit)


ISBI_SPLITS = {"train": range(0, 20), "val": range(20, 25), "test": range(25, 30), "all": range(0, 30)}


def read_isbi2012(
    root: str | Path | None = None,
    split: str = "train",
    *,
    size: int | Size | None = None,
    supervision: str = "scribbles",
    length: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
) -> list[Sample]:
    """Read ``isbi2012_membrane`` (30 EM slices, 512×512; 0 = membrane, 1 = cell interior).

    Grayscale slices are replicated to RGB. Split by contiguous slice index (slices are a 3-D
    stack, neighbours are correlated): train 0–19, val 20–24, test 25–29. Seeds are synthesised.

    Returns
    -------
    list of Sample
    """
    root = _dataset_dir(root, "isbi2012_membrane")
    _check_common(split, supervision, length)
    folder = _check_dir(root / "train" / "image", "root")
    ids = [str(i) for i in ISBI_SPLITS[split]]

    def load(i: str) -> Sample | None:
        image = read_image(folder / f"{i}.png")
        mask = (read_labels(root / "train" / "label" / f"{i}.png") > 127).astype(np.uint8)
        return _make(i, image, mask, None, num_classes=2, class_names=("membrane", "cell"), size=size,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(ids, load, limit)


def camvid_classes(root: str | Path | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """CamVid-11 class names and SegNet visualisation colours ``(11, 3)`` uint8 from ``classes.csv``."""
    root = _dataset_dir(root, "camvid")
    path = root / "classes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"classes: file not found: {path}; {_NOT_FOUND_HINT}")
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["id"]) < 11]
    names = tuple(r["name"] for r in rows)
    colours = np.array([[int(v) for v in r["segnet_vis_rgb"].split()] for r in rows], dtype=np.uint8)
    return names, colours


def read_camvid(
    root: str | Path | None = None,
    split: str = "train",
    *,
    size: int | Size | None = None,
    supervision: str = "scribbles",
    length: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
) -> list[Sample]:
    """Read ``camvid`` (SegNet CamVid-11, 480×360) with its official ``train/val/test.txt`` lists.

    Classes 0–10 (``classes.csv``); void (11) becomes 255 (ignored, never seeded). Seeds are
    synthesised from the resized labels. ``split="all"`` reads the three lists in order.

    Returns
    -------
    list of Sample
    """
    root = _dataset_dir(root, "camvid")
    _check_common(split, supervision, length)
    names, _ = camvid_classes(root)
    pairs: list[tuple[str, str]] = []
    for s in ("train", "val", "test") if split == "all" else (split,):
        listing = root / f"{s}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"split: list file not found: {listing}; {_NOT_FOUND_HINT}")
        pairs += [tuple(line.split()[:2]) for line in listing.read_text().splitlines() if line.strip()]  # type: ignore[misc]
    if not pairs:
        raise ValueError(f"split: no items listed for {split!r} in {root}")
    paths = {Path(img).stem: (img, lab) for img, lab in pairs}

    def load(i: str) -> Sample | None:
        img, lab = paths[i]
        image = read_image(root / img)
        mask = read_labels(root / lab)
        mask = np.where(mask >= 11, UNLABELED, mask).astype(np.uint8)
        return _make(i, image, mask, None, num_classes=11, class_names=names, size=size,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(list(paths), load, limit)
