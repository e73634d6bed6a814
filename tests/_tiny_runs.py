"""The tiny training runs shared by the pipeline and fault tests: generated 24-px data, a small
config and a seeded U-Net. (``tests/`` is on ``sys.path`` through its conftest.)"""

import importlib.util
from pathlib import Path

import torch

from chainrule2_torch.data import make_demo_dataset
from chainrule2_torch.networks import UNet
from chainrule2_torch.training import TrainConfig


def demo_splits():
    """(train, val, test): 6, 2 and 2 generated 24-px images."""
    every = make_demo_dataset(10, 24, seed=0)
    return every[:6], every[6:8], every[8:]


def tiny_config(method, **kw):
    base = dict(method=method, epochs=2, warmup_epochs=1, stage_a_every=1, batch_size=3, crop_size=(24, 24), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return UNet(3, 3, width=4, depth=2)


def cli_module():
    """``examples/segmentation_scribbles.py`` imported as a module (for its ``parse_args``)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "segmentation_scribbles.py"
    spec = importlib.util.spec_from_file_location("_segmentation_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
