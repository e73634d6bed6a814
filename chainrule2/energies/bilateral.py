"""The bilateral kernel of Krähenbühl & Koltun on a down-scaled grid, filtered exactly: the one place for it.

Shared by the relaxed DenseCRF loss (:class:`chainrule2.losses.DenseCRFLoss`, Dense-GD) and the dense
stage-A energy (:class:`chainrule2.energies.DenseMeanFieldEnergy`, Dense-TR). Array-API: the
host precomputation (:meth:`BilateralKernel.items`) is numpy, the filtering runs in the namespace of
its inputs (numpy, ``array_api_strict``, torch on any device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.constants import PADDING
from chainrule2.validation import check_int, check_positive

__all__ = ["BilateralKernel", "DenseItems", "bilinear_matrix", "nearest_indices"]


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
class BilateralKernel:
    """The masked bilateral kernel W of Krähenbühl & Koltun on a down-scaled grid, and its exact filtering.

    Between pixels p ≠ q of the grid::

        W_pq = exp(−|p − q|² / 2σ_xy'² − |I_p − I_q|² / 2σ_rgb²),   σ_xy' = σ_xy · scale,   W_pp = 0,

    p, q pixel coordinates on the grid ``(⌊H·scale⌋, ⌊W·scale⌋)`` (so σ_xy is in full-resolution
    pixels), I the RGB values nearest-down-scaled (0..255 scale); pixels whose nearest source is
    padding have no kernel entries. Probabilities reach the grid by bilinear down-scaling
    (:meth:`downscale`, ``align_corners=False``), masked. Defaults and down-scaling are rloss's
    (see :class:`~chainrule2.losses.DenseCRFLoss`).

    Filtering (:meth:`filter`) is exact and dense, O(M²) per image for M grid pixels, in blocks of
    ``chunk`` rows of W (never the whole M × M matrix); :meth:`kernel` gives the whole matrix for
    callers that filter often on a small grid.

    Parameters
    ----------
    sigma_rgb, sigma_xy : float
        Bandwidths (> 0), colour in 0..255 units, position in full-resolution pixels.
    scale : float
        Down-scaling factor in (0, 1].
    chunk : int
        Rows of W computed at once (memory ∝ chunk · M).

    Example
    -------
    >>> import numpy as np
    >>> kernel = BilateralKernel(sigma_rgb=10.0, sigma_xy=1.0, scale=1.0)
    >>> items = kernel.items(np.zeros((1, 1, 2, 3)), np.full((1, 1, 2), 255))
    >>> kernel.kernel(items)[0].round(4).tolist()   # two pixels one apart, same colour: exp(−½)
    [[0.0, 0.6065], [0.6065, 0.0]]
    """

    sigma_rgb: float = 15.0
    sigma_xy: float = 100.0
    scale: float = 0.5
    chunk: int = 1024

    def __post_init__(self) -> None:
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

    # --- array-API filtering ----------------------------------------------------------------------------
    def downscale(self, probs: Any, items: DenseItems) -> Any:
        """Masked down-scaled probabilities ``(N, L, M)`` of ``probs`` ``(N, H, W, L)``."""
        xp = array_namespace(probs)
        n, num_labels = int(probs.shape[0]), int(probs.shape[-1])
        x = xp.permute_dims(probs, (0, 3, 1, 2))  # (N, L, H, W)
        x = xp.matmul(xp.matmul(items.rows, x), xp.matrix_transpose(items.cols))  # (N, L, h', w')
        return xp.reshape(x, (n, num_labels, -1)) * items.mask[:, None, :]

    def downscale_adjoint(self, grad_small: Any, items: DenseItems, shape: tuple[int, ...]) -> Any:
        """The adjoint of :meth:`downscale`: ``(N, L, M)`` → ``(N, H, W, L)``."""
        xp = array_namespace(grad_small)
        n, h, w, num_labels = shape
        g = xp.reshape(grad_small * items.mask[:, None, :], (n, num_labels, int(items.rows.shape[0]), -1))
        g = xp.matmul(xp.matmul(xp.matrix_transpose(items.rows), g), items.cols)  # (N, L, H, W)
        return xp.permute_dims(g, (0, 2, 3, 1))

    def kernel_block(self, items: DenseItems, start: int, stop: int) -> Any:
        """Rows ``start:stop`` of the masked kernel W, ``(N, stop − start, M)``, zero diagonal: the one
        place the kernel is computed (:meth:`filter`, :meth:`kernel` and the dense stage-A energy use it)."""
        xp = array_namespace(items.features)
        f, mask = items.features, items.mask
        m = int(f.shape[1])
        # −½|f_p − f_q|² = f_p·f_q − ½|f_p|² − ½|f_q|²; a padding pixel's ½|f|² = inf makes its entries exp(−inf) = 0
        half = xp.where(
            mask > 0, 0.5 * xp.sum(f * f, axis=-1), xp.asarray(math.inf, dtype=f.dtype, device=array_device(f))
        )
        e = xp.matmul(f[:, start:stop, :], xp.matrix_transpose(f)) - half[:, start:stop, None] - half[:, None, :]
        k = xp.exp(xp.clip(e, max=0.0))  # (N, B, M); the clip removes the round-off above 0
        dev = array_device(f)
        off = xp.arange(start, stop, device=dev)[:, None] != xp.arange(m, device=dev)[None, :]
        return xp.where(off, k, xp.zeros_like(k))  # W_pp = 0 exactly

    def kernel(self, items: DenseItems) -> Any:
        """The whole masked kernel W, ``(N, M, M)`` (M² entries per item: for small grids only), filled
        item by item in blocks of ``chunk`` rows (the memory beyond W is that of one block, ∝ chunk · M)."""
        xp = array_namespace(items.features)
        n, m = (int(s) for s in items.features.shape[:2])
        if n == 1 and m <= self.chunk:
            return self.kernel_block(items, 0, m)
        out = xp.empty((n, m, m), dtype=items.features.dtype, device=array_device(items.features))
        for i in range(n):
            one = DenseItems(items.features[i : i + 1, ...], items.mask[i : i + 1, ...], items.rows, items.cols)
            for start in range(0, m, self.chunk):
                stop = min(start + self.chunk, m)
                out[i : i + 1, start:stop, :] = self.kernel_block(one, start, stop)
        return out

    def filter(self, small: Any, items: DenseItems) -> Any:
        """``W X`` for ``X`` ``(N, C, M)`` (masked kernel, zero diagonal), exact, in blocks of ``chunk`` rows."""
        xp = array_namespace(small)
        m = int(items.features.shape[1])
        blocks = []
        for start in range(0, m, self.chunk):
            k = self.kernel_block(items, start, min(start + self.chunk, m))
            blocks.append(xp.matmul(small, xp.matrix_transpose(k)))  # (N, C, B)
        return xp.concat(blocks, axis=-1) if len(blocks) > 1 else blocks[0]
