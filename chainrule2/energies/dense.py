"""The dense stage-A problem of Dense-TR: the trust-region unary + the DenseCRF loss, as a mean-field free energy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import xlogy

from chainrule2.constants import IGNORED_LABELS, PADDING, UNLABELED
from chainrule2.energies.bilateral import BilateralKernel, DenseItems
from chainrule2.energies.mean_field import check_distribution
from chainrule2.validation import check_positive

__all__ = ["DenseMeanFieldEnergy"]


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
        """c = λ·|Ω|/|Ω'|: the factor of Σ_k (DQ)_kᵀ W (1 − (DQ)_k)."""
        pixels = max(1, int((~self.padding).sum()))
        small = max(1.0, float(self.items.mask.sum()))
        return self.potts_weight * pixels / small

    def check_distribution(self, q: Any, name: str = "solution") -> np.ndarray:
        """``q`` as float64 after checking it is a distribution over the labels at every pixel."""
        return check_distribution(q, self.shape, name)

    def feasible(self, q: np.ndarray) -> bool:
        """Whether ``q`` is exactly one-hot on every seed and has no mass on a disallowed label (padding is free)."""
        if np.any(q[~self.padding][:, ~self.allowed_mask] != 0):
            return False
        clamped = self.clamped
        if clamped.any():
            assert self.seeds is not None  # clamped pixels exist only with seeds
            return bool(np.all(q[clamped] == np.eye(self.num_labels)[self.seeds[clamped]]))
        return True

    def minimiser(self, cost: np.ndarray) -> np.ndarray:
        """argmin_Q ⟨cost, Q⟩ + T·Σ_p ⟨Q_p, log Q_p⟩ under the constraints: softmax(−cost/T) over the
        allowed labels, one-hot on the seeds. ``cost`` ``(H, W, L)``; a new array."""
        z = np.where(self.allowed_mask, -cost / self.temperature, -math.inf)
        z = z - z.max(axis=-1, keepdims=True)
        q = np.exp(z)
        q /= q.sum(axis=-1, keepdims=True)
        clamped = self.clamped
        if clamped.any():
            assert self.seeds is not None
            q[clamped] = np.eye(self.num_labels)[self.seeds[clamped]]
        return q

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
        return np.asarray(self.bilateral.kernel(self.items)[0])

    def filter(self, x: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        """``W x`` for ``x`` ``(C, M)``: by ``kernel`` (from :meth:`kernel_matrix`) if given, else exactly in blocks."""
        if kernel is not None:
            return x @ kernel  # W is symmetric
        return np.asarray(self.bilateral.filter(x[None], self.items)[0])

    def degree(self, kernel: np.ndarray | None = None) -> np.ndarray:
        """``(M,)``: W·1 over the small grid's non-padding pixels."""
        return self.filter(self.items.mask, kernel)[0]

    def downscale(self, q: np.ndarray) -> np.ndarray:
        """``(L, M)``: D Q, the masked down-scaled Q with the padding pixels' Q zeroed first."""
        real = (~self.padding)[..., None]
        return np.asarray(self.bilateral.downscale(np.where(real, q, 0.0)[None], self.items)[0])

    def pairwise_from(self, small: np.ndarray, filtered: np.ndarray, degree: np.ndarray) -> float:
        """c·Σ_k s_kᵀ(W1 − W s_k) from ``small`` = DQ ``(L, M)``, ``filtered`` = W·DQ and ``degree`` = W1."""
        return self.pairwise_scale * float(np.sum(small * (degree[None, :] - filtered)))

    def pairwise_gradient(self, filtered: np.ndarray, degree: np.ndarray) -> np.ndarray:
        """``(H, W, L)``: ∂(|Ω|·R)/∂Q = c·Dᵀ(W1 − 2 W·DQ) from ``filtered`` = W·DQ (0 on padding pixels)."""
        g = self.pairwise_scale * (degree[None, :] - 2.0 * filtered)
        full = np.asarray(self.bilateral.downscale_adjoint(g[None], self.items, (1,) + self.shape)[0])
        return np.where((~self.padding)[..., None], full, 0.0)

    def free_energy(self, q: np.ndarray, pairwise: float) -> float:
        """⟨U, Q⟩ + ``pairwise`` + T·Σ Q log Q over the non-padding pixels (no checks: see :meth:`value`)."""
        real = ~self.padding
        unary = float(np.sum((q * self.unary)[real]))
        return unary + pairwise + self.temperature * float(np.sum(xlogy(q[real], q[real])))

    def value(self, solution: Any) -> float:
        """F(Q) in float64 (exact chunked filtering); ``inf`` if ``Q`` breaks a seed or the label restriction."""
        q = self.check_distribution(solution)
        if not self.feasible(q):
            return math.inf
        small = self.downscale(q)
        both = self.filter(np.concatenate([small, self.items.mask], axis=0))  # one pass: W·DQ and W1
        return self.free_energy(q, self.pairwise_from(small, both[:-1], both[-1]))
