"""Stage-B criteria as ``torch.nn.Module``: NCHW logits (or torchvision's ``{"out": logits}``) in,
a scalar loss out; targets and seeds may be numpy or torch, on any device.

* :class:`SeedAwareLoss`: clean CE on seed pixels and a divergence elsewhere (the robust trust
  region's d_B); ``divergence=None`` is the partial cross-entropy (PCE) baseline, and
  ``seed_divergence=None`` with mask targets is full supervision. It is
  :class:`chainrule2.divergences.SeedAwareObjective` (the one implementation) seen from torch.
* :class:`RelaxedPottsLoss`: PCE + λ·relaxed grid Potts ("Grid-GD"), with exactly the stage-A
  edge weights.
* :class:`RelaxedDenseLoss`: PCE + λ·relaxed dense CRF ("Dense-GD", the DenseCRF loss of Tang et
  al. 2018), with :class:`chainrule2.losses.DenseCRFLoss`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.divergences import CrossEntropy, Divergence, SeedAwareObjective
from chainrule2.validation import check_axis, check_int

__all__ = ["SeedAwareLoss", "RelaxedPottsLoss", "RelaxedDenseLoss", "output_logits", "class_axis_last"]

CLEAN_CE = CrossEntropy()  #: the default loss on seed pixels


class RelaxedPairwise(Protocol):
    """What :class:`RelaxedPottsLoss` needs of its loss (e.g. :class:`chainrule2.losses.ScribblePotts`)."""

    def pairwise(self, image: Any, seeds: Any) -> np.ndarray: ...

    def value_from_weights(self, probs: Any, seeds: Any, costs: Any) -> Any: ...


#: A model's output: the logits, or torchvision's ``{"out": logits, ...}``.
Output = torch.Tensor | dict[str, torch.Tensor]
#: Labels or soft targets, host numpy or a tensor on any device.
Labels = np.ndarray | torch.Tensor


def output_logits(output: Output) -> torch.Tensor:
    """The logits tensor of a model's output: the tensor itself, or ``output["out"]`` (torchvision)."""
    if isinstance(output, dict):
        if "out" not in output:
            raise TypeError(
                f"output: expected a tensor or a dict with an 'out' entry, got a dict with keys {sorted(output)}"
            )
        output = output["out"]
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"output: expected logits as a torch tensor (or {{'out': tensor}}), got {type(output).__name__}"
        )
    if not output.is_floating_point():
        raise TypeError(f"output: expected floating logits, got dtype {output.dtype}")
    return output


def class_axis_last(logits: torch.Tensor, class_axis: int, spatial: tuple[int, ...] | None = None) -> torch.Tensor:
    """``logits`` with the class axis moved last; ``spatial`` (the seeds' shape) is checked with a hint."""
    ndim = logits.ndim
    if ndim < 2:
        raise ValueError(f"output: expected logits (N, C, H, W) or (N, H, W, C), got shape {tuple(logits.shape)}")
    check_axis(class_axis, ndim, "class_axis")
    moved = logits.movedim(class_axis, -1)
    if spatial is None or tuple(moved.shape[:-1]) == tuple(spatial):
        return moved
    hint = ""
    for axis, fix in ((1, "for NCHW logits pass class_axis=1"), (-1, "for NHWC logits pass class_axis=-1")):
        if axis % ndim != class_axis % ndim and tuple(logits.movedim(axis, -1).shape[:-1]) == tuple(spatial):
            hint = f"; {fix}"
    if not hint and moved.shape[0] != spatial[0]:
        hint = f" (the model returned {moved.shape[0]} items for a batch of {spatial[0]})"
    raise ValueError(
        f"output: expected the class axis at class_axis={class_axis}, leaving {tuple(moved.shape[:-1])} to match "
        f"the seeds' shape {tuple(spatial)}, got logits of shape {tuple(logits.shape)}{hint}"
    )


def _tensor(x: object, like: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (numpy or torch) as a tensor on ``like``'s device: int64 labels, or ``like``'s dtype."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if x.is_floating_point():
        return x.to(device=like.device, dtype=like.dtype)
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name}: expected integer labels or floating probabilities, got dtype {x.dtype}")
    return x.to(device=like.device, dtype=torch.int64)


class SeedAwareLoss(torch.nn.Module):
    """Stage B as a torch criterion: clean CE on seeds, ``divergence`` on the other pixels.

    Parameters
    ----------
    divergence : Divergence or None
        d_B on non-seed pixels: ``RobustCrossEntropy(error_prob, num_classes)`` (Grid-TR),
        ``CrossEntropy()`` (ADM), a learned-ε :class:`~chainrule2_torch.LearnedErrorRobustCE`
        (its parameter is registered with this module), or None for the partial cross-entropy.
    normalization : {"official", "mean", "item", "sum"}
        Required: how the sum over pixels is normalised (see
        :class:`~chainrule2.divergences.SeedAwareObjective`).
    seed_divergence : Divergence or None
        Loss on seed pixels (default clean CE); None applies ``divergence`` to every valid pixel
        (full supervision with masks as targets).
    class_axis : int
        Where the class axis of the logits is: 1 for NCHW (torch's convention, the default), -1
        for class-last logits.

    Call as ``criterion(output, targets, seeds)``: ``output`` logits ``(N, C, H, W)`` or
    ``{"out": logits}``; ``targets`` labels ``(N, H, W)`` (255 unlabeled, 254 padding) or soft
    targets with the class axis at ``class_axis``, or None when ``divergence`` is None; ``seeds``
    ``(N, H, W)``. Numpy or torch, any device (moved to the logits' device). A soft target that
    is all 0 at a pixel (the padding :class:`~chainrule2_torch.data.Augmentation` gives soft
    targets) is ignored there, as a 254 label: neither summed nor counted by the normalisation.

    Examples
    --------
    >>> import torch
    >>> pce = SeedAwareLoss(None, normalization="mean")
    >>> seeds = torch.tensor([[[0, 255], [255, 1]]])
    >>> round(float(pce(torch.zeros(1, 2, 2, 2), None, seeds)), 4)   # log 2
    0.6931
    """

    def __init__(
        self,
        divergence: Divergence | None = None,
        *,
        normalization: str,
        seed_divergence: Divergence | None = CLEAN_CE,
        class_axis: int = 1,
    ) -> None:
        super().__init__()
        self.objective = SeedAwareObjective(divergence, seed_divergence=seed_divergence, normalization=normalization)
        self.class_axis = check_int(class_axis, "class_axis", minimum=None)
        # learnable divergences (a learned ε) become sub-modules, so .parameters() and .to() see them
        given: tuple[object, ...] = (divergence, seed_divergence)
        self.learned = torch.nn.ModuleList([d for d in given if isinstance(d, torch.nn.Module)])

    def extra_repr(self) -> str:
        o = self.objective
        return (
            f"divergence={o.divergence!r}, normalization={o.normalization!r}, "
            f"seed_divergence={o.seed_divergence!r}, class_axis={self.class_axis}"
        )

    def prepare(
        self, output: Output, targets: Labels | None, seeds: Labels
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class-last logits, targets and seeds on the logits' device, checked against each other."""
        logits = output_logits(output)
        seeds_t = _tensor(seeds, logits, "seeds")
        if seeds_t.is_floating_point():
            raise TypeError(f"seeds: expected integer labels (255 unlabeled, 254 padding), got dtype {seeds_t.dtype}")
        logits = class_axis_last(logits, self.class_axis, tuple(seeds_t.shape))
        if targets is None:
            if self.objective.divergence is not None:
                raise ValueError("targets: expected labels or soft targets for the divergence, got None")
            return logits, seeds_t, seeds_t
        t = _tensor(targets, logits, "targets")
        if t.is_floating_point():
            if t.ndim != logits.ndim:
                raise ValueError(
                    f"targets: expected soft targets with {logits.ndim} axes (as the logits), got shape {tuple(t.shape)}"
                )
            t = t.movedim(self.class_axis, -1)
        if tuple(t.shape[: seeds_t.ndim]) != tuple(seeds_t.shape):
            raise ValueError(
                f"targets: expected labels of shape {tuple(seeds_t.shape)} (as the seeds) or soft targets, "
                f"got {tuple(t.shape)}"
            )
        if t.is_floating_point():
            seeds_t = self._no_target_as_padding(t, seeds_t, int(logits.shape[-1]))
        return logits, t, seeds_t

    def _no_target_as_padding(self, t: torch.Tensor, seeds: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Seeds with 254 where a soft target is all 0 (its padding, see ``Augmentation``): such a pixel
        leaves the sum and the pixel counts of the normalisation, as a 254 label does. A seed pixel
        keeps its seed term unless the divergence covers the seeds too (``seed_divergence=None``)."""
        empty = t.sum(dim=-1) == 0
        if self.objective.seed_divergence is not None:
            empty = empty & ~((seeds >= 0) & (seeds < num_classes))
        if not bool(empty.any()):
            return seeds
        return torch.where(empty, torch.full_like(seeds, PADDING), seeds)

    def forward(self, output: Output, targets: Labels | None, seeds: Labels) -> torch.Tensor:
        logits, t, s = self.prepare(output, targets, seeds)
        # float64 networks stay float64 (exactness tests); half/bf16 logits (autocast) are promoted
        logits = logits if logits.dtype == torch.float64 else logits.float()
        t = t.to(logits.dtype) if t.is_floating_point() else t
        return self.objective(logits, t, s)


class RelaxedPottsLoss(torch.nn.Module):
    """Grid-GD: per item PCE + λ·relaxed grid Potts, averaged over the items of the batch.

    The regulariser is ``loss.value_from_weights`` with the edge costs ``loss.pairwise(image,
    seeds)``: the same λ, N4/N8 offsets, σ², 1/dist and |Ω|/|N| scaling as stage A; the
    relaxation (bilinear, squared, tv) is ``loss.relaxation``. The PCE part is
    :class:`SeedAwareLoss` with ``divergence=None``.

    Parameters
    ----------
    loss : chainrule2.losses.ScribblePotts
    normalization : str
        Of the PCE part (default ``"item"``: each item's mean over its seeds, averaged over items).
    class_axis : int
        1 for NCHW logits (default), -1 for class-last.

    Call as ``criterion(output, targets, seeds, images)``: ``targets`` is ignored (the seeds are
    the supervision; pass None); ``images`` ``(N, H, W, C)`` (numpy or torch) give the contrast
    weights.
    """

    def __init__(self, loss: RelaxedPairwise, normalization: str = "item", class_axis: int = 1) -> None:
        super().__init__()
        for method in ("pairwise", "value_from_weights"):
            if not callable(getattr(loss, method, None)):
                raise TypeError(f"loss: expected a ScribblePotts-like loss with {method}(), got {type(loss).__name__}")
        self.loss = loss
        self.pce = SeedAwareLoss(None, normalization=normalization, class_axis=class_axis)

    def costs(self, images: Labels | None, seeds: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """Edge costs ``(N, K, H, W)`` of the host images, on ``like``'s device (one copy)."""
        if images is None:
            raise ValueError("images: the relaxed Potts loss needs the images (N, H, W, C), got None")
        images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if images.shape[: seeds.ndim] != seeds.shape:
            raise ValueError(
                f"images: expected (N, H, W, C) with (N, H, W) = {seeds.shape} (the seeds'), got {images.shape}"
            )
        costs = np.stack([self.loss.pairwise(images[i], seeds[i]) for i in range(images.shape[0])])
        return torch.as_tensor(costs, dtype=like.dtype, device=like.device)

    def regulariser(self, logits: torch.Tensor, seeds: Labels, images: Labels | None) -> torch.Tensor:
        """Per-item λ·R(S) (relaxed), ``(N,)``, of class-last ``logits``."""
        seeds = seeds.detach().cpu().numpy() if isinstance(seeds, torch.Tensor) else np.asarray(seeds)
        unlabeled = np.where(seeds == PADDING, PADDING, UNLABELED).astype(np.int64)  # keep padding, drop the PCE
        probs = torch.softmax(logits, dim=-1)
        return self.loss.value_from_weights(probs, unlabeled, self.costs(images, seeds, logits))

    def forward(self, output: Output, targets: object, seeds: Labels, images: Labels | None = None) -> torch.Tensor:
        logits, _, s = self.pce.prepare(output, None, seeds)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        return self.pce.objective(logits, s, s) + self.regulariser(logits, s, images).mean()


class RelaxedDense(Protocol):
    """What :class:`RelaxedDenseLoss` needs of its loss (e.g. :class:`chainrule2.losses.DenseCRFLoss`)."""

    def items(self, images: Any, seeds: Any) -> Any: ...

    def value_from_items(self, probs: Any, items: Any) -> Any: ...

    def gradient_from_items(self, probs: Any, items: Any) -> Any: ...


class _DenseValue(torch.autograd.Function):
    """Per-item dense value ``(N,)`` of ``probs`` with the analytic gradient in the backward pass.

    Through plain autograd every block of the kernel would be kept for the backward pass (M² floats
    per image); here the forward keeps only ``probs`` and the backward filters once more.
    """

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor, loss: Any, items: Any) -> torch.Tensor:
        ctx.save_for_backward(probs)
        ctx.loss, ctx.items = loss, items
        with torch.no_grad():
            return loss.value_from_items(probs, items)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (probs,) = ctx.saved_tensors
        with torch.no_grad():
            # gradient_from_items is ∂(Σ_i value_i)/∂probs; item i's rows only depend on value_i
            grad = ctx.loss.gradient_from_items(probs, ctx.items)
        return grad * grad_output.reshape(-1, 1, 1, 1), None, None


class RelaxedDenseLoss(torch.nn.Module):
    """Dense-GD: per item PCE + λ·relaxed dense CRF, averaged over the items of the batch.

    The regulariser is ``loss.value_from_items(softmax(logits), loss.items(images, seeds))`` (for
    :class:`chainrule2.losses.DenseCRFLoss`: ``weight/|Ω'| · Σ_k S_kᵀ W (1 − S_k)`` on the
    down-scaled grid, its λ is ``loss.weight``), back-propagated with the loss's analytic gradient
    (no M × M kernel kept for autograd). The PCE part is :class:`SeedAwareLoss` with
    ``divergence=None``; pixels whose seed is 254 (padding) are left out of the regulariser.

    Parameters
    ----------
    loss : chainrule2.losses.DenseCRFLoss
    normalization : str
        Of the PCE part (default ``"item"``).
    class_axis : int
        1 for NCHW logits (default), -1 for class-last.

    Call as ``criterion(output, targets, seeds, images)``: ``targets`` is ignored (pass None);
    ``images`` ``(N, H, W, C)`` 0..255 (numpy or torch) give the bilateral kernel.
    """

    def __init__(self, loss: RelaxedDense, normalization: str = "item", class_axis: int = 1) -> None:
        super().__init__()
        for method in ("items", "value_from_items", "gradient_from_items"):
            if not callable(getattr(loss, method, None)):
                raise TypeError(f"loss: expected a DenseCRFLoss-like loss with {method}(), got {type(loss).__name__}")
        self.loss = loss
        self.pce = SeedAwareLoss(None, normalization=normalization, class_axis=class_axis)

    def regulariser(self, logits: torch.Tensor, seeds: Labels, images: Labels | None) -> torch.Tensor:
        """Per-item λ·R(S) (relaxed), ``(N,)``, of class-last ``logits``."""
        if images is None:
            raise ValueError("images: the relaxed dense CRF loss needs the images (N, H, W, C), got None")
        seeds = seeds.detach().cpu().numpy() if isinstance(seeds, torch.Tensor) else np.asarray(seeds)
        images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if images.shape[: seeds.ndim] != seeds.shape:
            raise ValueError(
                f"images: expected (N, H, W, C) with (N, H, W) = {seeds.shape} (the seeds'), got {images.shape}"
            )
        items = self.loss.items(images, seeds).to(logits)
        result: torch.Tensor = _DenseValue.apply(torch.softmax(logits, dim=-1), self.loss, items)
        return result

    def forward(self, output: Output, targets: object, seeds: Labels, images: Labels | None = None) -> torch.Tensor:
        logits, _, s = self.pce.prepare(output, None, seeds)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        return self.pce.objective(logits, s, s) + self.regulariser(logits, s, images).mean()
