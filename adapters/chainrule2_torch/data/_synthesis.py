"""Seeded synthesis of scribbles and clicks from dense masks.

Procedure (one stroke per connected region of every class, :func:`synthesize_scribbles`):

1. Split each class of ``mask`` into connected regions (8-connectivity). Pixels whose value is
   not a class id (255 ignored, 254 padding, or any value in ``ignore``) belong to no region.
2. Erode the region by its Euclidean distance transform ``d``: the *interior* is
   ``d >= min(margin, max(d) / 2)`` (so thin regions keep their ridge), restricted to the
   interior component holding the deepest pixel.
3. The stroke is a geodesic "diameter" of the interior: from the deepest pixel, the
   geodesically farthest interior pixel ``a``; from ``a``, the farthest ``b``; the stroke is the
   shortest path ``a -> b`` with step costs ``step_length / d``, which keeps it on the medial ridge
   (skeleton-like, one connected curve). Interiors of at most 64 pixels skip the graph search:
   their pixels are ordered along the principal axis instead.
4. Shorten to a ``length`` fraction of its pixels: a contiguous piece at a random offset (rng).
5. Thicken by a disk of radius ``width // 2`` and intersect with the region: **a stroke never
   leaves its region, so a seed never carries a wrong class**.

Regions smaller than ``min_area`` pixels get no stroke. Clicks (:func:`synthesize_clicks`): a
disk of radius ``radius`` at a deepest interior pixel (ties broken by the rng), intersected
with its region. Both are deterministic for a given ``rng`` state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from chainrule2.constants import UNLABELED

__all__ = ["synthesize_clicks", "synthesize_scribbles", "synthesize_seeds"]

_EIGHT = np.ones((3, 3), dtype=bool)
_SMALL = 64  # interiors up to this many pixels skip the geodesic search


def _regions(
    mask: np.ndarray, num_classes: int | None, ignore: Iterable[int]
) -> Iterator[tuple[int, np.ndarray, tuple[slice, ...]]]:
    """Yield ``(class, region_bool_crop, (slice_y, slice_x))`` for every connected region."""
    ignored = set(int(v) for v in ignore)
    classes = [int(k) for k in np.unique(mask)]
    for k in classes:
        if k in ignored or (num_classes is not None and k >= num_classes):
            continue
        labelled, n = ndimage.label(mask == k, structure=_EIGHT)
        for index, box in enumerate(ndimage.find_objects(labelled), start=1):
            if box is None:
                continue
            yield k, labelled[box] == index, box


def _distance(region: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _graph(nodes: np.ndarray, cost: np.ndarray | None) -> coo_matrix:
    """8-neighbour graph over ``nodes`` (bool (h, w)); edge weight = step length (× mean cost)."""
    h, w = nodes.shape
    index = np.full(nodes.shape, -1, dtype=np.int64)
    ys, xs = np.nonzero(nodes)
    index[ys, xs] = np.arange(ys.size)
    rows, cols, weights = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), w - max(0, dx)
        a = index[y0:y1, x0:x1]
        b = index[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        ok = (a >= 0) & (b >= 0)
        step = np.hypot(dy, dx)
        wt = np.full(int(ok.sum()), step)
        if cost is not None:
            ca = cost[y0:y1, x0:x1][ok]
            cb = cost[y0 + dy : y1 + dy, x0 + dx : x1 + dx][ok]
            wt = step * 0.5 * (ca + cb)
        rows.append(a[ok])
        cols.append(b[ok])
        weights.append(wt)
    r, c, wt = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    n = ys.size
    return coo_matrix((wt, (r, c)), shape=(n, n)).tocsr(), ys, xs


def _stroke_path(region: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pixel coordinates of the skeleton-like stroke of one region (crop coordinates)."""
    d = _distance(region)
    dmax = float(d.max())
    interior = d >= min(float(margin), dmax / 2.0)
    # keep the interior component that holds the deepest pixel
    lab, _ = ndimage.label(interior, structure=_EIGHT)
    deep = np.unravel_index(int(np.argmax(d)), d.shape)
    interior = lab == lab[deep]
    if interior.sum() <= _SMALL:
        # small interiors: order the pixels along their principal axis (no graph overhead)
        ys, xs = np.nonzero(interior)
        if ys.size == 1:
            return ys, xs
        coords = np.stack([ys, xs], axis=1).astype(np.float64)
        centred = coords - coords.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        order = np.lexsort((xs, ys, centred @ axis))
        return ys[order], xs[order]
    graph, ys, xs = _graph(interior, None)
    start = int(np.flatnonzero((ys == deep[0]) & (xs == deep[1]))[0])
    dist0 = dijkstra(graph, directed=False, indices=start)
    a = int(np.argmax(np.where(np.isfinite(dist0), dist0, -1)))
    dist_a = dijkstra(graph, directed=False, indices=a)
    b = int(np.argmax(np.where(np.isfinite(dist_a), dist_a, -1)))
    weighted, _, _ = _graph(interior, 1.0 / np.maximum(d, 0.5))
    _, pred = dijkstra(weighted, directed=False, indices=a, return_predecessors=True)
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    order = np.array(path[::-1])
    return ys[order], xs[order]


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy * yy + xx * xx <= r * r + r  # a slightly fuller disk than the strict circle


def _check(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected (H, W) labels, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, got dtype {mask.dtype}")
    return mask


def synthesize_scribbles(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    length: float = 1.0,
    width: int = 3,
    margin: float = 4.0,
    min_area: int = 1,
    num_classes: int | None = None,
    ignore: Iterable[int] = (254, 255),
) -> np.ndarray:
    """Skeleton-like scribbles, one per connected region of each class (see the module docstring).

    Parameters
    ----------
    mask : ndarray (H, W) int
        Dense ground truth; values in ``ignore`` (and ``>= num_classes`` when given) get no seeds.
    rng : numpy.random.Generator
        Source of randomness (where on the skeleton a shortened stroke sits).
    length : float in (0, 1]
        Fraction of the full skeleton stroke kept (1.0, 0.8, 0.5, 0.3 in the paper).
    width : int
        Stroke width in pixels (a disk of radius ``width // 2`` along the path).
    margin : float
        Preferred distance of the path to the region's boundary, in pixels.
    min_area : int
        Regions with fewer pixels get no stroke.
    num_classes : int, optional
        Classes are ``0 .. num_classes - 1``; larger values are treated as ignored.
    ignore : iterable of int
        Mask values that are never seeded.

    Returns
    -------
    ndarray (H, W) uint8
        Class id on stroke pixels, 255 elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((20, 20), np.uint8); mask[5:15, 5:15] = 1
    >>> seeds = synthesize_scribbles(mask, np.random.default_rng(0))
    >>> bool(np.all(seeds[seeds != 255] == mask[seeds != 255]))
    True
    """
    mask = _check(mask)
    if not 0.0 < float(length) <= 1.0:
        raise ValueError(f"length: expected a fraction in (0, 1], got {length}")
    if int(width) < 1:
        raise ValueError(f"width: expected >= 1, got {width}")
    seeds = np.full(mask.shape, UNLABELED, dtype=np.uint8)
    disk = _disk(int(width) // 2)
    for k, region, box in _regions(mask, num_classes, ignore):
        if region.sum() < min_area:
            continue
        ys, xs = _stroke_path(region, margin)
        n = ys.size
        keep = max(1, int(round(float(length) * n)))
        offset = int(rng.integers(0, n - keep + 1))
        stroke = np.zeros(region.shape, dtype=bool)
        stroke[ys[offset : offset + keep], xs[offset : offset + keep]] = True
        if disk.shape[0] > 1:
            stroke = ndimage.binary_dilation(stroke, structure=disk)
        stroke &= region
        seeds[box][stroke] = k
    return seeds


def synthesize_clicks(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    radius: int = 2,
    min_area: int = 1,
    num_classes: int | None = None,
    ignore: Iterable[int] = (254, 255),
) -> np.ndarray:
    """One click per connected region of each class: a small disk at a deepest interior pixel.

    Parameters
    ----------
    mask : ndarray (H, W) int
        Dense ground truth (see :func:`synthesize_scribbles`).
    rng : numpy.random.Generator
        Breaks ties between equally deep pixels.
    radius : int
        Disk radius in pixels (0 = one pixel); the disk is clipped to the region.
    min_area, num_classes, ignore
        As in :func:`synthesize_scribbles`.

    Returns
    -------
    ndarray (H, W) uint8
        Class id on click pixels, 255 elsewhere.
    """
    mask = _check(mask)
    if int(radius) < 0:
        raise ValueError(f"radius: expected >= 0, got {radius}")
    seeds = np.full(mask.shape, UNLABELED, dtype=np.uint8)
    disk = _disk(int(radius))
    for k, region, box in _regions(mask, num_classes, ignore):
        if region.sum() < min_area:
            continue
        d = _distance(region)
        candidates = np.flatnonzero(d.ravel() == d.max())
        y, x = np.unravel_index(int(candidates[rng.integers(candidates.size)]), d.shape)
        click = np.zeros(region.shape, dtype=bool)
        click[y, x] = True
        if disk.shape[0] > 1:
            click = ndimage.binary_dilation(click, structure=disk)
        seeds[box][click & region] = k
    return seeds


def synthesize_seeds(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    kind: str = "scribbles",
    length: float = 1.0,
    num_classes: int | None = None,
    ignore: Iterable[int] = (254, 255),
) -> np.ndarray:
    """Dispatch to :func:`synthesize_scribbles` (``kind="scribbles"``) or :func:`synthesize_clicks`
    (``kind="clicks"``); returns seeds ``(H, W)`` uint8 with 255 = unlabeled."""
    if kind == "scribbles":
        return synthesize_scribbles(mask, rng, length=length, num_classes=num_classes, ignore=ignore)
    if kind == "clicks":
        return synthesize_clicks(mask, rng, num_classes=num_classes, ignore=ignore)
    raise ValueError(f"kind: expected 'scribbles' or 'clicks', got {kind!r}")
