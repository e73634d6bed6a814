"""Contrast-sensitive Potts energies on a pixel grid (stage A of the paper setting, PAPER.md §1–2).

Layout: an energy is one image; labels are ``(H, W)`` integers; the unary is ``(H, W, L)``;
pairwise weights are stored per neighbourhood offset as a ``(K, H, W)`` array where
``weights[k, y, x]`` is the weight of the pair ``(y, x) – (y + dy, x + dx)`` for
``(dy, dx) = offsets[k]`` (0 where the neighbour is outside the grid or either pixel is padding).

Seeds follow :mod:`chainrule2.constants`: a class id where known, 255 (unlabeled), 254 (padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule2.constants import MAX_CLASSES, PADDING
from chainrule2.validation import check_labelling, check_labels, check_positive

N4_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0))
N8_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (-1, 1))


def neighbourhood_offsets(neighbourhood: int) -> tuple[tuple[int, int], ...]:
    """The offsets ``(dy, dx)`` of a 4- or 8-neighbourhood, each unordered pair of pixels once.

    >>> neighbourhood_offsets(8)
    ((0, 1), (1, 0), (1, 1), (-1, 1))
    """
    if isinstance(neighbourhood, bool) or neighbourhood not in (4, 8):
        raise ValueError(f"neighbourhood: expected 4 or 8, got {neighbourhood!r}")
    return N4_OFFSETS if neighbourhood == 4 else N8_OFFSETS


def pair_slices(offset: tuple[int, int], shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``(src, dst)`` so that ``a[src]`` and ``a[dst]`` are the two ends of every in-grid pair.

    >>> src, dst = pair_slices((1, 0), (3, 2))
    >>> src, dst
    ((slice(0, 2, None), slice(0, 2, None)), (slice(1, 3, None), slice(0, 2, None)))
    """
    dy, dx = offset
    h, w = shape
    src = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    dst = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
    return src, dst


def pair_mask(
    shape: tuple[int, int], offsets: tuple[tuple[int, int], ...], padding_mask: np.ndarray | None = None
) -> np.ndarray:
    """``(K, H, W)`` bool: True where the pair starting at that pixel exists and touches no padding."""
    h, w = shape
    mask = np.zeros((len(offsets), h, w), dtype=bool)
    for k, offset in enumerate(offsets):
        src, dst = pair_slices(offset, (h, w))
        if padding_mask is None:
            mask[k][src] = True
        else:
            mask[k][src] = ~(padding_mask[src] | padding_mask[dst])
    return mask


def _as_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"image: expected a 2-D grid (H, W) or (H, W, C), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image: expected a real (integer or floating) dtype, got {image.dtype}")
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise ValueError("image: expected finite values, got NaN or inf")
    return image


def _check_padding(padding_mask: Any, shape: tuple[int, int]) -> np.ndarray | None:
    if padding_mask is None:
        return None
    padding_mask = np.asarray(padding_mask)
    if padding_mask.shape != shape:
        raise ValueError(f"padding_mask: expected shape {shape} (the image's grid), got {padding_mask.shape}")
    return padding_mask.astype(bool)


def contrast_sigma2(image: Any, neighbourhood: int = 8, padding_mask: Any = None) -> float:
    """σ² = the mean of ‖I_p − I_q‖² (summed over channels) over all neighbour pairs; 1 if that is 0."""
    img = _as_image(image)
    offsets = neighbourhood_offsets(neighbourhood)
    padding = _check_padding(padding_mask, img.shape[:2])
    total, count = 0.0, 0
    for offset in offsets:
        src, dst = pair_slices(offset, img.shape[:2])
        d2 = np.sum((img[src] - img[dst]) ** 2, axis=-1)
        if padding is not None:
            d2 = d2[~(padding[src] | padding[dst])]
        total += float(np.sum(d2))
        count += d2.size
    sigma2 = total / count if count else 0.0
    return sigma2 if sigma2 > 0 else 1.0


def contrast_weights(
    image: Any, neighbourhood: int = 8, sigma: float | None = None, padding_mask: Any = None
) -> np.ndarray:
    """Contrast-sensitive pairwise weights w_pq = exp(−‖I_p − I_q‖² / (2σ²)) / dist(p, q).

    Parameters
    ----------
    image : array (H, W) or (H, W, C)
        Integer (e.g. uint8) or floating image with any number of channels.
    neighbourhood : {4, 8}
        Offsets ``(0, 1), (1, 0)`` (+ ``(1, 1), (-1, 1)`` with dist √2 for 8).
    sigma : float or None
        σ; None = automatic: σ² is the mean squared colour difference over all pairs
        (:func:`contrast_sigma2`), 1 if that is 0.
    padding_mask : bool array (H, W) or None
        Pixels outside the image; pairs touching one get weight 0 and are left out of σ².

    Returns
    -------
    weights : ndarray (K, H, W) float64
        ``weights[k, y, x]`` is the weight of the pair ``(y, x) – (y + dy, x + dx)`` with
        ``(dy, dx) = neighbourhood_offsets(neighbourhood)[k]``; 0 for pairs outside the grid.

    Example
    -------
    >>> import numpy as np
    >>> w = contrast_weights(np.zeros((2, 2)), neighbourhood=4)
    >>> w.shape, w[0].tolist()
    ((2, 2, 2), [[1.0, 0.0], [1.0, 0.0]])
    """
    img = _as_image(image)
    offsets = neighbourhood_offsets(neighbourhood)
    shape = img.shape[:2]
    padding = _check_padding(padding_mask, shape)
    given = check_positive(sigma, "sigma", allow_none=True)
    sigma2 = contrast_sigma2(img, neighbourhood, padding) if given is None else given**2
    weights = np.zeros((len(offsets),) + shape, dtype=np.float64)
    for k, offset in enumerate(offsets):
        src, dst = pair_slices(offset, shape)
        d2 = np.sum((img[src] - img[dst]) ** 2, axis=-1)
        dist = math.sqrt(offset[0] ** 2 + offset[1] ** 2)
        w = np.exp(-d2 / (2.0 * sigma2)) / dist
        if padding is not None:
            w[padding[src] | padding[dst]] = 0.0
        weights[k][src] = w
    return weights


def _check_array(x: Any, name: str, ndim: int, what: str) -> np.ndarray:
    if not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected a numpy array {what}, got {type(x).__name__}")
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a 2-D grid, shape {what}, got shape {x.shape}")
    return x


def _check_real(x: np.ndarray, name: str) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == bool:
        raise TypeError(f"{name}: expected a real floating dtype, got {x.dtype}")
    x = np.array(x, dtype=np.float64)  # a private copy: the energy is immutable
    if np.isnan(x).any():
        raise ValueError(f"{name}: expected no NaN values, got {int(np.isnan(x).sum())} NaN")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite values, got inf")
    if x.size and x.min() < 0:
        raise ValueError(f"{name}: expected non-negative values, got minimum {float(x.min())}")
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class GridPotts:
    """E(x) = Σ_p U_p(x_p) + λ·s·Σ_k Σ_p w_k[p]·[x_p ≠ x_{p+offset_k}], seeds and label restriction as constraints.

    One stage-A problem (one image) of the paper setting (PAPER.md §2): ``unary`` is
    β·label_costs plus any extra unary terms, ``weights`` the contrast weights
    (:func:`contrast_weights`), ``potts_weight`` λ and ``edge_scale`` s (|Ω|/|N| in the paper).

    **Seeds: exact clamping by default.** With ``seed_penalty=None`` a seeded pixel must take its
    seed label: :meth:`value` is ``inf`` otherwise and every solver keeps seeded pixels fixed.
    The paper's official energy instead adds a soft penalty 10λ·[x_p ≠ y_p]; pass
    ``seed_penalty=10 * potts_weight`` for that (it is then part of the unary, and :meth:`value`
    counts it). Clamping is the default because (i) the constraint is then guaranteed rather than
    merely likely (with λ = 100 and |Ω|/|N| ≈ ¼ the largest pairwise saving of one pixel is
    ≈ λ·¼·(4 + 4/√2) ≈ 171 < 10λ, so the penalty almost never binds anyway), (ii) the value is
    honest with no magic constant whose adequacy depends on the unary's scale, and (iii) fixed
    pixels leave the max-flow graphs smaller.

    **Label restriction.** ``allowed_labels`` (sorted class ids, None = all) restricts the
    labelling: a label outside it gives ``inf``. Solutions are always in the original class ids.

    **Padding.** Pixels with seed 254 contribute nothing (no unary, no pairs); their label is
    irrelevant to the value.

    Parameters
    ----------
    unary : ndarray (H, W, L), finite, >= 0
    weights : ndarray (K, H, W), finite, >= 0
        Per-offset pair weights (see module docstring); entries whose pair leaves the grid or
        touches padding are ignored.
    offsets : tuple of (dy, dx)
        One per weight plane; default the 8-neighbourhood.
    potts_weight : float
        λ >= 0.
    edge_scale : float
        s >= 0, a constant factor on all pairs (|Ω|/|N| in the paper).
    seeds : int ndarray (H, W) or None
        Class ids in [0, L), 255 unlabeled, 254 padding; with seeds, L is at most 254
        (:data:`~chainrule2.constants.MAX_CLASSES`).
    seed_penalty : float or None
        None = exact clamping; a number = soft penalty per violated seed.
    allowed_labels : tuple of int or None
        The labels a solution may use (None = all); must include every seed label.

    Example
    -------
    >>> import numpy as np
    >>> unary = np.array([[[0.0, 1.0], [1.0, 0.0]]])           # (1, 2, 2)
    >>> e = GridPotts(unary, contrast_weights(np.zeros((1, 2)), 4), offsets=N4_OFFSETS, potts_weight=0.5)
    >>> e.value(np.array([[0, 1]])), e.value(np.array([[0, 0]]))
    (0.5, 1.0)
    """

    unary: np.ndarray
    weights: np.ndarray
    offsets: tuple[tuple[int, int], ...] = N8_OFFSETS
    potts_weight: float = 1.0
    edge_scale: float = 1.0
    seeds: np.ndarray | None = None
    seed_penalty: float | None = None
    allowed_labels: tuple[int, ...] | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unary = _check_array(self.unary, "unary", 3, "(H, W, L)")
        if unary.shape[2] == 0:
            raise ValueError(f"unary: expected at least one label, shape (H, W, L >= 1), got {unary.shape}")
        if unary.shape[0] == 0 or unary.shape[1] == 0:
            raise ValueError(f"unary: expected a non-empty grid, got shape {unary.shape}")
        unary = _check_real(unary, "unary")
        h, w, num_labels = unary.shape
        offsets = tuple((int(dy), int(dx)) for dy, dx in self.offsets)
        for dy, dx in offsets:
            if (dy, dx) == (0, 0) or abs(dy) > 1 or abs(dx) > 1:
                raise ValueError(f"offsets: expected offsets in {{-1, 0, 1}}² other than (0, 0), got {(dy, dx)}")
        weights = _check_array(self.weights, "weights", 3, "(K, H, W)")
        if weights.shape != (len(offsets), h, w):
            raise ValueError(
                f"weights: expected shape {(len(offsets), h, w)} (one plane per offset, the unary's grid), "
                f"got {weights.shape}"
            )
        weights = _check_real(weights, "weights")
        potts_weight = check_positive(self.potts_weight, "potts_weight", allow_zero=True)
        edge_scale = check_positive(self.edge_scale, "edge_scale", allow_zero=True)
        seeds = None
        if self.seeds is not None:
            seeds = _check_array(self.seeds, "seeds", 2, "(H, W)")
            if seeds.shape != (h, w):
                raise ValueError(f"seeds: expected shape {(h, w)} (the unary's grid), got {seeds.shape}")
            if not np.issubdtype(seeds.dtype, np.integer):
                raise TypeError(f"seeds: expected an integer dtype, got {seeds.dtype}")
            if num_labels > MAX_CLASSES:  # 254/255 would be both class ids and padding/unlabeled
                raise ValueError(
                    f"unary: expected at most {MAX_CLASSES} labels with seeds (254/255 are reserved for "
                    f"padding/unlabeled seeds), got {num_labels}"
                )
            check_labels(seeds, num_labels, "seeds")
            seeds = seeds.astype(np.int64)
            seeds.setflags(write=False)
        seed_penalty = check_positive(self.seed_penalty, "seed_penalty", allow_zero=True, allow_none=True)
        allowed = None
        if self.allowed_labels is not None:
            allowed = tuple(sorted({int(a) for a in self.allowed_labels}))
            if not allowed or allowed[0] < 0 or allowed[-1] >= num_labels:
                raise ValueError(
                    f"allowed_labels: expected a non-empty set of labels in [0, {num_labels}), got {allowed}"
                )
            if seeds is not None:
                present = set(np.unique(seeds[seeds < num_labels]).tolist())
                missing = sorted(present - set(allowed))
                if missing:
                    raise ValueError(f"allowed_labels: expected to include every seed label, missing {missing}")
        for name, value in (
            ("unary", unary),
            ("weights", weights),
            ("offsets", offsets),
            ("potts_weight", potts_weight),
            ("edge_scale", edge_scale),
            ("seeds", seeds),
            ("seed_penalty", seed_penalty),
            ("allowed_labels", allowed),
        ):
            object.__setattr__(self, name, value)

    # --- shape -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.unary.shape[0]), int(self.unary.shape[1]))

    @property
    def num_labels(self) -> int:
        return int(self.unary.shape[2])

    @property
    def labels(self) -> tuple[int, ...]:
        """The labels a solution may use (``allowed_labels`` or all)."""
        return self.allowed_labels if self.allowed_labels is not None else tuple(range(self.num_labels))

    # --- derived arrays (computed once, read-only) ----------------------------------------------
    def _cached(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            value = make()
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            self._cache[key] = value
        return self._cache[key]

    @property
    def padding(self) -> np.ndarray:
        """``(H, W)`` bool: padding pixels (seed 254)."""
        return self._cached(
            "padding", lambda: np.zeros(self.shape, bool) if self.seeds is None else self.seeds == PADDING
        )

    @property
    def clamped(self) -> np.ndarray:
        """``(H, W)`` bool: pixels fixed to their seed label (exact clamping only)."""

        def make() -> np.ndarray:
            if self.seeds is None or self.seed_penalty is not None:
                return np.zeros(self.shape, bool)
            return self.seeds < self.num_labels

        return self._cached("clamped", make)

    @property
    def edge_costs(self) -> np.ndarray:
        """``(K, H, W)`` float64: λ·s·w for every existing pair not touching padding, else 0."""

        def make() -> np.ndarray:
            mask = pair_mask(self.shape, self.offsets, self.padding if self.seeds is not None else None)
            return np.where(mask, self.weights * (self.potts_weight * self.edge_scale), 0.0)

        return self._cached("edge_costs", make)

    @property
    def cost_unary(self) -> np.ndarray:
        """``(H, W, L)`` float64: the unary the solvers see (soft seed penalty added, 0 on padding)."""

        def make() -> np.ndarray:
            u = np.array(self.unary)
            if self.seeds is not None:
                if self.seed_penalty is not None:
                    seeded = self.seeds < self.num_labels
                    ys, xs = np.nonzero(seeded)
                    u[ys, xs, :] += self.seed_penalty
                    u[ys, xs, self.seeds[ys, xs]] -= self.seed_penalty
                u[self.padding] = 0.0
            return u

        return self._cached("cost_unary", make)

    # --- value -------------------------------------------------------------------------------
    def check_labels(self, labels: Any, name: str = "labels") -> np.ndarray:
        return check_labelling(labels, self.shape, self.num_labels, name)

    def feasible(self, labels: np.ndarray) -> bool:
        """Whether ``labels`` respects the clamped seeds and the allowed labels (padding pixels are free)."""
        labels = self.check_labels(labels)
        if self.seeds is not None and self.clamped.any() and np.any(labels[self.clamped] != self.seeds[self.clamped]):
            return False
        if self.allowed_labels is not None and len(self.allowed_labels) < self.num_labels:
            ok = np.isin(labels, np.asarray(self.allowed_labels)) | self.padding
            if not ok.all():
                return False
        return True

    def pairwise_value(self, labels: np.ndarray) -> float:
        """λ·s·Σ w_pq [x_p ≠ x_q] (float64)."""
        costs = self.edge_costs
        total = 0.0
        for k, offset in enumerate(self.offsets):
            src, dst = pair_slices(offset, self.shape)
            total += float(np.sum(costs[k][src][labels[src] != labels[dst]]))
        return total

    def unary_value(self, labels: np.ndarray) -> float:
        u = self.cost_unary
        return float(np.sum(np.take_along_axis(u, labels[:, :, None].astype(np.intp), axis=2)))

    def value(self, labels: Any) -> float:
        """The exact energy of an ``(H, W)`` integer labelling; ``inf`` if it violates a clamped seed
        or uses a label outside ``allowed_labels``."""
        labels = self.check_labels(labels)
        if not self.feasible(labels):
            return math.inf
        return self.unary_value(labels) + self.pairwise_value(labels)

    def project(self, labels: Any, name: str = "initial") -> np.ndarray:
        """A feasible copy of ``labels``: clamped seeds set, disallowed labels replaced by the
        cheapest allowed label of the unary (unchanged if already feasible)."""
        labels = self.check_labels(labels, name).astype(np.int64, copy=True)
        if self.allowed_labels is not None and len(self.allowed_labels) < self.num_labels:
            bad = ~np.isin(labels, np.asarray(self.allowed_labels))
            if bad.any():
                labels[bad] = self.unary_argmin()[bad]
        clamped = self.clamped
        if self.seeds is not None and clamped.any():
            labels[clamped] = self.seeds[clamped]
        return labels

    def unary_argmin(self) -> np.ndarray:
        """``(H, W)`` int64: the cheapest allowed label of the unary per pixel, seeds respected."""
        allowed = np.asarray(self.labels)
        labels = allowed[np.argmin(self.cost_unary[:, :, allowed], axis=2)].astype(np.int64)
        if self.seeds is not None and self.clamped.any():
            labels[self.clamped] = self.seeds[self.clamped]
        return labels
