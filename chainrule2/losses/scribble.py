"""The paper's regularised loss: partial cross-entropy on scribbles + λ · contrast-sensitive grid Potts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.base import Batch
from chainrule2.constants import PADDING
from chainrule2.energies.grid import (
    GridPotts,
    GridPottsBatch,
    batch_contrast_weights,
    batch_pair_mask,
    contrast_weights,
    neighbourhood_offsets,
    pair_slices,
)
from chainrule2.validation import check_choice, check_positive

RELAXATIONS = ("bilinear", "squared", "tv")


@dataclass(frozen=True)
class ScribblePotts:
    """L(S) = PCE(S; seeds) + λ·R(S) with R the contrast-sensitive Potts model on the grid (PAPER.md §1).

    Discrete form (stage A, :meth:`energy`): the :class:`~chainrule2.energies.grid.GridPotts`

        E(x) = unary(x) + λ·s·Σ_pq w_pq [x_p ≠ x_q],  s = |Ω|/|N| if ``edge_scaling`` else 1,

    with the seeds clamped (``seed_penalty=None``) or penalised (the official ``10 * potts_weight``),
    and, with ``restrict_labels``, only the classes present in the item's seeds allowed (all
    classes when at most one is present). |Ω| = non-padding pixels, |N| = pairs not touching padding.

    Relaxed form (gradient descent, :meth:`value`), per item::

        value = mean_{p ∈ seeds} −log S_p(y_p)  +  (1/|Ω|) Σ_k Σ_p c_k[p] · ρ(S_p, S_{p+offset_k})

    with c = λ·s·w **exactly the stage-A edge costs** (so ``|Ω| · pairwise part`` equals the
    discrete pairwise energy on one-hot S) and ρ one of ``"bilinear"`` 1 − S_p·S_q,
    ``"squared"`` ½‖S_p − S_q‖², ``"tv"`` ½Σ|S_p − S_q|. The PCE is 0 on items without seeds.

    On the model's device: :meth:`batch_energy`, :meth:`batch_pairwise`, :meth:`value` and
    :meth:`gradient` compute in the arrays' own namespace (torch on CUDA included) when the images
    and seeds are there too, so stage A on :class:`~chainrule2.solvers.MeanField` or
    :class:`~chainrule2.solvers.GradientStep` needs no host copy.

    Precomputing weights (for SGD loops): the weights depend on the image only. Call
    :meth:`pairwise` once per image (host numpy ``(K, H, W)``), move it to the model's device
    (e.g. ``torch.as_tensor(c, device=probs.device)``), then call
    ``value_from_weights(probs, seeds, costs)`` every step: it uses only array-API operations of
    ``probs``'s namespace, so torch autograd flows through it.

    Parameters
    ----------
    potts_weight : float
        λ (paper: 100).
    neighbourhood : {4, 8}
    sigma : float or None
        σ of the contrast weights; None = automatic (mean squared colour difference).
    edge_scaling : bool
        Multiply the pairwise term by |Ω|/|N| (the paper's normalisation).
    seed_penalty : float or None
        None = seeds clamped exactly in stage A (see :class:`GridPotts` for why); a number = soft penalty.
    restrict_labels : bool
        Stage A uses only the classes present in the item's seeds (if at least two are).
    relaxation : {"bilinear", "squared", "tv"}

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.base import Batch
    >>> images = np.zeros((1, 4, 4, 3)); seeds = np.full((1, 4, 4), 255); seeds[0, 0, 0] = 1
    >>> loss = ScribblePotts(potts_weight=1.0)
    >>> probs = np.full((1, 4, 4, 2), 0.5)
    >>> loss.value(probs, Batch(None, seeds, images)).round(4)
    array([1.1304])
    >>> loss.energy(np.zeros((4, 4, 2)), Batch(None, seeds, images), 0).allowed_labels is None
    True
    """

    potts_weight: float = 100.0
    neighbourhood: int = 8
    sigma: float | None = None
    edge_scaling: bool = True
    seed_penalty: float | None = None
    restrict_labels: bool = True
    relaxation: str = "bilinear"

    #: ``value`` and ``gradient`` compute in the arrays' own namespace and device (see :class:`~chainrule2.solvers.GradientStep`).
    array_api: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_positive(self.potts_weight, "potts_weight", allow_zero=True)
        neighbourhood_offsets(self.neighbourhood)
        check_positive(self.sigma, "sigma", allow_none=True)
        check_positive(self.seed_penalty, "seed_penalty", allow_zero=True, allow_none=True)
        check_choice(self.relaxation, "relaxation", RELAXATIONS)

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        return neighbourhood_offsets(self.neighbourhood)

    # --- shared weights ----------------------------------------------------------------------------
    def _item(self, batch: Batch, index: int) -> tuple[np.ndarray, np.ndarray]:
        if batch.images is None:
            raise ValueError("batch.images: ScribblePotts needs host images (N, H, W, C), got None")
        image = np.asarray(batch.images[index])
        seeds = np.asarray(batch.seeds[index])
        return image, seeds

    def edge_scale(self, seeds: Any) -> float:
        """s = |Ω|/|N| (non-padding pixels / pairs not touching padding), or 1 without ``edge_scaling``."""
        return float(self.batch_edge_scale(np.asarray(seeds)[None])[0])

    def batch_edge_scale(self, seeds: Any) -> Any:
        """``(N,)`` float64: :meth:`edge_scale` of every item of ``seeds`` ``(N, H, W)``, in their namespace."""
        xp = array_namespace(seeds)
        n = int(seeds.shape[0])
        if not self.edge_scaling:
            return xp.ones((n,), dtype=xp.float64, device=array_device(seeds))
        padding = seeds == PADDING
        pixels = xp.sum(xp.astype(xp.reshape(~padding, (n, -1)), xp.float64), axis=1)
        pairs = xp.sum(xp.astype(xp.reshape(batch_pair_mask(padding, self.offsets), (n, -1)), xp.float64), axis=1)
        return xp.where(pairs > 0, pixels / xp.where(pairs > 0, pairs, xp.ones_like(pairs)), xp.ones_like(pairs))

    def pairwise(self, image: Any, seeds: Any) -> np.ndarray:
        """The edge costs c = λ·s·w of one image, ``(K, H, W)`` float64 (0 on pairs touching padding).

        ``image`` is ``(H, W)`` or ``(H, W, C)``; ``seeds`` ``(H, W)``. The same numbers enter
        :meth:`energy` (stage A) and :meth:`value` (the relaxation).
        """
        image = np.asarray(image)
        seeds = np.asarray(seeds)
        if image.shape[:2] != seeds.shape or seeds.ndim != 2:
            raise ValueError(f"seeds: expected shape {image.shape[:2]} (the image's grid), got {seeds.shape}")
        return np.asarray(self.batch_pairwise(image[None], seeds[None])[0])

    def batch_pairwise(self, images: Any, seeds: Any) -> Any:
        """:meth:`pairwise` of N items at once, ``(N, K, H, W)`` float64, in the images' namespace and device.

        ``images`` ``(N, H, W[, C])`` and ``seeds`` ``(N, H, W)`` of one array namespace (numpy, torch, ...).
        """
        _same_namespace(images, seeds, "batch.images", "batch.seeds")
        if tuple(images.shape[:3]) != tuple(seeds.shape) or seeds.ndim != 3:
            raise ValueError(
                f"seeds: expected shape {tuple(images.shape[:3])} (the images' grid), got {tuple(seeds.shape)}"
            )
        weights = batch_contrast_weights(images, self.neighbourhood, self.sigma, seeds == PADDING)
        xp = array_namespace(weights)
        return weights * xp.reshape(self.potts_weight * self.batch_edge_scale(seeds), (-1, 1, 1, 1))

    # --- stage A ---------------------------------------------------------------------------------
    def allowed_labels(self, seeds: Any, num_labels: int) -> tuple[int, ...] | None:
        """The classes present in ``seeds`` if at least two (and not all) are and ``restrict_labels``, else None (all)."""
        if not self.restrict_labels:
            return None
        allowed = np.asarray(self.batch_allowed(np.asarray(seeds)[None], num_labels)[0])
        return None if allowed.all() else tuple(int(c) for c in np.flatnonzero(allowed))

    def batch_allowed(self, seeds: Any, num_labels: int) -> Any:
        """``(N, L)`` bool in ``seeds``' namespace: per item, :meth:`allowed_labels` as a mask (all True = all labels)."""
        xp = array_namespace(seeds)
        n = int(seeds.shape[0])
        dev = array_device(seeds)
        if not self.restrict_labels:
            return xp.ones((n, num_labels), dtype=xp.bool, device=dev)
        classes = xp.arange(num_labels, dtype=seeds.dtype, device=dev)
        present = xp.any(xp.reshape(seeds, (n, -1))[:, :, None] == classes, axis=1)
        count = xp.sum(xp.astype(present, xp.int64), axis=1)
        restrict = (count >= 2) & (count < num_labels)
        return present | ~restrict[:, None]

    def batch_energy(self, unary: Any, batch: Batch) -> GridPottsBatch:
        """The stage-A problems of every item as one :class:`~chainrule2.energies.grid.GridPottsBatch`:
        ``unary`` ``(N, H, W, L)`` (β·label_costs) plus the Potts term, in ``unary``'s namespace and device.

        ``batch.images`` ``(N, H, W[, C])`` and ``batch.seeds`` ``(N, H, W)`` must be arrays of that
        namespace on that device. Item n is :meth:`energy` ``(unary[n], batch, n)``.
        """
        if batch.images is None:
            raise ValueError("batch.images: ScribblePotts needs images (N, H, W, C), got None")
        _same_namespace(unary, batch.images, "unary", "batch.images")
        _same_namespace(unary, batch.seeds, "unary", "batch.seeds")
        if unary.ndim != 4:
            raise ValueError(f"unary: expected (N, H, W, L), got shape {tuple(unary.shape)}")
        if tuple(batch.images.shape[:3]) != tuple(unary.shape[:3]):
            raise ValueError(
                f"batch.images: expected (N, H, W) = {tuple(unary.shape[:3])} (the unary's), got {tuple(batch.images.shape)}"
            )
        seeds = batch.seeds
        if tuple(seeds.shape) != tuple(unary.shape[:3]):
            raise ValueError(f"batch.seeds: expected shape {tuple(unary.shape[:3])}, got {tuple(seeds.shape)}")
        return GridPottsBatch.build(
            unary=unary,
            weights=batch_contrast_weights(batch.images, self.neighbourhood, self.sigma, seeds == PADDING),
            offsets=self.offsets,
            potts_weight=self.potts_weight,
            edge_scale=self.batch_edge_scale(seeds),
            seeds=seeds,
            seed_penalty=self.seed_penalty,
            allowed=self.batch_allowed(seeds, int(unary.shape[-1])),
        )

    def energy(self, unary: Any, batch: Batch, index: int) -> GridPotts:
        """The stage-A :class:`GridPotts` of item ``index``: ``unary`` ``(H, W, L)`` (β·label_costs) plus the Potts term."""
        image, seeds = self._item(batch, index)
        unary = np.asarray(unary, dtype=np.float64)
        if unary.ndim != 3:
            raise ValueError(f"unary: expected a 2-D grid (H, W, L), got shape {unary.shape}")
        if image.shape[:2] != unary.shape[:2]:
            raise ValueError(
                f"batch.images[{index}]: expected grid {unary.shape[:2]} (the unary's), got {image.shape[:2]}"
            )
        if seeds.shape != unary.shape[:2]:
            raise ValueError(f"batch.seeds[{index}]: expected shape {unary.shape[:2]}, got {seeds.shape}")
        padding = seeds == PADDING
        weights = contrast_weights(image, self.neighbourhood, self.sigma, padding)
        return GridPotts(
            unary=unary,
            weights=weights,
            offsets=self.offsets,
            potts_weight=self.potts_weight,
            edge_scale=self.edge_scale(seeds),
            seeds=seeds,
            seed_penalty=self.seed_penalty,
            allowed_labels=self.allowed_labels(seeds, unary.shape[2]),
        )

    # --- relaxation --------------------------------------------------------------------------------
    def value(self, probs: Any, batch: Batch) -> Any:
        """Per-item relaxed loss ``(N,)`` of probabilities ``(N, H, W, L)`` (numpy, array_api_strict, torch...)."""
        return self.value_from_weights(probs, batch.seeds, self._costs(probs, batch))

    def _costs(self, probs: Any, batch: Batch) -> Any:
        """The batch's edge costs ``(N, K, H, W)`` in ``probs``' namespace, dtype and device: computed there
        when the images are there too, else on the host and moved there."""
        xp = array_namespace(probs)
        if batch.images is None:
            raise ValueError("batch.images: ScribblePotts needs images (N, H, W, C), got None")
        if array_namespace(batch.images) is xp and array_namespace(batch.seeds) is xp:
            costs = self.batch_pairwise(batch.images, batch.seeds)
        else:
            costs = self.batch_pairwise(np.asarray(batch.images), np.asarray(batch.seeds))
        return xp.asarray(costs, dtype=probs.dtype, device=array_device(probs))

    def _seed_terms(self, probs: Any, seeds: Any, xp: Any) -> tuple[Any, Any, Any]:
        """The seeds' one-hot ``(N, H, W, L)``, seed count and pixel count ``(N,)`` (at least 1) in
        ``probs``' namespace and device (host ``seeds`` are moved there)."""
        num_labels = int(probs.shape[-1])
        dev = array_device(probs)
        if tuple(int(s) for s in seeds.shape) != tuple(int(s) for s in probs.shape[:-1]):
            raise ValueError(
                f"seeds: expected shape {tuple(probs.shape[:-1])} (probs without the class axis), got {tuple(seeds.shape)}"
            )
        if array_namespace(seeds) is not xp:
            seeds = xp.asarray(np.asarray(seeds), device=dev)
        seeds = xp.astype(seeds, xp.int64)
        n = int(seeds.shape[0])
        is_seed = (seeds >= 0) & (seeds < num_labels)
        onehot = (seeds[..., None] == xp.arange(num_labels, dtype=xp.int64, device=dev)) & is_seed[..., None]
        count = xp.sum(xp.astype(xp.reshape(is_seed, (n, -1)), probs.dtype), axis=1)
        pixels = xp.sum(xp.astype(xp.reshape(seeds != PADDING, (n, -1)), probs.dtype), axis=1)
        one = xp.ones_like(count)
        return onehot, xp.where(count > 1, count, one), xp.where(pixels > 1, pixels, one)

    def value_from_weights(self, probs: Any, seeds: Any, costs: Any) -> Any:
        """Per-item relaxed loss ``(N,)`` with precomputed edge costs ``(N, K, H, W)`` (from :meth:`pairwise`).

        ``costs`` must be in ``probs``'s namespace and on its device; ``seeds`` ``(N, H, W)`` may be host numpy.
        """
        xp = array_namespace(probs)
        n, h, w, _ = (int(s) for s in probs.shape)
        if tuple(int(s) for s in costs.shape) != (n, len(self.offsets), h, w):
            raise ValueError(f"costs: expected shape {(n, len(self.offsets), h, w)}, got {tuple(costs.shape)}")
        onehot, count, pixels = self._seed_terms(probs, seeds, xp)
        seed_prob = xp.sum(xp.where(onehot, probs, xp.zeros_like(probs)), axis=-1)
        is_seed = xp.any(onehot, axis=-1)
        logp = xp.log(xp.where(is_seed, seed_prob, xp.ones_like(seed_prob)))
        pce = -xp.sum(xp.reshape(logp, (n, -1)), axis=1) / count
        reg = xp.zeros_like(pce)
        for k, offset in enumerate(self.offsets):
            src, dst = pair_slices(offset, (h, w))
            sp = probs[(slice(None),) + src + (slice(None),)]
            sq = probs[(slice(None),) + dst + (slice(None),)]
            c = costs[(slice(None), k) + src]
            if self.relaxation == "bilinear":
                rho = 1.0 - xp.sum(sp * sq, axis=-1)
            elif self.relaxation == "squared":
                rho = 0.5 * xp.sum((sp - sq) ** 2, axis=-1)
            else:
                rho = 0.5 * xp.sum(xp.abs(sp - sq), axis=-1)
            reg = reg + xp.sum(xp.reshape(c * rho, (n, -1)), axis=1)
        return pce + reg / pixels

    def gradient(self, probs: Any, batch: Batch) -> Any:
        """Analytic ∂value/∂probs, ``(N, H, W, L)`` float64 in ``probs``' namespace and device (``tv`` uses sign(0) = 0)."""
        xp = array_namespace(probs)
        probs = xp.astype(probs, xp.float64)
        n, h, w, _ = (int(s) for s in probs.shape)
        onehot, count, pixels = self._seed_terms(probs, batch.seeds, xp)
        with np.errstate(divide="ignore"):  # a seed at probability 0: −inf, as −1/0 is
            seed_grad = -1.0 / xp.where(onehot, probs, xp.ones_like(probs))
        grad = xp.where(onehot, seed_grad, xp.zeros_like(probs)) / xp.reshape(count, (-1, 1, 1, 1))
        costs = self._costs(probs, batch) / xp.reshape(pixels, (-1, 1, 1, 1))
        for k, offset in enumerate(self.offsets):
            src, dst = pair_slices(offset, (h, w))
            at_src, at_dst = (slice(None),) + src + (...,), (slice(None),) + dst + (...,)
            c = costs[(slice(None), k) + src][..., None]
            sp, sq = probs[at_src], probs[at_dst]
            if self.relaxation == "bilinear":
                gp, gq = -c * sq, -c * sp
            elif self.relaxation == "squared":
                gp = c * (sp - sq)
                gq = -gp
            else:
                gp = 0.5 * c * xp.sign(sp - sq)
                gq = -gp
            grad[at_src] = grad[at_src] + gp
            grad[at_dst] = grad[at_dst] + gq
        return grad


def _same_namespace(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """``b`` in ``a``'s array namespace (on one device: the namespace's own operations say otherwise)."""
    try:
        ok = array_namespace(a) is array_namespace(b)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(
            f"{name_b}: expected an array of {name_a}'s namespace ({type(a).__module__}.{type(a).__name__}), "
            f"got {type(b).__module__}.{type(b).__name__}"
        )
