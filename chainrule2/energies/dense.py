"""The dense stage-A problem of Dense-TR: the trust-region unary + the DenseCRF loss, as a mean-field free energy.

:class:`DenseMeanFieldEnergy` is one image on the host (numpy); :class:`DenseMeanFieldBatch` is N
images as arrays of any array-API namespace and device (numpy, torch on CPU or CUDA,
array_api_strict). The per-item energy computes through its batch of one (:meth:`DenseMeanFieldEnergy.as_batch`),
so both evaluate F, its pairwise term and its gradient with the same array-API code (the kernel's
in :class:`~chainrule2.energies.bilateral.BilateralKernel`, the constraints' and the entropy's in
:mod:`chainrule2.energies.mean_field`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as _array_device

from chainrule2.constants import IGNORED_LABELS, PADDING, UNLABELED
from chainrule2.energies.bilateral import BilateralKernel, DenseItems
from chainrule2.energies.grid import _shape, batch_allowed, batch_seeds
from chainrule2.energies.mean_field import (
    check_batch_distribution,
    check_distribution,
    feasible,
    softmin,
    unary_and_entropy,
)
from chainrule2.validation import check_positive

__all__ = ["DenseMeanFieldBatch", "DenseMeanFieldEnergy"]


def _real_array(x: Any, name: str, shape: str, ndims: tuple[int, ...]) -> np.ndarray:
    """A private read-only float64 copy of a finite real array with one of ``ndims`` axes."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array {shape}, got {type(x).__name__}")
    if x.ndim not in ndims:
        raise ValueError(f"{name}: expected shape {shape}, got {x.shape}")
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name}: expected a real dtype, got {x.dtype}")
    x = np.array(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class DenseMeanFieldEnergy:
    """F(Q) = ⟨U, Q⟩ + |Ω|·R(Q) + T·Σ_p ⟨Q_p, log Q_p⟩ over factorised distributions Q ``(H, W, L)``.

    The stage-A problem of Dense-TR for one image: U = β·d_A's label costs (for cross-entropy
    −β·log S, S the network's softmax), R the relaxed dense CRF of
    :class:`~chainrule2.losses.DenseCRFLoss` (the DenseCRF loss of Tang et al.) with weight λ and
    the bilateral kernel W of Krähenbühl & Koltun (``bilateral``), T the temperature. Written
    out, with D the kernel's down-scaling (bilinear, rows masked to the non-padding pixels of the
    small grid, M pixels)::

        |Ω|·R(Q) = c · Σ_k (DQ)_kᵀ W (1 − (DQ)_k),   c = λ·|Ω|/|Ω'|,

    |Ω| the non-padding pixels of the image, |Ω'| those of the small grid, λ = ``potts_weight``.
    So the stage-A objective is ``|Ω| × (loss(Q) + β·mean_p d_A(Q_p, S_p))`` + T·(−entropy),
    exactly as the grid energy is |Ω| times the relaxed :class:`~chainrule2.losses.ScribblePotts`
    on one-hot labellings: λ means the same in Dense-GD and in Dense-TR. On a one-hot Q the
    pairwise term is 2c·Σ_{p<q} W_pq [x_p ≠ x_q] between the small grid's pixels (with
    ``loss.scale = 1`` the fully connected Potts energy of the image itself).

    **Resolution.** Q lives at the image's resolution (stage B's targets; the seeds are clamped
    there) and the kernel on the loss's down-scaled grid, through D: this is the loss that
    Dense-GD minimises, and it is what makes the solver affordable. Measured at 96 × 70 px
    (horse, one thread): one exact filtering pass costs 3.3 s at full resolution (M = 6720, a
    45-million-entry kernel) against 0.27 s for the whole kernel at scale 0.5 (M = 1680, kept as
    a 22 MB matrix, then 8 ms per pass); mean-field needs one pass per iteration
    (docs/performance.md, "Dense-TR stage A"). ``bilateral.scale = 1`` gives the full-resolution
    dense CRF for small images.

    **Constraints.** A seed pixel (0 ≤ seed < L) must be one-hot on its seed and no pixel may put
    mass on a label outside ``allowed_labels`` (:meth:`value` is ``inf`` otherwise). Padding
    pixels (seed 254) contribute nothing whatever their Q: no unary, no entropy, and their Q is
    zeroed before the down-scaling (so they also leave the pairwise term).

    Parameters
    ----------
    unary : ndarray (H, W, L)
        U, finite (β·label_costs of the trust divergence).
    image : ndarray (H, W) or (H, W, C)
        The image, on the 0..255 scale σ_rgb assumes.
    bilateral : BilateralKernel
        Kernel bandwidths and down-scaling (a DenseCRFLoss's ``loss.bilateral``).
    potts_weight : float
        λ >= 0 (a DenseCRFLoss's ``loss.weight``).
    seeds : int ndarray (H, W) or None
        Class ids in [0, L), 255 unlabeled, 254 padding; None = no seeds.
    allowed_labels : tuple of int or None
        Sorted labels a pixel may use (None = all); must include every seed label.
    temperature : float
        T > 0. With d_A = cross-entropy, λ = 0 and T = β the minimiser is the network's S itself.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.bilateral import BilateralKernel
    >>> unary = np.zeros((2, 2, 2)); seeds = np.full((2, 2), 255); seeds[0, 0] = 1
    >>> energy = DenseMeanFieldEnergy(unary, np.zeros((2, 2)), BilateralKernel(scale=1.0), 0.5, seeds)
    >>> one_label = np.zeros((2, 2, 2)); one_label[..., 1] = 1.0
    >>> energy.value(one_label)                     # constant labelling: no pairwise cost, no entropy
    0.0
    >>> energy.value(one_label[..., ::-1].copy())  # breaks the seed
    inf
    """

    unary: np.ndarray
    image: np.ndarray
    bilateral: BilateralKernel
    potts_weight: float = 1.0
    seeds: np.ndarray | None = None
    allowed_labels: tuple[int, ...] | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        unary = _real_array(self.unary, "unary", "(H, W, L)", (3,))
        h, w, num_labels = unary.shape
        if h == 0 or w == 0 or num_labels == 0:
            raise ValueError(f"unary: expected a non-empty grid with at least one label, got shape {unary.shape}")
        image = _real_array(self.image, "image", "(H, W) or (H, W, C)", (2, 3))
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[:2] != (h, w):
            raise ValueError(f"image: expected grid {(h, w)} (the unary's), got {image.shape[:2]}")
        if not isinstance(self.bilateral, BilateralKernel):
            raise TypeError(
                f"bilateral: expected a chainrule2.energies.bilateral.BilateralKernel (a DenseCRFLoss's "
                f"loss.bilateral), got {type(self.bilateral).__name__}"
            )
        object.__setattr__(self, "potts_weight", check_positive(self.potts_weight, "potts_weight", allow_zero=True))
        seeds = self._check_seeds(self.seeds, (h, w), num_labels)
        allowed = self._check_allowed(self.allowed_labels, num_labels, seeds)
        object.__setattr__(self, "unary", unary)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "allowed_labels", allowed)
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))
        code = np.full((h, w), UNLABELED) if seeds is None else seeds
        object.__setattr__(self, "_items", self.bilateral.items(image[None], code[None]))

    @staticmethod
    def _check_seeds(seeds: Any, shape: tuple[int, int], num_labels: int) -> np.ndarray | None:
        if seeds is None:
            return None
        if not isinstance(seeds, np.ndarray):
            raise TypeError(f"seeds: expected a numpy array {shape} or None, got {type(seeds).__name__}")
        if seeds.shape != shape:
            raise ValueError(f"seeds: expected shape {shape} (the unary's grid), got {seeds.shape}")
        if not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(f"seeds: expected an integer dtype, got {seeds.dtype}")
        bad = ~(((seeds >= 0) & (seeds < num_labels)) | np.isin(seeds, IGNORED_LABELS))
        if bad.any():
            raise ValueError(f"seeds: expected class ids in [0, {num_labels}) or 254/255, got {int(seeds[bad][0])}")
        out = np.array(seeds, dtype=np.int64)
        out.setflags(write=False)
        return out

    @staticmethod
    def _check_allowed(allowed: Any, num_labels: int, seeds: np.ndarray | None) -> tuple[int, ...] | None:
        if allowed is None:
            return None
        labels = tuple(int(a) for a in allowed)
        if not labels or list(labels) != sorted(set(labels)) or labels[0] < 0 or labels[-1] >= num_labels:
            raise ValueError(
                f"allowed_labels: expected sorted distinct labels in [0, {num_labels}), at least one, got {allowed!r}"
            )
        if seeds is not None:
            used = set(np.unique(seeds[seeds < num_labels]).tolist())
            if not used <= set(labels):
                raise ValueError(f"allowed_labels: expected every seed label {sorted(used)}, got {labels}")
        return labels

    # --- shape and constraints ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, num_labels = self.unary.shape
        return (h, w, num_labels)

    @property
    def num_labels(self) -> int:
        return int(self.unary.shape[2])

    @property
    def labels(self) -> tuple[int, ...]:
        """The labels a pixel may use (``allowed_labels``, or all)."""
        return tuple(range(self.num_labels)) if self.allowed_labels is None else self.allowed_labels

    @property
    def allowed_mask(self) -> np.ndarray:
        """``(L,)`` bool: the labels a pixel may put mass on."""
        mask = np.zeros(self.num_labels, dtype=bool)
        mask[list(self.labels)] = True
        return mask

    @property
    def padding(self) -> np.ndarray:
        """``(H, W)`` bool: the padding pixels (seed 254)."""
        return np.zeros(self.shape[:2], dtype=bool) if self.seeds is None else self.seeds == PADDING

    @property
    def clamped(self) -> np.ndarray:
        """``(H, W)`` bool: the seed pixels, one-hot on their seed."""
        return np.zeros(self.shape[:2], dtype=bool) if self.seeds is None else self.seeds < self.num_labels

    @property
    def items(self) -> DenseItems:
        """The kernel's features, mask and down-scaling of this image (a batch of one)."""
        return self._items  # type: ignore[attr-defined]

    @property
    def pairwise_scale(self) -> float:
        """c = λ·|Ω|/|Ω'|: the factor of Σ_k (DQ)_kᵀ W (1 − (DQ)_k) (:func:`pairwise_scales`)."""
        return float(pairwise_scales(self.potts_weight, self.padding[None], self.items.mask)[0])

    def as_batch(self) -> DenseMeanFieldBatch:
        """This problem as a host batch of one item (what the solver's batched update and this energy's methods read)."""
        return DenseMeanFieldBatch.from_energies([self])

    def check_distribution(self, q: Any, name: str = "solution") -> np.ndarray:
        """``q`` as float64 after checking it is a distribution over the labels at every pixel."""
        return check_distribution(q, self.shape, name)

    def feasible(self, q: np.ndarray) -> bool:
        """Whether ``q`` is exactly one-hot on every seed and has no mass on a disallowed label (padding is free)."""
        return bool(self.as_batch().feasible(q[None])[0])

    def minimiser(self, cost: np.ndarray) -> np.ndarray:
        """argmin_Q ⟨cost, Q⟩ + T·Σ_p ⟨Q_p, log Q_p⟩ under the constraints: softmax(−cost/T) over the
        allowed labels, one-hot on the seeds. ``cost`` ``(H, W, L)``; a new array."""
        return np.asarray(self.as_batch().minimiser(cost[None])[0])

    def unary_argmin(self) -> np.ndarray:
        """``(H, W)`` int64: the cheapest allowed label of the unary per pixel, seeds respected
        (the network's arg-max the adaptive trust region counts changes from)."""
        allowed = np.asarray(self.labels)
        labels = allowed[np.argmin(self.unary[:, :, allowed], axis=2)].astype(np.int64)
        if self.seeds is not None:
            labels[self.clamped] = self.seeds[self.clamped]
        return labels

    # --- the pairwise term on the small grid ------------------------------------------------------------
    def kernel_matrix(self) -> np.ndarray:
        """The masked kernel W of the small grid, ``(M, M)`` float64, zero diagonal (M² entries)."""
        return np.asarray(self.as_batch().kernel_matrix()[0])

    def filter(self, x: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        """``W x`` for ``x`` ``(C, M)``: by ``kernel`` (from :meth:`kernel_matrix`) if given, else exactly in blocks."""
        return np.asarray(self.as_batch().filter(x[None], None if kernel is None else kernel[None])[0])

    def degree(self, kernel: np.ndarray | None = None) -> np.ndarray:
        """``(M,)``: W·1 over the small grid's non-padding pixels."""
        return self.filter(self.items.mask, kernel)[0]

    def downscale(self, q: np.ndarray) -> np.ndarray:
        """``(L, M)``: D Q, the masked down-scaled Q with the padding pixels' Q zeroed first."""
        return np.asarray(self.as_batch().downscale(q[None])[0])

    def pairwise_from(self, small: np.ndarray, filtered: np.ndarray, degree: np.ndarray) -> float:
        """c·Σ_k s_kᵀ(W1 − W s_k) from ``small`` = DQ ``(L, M)``, ``filtered`` = W·DQ and ``degree`` = W1."""
        return float(self.as_batch().pairwise_from(small[None], filtered[None], degree[None])[0])

    def pairwise_gradient(self, filtered: np.ndarray, degree: np.ndarray) -> np.ndarray:
        """``(H, W, L)``: ∂(|Ω|·R)/∂Q = c·Dᵀ(W1 − 2 W·DQ) from ``filtered`` = W·DQ (0 on padding pixels)."""
        return np.asarray(self.as_batch().pairwise_gradient(filtered[None], degree[None])[0])

    def free_energy(self, q: np.ndarray, pairwise: float) -> float:
        """⟨U, Q⟩ + ``pairwise`` + T·Σ Q log Q over the non-padding pixels (no checks: see :meth:`value`)."""
        return float(self.as_batch().free_energy(q[None], np.asarray([pairwise], dtype=np.float64))[0])

    def value(self, solution: Any) -> float:
        """F(Q) in float64 (exact chunked filtering); ``inf`` if ``Q`` breaks a seed or the label restriction."""
        q = self.check_distribution(solution)
        return float(self.as_batch().value(q[None])[0])


def pairwise_scales(potts_weight: float, padding: Any, mask: Any) -> Any:
    """``(N,)`` float64: c = λ·|Ω|/|Ω'| of every item, |Ω| its non-padding pixels (``padding``
    ``(N, H, W)``), |Ω'| those of its small grid (``mask`` ``(N, M)``, :class:`DenseItems`), each at
    least 1: the one place the dense pairwise term is scaled (per item, so padding into a larger
    batch changes nothing)."""
    xp = array_namespace(mask)
    n = int(padding.shape[0])
    pixels = xp.sum(xp.astype(xp.reshape(~padding, (n, -1)), xp.float64), axis=1)
    small = xp.sum(xp.astype(mask, xp.float64), axis=1)
    one = xp.ones_like(pixels)
    return potts_weight * xp.where(pixels > 1.0, pixels, one) / xp.where(small > 1.0, small, one)


@dataclass(frozen=True, eq=False)
class DenseMeanFieldBatch:
    """F(Q) of :class:`DenseMeanFieldEnergy` for N images at once, in their arrays' namespace and device.

    Item n is the problem of ``DenseMeanFieldEnergy(unary[n], image[n], bilateral, λ, seeds[n],
    allowed[n], T)``: the same F, pairwise term and gradient (to float round-off), computed for the
    whole batch with one array-API operation each. What :meth:`DenseMeanField.run_batch
    <chainrule2.solvers.DenseMeanField.run_batch>` reads; build it with :meth:`build` (the arguments
    with a leading batch axis, e.g. on a CUDA device: what :meth:`DenseMeanField.batch_energy
    <chainrule2.solvers.DenseMeanField.batch_energy>` does) or :meth:`from_energies` (host numpy,
    from per-item problems).

    **Padding.** Images of different sizes share a batch padded to one grid with seed 254 (as in the
    grid path's batches): padding pixels contribute nothing (no unary, no entropy, their Q is zeroed
    before the down-scaling and their small-grid pixels have no kernel entries), and each item keeps
    its own c = λ·|Ω|/|Ω'| of its own non-padding pixels (:func:`pairwise_scales`). An item padded
    at the bottom and right into a larger batch therefore has the problem it has alone wherever
    the down-scaling of the larger grid restricted to it is its own (always at scale 1; at scale
    0.5 for even sizes).

    Attributes
    ----------
    unary : array (N, H, W, L) float64
        U per item (β·label_costs of the trust divergence).
    items : DenseItems
        The kernel's features ``(N, M, F)``, small-grid mask ``(N, M)`` and down-scaling matrices,
        float64 in the unary's namespace and device (``bilateral.items(images, seeds).to(unary)``).
    bilateral : BilateralKernel
        The kernel (bandwidths, scale, chunk) of every item.
    pairwise_scale : array (N,) float64
        c = λ·|Ω|/|Ω'| per item.
    padding, clamped : array (N, H, W) bool
        Padding pixels (seed 254); seed pixels, one-hot on their seed.
    seed_labels : array (N, H, W) int64
        The seed where ``clamped`` (0 elsewhere).
    allowed : array (N, L) bool
        The labels each item may put mass on.
    temperature : float
        T > 0, the same for every item.

    Example
    -------
    >>> import numpy as np
    >>> unary = np.zeros((2, 2, 2)); seeds = np.full((2, 2), 255); seeds[0, 0] = 1
    >>> energy = DenseMeanFieldEnergy(unary, np.zeros((2, 2)), BilateralKernel(scale=1.0), 0.5, seeds)
    >>> batch = DenseMeanFieldBatch.from_energies([energy, energy])
    >>> one_label = np.zeros((2, 2, 2, 2)); one_label[..., 1] = 1.0
    >>> batch.value(one_label).tolist()              # constant labelling: no pairwise cost, no entropy
    [0.0, 0.0]
    >>> batch.value(one_label[:, :, :, ::-1].copy()).tolist()  # breaks the seed
    [inf, inf]
    """

    unary: Any
    items: DenseItems
    bilateral: BilateralKernel
    pairwise_scale: Any
    padding: Any
    clamped: Any
    seed_labels: Any
    allowed: Any
    temperature: float = 1.0

    def __post_init__(self) -> None:
        try:
            xp = array_namespace(self.unary)
        except TypeError:
            raise TypeError(f"unary: expected an array (N, H, W, L), got {type(self.unary).__name__}") from None
        if self.unary.ndim != 4:
            raise ValueError(f"unary: expected (N, H, W, L), got shape {_shape(self.unary)}")
        n, h, w, num_labels = _shape(self.unary)
        if not isinstance(self.bilateral, BilateralKernel):
            raise TypeError(
                f"bilateral: expected a chainrule2.energies.bilateral.BilateralKernel (a DenseCRFLoss's "
                f"loss.bilateral), got {type(self.bilateral).__name__}"
            )
        if not isinstance(self.items, DenseItems):
            raise TypeError(
                f"items: expected a DenseItems (bilateral.items(images, seeds)), got {type(self.items).__name__}"
            )
        hs, ws = self.bilateral.grid((h, w))
        expected = {
            "items.mask": (self.items.mask, (n, hs * ws)),
            "items.rows": (self.items.rows, (hs, h)),
            "items.cols": (self.items.cols, (ws, w)),
            "pairwise_scale": (self.pairwise_scale, (n,)),
            "padding": (self.padding, (n, h, w)),
            "clamped": (self.clamped, (n, h, w)),
            "seed_labels": (self.seed_labels, (n, h, w)),
            "allowed": (self.allowed, (n, num_labels)),
        }
        for name, (x, shape) in expected.items():
            try:
                same = array_namespace(x) is xp
            except TypeError:
                same = False
            if not same:
                raise TypeError(f"{name}: expected an array of the unary's namespace, got {type(x).__name__}")
            if _shape(x) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {_shape(x)}")
        if _shape(self.items.features)[:2] != (n, hs * ws):
            raise ValueError(f"items.features: expected shape {(n, hs * ws)} + (F,), got {_shape(self.items.features)}")
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))

    @classmethod
    def build(
        cls,
        unary: Any,
        items: DenseItems,
        bilateral: BilateralKernel,
        potts_weight: float = 1.0,
        seeds: Any = None,
        allowed: Any = None,
        temperature: float = 1.0,
    ) -> DenseMeanFieldBatch:
        """The batch of ``DenseMeanFieldEnergy(unary[n], images[n], bilateral, potts_weight, seeds[n], allowed[n], temperature)``.

        ``unary`` ``(N, H, W, L)`` real and finite; ``items`` = ``bilateral.items(images, seeds)``
        (host numpy) moved to the unary's namespace and device with ``.to(unary)``; ``seeds``
        ``(N, H, W)`` integers (class ids, 255, 254) or ``None``; ``allowed`` ``(N, L)`` bool
        (``None`` = all labels), which must include every seed label. All arrays in ``unary``'s
        namespace and on its device; the results stay there.
        """
        try:
            xp = array_namespace(unary, *(() if seeds is None else (seeds,)))
        except TypeError as err:
            raise TypeError(f"unary, seeds: expected arrays of one array namespace ({err})") from None
        if unary.ndim != 4 or 0 in _shape(unary):
            raise ValueError(f"unary: expected a non-empty (N, H, W, L), got shape {_shape(unary)}")
        if not xp.isdtype(unary.dtype, "real floating"):
            raise TypeError(f"unary: expected a real floating dtype, got {unary.dtype}")
        unary = xp.astype(unary, xp.float64)
        if not bool(xp.all(xp.isfinite(unary))):
            raise ValueError("unary: expected finite values, got NaN or inf")
        weight = check_positive(potts_weight, "potts_weight", allow_zero=True)
        padding, seeded, seed_labels = batch_seeds(seeds, unary)
        allowed = batch_allowed(allowed, seeded, seed_labels, int(unary.shape[-1]))
        if not isinstance(items, DenseItems):
            raise TypeError(
                f"items: expected a DenseItems (bilateral.items(images, seeds)), got {type(items).__name__}"
            )
        return cls(
            unary=unary,
            items=items,
            bilateral=bilateral,
            pairwise_scale=pairwise_scales(weight, padding, items.mask),
            padding=padding,
            clamped=seeded,
            seed_labels=seed_labels,
            allowed=allowed,
            temperature=temperature,
        )

    @classmethod
    def from_energies(cls, energies: Any) -> DenseMeanFieldBatch:
        """The host numpy batch of per-item problems (a sequence of :class:`DenseMeanFieldEnergy` of one
        shape, kernel and temperature)."""
        energies = list(energies)
        if not energies or not all(isinstance(e, DenseMeanFieldEnergy) for e in energies):
            raise TypeError("energies: expected a non-empty sequence of DenseMeanFieldEnergy")
        first = energies[0]
        for e in energies[1:]:
            if (e.shape, e.bilateral, e.temperature) != (first.shape, first.bilateral, first.temperature):
                raise ValueError("energies: expected problems of one shape (H, W, L), kernel and temperature")
        padding = np.stack([e.padding for e in energies])
        mask = np.concatenate([e.items.mask for e in energies])
        return cls(
            unary=np.stack([e.unary for e in energies]),
            items=DenseItems(
                np.concatenate([e.items.features for e in energies]), mask, first.items.rows, first.items.cols
            ),
            bilateral=first.bilateral,
            pairwise_scale=np.concatenate(
                [np.asarray(pairwise_scales(e.potts_weight, e.padding[None], e.items.mask)) for e in energies]
            ),
            padding=padding,
            clamped=np.stack([e.clamped for e in energies]),
            seed_labels=np.stack(
                [np.where(e.clamped, 0 if e.seeds is None else e.seeds, 0).astype(np.int64) for e in energies]
            ),
            allowed=np.stack([e.allowed_mask for e in energies]),
            temperature=first.temperature,
        )

    def take(self, indices: Any) -> DenseMeanFieldBatch:
        """The batch of items ``indices`` (a sequence of ints, or an int array of the batch's namespace), in order."""
        xp = array_namespace(self.unary)
        index = xp.asarray(indices, dtype=xp.int64, device=_array_device(self.unary))

        def pick(x: Any) -> Any:
            return xp.take(x, index, axis=0)

        items = DenseItems(pick(self.items.features), pick(self.items.mask), self.items.rows, self.items.cols)
        arrays = ("unary", "pairwise_scale", "padding", "clamped", "seed_labels", "allowed")
        return dataclasses.replace(self, items=items, **{name: pick(getattr(self, name)) for name in arrays})

    # --- shape and constraints ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, H, W, L)``: the shape of a batch of solutions."""
        n, h, w, num_labels = _shape(self.unary)
        return (n, h, w, num_labels)

    @property
    def num_labels(self) -> int:
        return int(self.unary.shape[-1])

    def feasible(self, q: Any) -> Any:
        """``(N,)`` bool: whether each item's ``q`` is one-hot on its seeds with no mass on a disallowed label (padding is free)."""
        return feasible(q, self)

    def minimiser(self, cost: Any) -> Any:
        """``(N, H, W, L)``: argmin_Q ⟨cost, Q⟩ + T·Σ Q log Q under the constraints, per item (softmax
        over the allowed labels, one-hot on the seeds: :func:`~chainrule2.energies.mean_field.softmin`)."""
        return softmin(cost, self, self.temperature)

    # --- the pairwise term on the small grid ------------------------------------------------------------
    def kernel_matrix(self) -> Any:
        """The masked kernels W of the small grids, ``(N, M, M)`` float64, zero diagonal (8·N·M² bytes)."""
        return self.bilateral.kernel(self.items)

    def filter(self, x: Any, kernel: Any = None) -> Any:
        """``W x`` per item for ``x`` ``(N, C, M)``: by ``kernel`` (from :meth:`kernel_matrix`) if given, else exactly in blocks."""
        if kernel is not None:
            return array_namespace(x).matmul(x, kernel)  # W is symmetric
        return self.bilateral.filter(x, self.items)

    def degree(self, kernel: Any = None) -> Any:
        """``(N, M)``: W·1 over each small grid's non-padding pixels."""
        return self.filter(self.items.mask[:, None, :], kernel)[:, 0, :]

    def downscale(self, q: Any) -> Any:
        """``(N, L, M)``: D Q, the masked down-scaled Q with the padding pixels' Q zeroed first."""
        xp = array_namespace(q)
        return self.bilateral.downscale(xp.where(self.padding[..., None], xp.zeros_like(q), q), self.items)

    def pairwise_from(self, small: Any, filtered: Any, degree: Any) -> Any:
        """``(N,)``: c·Σ_k s_kᵀ(W1 − W s_k) from ``small`` = DQ ``(N, L, M)``, ``filtered`` = W·DQ and ``degree`` = W1 ``(N, M)``."""
        xp = array_namespace(small)
        return self.pairwise_scale * xp.sum(small * (degree[:, None, :] - filtered), axis=(1, 2))

    def pairwise_gradient(self, filtered: Any, degree: Any) -> Any:
        """``(N, H, W, L)``: ∂(|Ω|·R)/∂Q = c·Dᵀ(W1 − 2 W·DQ) per item from ``filtered`` = W·DQ (0 on padding pixels)."""
        xp = array_namespace(filtered)
        g = self.pairwise_scale[:, None, None] * (degree[:, None, :] - 2.0 * filtered)
        full = self.bilateral.downscale_adjoint(g, self.items, self.shape)
        return xp.where(self.padding[..., None], xp.zeros_like(full), full)

    def free_energy(self, q: Any, pairwise: Any) -> Any:
        """``(N,)``: ⟨U, Q⟩ + ``pairwise`` + T·Σ Q log Q over the non-padding pixels (no checks: see :meth:`value`)."""
        return unary_and_entropy(q, self.unary, self.padding, self.temperature) + pairwise

    def value(self, solution: Any) -> Any:
        """``(N,)`` float64: F of each item's ``Q`` (exact chunked filtering; ``inf`` where it breaks a
        seed or the label restriction), in ``solution``'s namespace."""
        q = check_batch_distribution(solution, self.shape)
        xp = array_namespace(q)
        small = self.downscale(q)
        both = self.filter(xp.concat([small, self.items.mask[:, None, :]], axis=1))  # one pass: W·DQ and W1
        f = self.free_energy(q, self.pairwise_from(small, both[:, :-1, :], both[:, -1, :]))
        return xp.where(self.feasible(q), f, xp.full_like(f, math.inf))
