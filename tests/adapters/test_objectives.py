"""The torch stage-B criteria: SeedAwareLoss (PCE, ADM, Grid-TR, full masks) and RelaxedPottsLoss (Grid-GD)."""

import numpy as np
import pytest
import torch

from chainrule2.base import Batch
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective
from chainrule2.losses import ScribblePotts
from chainrule2_torch import LearnedErrorRobustCE
from chainrule2_torch.objectives import RelaxedPottsLoss, SeedAwareLoss


def _batch(rng, n=2, h=6, w=7, c=3):
    images = rng.uniform(0, 255, size=(n, h, w, 3))
    seeds = np.full((n, h, w), 255, np.int64)
    seeds[:, 0, :3] = rng.integers(0, c, size=(n, 3))
    seeds[0, :, -1] = 254  # padding column
    return Batch(None, seeds, images)


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_relaxed_potts_uses_exactly_the_stage_a_weights(neighbourhood):
    rng = np.random.default_rng(0)
    batch = _batch(rng)
    loss = ScribblePotts(potts_weight=3.0, neighbourhood=neighbourhood)
    criterion = RelaxedPottsLoss(loss, class_axis=-1)
    labels = rng.integers(0, 3, size=batch.seeds.shape)
    logits = torch.as_tensor(np.eye(3)[labels] * 1e4 - 5e3, dtype=torch.float64)  # one-hot softmax
    reg = criterion.regulariser(logits, batch.seeds, batch.images).numpy()
    unlabeled = np.where(batch.seeds == 254, 254, 255)
    for i in range(2):
        energy = loss.energy(np.zeros(labels.shape[1:] + (3,)), Batch(None, unlabeled, batch.images), i)
        pixels = int((batch.seeds[i] != 254).sum())
        assert reg[i] * pixels == pytest.approx(energy.value(labels[i]), rel=1e-9)


def test_relaxed_potts_is_the_loss_value_and_differentiable_on_nchw_logits():
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    loss = ScribblePotts(potts_weight=2.0)
    logits = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)  # NCHW
    total = RelaxedPottsLoss(loss)({"out": logits}, None, torch.as_tensor(batch.seeds), batch.images)
    ref = loss.value(torch.softmax(logits.permute(0, 2, 3, 1), -1), batch).mean()
    assert float(total.detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
    total.backward()
    assert torch.isfinite(logits.grad).all()


def test_pce_is_per_item_mean_and_an_item_without_seeds_adds_zero():
    logits = torch.zeros(2, 2, 2, 2, dtype=torch.float64)
    seeds = torch.tensor([[[0, 255], [255, 255]], [[255, 255], [255, 254]]])
    pce = SeedAwareLoss(None, normalization="item")
    assert float(pce(logits, None, seeds)) == pytest.approx(np.log(2) / 2)  # never nan
    assert float(SeedAwareLoss(None, normalization="mean")(logits, None, seeds)) == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match=r"seeds: expected labels in \[0, 2\) or 254/255, got 5"):
        pce(logits, None, torch.full((2, 2, 2), 5))
    with pytest.raises(ValueError, match="the seeds' shape"):
        pce(logits, None, torch.zeros(2, 3, 2, dtype=torch.int64))


def test_full_supervision_ignores_void():
    full = SeedAwareLoss(CrossEntropy(), seed_divergence=None, normalization="mean")
    value = full(torch.zeros(1, 2, 1, 2), np.array([[[0, 255]]]), np.full((1, 1, 2), 255))
    assert float(value) == pytest.approx(np.log(2))


@pytest.mark.parametrize("normalization", ["official", "mean", "item", "sum"])
def test_criterion_equals_the_core_objective_on_class_last_logits(normalization, device):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 5, 4, 3))
    seeds = np.full((2, 5, 4), 255)
    seeds[:, 0, 0], seeds[1, 2, 2], seeds[0, 4, :] = 0, 2, 254
    targets = rng.integers(0, 3, size=(2, 5, 4))
    core = SeedAwareObjective(RobustCrossEntropy(0.4, 3), normalization=normalization)(logits, targets, seeds)
    criterion = SeedAwareLoss(RobustCrossEntropy(0.4, 3), normalization=normalization)
    nchw = torch.as_tensor(logits.transpose(0, 3, 1, 2), device=device)
    # numpy targets and seeds with torch logits on any device: moved to the logits' device
    assert float(criterion(nchw, targets, seeds)) == pytest.approx(float(core), rel=1e-12)
    class_last = SeedAwareLoss(RobustCrossEntropy(0.4, 3), normalization=normalization, class_axis=-1)
    assert float(class_last(torch.as_tensor(logits, device=device), targets, seeds)) == pytest.approx(float(core))


def test_soft_targets_follow_the_class_axis():
    logits = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    soft = torch.softmax(torch.randn(1, 3, 4, 5, dtype=torch.float64), dim=1)
    seeds = torch.full((1, 4, 5), 255)
    value = SeedAwareLoss(CrossEntropy(), normalization="sum")(logits, soft, seeds)
    expected = -(soft * torch.log_softmax(logits, 1)).sum()
    assert float(value) == pytest.approx(float(expected))


def test_layout_mistakes_say_how_to_fix_them():
    nhwc = torch.zeros(2, 6, 7, 3)
    seeds = torch.full((2, 6, 7), 255)
    with pytest.raises(ValueError, match="for NHWC logits pass class_axis=-1"):
        SeedAwareLoss(None, normalization="mean")(nhwc, None, seeds)
    with pytest.raises(ValueError, match="for NCHW logits pass class_axis=1"):
        SeedAwareLoss(None, normalization="mean", class_axis=-1)(nhwc.permute(0, 3, 1, 2), None, seeds)
    with pytest.raises(ValueError, match="the model returned 3 items for a batch of 2"):
        SeedAwareLoss(None, normalization="mean")(torch.zeros(3, 3, 6, 7), None, seeds)
    with pytest.raises(TypeError, match="output: expected a tensor or a dict with an 'out' entry"):
        SeedAwareLoss(None, normalization="mean")({"aux": nhwc}, None, seeds)
    with pytest.raises(TypeError, match="seeds: expected a numpy array or a torch tensor, got list"):
        SeedAwareLoss(None, normalization="mean")(nhwc.permute(0, 3, 1, 2), None, [[0]])
    with pytest.raises(TypeError, match="seeds: expected integer labels"):
        SeedAwareLoss(None, normalization="mean")(nhwc.permute(0, 3, 1, 2), None, seeds.float())
    with pytest.raises(ValueError, match="targets: expected labels or soft targets for the divergence, got None"):
        SeedAwareLoss(CrossEntropy(), normalization="mean")(nhwc.permute(0, 3, 1, 2), None, seeds)
    with pytest.raises(TypeError, match="normalization"):
        SeedAwareLoss(None)  # the normalisation is an explicit choice


def test_learned_error_is_a_parameter_of_the_criterion():
    criterion = SeedAwareLoss(LearnedErrorRobustCE(num_classes=3, error_prob=0.3), normalization="mean")
    params = list(criterion.parameters())
    assert len(params) == 1 and params[0].requires_grad
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    criterion(logits, torch.zeros(1, 4, 4, dtype=torch.int64), torch.full((1, 4, 4), 255)).backward()
    assert params[0].grad is not None and torch.isfinite(params[0].grad)


def test_relaxed_potts_needs_images():
    criterion = RelaxedPottsLoss(ScribblePotts())
    with pytest.raises(ValueError, match="images: the relaxed Potts loss needs the images"):
        criterion(torch.zeros(1, 2, 2, 2), None, torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"images: expected \(N, H, W, C\)"):
        criterion(torch.zeros(1, 2, 2, 2), None, torch.zeros(1, 2, 2, dtype=torch.int64), np.zeros((1, 3, 2, 2)))
    with pytest.raises(TypeError, match="loss: expected a ScribblePotts-like loss"):
        RelaxedPottsLoss(object())
