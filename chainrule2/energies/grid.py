"""Contrast-sensitive Potts energies on a pixel grid (stage A of the paper setting, PAPER.md §1–2).

Layout: an energy is one image; labels are ``(H, W)`` integers; the unary is ``(H, W, L)``;
pairwise weights are stored per neighbourhood offset as a ``(K, H, W)`` array where
``weights[k, y, x]`` is the weight of the pair ``(y, x) – (y + dy, x + dx)`` for
``(dy, dx) = offsets[k]`` (0 where the neighbour is outside the grid or either pixel is padding).

Seeds follow :mod:`chainrule2.constants`: a class id where known, 255 (unlabeled), 254 (padding).

The per-item :class:`GridPotts` is host numpy. :class:`GridPottsBatch` holds N problems of one
grid size as arrays of any array-API namespace and device (numpy, torch on CPU or CUDA,
array_api_strict), for the solvers that run batched on the model's device; the derived arrays of
both (:func:`edge_costs`, :func:`cost_unary`) and the contrast weights
(:func:`batch_contrast_weights`) are computed by the same array-API functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.constants import MAX_CLASSES, PADDING, UNLABELED
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
    padding = np.zeros((1,) + tuple(shape), dtype=bool) if padding_mask is None else np.asarray(padding_mask)[None]
    return np.asarray(batch_pair_mask(padding, offsets)[0])


def batch_pair_mask(padding: Any, offsets: tuple[tuple[int, int], ...]) -> Any:
    """``(N, K, H, W)`` bool in ``padding``'s namespace: :func:`pair_mask` of every item's ``(H, W)`` padding mask."""
    xp = array_namespace(padding)
    n, h, w = (int(s) for s in padding.shape)
    planes = []
    for offset in offsets:
        src, dst = pair_slices(offset, (h, w))
        plane = xp.zeros((n, h, w), dtype=xp.bool, device=array_device(padding))
        plane[(slice(None),) + src] = ~(padding[(slice(None),) + src] | padding[(slice(None),) + dst])
        planes.append(plane)
    return xp.stack(planes, axis=1)


def edge_costs(weights: Any, offsets: tuple[tuple[int, int], ...], padding: Any, factor: Any) -> Any:
    """``(N, K, H, W)``: ``factor``·w on every existing pair touching no padding, else 0 (any array namespace).

    ``factor`` is λ·s, a number or an ``(N,)`` array (one per item); ``padding`` ``(N, H, W)`` bool.
    """
    xp = array_namespace(weights)
    if not isinstance(factor, (int, float)):
        factor = xp.reshape(factor, (-1, 1, 1, 1))
    return xp.where(batch_pair_mask(padding, offsets), weights * factor, xp.zeros_like(weights))


def cost_unary(unary: Any, seeds: Any, seed_penalty: float | None) -> Any:
    """``(N, H, W, L)``: the unary the solvers see, the soft seed penalty added to every label but the
    seed's on seeded pixels, 0 on padding (any array namespace; ``seeds`` ``(N, H, W)`` or ``None``)."""
    xp = array_namespace(unary)
    if seeds is None:
        return unary
    num_labels = int(unary.shape[-1])
    if seed_penalty is not None:
        seeded = xp.astype(seeds < num_labels, unary.dtype)[..., None]
        classes = xp.arange(num_labels, dtype=seeds.dtype, device=array_device(seeds))
        hot = xp.astype(seeds[..., None] == classes, unary.dtype)
        unary = (unary + seed_penalty * seeded) - seed_penalty * hot
    return xp.where((seeds == PADDING)[..., None], xp.zeros_like(unary), unary)


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


def _pair_differences(images: Any, offsets: tuple[tuple[int, int], ...], padding: Any) -> list[tuple[Any, Any]]:
    """Per offset: ``‖I_p − I_q‖²`` of every in-grid pair ``(N, h', w')`` and whether it touches no padding
    (``None`` without padding); ``images`` ``(N, H, W, C)`` float64 of any array-API namespace."""
    xp = array_namespace(images)
    shape = (int(images.shape[1]), int(images.shape[2]))
    out = []
    for offset in offsets:
        src, dst = pair_slices(offset, shape)
        d2 = xp.sum((images[(slice(None),) + src + (...,)] - images[(slice(None),) + dst + (...,)]) ** 2, axis=-1)
        valid = None if padding is None else ~(padding[(slice(None),) + src] | padding[(slice(None),) + dst])
        out.append((d2, valid))
    return out


def _batch_sigma2(differences: list[tuple[Any, Any]], xp: Any) -> Any:
    """``(N,)``: the mean of ``‖I_p − I_q‖²`` over each item's pairs (touching no padding); 1 where that is 0."""
    total = count = None
    for d2, valid in differences:
        kept = d2 if valid is None else xp.where(valid, d2, xp.zeros_like(d2))
        pairs = (
            xp.full(d2.shape, 1.0, dtype=d2.dtype, device=array_device(d2))
            if valid is None
            else xp.astype(valid, d2.dtype)
        )
        t, c = xp.sum(kept, axis=(1, 2)), xp.sum(pairs, axis=(1, 2))
        total, count = (t, c) if total is None else (total + t, count + c)
    assert total is not None and count is not None  # at least one offset
    sigma2 = xp.where(count > 0, total / xp.where(count > 0, count, xp.ones_like(count)), xp.zeros_like(total))
    return xp.where(sigma2 > 0, sigma2, xp.ones_like(sigma2))


def _batch_images(images: Any, name: str) -> Any:
    """``images`` ``(N, H, W)`` or ``(N, H, W, C)`` of a real dtype as finite float64 ``(N, H, W, C)``."""
    try:
        xp = array_namespace(images)
    except TypeError:
        raise TypeError(f"{name}: expected an array (numpy, torch, array-API), got {type(images).__name__}") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{name}: expected images (N, H, W) or (N, H, W, C), got shape {tuple(images.shape)}")
    if not (xp.isdtype(images.dtype, "integral") or xp.isdtype(images.dtype, "real floating")):
        raise TypeError(f"{name}: expected a real (integer or floating) dtype, got {images.dtype}")
    images = xp.astype(images, xp.float64)
    if not bool(xp.all(xp.isfinite(images))):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return images


def _batch_padding(padding: Any, like: Any, name: str) -> Any:
    """``padding`` ``(N, H, W)`` as bool in ``like``'s namespace (``None`` stays ``None``)."""
    if padding is None:
        return None
    xp = array_namespace(like)
    expected = tuple(int(s) for s in like.shape[:3])
    if tuple(int(s) for s in padding.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected} (the images' grid), got {tuple(padding.shape)}")
    return xp.astype(padding, xp.bool)


def batch_contrast_weights(images: Any, neighbourhood: int = 8, sigma: float | None = None, padding: Any = None) -> Any:
    """:func:`contrast_weights` of N images at once, in the images' array namespace and on their device.

    Parameters
    ----------
    images : array (N, H, W) or (N, H, W, C)
        Integer or floating images (numpy, torch on CPU or CUDA, any array-API array).
    neighbourhood : {4, 8}
    sigma : float or None
        σ; None = per image, σ² the mean squared colour difference over its pairs (1 if that is 0).
    padding : bool array (N, H, W) or None
        Padding pixels, in the images' namespace: pairs touching one get weight 0 and are left out of σ².

    Returns
    -------
    weights : array (N, K, H, W) float64
        ``weights[n]`` is ``contrast_weights(images[n], neighbourhood, sigma, padding[n])``.

    Example
    -------
    >>> import numpy as np
    >>> batch_contrast_weights(np.zeros((3, 2, 2)), neighbourhood=4).shape
    (3, 2, 2, 2)
    """
    img = _batch_images(images, "images")
    xp = array_namespace(img)
    offsets = neighbourhood_offsets(neighbourhood)
    pad = _batch_padding(padding, img, "padding")
    given = check_positive(sigma, "sigma", allow_none=True)
    differences = _pair_differences(img, offsets, pad)
    n, h, w = (int(s) for s in img.shape[:3])
    if given is None:
        sigma2 = xp.reshape(_batch_sigma2(differences, xp), (n, 1, 1))
    else:
        sigma2 = given**2
    planes = []
    for offset, (d2, valid) in zip(offsets, differences, strict=True):
        src, _ = pair_slices(offset, (h, w))
        dist = math.sqrt(offset[0] ** 2 + offset[1] ** 2)
        pair_w = xp.exp(-d2 / (2.0 * sigma2)) / dist
        if valid is not None:
            pair_w = xp.where(valid, pair_w, xp.zeros_like(pair_w))
        plane = xp.zeros((n, h, w), dtype=xp.float64, device=array_device(img))
        plane[(slice(None),) + src] = pair_w
        planes.append(plane)
    return xp.stack(planes, axis=1)


def contrast_sigma2(image: Any, neighbourhood: int = 8, padding_mask: Any = None) -> float:
    """σ² = the mean of ‖I_p − I_q‖² (summed over channels) over all neighbour pairs; 1 if that is 0."""
    img = _as_image(image)
    padding = _check_padding(padding_mask, img.shape[:2])
    differences = _pair_differences(
        img[None], neighbourhood_offsets(neighbourhood), None if padding is None else padding[None]
    )
    return float(_batch_sigma2(differences, np)[0])


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
        (:func:`batch_contrast_weights` computes it for N images in any array namespace.)

    Example
    -------
    >>> import numpy as np
    >>> w = contrast_weights(np.zeros((2, 2)), neighbourhood=4)
    >>> w.shape, w[0].tolist()
    ((2, 2, 2), [[1.0, 0.0], [1.0, 0.0]])
    """
    img = _as_image(image)
    neighbourhood_offsets(neighbourhood)
    padding = _check_padding(padding_mask, img.shape[:2])
    weights = batch_contrast_weights(img[None], neighbourhood, sigma, None if padding is None else padding[None])
    return np.asarray(weights[0])


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
            factor = self.potts_weight * self.edge_scale
            return np.asarray(edge_costs(self.weights[None], self.offsets, self.padding[None], factor)[0])

        return self._cached("edge_costs", make)

    @property
    def cost_unary(self) -> np.ndarray:
        """``(H, W, L)`` float64: the unary the solvers see (soft seed penalty added, 0 on padding)."""

        def make() -> np.ndarray:
            seeds = None if self.seeds is None else self.seeds[None]
            return np.array(cost_unary(self.unary[None], seeds, self.seed_penalty)[0])

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


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def batch_seeds(seeds: Any, unary: Any) -> tuple[Any, Any, Any]:
    """``(padding, seeded, seed_labels)`` ``(N, H, W)`` of ``seeds`` (``None`` = no seeds) after checking
    them against ``unary`` ``(N, H, W, L)``: padding (254), pixels with a class id, that id (0 elsewhere,
    int64); in ``unary``'s namespace and device (the batched energies' one check of their seeds)."""
    xp = array_namespace(unary)
    n, h, w, num_labels = _shape(unary)
    dev = array_device(unary)
    if seeds is None:
        none = xp.zeros((n, h, w), dtype=xp.bool, device=dev)
        return none, none, xp.zeros((n, h, w), dtype=xp.int64, device=dev)
    if _shape(seeds) != (n, h, w):
        raise ValueError(f"seeds: expected shape {(n, h, w)} (the unary's grid), got {_shape(seeds)}")
    if not xp.isdtype(seeds.dtype, "integral"):
        raise TypeError(f"seeds: expected an integer dtype, got {seeds.dtype}")
    if num_labels > MAX_CLASSES:
        raise ValueError(f"unary: expected at most {MAX_CLASSES} labels with seeds, got {num_labels}")
    seeds = xp.astype(seeds, xp.int64)
    seeded = seeds < num_labels
    if not bool(xp.all(seeded | (seeds == PADDING) | (seeds == UNLABELED)) & xp.all(seeds >= 0)):
        raise ValueError(f"seeds: expected class ids in [0, {num_labels}), 255 (unlabeled) or 254 (padding)")
    return seeds == PADDING, seeded, xp.where(seeded, seeds, xp.zeros_like(seeds))


def batch_allowed(allowed: Any, seeded: Any, seed_labels: Any, num_labels: int) -> Any:
    """``allowed`` ``(N, L)`` bool (``None`` = every label) after checking that each item allows a
    label and every one of its seed labels (``seeded``, ``seed_labels`` from :func:`batch_seeds`)."""
    xp = array_namespace(seed_labels)
    n = int(seed_labels.shape[0])
    dev = array_device(seed_labels)
    if allowed is None:
        return xp.ones((n, num_labels), dtype=xp.bool, device=dev)
    if _shape(allowed) != (n, num_labels) or allowed.dtype != xp.bool:
        raise ValueError(f"allowed: expected a bool array of shape {(n, num_labels)}, got {_shape(allowed)}")
    if not bool(xp.all(xp.any(allowed, axis=1))):
        raise ValueError("allowed: expected at least one allowed label per item")
    classes = xp.arange(num_labels, dtype=xp.int64, device=dev)
    hot = (seed_labels[..., None] == classes) & seeded[..., None]
    if bool(xp.any(hot & ~allowed[:, None, None, :])):
        raise ValueError("allowed: expected to include every seed label")
    return allowed


@dataclass(frozen=True, eq=False)
class GridPottsBatch:
    """N :class:`GridPotts` problems of one grid size, as arrays of one array-API namespace and device.

    What the batched solvers (:meth:`MeanField.run_batch <chainrule2.solvers.MeanField.run_batch>`)
    read: the derived arrays of every item, stacked. Build it with :meth:`build` (the arguments of
    :class:`GridPotts` with a leading batch axis, e.g. on a CUDA device) or :meth:`from_grids`
    (host numpy, from per-item problems).

    Attributes
    ----------
    cost_unary : array (N, H, W, L) float64
        The unary the solvers see (:attr:`GridPotts.cost_unary`).
    edge_costs : array (N, K, H, W) float64
        λ·s·w per pair (:attr:`GridPotts.edge_costs`), 0 on pairs leaving the grid or touching padding.
    offsets : tuple of (dy, dx)
    padding : array (N, H, W) bool
        Padding pixels (seed 254).
    clamped : array (N, H, W) bool
        Pixels fixed to their seed label (exact clamping).
    seed_labels : array (N, H, W) int64
        The seed label where ``clamped`` (0 elsewhere).
    allowed : array (N, L) bool
        The labels each item's solution may use.
    """

    cost_unary: Any
    edge_costs: Any
    offsets: tuple[tuple[int, int], ...]
    padding: Any
    clamped: Any
    seed_labels: Any
    allowed: Any

    def __post_init__(self) -> None:
        n, h, w, num_labels = _shape(self.cost_unary)
        expected = {
            "edge_costs": (n, len(self.offsets), h, w),
            "padding": (n, h, w),
            "clamped": (n, h, w),
            "seed_labels": (n, h, w),
            "allowed": (n, num_labels),
        }
        for name, shape in expected.items():
            if _shape(getattr(self, name)) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {_shape(getattr(self, name))}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)``: the batch and its grid."""
        n, h, w, _ = _shape(self.cost_unary)
        return (n, h, w)

    @property
    def num_labels(self) -> int:
        return int(self.cost_unary.shape[-1])

    @classmethod
    def build(
        cls,
        unary: Any,
        weights: Any,
        offsets: tuple[tuple[int, int], ...] = N8_OFFSETS,
        potts_weight: float = 1.0,
        edge_scale: Any = 1.0,
        seeds: Any = None,
        seed_penalty: float | None = None,
        allowed: Any = None,
    ) -> GridPottsBatch:
        """The batch of ``GridPotts(unary[n], weights[n], offsets, potts_weight, edge_scale[n], seeds[n], ...)``.

        ``unary`` ``(N, H, W, L)`` and ``weights`` ``(N, K, H, W)`` real, finite, >= 0; ``edge_scale`` a
        number or ``(N,)``; ``seeds`` ``(N, H, W)`` integers (class ids, 255, 254) or ``None``;
        ``allowed`` ``(N, L)`` bool (``None`` = all labels), which must include every seed label.
        All arrays in ``unary``'s namespace and on its device; the results stay there.
        """
        try:
            xp = array_namespace(unary, weights, *(() if seeds is None else (seeds,)))
        except TypeError as err:
            raise TypeError(f"unary, weights, seeds: expected arrays of one array namespace ({err})") from None
        if unary.ndim != 4 or int(unary.shape[-1]) == 0:
            raise ValueError(f"unary: expected (N, H, W, L >= 1), got shape {_shape(unary)}")
        n, h, w, num_labels = _shape(unary)
        offsets = tuple((int(dy), int(dx)) for dy, dx in offsets)
        if _shape(weights) != (n, len(offsets), h, w):
            raise ValueError(f"weights: expected shape {(n, len(offsets), h, w)}, got {_shape(weights)}")
        for name, x in (("unary", unary), ("weights", weights)):
            if not xp.isdtype(x.dtype, "real floating"):
                raise TypeError(f"{name}: expected a real floating dtype, got {x.dtype}")
        unary, weights = xp.astype(unary, xp.float64), xp.astype(weights, xp.float64)
        if not bool(
            xp.all(xp.isfinite(unary)) & xp.all(unary >= 0) & xp.all(xp.isfinite(weights)) & xp.all(weights >= 0)
        ):
            raise ValueError("unary, weights: expected finite values >= 0")
        factor = check_positive(potts_weight, "potts_weight", allow_zero=True)
        if isinstance(edge_scale, (int, float)):
            factor = factor * check_positive(edge_scale, "edge_scale", allow_zero=True)
        else:
            if _shape(edge_scale) != (n,):
                raise ValueError(f"edge_scale: expected a number or shape ({n},), got {_shape(edge_scale)}")
            factor = factor * xp.astype(edge_scale, xp.float64)
        penalty = check_positive(seed_penalty, "seed_penalty", allow_zero=True, allow_none=True)
        padding, seeded, seed_labels = batch_seeds(seeds, unary)
        clamped = seeded if penalty is None else xp.zeros((n, h, w), dtype=xp.bool, device=array_device(unary))
        allowed = batch_allowed(allowed, seeded, seed_labels, num_labels)
        if seeds is not None:
            seeds = xp.astype(seeds, xp.int64)
        return cls(
            cost_unary=cost_unary(unary, seeds, penalty),
            edge_costs=edge_costs(weights, offsets, padding, factor),
            offsets=offsets,
            padding=padding,
            clamped=clamped,
            seed_labels=seed_labels,
            allowed=allowed,
        )

    @classmethod
    def from_grids(cls, grids: Any) -> GridPottsBatch:
        """The host numpy batch of per-item problems (a sequence of :class:`GridPotts` of one grid, offsets and L)."""
        grids = list(grids)
        if not grids or not all(isinstance(g, GridPotts) for g in grids):
            raise TypeError("grids: expected a non-empty sequence of GridPotts")
        first = grids[0]
        for g in grids[1:]:
            if g.shape != first.shape or g.offsets != first.offsets or g.num_labels != first.num_labels:
                raise ValueError("grids: expected problems of one grid shape, offsets and number of labels")
        allowed = np.zeros((len(grids), first.num_labels), dtype=bool)
        for i, g in enumerate(grids):
            allowed[i, list(g.labels)] = True
        return cls(
            cost_unary=np.stack([g.cost_unary for g in grids]),
            edge_costs=np.stack([g.edge_costs for g in grids]),
            offsets=first.offsets,
            padding=np.stack([g.padding for g in grids]),
            clamped=np.stack([g.clamped for g in grids]),
            seed_labels=np.stack(
                [np.zeros(g.shape, np.int64) if g.seeds is None else np.where(g.clamped, g.seeds, 0) for g in grids]
            ),
            allowed=allowed,
        )
