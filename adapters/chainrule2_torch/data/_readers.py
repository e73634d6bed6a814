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

Items left without any seed pixel are skipped with a :class:`NoSeedsWarning`.
Splits are deterministic: official lists where they exist (CamVid, VOC), contiguous slice blocks
for the ISBI stack (neighbouring slices are correlated), otherwise :func:`split_ids` (a seeded
permutation of the sorted ids). The ``"test"`` split is for final numbers only; choose
hyper-parameters on ``"val"``.
"""

from __future__ import annotations

import csv
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from chainrule2.constants import UNLABELED

from ._io import read_image, read_labels
from ._sample import NoSeedsWarning, Sample, data_root
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
    ids: Sequence[str], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
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
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {_SPLITS}, got {split!r}")
    if supervision not in _SUPERVISION:
        raise ValueError(f"supervision: expected one of {_SUPERVISION}, got {supervision!r}")
    if not 0.0 < float(length) <= 1.0:
        raise ValueError(f"length: expected a fraction in (0, 1], got {length}")


def _check_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder not found: {path}")
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
) -> Sample | None:
    """Resize, attach seeds, validate; ``None`` (with a warning) when the item has no seed."""
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
    if supervision != "none" and sample.num_seeds == 0:
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
    limit: int | None = None,
) -> list[Sample]:
    """Read a generic folder data set.

    Layout::

        root/images/<id>.png|jpg|...   RGB (grayscale/RGBA converted, see read_image)
        root/seeds/<id>.png            optional; class id per seed pixel, 255 = unlabeled
        root/masks/<id>.png            optional ground truth; 255 = ignored
        root/{train,val,test}.txt      optional split lists, one id per line (or root/splits/<split>.txt)

    Without split lists, :func:`split_ids` with ``fractions`` and ``seed`` decides.

    Parameters
    ----------
    root : path
        The folder.
    split : {"train", "val", "test", "all"}
    num_classes : int, optional
        Number of classes; label values ``>= num_classes`` other than 254/255 are errors unless
        listed in ``mask_ignore`` (mapped to 255). Default: ``len(class_names)``, else the lines of
        ``root/classes.txt`` (one name per line), else 1 + the largest class id found in the
        masks (or seeds).
    class_names : sequence of str, optional
        Defaults to ``root/classes.txt`` or ``"class0", "class1", ...``.
    size : int or (H, W), optional
        Resize (int = longer side).
    supervision : {"auto", "real", "scribbles", "clicks", "none"}
        ``"auto"``: ``"real"`` when ``root/seeds`` exists, else ``"scribbles"``.
    length, seed, limit
        Scribble length fraction, seed of splits and synthesis, maximum number of items.
    fractions : (float, float, float)
        Train/val/test proportions when there are no split lists.
    mask_ignore : sequence of int
        Mask values to treat as ignored (mapped to 255).

    Returns
    -------
    list of Sample
    """
    root = _check_dir(Path(root), "root")
    images = _check_dir(root / "images", "root")
    seeds_dir, masks_dir = root / "seeds", root / "masks"
    if supervision == "auto":
        supervision = "real" if seeds_dir.is_dir() else "scribbles"
    _check_common(split, supervision, length)
    stems = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    if not stems:
        raise ValueError(f"root: no images ({', '.join(_IMAGE_EXTS)}) in folder {images}")
    ignore = np.asarray(list(mask_ignore), dtype=np.int64)
    if class_names is None and (root / "classes.txt").is_file():
        class_names = [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    if num_classes is None:
        label_dir = masks_dir if masks_dir.is_dir() else seeds_dir
        if not label_dir.is_dir():
            raise ValueError(f"num_classes: not given, and {root} has no masks/ or seeds/ to infer it from")
        top = -1
        for p in sorted(label_dir.glob("*.png")):
            a = read_labels(p)
            a = a[~np.isin(a, np.concatenate([ignore, [254, 255]]))]
            top = max(top, int(a.max()) if a.size else -1)
        if top < 0:
            raise ValueError(f"num_classes: not given, and no class id found in {label_dir}")
        num_classes = top + 1
    names = tuple(class_names) if class_names is not None else tuple(f"class{k}" for k in range(num_classes))
    if split == "all":
        ids: Sequence[str] = stems
    else:
        listed = [root / f"{split}.txt", root / "splits" / f"{split}.txt"]
        found = next((p for p in listed if p.is_file()), None)
        ids = _read_list(found) if found is not None else split_ids(stems, fractions, seed)[split]

    def load(i: str) -> Sample | None:
        image = read_image(_find_image(images, i))
        mask = read_labels(masks_dir / f"{i}.png") if masks_dir.is_dir() else None
        if mask is not None and ignore.size:
            mask = np.where(np.isin(mask, ignore), UNLABELED, mask).astype(np.uint8)
        real = read_labels(seeds_dir / f"{i}.png") if supervision == "real" else None
        return _make(i, image, mask, real, num_classes=num_classes, class_names=names, size=size,
                     supervision=supervision, length=length, seed=seed)  # fmt: skip

    return _collect(ids, load, limit)


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
        raise FileNotFoundError(f"split_file: file not found: {split_file}")
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
        raise FileNotFoundError(f"classes: file not found: {path}")
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
            raise FileNotFoundError(f"split: list file not found: {listing}")
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
