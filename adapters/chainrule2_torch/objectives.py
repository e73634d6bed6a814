"""Objectives for the gradient-descent baselines on torch: partial cross-entropy (PCE) and
PCE + λ·relaxed grid Potts ("Grid-GD"), with exactly the stage-A edge weights.

Both follow the fitter's objective signature ``objective(logits, targets, seeds, batch=)``
(``uses_batch = True``): ``logits`` ``(N, H, W, L)`` torch, ``seeds`` ``(N, H, W)``; ``targets``
is ignored (the seeds are the supervision), ``batch.images`` ``(N, H, W, C)`` host images give
the contrast weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from chainrule2.constants import PADDING, UNLABELED

__all__ = ["PartialCrossEntropy", "RelaxedPottsObjective", "FullCrossEntropy"]


def partial_cross_entropy(logits: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Per-item mean over seed pixels of −log S_p(y_p), ``(N,)``; 0 for an item without seeds."""
    num_labels = logits.shape[-1]
    seeds = seeds.to(device=logits.device, dtype=torch.int64)
    if tuple(seeds.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"seeds: expected shape {tuple(logits.shape[:-1])} (logits without the class axis), got {tuple(seeds.shape)}"
        )
    bad = (seeds >= num_labels) & (seeds != PADDING) & (seeds != UNLABELED) | (seeds < 0)
    if bool(bad.any()):
        raise ValueError(f"seeds: expected labels in [0, {num_labels}) or 254/255, got {int(seeds[bad][0])}")
    is_seed = (seeds >= 0) & (seeds < num_labels)
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, torch.where(is_seed, seeds, torch.zeros_like(seeds))[..., None])[..., 0]
    per_item = -(picked * is_seed).flatten(1).sum(1)
    return per_item / is_seed.flatten(1).sum(1).clamp(min=1)


@dataclass(frozen=True)
class PartialCrossEntropy:
    """PCE: mean over items of the per-item mean seed cross-entropy (items without seeds add 0)."""

    uses_batch = True

    def __call__(self, logits: torch.Tensor, targets: Any = None, seeds: Any = None, batch: Any = None) -> torch.Tensor:
        seeds = torch.as_tensor(np.asarray(batch.seeds) if seeds is None else seeds)
        return partial_cross_entropy(logits, seeds).mean()


@dataclass(frozen=True)
class FullCrossEntropy:
    """Mean cross-entropy over every labelled pixel of ``targets`` (full masks; 254/255 ignored)."""

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, seeds: Any = None) -> torch.Tensor:
        t = targets.to(logits.device).long()
        t = torch.where((t >= 0) & (t < logits.shape[-1]), t, torch.full_like(t, -100))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=-100)


@dataclass(frozen=True)
class RelaxedPottsObjective:
    """Grid-GD: PCE + λ·relaxed grid Potts, averaged over the items of the batch.

    The regulariser is ``loss.value_from_weights`` with the edge costs ``loss.pairwise(image,
    seeds)``: the same λ, N4/N8 offsets, σ², 1/dist and |Ω|/|N| scaling as stage A; the
    relaxation (bilinear, squared, tv) is ``loss.relaxation``. The PCE part is computed here with
    a stable log-softmax (identical in value to the loss's own PCE).

    Parameters
    ----------
    loss : chainrule2.losses.ScribblePotts
    """

    loss: Any
    uses_batch = True

    def __post_init__(self) -> None:
        for method in ("pairwise", "value_from_weights"):
            if not callable(getattr(self.loss, method, None)):
                raise TypeError(
                    f"loss: expected a ScribblePotts-like loss with {method}(), got {type(self.loss).__name__}"
                )

    def costs(self, batch: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Edge costs ``(N, K, H, W)`` of the batch's host images, on ``device`` (one copy)."""
        if batch is None or batch.images is None:
            raise ValueError("batch.images: the relaxed Potts objective needs host images (N, H, W, C), got None")
        images, seeds = np.asarray(batch.images), np.asarray(batch.seeds)
        costs = np.stack([self.loss.pairwise(images[i], seeds[i]) for i in range(images.shape[0])])
        return torch.as_tensor(costs, dtype=dtype, device=device)

    def regulariser(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        """Per-item λ·R(S) (relaxed), ``(N,)``."""
        seeds = np.asarray(batch.seeds)
        unlabeled = np.where(seeds == PADDING, PADDING, UNLABELED).astype(np.int64)  # keep padding, drop the PCE
        probs = torch.softmax(logits, dim=-1)
        return self.loss.value_from_weights(probs, unlabeled, self.costs(batch, logits.device, logits.dtype))

    def __call__(self, logits: torch.Tensor, targets: Any = None, seeds: Any = None, batch: Any = None) -> torch.Tensor:
        seeds = torch.as_tensor(np.asarray(batch.seeds) if seeds is None else seeds)
        return (partial_cross_entropy(logits, seeds) + self.regulariser(logits, batch)).mean()
