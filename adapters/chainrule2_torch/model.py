"""The model wrapper: a ``torch.nn.Module`` seen through chainrule2's Model protocol.

The network takes images ``(N, C, H, W)`` and returns logits ``(N, L, H, W)`` (or a dict with
an ``"out"`` entry, as torchvision's segmentation models do). The core works class-axis-last,
so the wrapper converts NCHW -> NHWC once, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["TorchModel", "resolve_device", "as_tensor"]


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` ("cpu", "cuda", "cuda:1", a torch.device); a clear error if unavailable."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device: expected 'cpu', 'cuda' or a torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was requested but CUDA is not available here (use device='cpu')")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected a 'cpu' or 'cuda' device, got {device!r}")
    return dev


def as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None, name: str) -> torch.Tensor:
    """``x`` (numpy or torch) as a tensor on ``device``; one host-to-device copy at most."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype) if dtype is not None else x.to(device=device)
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device=device)
    raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")


class TorchModel:
    """A torch network as a chainrule2 Model.

    Parameters
    ----------
    network : torch.nn.Module
        Maps images ``(N, C, H, W)`` to logits ``(N, L, H, W)`` (or ``{"out": logits}``).
    device : str or torch.device
        ``"cpu"`` or ``"cuda"``; the network is moved there once.
    dtype : torch.dtype
        Dtype that numpy inputs are converted to (default float32).

    Examples
    --------
    >>> import numpy as np, torch
    >>> model = TorchModel(torch.nn.Conv2d(3, 2, 1))
    >>> model.predict(np.zeros((1, 3, 4, 5), np.float32)).shape
    (1, 4, 5, 2)
    """

    def __init__(
        self, network: torch.nn.Module, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ):
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network: expected a torch.nn.Module, got {type(network).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.network = network.to(self.device)

    def __repr__(self) -> str:
        return f"TorchModel(network={type(self.network).__name__}, device={str(self.device)!r})"

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The network's parameters (for building an optimizer)."""
        return self.network.parameters()

    def to_input(self, inputs: Any) -> torch.Tensor:
        """Images ``(N, C, H, W)`` (numpy or torch) on the model's device and dtype."""
        x = as_tensor(inputs, self.device, self.dtype, "inputs")
        if x.ndim != 4:
            raise ValueError(f"inputs: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"inputs: expected a non-empty batch, got shape {tuple(x.shape)}")
        return x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        if isinstance(out, dict):
            if "out" not in out:
                raise TypeError(f"network: returned a dict without an 'out' entry (keys {sorted(out)})")
            out = out["out"]
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"network: expected logits (N, L, H, W), got {shape}")
        if out.shape[0] != x.shape[0] or tuple(out.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(
                f"network: expected logits (N, L, H, W) = ({x.shape[0]}, L, {x.shape[2]}, {x.shape[3]}) "
                f"matching the input, got {tuple(out.shape)}"
            )
        return out.permute(0, 2, 3, 1)

    def logits(self, inputs: Any) -> torch.Tensor:
        """Logits ``(N, H, W, L)`` as a torch tensor with autograd, in the network's current mode."""
        return self._forward(self.to_input(inputs))

    def predict(self, inputs: Any) -> np.ndarray:
        """Logits ``(N, H, W, L)`` as a host numpy array (float64 for a float64 network, else float32):
        eval mode, no gradient.

        The network's train/eval mode is restored afterwards; one device-to-host copy.
        """
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                out = self._forward(self.to_input(inputs))
                if out.dtype not in (torch.float32, torch.float64):  # half/bf16 under autocast
                    out = out.to(torch.float32)
                return out.contiguous().cpu().numpy()
        finally:
            self.network.train(was_training)

    def __call__(self, inputs: Any) -> np.ndarray:
        return self.predict(inputs)
