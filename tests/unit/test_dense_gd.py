"""Dense-GD's criterion: PCE + λ·DenseCRFLoss.value, its gradient, and the method table entry."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chainrule2.base import Batch  # noqa: E402
from chainrule2.constants import PADDING, UNLABELED  # noqa: E402
from chainrule2.losses import DenseCRFLoss  # noqa: E402
from chainrule2_torch import RelaxedDenseLoss, SeedAwareLoss  # noqa: E402
from chainrule2_torch.training import METHOD_TABLE, TrainConfig  # noqa: E402


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2, 8, 6, 3)).astype(np.uint8)
    seeds = np.full((2, 8, 6), UNLABELED)
    seeds[0, 1, 1], seeds[0, 5, 4], seeds[1, 2, 2] = 0, 1, 2
    seeds[1, -1, :] = PADDING
    logits = torch.tensor(rng.normal(size=(2, 3, 8, 6)), requires_grad=True)
    return images, seeds, logits


def test_value_is_pce_plus_dense_value() -> None:
    images, seeds, logits = _data()
    loss = DenseCRFLoss(0.7, sigma_rgb=30.0, sigma_xy=5.0, chunk=5)
    criterion = RelaxedDenseLoss(loss)
    value = criterion(logits, None, seeds, images)
    pce = SeedAwareLoss(None, normalization="item")(logits, None, seeds)
    probs = torch.softmax(logits.detach().movedim(1, -1), dim=-1).numpy()
    unlabeled = np.where(seeds == PADDING, PADDING, UNLABELED)
    dense = loss.value(probs, Batch(None, unlabeled, images))
    assert float(value.detach()) == pytest.approx(float(pce.detach()) + float(np.mean(dense)), rel=1e-12)
    assert value.dtype == torch.float64 and value.requires_grad


def test_gradient_equals_plain_autograd_through_the_core_value() -> None:
    images, seeds, logits = _data(1)
    loss = DenseCRFLoss(1.3, sigma_rgb=20.0, sigma_xy=4.0, scale=0.5, chunk=3)
    RelaxedDenseLoss(loss)(logits, None, seeds, torch.tensor(images)).backward()
    assert logits.grad is not None
    ours = logits.grad.clone()
    other = logits.detach().clone().requires_grad_(True)
    pce = SeedAwareLoss(None, normalization="item")(other, None, seeds)
    probs = torch.softmax(other.movedim(1, -1), dim=-1)
    (pce + loss.value(probs, Batch(None, seeds, images)).mean()).backward()
    assert other.grad is not None
    torch.testing.assert_close(ours, other.grad, rtol=1e-10, atol=1e-12)


def test_bad_inputs() -> None:
    images, seeds, logits = _data()
    criterion = RelaxedDenseLoss(DenseCRFLoss(1.0))
    with pytest.raises(ValueError, match="images"):
        criterion(logits, None, seeds)
    with pytest.raises(ValueError, match="images"):
        criterion(logits, None, seeds, images[:, :-1])
    with pytest.raises(TypeError, match="loss"):
        RelaxedDenseLoss(object())  # type: ignore[arg-type]


def test_method_entry_and_config() -> None:
    method = METHOD_TABLE["dense-gd"]
    assert method.needs_images and method.targets == "seeds" and method.warmup
    config = TrainConfig(method="dense-gd", dense_weight=0.02)
    criterion = method.criterion(config, 3)
    assert isinstance(criterion, RelaxedDenseLoss) and criterion.loss.weight == 0.02
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="dense_weight"):
            TrainConfig(method="dense-gd", dense_weight=bad)
