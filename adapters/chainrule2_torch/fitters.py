"""Stage B on torch: any ``torch.optim`` optimizer and scheduler, k steps of the objective.

The objective is called as ``objective(logits, targets, seeds)`` with logits ``(N, H, W, L)``
(class axis last, autograd on), targets integer ``(N, H, W)`` or soft ``(N, H, W, L)``, seeds
``(N, H, W)``; :class:`chainrule2.divergences.SeedAwareObjective` is the usual one (or a
``chainrule2_torch.SeedAwareLoss(..., class_axis=-1)``). A loop of one's own does not need a
fitter: call the network and a :class:`~chainrule2_torch.SeedAwareLoss` directly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from chainrule2.base import Batch, FitReport
from chainrule2.divergences import log_softmax, robust_log_likelihood
from chainrule2.validation import check_choice, check_error_prob, check_int, check_positive
from chainrule2_torch.model import TorchModel, as_tensor

logger = logging.getLogger(__name__)

__all__ = ["OptimizerFitter", "LearnedErrorRobustCE", "autocast", "check_amp", "grad_scaler"]

AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def check_amp(amp: Any) -> str | None:
    """``amp`` as a mode: ``None`` (full precision) for False or None, ``"bf16"`` for True or
    "bf16"/"bfloat16", ``"fp16"`` for "fp16"/"float16"; anything else is a ``ValueError`` naming ``amp``."""
    if amp is False or amp is None:
        return None
    if amp is True:
        return "bf16"
    if not isinstance(amp, str) or amp not in AMP_DTYPES:
        raise ValueError(f"amp: expected False, None, True, 'bf16' or 'fp16', got {amp!r}")
    return "bf16" if AMP_DTYPES[amp] is torch.bfloat16 else "fp16"


def autocast(amp: Any, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's precision: ``torch.autocast`` in ``amp``'s dtype on ``device``, or nothing.

    bf16 runs on the CPU and on CUDA (its exponent range is float32's: no loss scaling needed); fp16
    needs CUDA, where :func:`grad_scaler` scales its loss so that small gradients do not flush to 0.
    """
    mode = check_amp(amp)
    if mode is None:
        return contextlib.nullcontext()
    if mode == "fp16" and device.type != "cuda":
        raise ValueError(
            f"amp: 'fp16' needs a CUDA device (its loss scaling is CUDA's), got device={str(device)!r}; "
            "use 'bf16' or amp=False"
        )
    return torch.autocast(device.type, dtype=AMP_DTYPES[mode])


def grad_scaler(amp: Any) -> torch.amp.GradScaler | None:
    """A CUDA grad scaler for fp16 (loss scaling, skipped steps on inf/NaN gradients); None otherwise."""
    return torch.amp.GradScaler("cuda") if check_amp(amp) == "fp16" else None


class LearnedErrorRobustCE(torch.nn.Module):
    """Robust cross-entropy with a learned label-error probability ε (PAPER.md §3, "Uniform").

    ``parametrization="uniform"`` (default): ε = sigmoid(u)·(C−1)/C, i.e. P(x|S) = (1−σ(u))·S_x
    + σ(u)/C, always a valid noise model. ``"flip"``: ε = sigmoid(u), clamped below (C−1)/C
    (the gradient vanishes while clamped).

    Parameters
    ----------
    num_classes : int
        C ≥ 2 (the size of the logits' class axis).
    error_prob : float
        The initial ε, in (0, (C−1)/C).
    parametrization : {"uniform", "flip"}

    Use it as the ``divergence`` of a :class:`~chainrule2.divergences.SeedAwareObjective`;
    :class:`OptimizerFitter` adds ``u`` to its optimizer.

    Examples
    --------
    >>> import torch
    >>> d = LearnedErrorRobustCE(num_classes=3, error_prob=0.5)
    >>> round(float(d.error_prob.detach()), 4)
    0.5
    """

    def __init__(self, num_classes: int, error_prob: float = 0.5, parametrization: str = "uniform") -> None:
        super().__init__()
        check_int(num_classes, "num_classes", minimum=2)
        check_choice(parametrization, "parametrization", ("uniform", "flip"))
        check_error_prob(error_prob, num_classes)
        upper = (num_classes - 1) / num_classes
        self.num_classes = num_classes
        self.parametrization = parametrization
        self._upper = upper
        p = error_prob / upper if parametrization == "uniform" else error_prob
        self.u = torch.nn.Parameter(torch.tensor(math.log(p / (1 - p)), dtype=torch.float32))

    @property
    def error_prob(self) -> torch.Tensor:
        """ε as a 0-d tensor (differentiable in ``u``)."""
        s = torch.sigmoid(self.u)
        if self.parametrization == "uniform":
            return s * self._upper
        return torch.clamp(s, max=self._upper * (1 - 1e-6))

    def _loglik(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"logits: expected {self.num_classes} classes on the last axis (num_classes), got {logits.shape[-1]}"
            )
        eps = self.error_prob.to(device=logits.device, dtype=logits.dtype)
        return robust_log_likelihood(log_softmax(logits), eps, self.num_classes)

    def forward(self, target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel −Σ_k t_k log(a + b·S_k), ``(N, H, W)``; ignored labels (254/255) give 0."""
        loglik = self._loglik(logits)
        if target.dtype.is_floating_point:
            return -(target * loglik).sum(-1)
        valid = (target >= 0) & (target < self.num_classes)
        idx = torch.where(valid, target, torch.zeros_like(target)).long()
        return -loglik.gather(-1, idx[..., None])[..., 0] * valid.to(logits.dtype)

    def label_costs(self, logits: torch.Tensor) -> torch.Tensor:
        return -self._loglik(logits)

    def gradient(self, target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``∂d/∂logits`` by autograd (ε held fixed)."""
        with torch.enable_grad():
            z = logits.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.forward(target, z).sum(), z)
        return grad


class Scheduler(Protocol):
    """What :class:`OptimizerFitter` needs of a learning-rate scheduler (those of ``torch.optim.lr_scheduler``
    that step without a metric)."""

    def step(self) -> object: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


#: ``objective(logits (N, H, W, L), targets, seeds (N, H, W)) -> scalar tensor``.
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _learnable_modules(objective: object) -> list[torch.nn.Module]:
    found = []
    inner = getattr(objective, "objective", None)  # SeedAwareLoss wraps a SeedAwareObjective
    for obj in (
        objective,
        getattr(objective, "divergence", None),
        getattr(objective, "seed_divergence", None),
        getattr(inner, "divergence", None),
        getattr(inner, "seed_divergence", None),
    ):
        if isinstance(obj, torch.nn.Module) and obj not in found:
            found.append(obj)
    return found


class OptimizerFitter:
    """Stage B: ``steps`` optimizer steps of ``objective(logits, targets, seeds)`` per ``fit``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any torch optimizer over the network's parameters.
    objective : callable
        ``objective(logits (N,H,W,L), targets, seeds (N,H,W)) -> scalar tensor``, e.g.
        ``SeedAwareObjective(RobustCrossEntropy(0.944, 21))``. Torch parameters of the objective
        or of its ``divergence`` (a learned ε, :class:`LearnedErrorRobustCE`) that the optimizer
        does not hold yet are added to it as a new parameter group (learning rate ``error_lr``).
    steps : int
        Optimizer steps per ``fit`` call (k ≥ 1).
    scheduler : torch.optim.lr_scheduler.LRScheduler or None
        Stepped once after every optimizer step.
    amp : bool or {"bf16", "fp16"}
        Mixed precision of the forward pass (:func:`autocast`): ``True`` means bf16 (CPU or CUDA);
        "fp16" (CUDA only) also scales the loss (:func:`grad_scaler`). The objective runs in float32.
    grad_clip : float or None
        Clip the global gradient norm to this value.
    error_lr : float or None
        Learning rate of the learned-ε parameter group (default: the optimizer's ``lr``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from chainrule2.base import Batch
    >>> from chainrule2.divergences import CrossEntropy, SeedAwareObjective
    >>> net = torch.nn.Conv2d(3, 2, 1)
    >>> fitter = OptimizerFitter(torch.optim.SGD(net.parameters(), lr=0.1), SeedAwareObjective(CrossEntropy()), steps=2)
    >>> batch = Batch(np.ones((1, 3, 4, 4), np.float32), np.full((1, 4, 4), 255, np.uint8))
    >>> fitter.fit(TorchModel(net), batch, np.zeros((1, 4, 4), np.int64)).steps
    2
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        steps: int = 1,
        scheduler: Scheduler | None = None,
        amp: bool | str = False,
        grad_clip: float | None = None,
        error_lr: float | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not callable(objective):
            raise TypeError(
                f"objective: expected a callable objective(logits, targets, seeds), got {type(objective).__name__}"
            )
        check_int(steps, "steps")
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"scheduler: expected a torch LR scheduler with step(), got {type(scheduler).__name__}")
        amp = check_amp(amp) or False
        check_positive(grad_clip, "grad_clip", allow_none=True)
        self.optimizer = optimizer
        self.objective = objective
        self.steps = steps
        self.scheduler = scheduler
        self.amp = amp
        self.grad_clip = grad_clip
        self._scaler: torch.amp.GradScaler | None = None
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for module in _learnable_modules(objective):
            new = [p for p in module.parameters() if p.requires_grad and id(p) not in held]
            if new:
                group: dict[str, Any] = {"params": new}
                if error_lr is not None:
                    group["lr"] = float(error_lr)
                optimizer.add_param_group(group)
                held.update(id(p) for p in new)

    def __repr__(self) -> str:
        return (
            f"OptimizerFitter(optimizer={type(self.optimizer).__name__}, objective={self.objective!r}, "
            f"steps={self.steps}, amp={self.amp!r}, grad_clip={self.grad_clip})"
        )

    def fit(self, model: TorchModel, batch: Batch, targets: Any) -> FitReport:
        """Run ``steps`` optimizer steps on ``batch`` toward ``targets``.

        Parameters
        ----------
        model : TorchModel
        batch : Batch
            ``inputs`` (N, C, H, W) and ``seeds`` (N, H, W) (255 unlabeled, 254 padding).
        targets : array (N, H, W) int or (N, H, W, L) float, numpy or torch
            Stage-A labels (or the seeds themselves for gradient-descent baselines).

        Returns
        -------
        FitReport
            The objective before each step, the number of steps, the seconds spent.
        """
        if not isinstance(model, TorchModel):
            raise TypeError(f"model: expected a chainrule2_torch.TorchModel, got {type(model).__name__}")
        start = time.perf_counter()
        dev = model.device
        ctx = autocast(self.amp, dev)
        if self._scaler is None:
            self._scaler = grad_scaler(self.amp)
        for module in _learnable_modules(self.objective):
            module.to(dev)
        x = model.to_input(batch.inputs)
        seeds = as_tensor(batch.seeds, dev, torch.int64, "batch.seeds")
        if isinstance(targets, np.ndarray) and not np.issubdtype(targets.dtype, np.floating):
            t = as_tensor(targets, dev, torch.int64, "targets")
        else:
            t = as_tensor(targets, dev, None, "targets")
            t = t if t.dtype.is_floating_point else t.to(torch.int64)
        n, h, w = int(x.shape[0]), int(x.shape[2]), int(x.shape[3])
        if tuple(seeds.shape) != (n, h, w):
            raise ValueError(f"batch.seeds: expected shape {(n, h, w)} (inputs' N, H, W), got {tuple(seeds.shape)}")
        if tuple(t.shape[:3]) != (n, h, w) or t.ndim not in (3, 4):
            raise ValueError(
                f"targets: expected (N, H, W) labels or (N, H, W, L) probabilities with N, H, W = "
                f"{(n, h, w)}, got {tuple(t.shape)}"
            )
        losses = []
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            with ctx:
                logits = model.logits(x)
            # float64 networks stay float64 (exactness tests); half/bf16 logits are promoted
            logits = logits if logits.dtype == torch.float64 else logits.float()
            target = t.to(logits.dtype) if t.dtype.is_floating_point else t
            loss = self.objective(logits, target, seeds)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError(f"objective: expected a scalar torch tensor, got {type(loss).__name__}")
            losses.append(float(loss.detach()))
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if self.grad_clip is not None:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            if self._scaler is not None:
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        return FitReport(tuple(losses), self.steps, time.perf_counter() - start)

    def state_dict(self) -> dict:
        """Optimizer, scheduler, grad scaler and learned-ε state (for checkpoints)."""
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self._scaler is not None:
            state["scaler"] = self._scaler.state_dict()
        state["objective"] = [m.state_dict() for m in _learnable_modules(self.objective)]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self._scaler = torch.amp.GradScaler("cuda")
            self._scaler.load_state_dict(state["scaler"])
        for module, sd in zip(_learnable_modules(self.objective), state.get("objective", []), strict=False):
            module.load_state_dict(sd)
