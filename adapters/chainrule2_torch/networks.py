"""Segmentation networks in plain torch (no torchvision): a small U-Net and DeepLabV3+ (MobileNetV2).

Both map images ``(N, C, H, W)`` to logits ``(N, L, H, W)`` at the input resolution, for any H, W.
Nothing is ever downloaded: pretrained weights come from a local file (``weights=``).

The MobileNetV2 backbone uses torchvision's parameter names (``features.0.0.weight`` ...), so
the ``features.*`` entries of a torchvision ``mobilenet_v2`` ImageNet checkpoint load into it
with ``backbone_weights=path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chainrule2.validation import check_int

__all__ = ["UNet", "DeepLabV3Plus", "MobileNetV2Features", "build_network", "load_weights"]


def load_weights(module: nn.Module, path: str | os.PathLike, name: str = "weights", prefix: str = "") -> None:
    """Load a local state dict (a ``torch.save``'d dict, or a checkpoint with a ``"model"`` entry).

    ``prefix`` keeps only the keys starting with it (stripped), e.g. ``"features."``... for a
    backbone taken from a whole-network checkpoint.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: weights file {os.fspath(path)!r} does not exist (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling error means a bad file
        raise ValueError(f"{name}: could not read weights from {os.fspath(path)!r}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{name}: expected a state dict in {os.fspath(path)!r}, got {type(state).__name__}")
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(
            f"{name}: {os.fspath(path)!r} lacks {len(missing)} of the {len(own)} expected entries "
            f"(first: {missing[0]!r})"
        )
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{name}: entry {k!r} expected shape {tuple(own[k].shape)}, got {tuple(state[k].shape)}")
    module.load_state_dict({k: state[k] for k in own})


def _check_channels(in_channels: int, num_classes: int) -> None:
    check_int(in_channels, "in_channels", minimum=1)
    check_int(num_classes, "num_classes", minimum=2)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: ``depth`` down/up levels, ``width`` channels at the top (doubling per level).

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB).
    num_classes : int
        L, the number of output classes.
    width : int
        Channels of the first level (16 trains on a CPU in minutes at ~128 px).
    depth : int
        Number of 2× down-samplings. Any input size works (features are resized on the way up).
    weights : path or None
        A local state dict to load.

    Examples
    --------
    >>> import torch
    >>> UNet(3, 2, width=8, depth=2)(torch.zeros(1, 3, 30, 45)).shape
    torch.Size([1, 2, 30, 45])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        width: int = 16,
        depth: int = 3,
        weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, num_classes)
        check_int(width, "width")
        check_int(depth, "depth")
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_block(in_channels, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        if weights is not None:
            load_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1):
        pad = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            _ConvBNReLU(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2's ``features`` (torchvision names), with output stride 8 or 16 via dilation.

    ``forward`` returns ``(low_level, high_level)``: the stride-4 features (24 ch) and the last
    features (320 ch, stride ``output_stride``).
    """

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, in_channels: int = 3, output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride: expected 8 or 16, got {output_stride!r}")
        layers: list[nn.Module] = [_ConvBNReLU(in_channels, 32, stride=2)]
        cin, stride_now, dilation = 32, 2, 1
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2 and stride_now >= output_stride:
                    stride, dilation = 1, dilation * 2 if i == 0 else dilation
                elif stride == 2:
                    stride_now *= 2
                layers.append(_InvertedResidual(cin, c, stride, t, dilation=dilation if stride == 1 else 1))
                cin = c
        self.features = nn.Sequential(*layers)  # 1 stem + 17 blocks; torchvision adds a 1280-ch conv we omit
        self.low_level_index = 3  # output of features[3]: stride 4, 24 channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = x  # replaced by the output of features[low_level_index]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.low_level_index:
                low = x
        return low, x


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int = 256, rates: tuple[int, ...] = (6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))]
            + [
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, padding=r, dilation=r, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
                for r in rates
            ]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with a MobileNetV2 backbone (the paper's network), plain torch.

    Parameters
    ----------
    in_channels, num_classes : int
    output_stride : {8, 16}
        16 as in the paper.
    weights : path or None
        A local state dict for the whole network.
    backbone_weights : path or None
        A local state dict for the backbone: torchvision ``mobilenet_v2`` names (``features.*``);
        the classifier and the last 1280-channel conv in it are ignored.

    Examples
    --------
    >>> import torch
    >>> DeepLabV3Plus(3, 21).eval()(torch.zeros(1, 3, 65, 97)).shape
    torch.Size([1, 21, 65, 97])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 21,
        output_stride: int = 16,
        weights: str | os.PathLike | None = None,
        backbone_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, num_classes)
        self.backbone = MobileNetV2Features(in_channels, output_stride)
        self.aspp = _ASPP(320, 256, (6, 12, 18) if output_stride == 16 else (12, 24, 36))
        self.low_proj = nn.Sequential(nn.Conv2d(24, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            nn.Conv2d(256 + 48, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        if backbone_weights is not None:
            load_weights(self.backbone, backbone_weights, name="backbone_weights", prefix="")
        if weights is not None:
            load_weights(self, weights)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters outside the backbone (the paper uses ×10 their learning rate)."""
        for name, p in self.named_parameters():
            if not name.startswith("backbone."):
                yield p

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        y = self.aspp(high)
        low = self.low_proj(low)
        y = F.interpolate(y, size=low.shape[2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, low], dim=1))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


NETWORKS = ("unet", "deeplabv3plus")


def build_network(
    name: str, in_channels: int, num_classes: int, weights: str | os.PathLike | None = None, **kwargs: Any
) -> nn.Module:
    """``"unet"`` or ``"deeplabv3plus"`` by name (the example's ``--network``)."""
    if name == "unet":
        return UNet(in_channels, num_classes, weights=weights, **kwargs)
    if name == "deeplabv3plus":
        return DeepLabV3Plus(in_channels, num_classes, weights=weights, **kwargs)
    raise ValueError(f"name: expected one of {NETWORKS}, got {name!r}")
