"""chainrule2's PyTorch adapter: the only package that imports torch.

* :class:`TorchModel`: a ``torch.nn.Module`` as a chainrule2 Model (NCHW -> NHWC once; eval-mode,
  no-grad ``predict`` for the stage-A unary; ``logits`` with autograd for stage B).
* :class:`OptimizerFitter`: stage B with any ``torch.optim`` optimizer and scheduler.
* :class:`LearnedErrorRobustCE`: robust cross-entropy with a learned ε.
* :mod:`chainrule2_torch.networks`: a small U-Net and DeepLabV3+ (MobileNetV2), plain torch.
"""

from chainrule2_torch.fitters import LearnedErrorRobustCE, OptimizerFitter
from chainrule2_torch.model import TorchModel, resolve_device

__all__ = ["LearnedErrorRobustCE", "OptimizerFitter", "TorchModel", "resolve_device"]
