"""The paper's regularised loss: partial cross-entropy on scribbles + λ · contrast-sensitive grid Potts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.base import Batch
from chainrule2.constants import PADDING
from chainrule2.energies.grid import (
    GridPotts,
    contrast_weights,
    neighbourhood_offsets,
    pair_mask,
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
        if not self.edge_scaling:
            return 1.0
        seeds = np.asarray(seeds)
        padding = seeds == PADDING
        pixels = int((~padding).sum())
        pairs = int(pair_mask(seeds.shape, self.offsets, padding).sum())
        return pixels / pairs if pairs else 1.0

    def pairwise(self, image: Any, seeds: Any) -> np.ndarray:
        """The edge costs c = λ·s·w of one image, ``(K, H, W)`` float64 (0 on pairs touching padding).

        ``image`` is ``(H, W)`` or ``(H, W, C)``; ``seeds`` ``(H, W)``. The same numbers enter
        :meth:`energy` (stage A) and :meth:`value` (the relaxation).
        """
        image = np.asarray(image)
        seeds = np.asarray(seeds)
        if image.shape[:2] != seeds.shape or seeds.ndim != 2:
            raise ValueError(f"seeds: expected shape {image.shape[:2]} (the image's grid), got {seeds.shape}")
        padding = seeds == PADDING
        w = contrast_weights(image, self.neighbourhood, self.sigma, padding)
        return w * (self.potts_weight * self.edge_scale(seeds))

    # --- stage A ---------------------------------------------------------------------------------
    def allowed_labels(self, seeds: Any, num_labels: int) -> tuple[int, ...] | None:
        """The classes present in ``seeds`` if at least two (and not all) are and ``restrict_labels``, else None (all)."""
        if not self.restrict_labels:
            return None
        seeds = np.asarray(seeds)
        present = np.unique(seeds[(seeds >= 0) & (seeds < num_labels)])
        if present.size < 2 or present.size == num_labels:
            return None
        return tuple(int(c) for c in present)

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
        xp = array_namespace(probs)
        n = int(probs.shape[0])
        costs = np.stack([self.pairwise(*self._item(batch, i)) for i in range(n)])
        costs = xp.asarray(costs, dtype=probs.dtype, device=array_device(probs))
        return self.value_from_weights(probs, batch.seeds, costs)

    def _seed_terms(self, probs: Any, seeds: Any, xp: Any) -> tuple[Any, Any, Any]:
        num_labels = int(probs.shape[-1])
        seeds_np = np.asarray(seeds).astype(np.int64)
        if seeds_np.shape != tuple(probs.shape[:-1]):
            raise ValueError(
                f"seeds: expected shape {tuple(probs.shape[:-1])} (probs without the class axis), got {seeds_np.shape}"
            )
        is_seed = (seeds_np >= 0) & (seeds_np < num_labels)
        onehot = (seeds_np[..., None] == np.arange(num_labels)) & is_seed[..., None]
        count = is_seed.reshape(is_seed.shape[0], -1).sum(axis=1)
        pixels = (seeds_np != PADDING).reshape(seeds_np.shape[0], -1).sum(axis=1)
        dev = array_device(probs)
        return (
            xp.asarray(onehot, device=dev),
            xp.asarray(np.maximum(count, 1).astype(np.float64), dtype=probs.dtype, device=dev),
            xp.asarray(np.maximum(pixels, 1).astype(np.float64), dtype=probs.dtype, device=dev),
        )

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

    def gradient(self, probs: Any, batch: Batch) -> np.ndarray:
        """Analytic ∂value/∂probs, ``(N, H, W, L)`` float64 numpy (``tv`` uses sign(0) = 0)."""
        probs = np.asarray(probs, dtype=np.float64)
        n, h, w, _ = probs.shape
        onehot, count, pixels = self._seed_terms(probs, batch.seeds, np)
        grad = np.zeros_like(probs)
        with np.errstate(divide="ignore"):
            grad[onehot] = -1.0 / probs[onehot]
        grad /= count[:, None, None, None]
        costs = np.stack([self.pairwise(*self._item(batch, i)) for i in range(n)]) / pixels[:, None, None, None]
        for k, offset in enumerate(self.offsets):
            src, dst = pair_slices(offset, (h, w))
            c = costs[(slice(None), k) + src][..., None]
            sp = probs[(slice(None),) + src]
            sq = probs[(slice(None),) + dst]
            if self.relaxation == "bilinear":
                gp, gq = -c * sq, -c * sp
            elif self.relaxation == "squared":
                gp = c * (sp - sq)
                gq = -gp
            else:
                gp = 0.5 * c * np.sign(sp - sq)
                gq = -gp
            grad[(slice(None),) + src] += gp
            grad[(slice(None),) + dst] += gq
        return grad
