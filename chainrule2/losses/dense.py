"""The DenseCRF loss of Tang et al. (ECCV 2018): a fully connected Potts model with a bilateral kernel, relaxed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.base import Batch
from chainrule2.constants import PADDING
from chainrule2.validation import check_int, check_positive

__all__ = ["DenseCRFLoss", "DenseItems", "bilinear_matrix", "nearest_indices"]


def nearest_indices(size: int, out: int) -> np.ndarray:
    """Source rows of a nearest-neighbour down-scaling ``size → out``: ``floor(i · size/out)``.

    (``torch.nn.functional.interpolate(mode="nearest")`` with ``size=out``; with ``scale_factor``
    torch uses 1/scale instead of size/out, the same whenever ``size · scale`` is an integer.)
    """
    return np.minimum(np.floor(np.arange(out) * (size / out)).astype(np.int64), size - 1)


def bilinear_matrix(size: int, out: int) -> np.ndarray:
    """The ``(out, size)`` matrix of 1-D linear interpolation ``size → out`` with ``align_corners=False``.

    Source coordinate of output i: ``(i + ½)·size/out − ½``, clamped to ``[0, size − 1]`` (as
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, no antialiasing).
    For ``out = size/2`` each row averages two neighbouring inputs.
    """
    x = np.clip((np.arange(out) + 0.5) * (size / out) - 0.5, 0.0, size - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = x - lo
    m = np.zeros((out, size))
    np.add.at(m, (np.arange(out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(out), hi), frac)
    return m


@dataclass(frozen=True)
class DenseItems:
    """Host precomputation of a batch for :meth:`DenseCRFLoss.value_from_items` (depends on images and seeds only).

    ``features`` ``(N, M, 5)``: (y/σ_xy', x/σ_xy', R/σ_rgb, G/σ_rgb, B/σ_rgb) on the down-scaled grid
    of M = h'·w' pixels; ``mask`` ``(N, M)``: 1 where the (nearest-down-scaled) seeds are not
    padding; ``rows`` ``(h', H)`` and ``cols`` ``(w', W)``: the bilinear down-scaling of the probabilities.
    """

    features: np.ndarray
    mask: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    def to(self, like: Any) -> DenseItems:
        """The four arrays in ``like``'s namespace, dtype and device (one copy each)."""
        xp = array_namespace(like)
        dev = array_device(like)
        return DenseItems(
            *(
                xp.asarray(np.asarray(a), dtype=like.dtype, device=dev)
                for a in (self.features, self.mask, self.rows, self.cols)
            )
        )


@dataclass(frozen=True)
class DenseCRFLoss:
    """The relaxed dense CRF regulariser of the DenseCRF loss (Tang et al. 2018), for Dense-GD.

    Kernel (Krähenbühl & Koltun's bilateral / appearance kernel, as the DenseCRF loss uses it),
    between pixels p ≠ q of the down-scaled grid::

        W_pq = exp(−|p − q|² / 2σ_xy'² − |I_p − I_q|² / 2σ_rgb²),   σ_xy' = σ_xy · scale,   W_pp = 0,

    with p, q pixel coordinates on the down-scaled grid (so σ_xy is in full-resolution pixels) and
    I the RGB values on the 0..255 scale (``batch.images`` as the data layer gives them).

    Down-scaling, as ``meng-tang/rloss`` ``pytorch/pytorch-deeplab_v3_plus/DenseCRFLoss.py`` does
    it (checked with the search tool): the grid is ``(⌊H·scale⌋, ⌊W·scale⌋)``; images and the
    padding mask are down-scaled by nearest neighbour, the probabilities bilinearly
    (``align_corners=False``; :func:`bilinear_matrix`), and the down-scaled probabilities are
    multiplied by the mask (rloss's ROI). Defaults are rloss's: σ_rgb = 15, σ_xy = 100 (its README
    and training scripts: ``--sigma-rgb 15 --sigma-xy 100 --rloss-scale 0.5``), scale = 0.5.

    Relaxed value per item (S the masked, down-scaled probabilities, S_k its column of class k)::

        value = weight / |Ω'| · Σ_k S_kᵀ W (1 − S_k)  =  weight / |Ω'| · Σ_{p≠q} W_pq (Σ_k S_pk − S_p·S_q),

    which is ``weight/|Ω'| · Σ_{p≠q} W_pq (1 − S_p·S_q)`` for probabilities (masked pixels drop out),
    |Ω'| = the non-padding pixels of the down-scaled grid (at least 1). On a one-hot S it is
    ``2·weight/|Ω'|`` times the fully connected Potts energy Σ_{p<q} W_pq [x_p ≠ x_q]; it is ≥ 0
    for probabilities and 0 for a constant one-hot labelling.

    Relation to rloss: rloss returns ``−λ_r Σ_k S_kᵀ W̃ S_k / N`` (W̃ its permutohedral approximation,
    diagonal included, summed over the batch and divided by the batch size N). The constant
    ``Σ_k S_kᵀ W 1`` is dropped there; its gradient W1 is the same for every class, so after the
    softmax both give the same gradient w.r.t. the logits, up to the factor: ``weight = λ_r · |Ω'|``
    and the diagonal (a Gini term 1 − |S_p|², here excluded).

    Filtering is exact and dense on the down-scaled grid, O(M²) per image, in blocks of ``chunk``
    rows of W (never the whole M × M matrix; through autograd each block is kept for the backward
    pass, so the torch criterion uses :meth:`gradient` instead). Measured costs: docs/performance.md
    ("Dense CRF filtering").

    Parameters
    ----------
    weight : float
        λ (≥ 0).
    sigma_rgb, sigma_xy : float
        Bandwidths (> 0), colour in 0..255 units, position in full-resolution pixels.
    scale : float
        Down-scaling factor in (0, 1].
    chunk : int
        Rows of W computed at once (memory ∝ chunk · M).

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.base import Batch
    >>> images = np.zeros((1, 4, 4, 3)); seeds = np.full((1, 4, 4), 255)
    >>> loss = DenseCRFLoss(1.0, scale=1.0)
    >>> probs = np.full((1, 4, 4, 2), 0.5)
    >>> float(loss.value(probs, Batch(None, seeds, images))[0]) > 0
    True
    >>> float(loss.value(np.eye(2)[np.zeros((1, 4, 4), int)], Batch(None, seeds, images))[0])
    0.0
    """

    weight: float
    sigma_rgb: float = 15.0
    sigma_xy: float = 100.0
    scale: float = 0.5
    chunk: int = 1024

    def __post_init__(self) -> None:
        check_positive(self.weight, "weight", allow_zero=True)
        check_positive(self.sigma_rgb, "sigma_rgb")
        check_positive(self.sigma_xy, "sigma_xy")
        scale = check_positive(self.scale, "scale")
        if scale > 1.0:
            raise ValueError(f"scale: expected a down-scaling factor in (0, 1], got {self.scale!r}")
        check_int(self.chunk, "chunk", minimum=1)

    # --- host precomputation ----------------------------------------------------------------------
    def grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The down-scaled grid ``(⌊H·scale⌋, ⌊W·scale⌋)`` (at least 1 × 1)."""
        h, w = (int(s) for s in shape)
        return max(1, int(math.floor(h * self.scale + 1e-9))), max(1, int(math.floor(w * self.scale + 1e-9)))

    def items(self, images: Any, seeds: Any) -> DenseItems:
        """Features, padding mask and interpolation matrices of host ``images`` ``(N, H, W[, C])`` and ``seeds`` ``(N, H, W)``."""
        images = np.asarray(images, dtype=np.float64)
        seeds = np.asarray(seeds)
        if seeds.ndim != 3:
            raise ValueError(f"seeds: expected (N, H, W), got shape {seeds.shape}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[:3] != seeds.shape:
            raise ValueError(
                f"images: expected (N, H, W, C) with (N, H, W) = {seeds.shape} (the seeds'), got {images.shape}"
            )
        n, h, w, c = images.shape
        hs, ws = self.grid((h, w))
        ri, ci = nearest_indices(h, hs), nearest_indices(w, ws)
        small = images[:, ri][:, :, ci]  # (N, hs, ws, C)
        yy, xx = np.meshgrid(np.arange(hs, dtype=np.float64), np.arange(ws, dtype=np.float64), indexing="ij")
        sxy = self.sigma_xy * self.scale
        pos = np.stack([yy / sxy, xx / sxy], axis=-1).reshape(1, hs * ws, 2)
        features = np.concatenate(
            [np.broadcast_to(pos, (n, hs * ws, 2)), small.reshape(n, hs * ws, c) / self.sigma_rgb], axis=-1
        )
        mask = (seeds[:, ri][:, :, ci] != PADDING).reshape(n, hs * ws).astype(np.float64)
        return DenseItems(np.ascontiguousarray(features), mask, bilinear_matrix(h, hs), bilinear_matrix(w, ws))

    def _batch_items(self, probs: Any, batch: Batch) -> DenseItems:
        if batch.images is None:
            raise ValueError("batch.images: DenseCRFLoss needs host images (N, H, W, C), got None")
        shape = tuple(int(s) for s in probs.shape)
        if len(shape) != 4:
            raise ValueError(f"probs: expected (N, H, W, L), got shape {shape}")
        seeds = np.asarray(batch.seeds)
        if seeds.shape != shape[:3]:
            raise ValueError(
                f"batch.seeds: expected shape {shape[:3]} (probs without the class axis), got {seeds.shape}"
            )
        return self.items(batch.images, seeds).to(probs)

    # --- array-API kernels ----------------------------------------------------------------------------
    def _downscale(self, probs: Any, items: DenseItems) -> Any:
        """Masked down-scaled probabilities ``(N, L, M)`` of ``probs`` ``(N, H, W, L)``."""
        xp = array_namespace(probs)
        n, num_labels = int(probs.shape[0]), int(probs.shape[-1])
        x = xp.permute_dims(probs, (0, 3, 1, 2))  # (N, L, H, W)
        x = xp.matmul(xp.matmul(items.rows, x), xp.matrix_transpose(items.cols))  # (N, L, h', w')
        return xp.reshape(x, (n, num_labels, -1)) * items.mask[:, None, :]

    def _upscale_adjoint(self, grad_small: Any, items: DenseItems, shape: tuple[int, ...]) -> Any:
        """The adjoint of :meth:`_downscale`: ``(N, L, M)`` → ``(N, H, W, L)``."""
        xp = array_namespace(grad_small)
        n, h, w, num_labels = shape
        g = xp.reshape(grad_small * items.mask[:, None, :], (n, num_labels, int(items.rows.shape[0]), -1))
        g = xp.matmul(xp.matmul(xp.matrix_transpose(items.rows), g), items.cols)  # (N, L, H, W)
        return xp.permute_dims(g, (0, 2, 3, 1))

    def filter(self, small: Any, items: DenseItems) -> Any:
        """``W X`` for ``X`` ``(N, C, M)`` (masked kernel, zero diagonal), exact, in blocks of ``chunk`` rows."""
        xp = array_namespace(small)
        f, mask = items.features, items.mask
        m = int(f.shape[1])
        sq = xp.sum(f * f, axis=-1)  # (N, M)
        blocks = []
        for start in range(0, m, self.chunk):
            stop = min(start + self.chunk, m)
            fb = f[:, start:stop, :]
            d2 = sq[:, start:stop, None] + sq[:, None, :] - 2.0 * xp.matmul(fb, xp.matrix_transpose(f))
            k = xp.exp(-0.5 * xp.clip(d2, min=0.0)) * mask[:, start:stop, None] * mask[:, None, :]  # (N, B, M)
            dev = array_device(f)
            off = xp.arange(start, stop, device=dev)[:, None] != xp.arange(m, device=dev)[None, :]
            k = xp.where(off, k, xp.zeros_like(k))  # W_pp = 0 exactly
            blocks.append(xp.matmul(small, xp.matrix_transpose(k)))  # (N, C, B)
        return xp.concat(blocks, axis=-1) if len(blocks) > 1 else blocks[0]

    def _filter_with_degree(self, s: Any, items: DenseItems) -> tuple[Any, Any]:
        """``(W S, W 1)``, ``(N, L, M)`` and ``(N, 1, M)``, from one pass over the kernel."""
        xp = array_namespace(s)
        num_labels = int(s.shape[1])
        out = self.filter(xp.concat([s, items.mask[:, None, :]], axis=1), items)
        return out[:, :num_labels, :], out[:, num_labels:, :]

    def _pixels(self, items: DenseItems) -> Any:
        xp = array_namespace(items.mask)
        count = xp.sum(items.mask, axis=-1)
        return xp.where(count > 0, count, xp.ones_like(count))

    def value_from_items(self, probs: Any, items: DenseItems) -> Any:
        """Per-item relaxed value ``(N,)`` with ``items`` (from :meth:`items`) in ``probs``'s namespace and device."""
        xp = array_namespace(probs)
        s = self._downscale(probs, items)
        ws, degree = self._filter_with_degree(s, items)
        total = xp.sum(xp.reshape(s * (degree - ws), (int(s.shape[0]), -1)), axis=1)
        return self.weight * total / self._pixels(items)

    def gradient_from_items(self, probs: Any, items: DenseItems) -> Any:
        """Analytic ∂value/∂probs ``(N, H, W, L)`` (the sum over items), in ``probs``'s namespace: weight/|Ω'|·(W1 − 2WS) pulled back."""
        s = self._downscale(probs, items)
        ws, degree = self._filter_with_degree(s, items)
        g = (degree - 2.0 * ws) * (self.weight / self._pixels(items))[:, None, None]
        return self._upscale_adjoint(g, items, tuple(int(d) for d in probs.shape))

    def value(self, probs: Any, batch: Batch) -> Any:
        """Per-item relaxed value ``(N,)`` of probabilities ``(N, H, W, L)`` (numpy, array_api_strict, torch; autograd flows)."""
        return self.value_from_items(probs, self._batch_items(probs, batch))

    def gradient(self, probs: Any, batch: Batch) -> Any:
        """Analytic ∂(Σ_items value)/∂probs, ``(N, H, W, L)``, in ``probs``'s namespace and device."""
        return self.gradient_from_items(probs, self._batch_items(probs, batch))
