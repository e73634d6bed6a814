"""chainrule2's PyTorch adapter: the only package that imports torch.

* :class:`TorchModel`: a ``torch.nn.Module`` as a chainrule2 Model (NCHW -> NHWC once; eval-mode,
  no-grad ``predict`` for the stage-A unary; ``logits`` with autograd for stage B).
* :class:`OptimizerFitter`: stage B with any ``torch.optim`` optimizer and scheduler, k steps.
* :class:`LearnedErrorRobustCE`: robust cross-entropy with a learned ε (ε = sigmoid(u)·(C−1)/C).
* :class:`SeedAwareLoss`: the stage-B criterion as an ``nn.Module`` (NCHW logits or ``{"out": ...}``;
  clean CE on seeds, d_B elsewhere; ``divergence=None`` is the partial cross-entropy).
* :class:`RelaxedPottsLoss`: the Grid-GD baseline (PCE + λ·relaxed Potts with the stage-A weights).
* :class:`RelaxedDenseLoss`: the Dense-GD baseline (PCE + λ·relaxed dense CRF, the DenseCRF loss).
* :mod:`chainrule2_torch.networks`: a small U-Net and DeepLabV3+ (MobileNetV2), plain torch.
* :mod:`chainrule2_torch.training`: the scribble-supervision training loop (:func:`train`).
* :mod:`chainrule2_torch.data`: readers, seed synthesis, augmentation, metrics, panels.
"""

from chainrule2_torch.fitters import LearnedErrorRobustCE, OptimizerFitter
from chainrule2_torch.model import TorchModel, resolve_device
from chainrule2_torch.objectives import RelaxedDenseLoss, RelaxedPottsLoss, SeedAwareLoss
from chainrule2_torch.training import METHODS, TrainConfig, train

__all__ = [
    "METHODS",
    "LearnedErrorRobustCE",
    "OptimizerFitter",
    "RelaxedDenseLoss",
    "RelaxedPottsLoss",
    "SeedAwareLoss",
    "TorchModel",
    "TrainConfig",
    "resolve_device",
    "train",
]
