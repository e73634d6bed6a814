import numpy as np
import pytest
import torch

from chainrule2.base import Batch
from chainrule2.losses import ScribblePotts
from chainrule2_torch.objectives import FullCrossEntropy, PartialCrossEntropy, RelaxedPottsObjective


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
    objective = RelaxedPottsObjective(loss)
    labels = rng.integers(0, 3, size=batch.seeds.shape)
    logits = torch.as_tensor(np.eye(3)[labels] * 1e4 - 5e3, dtype=torch.float64)  # one-hot softmax
    reg = objective.regulariser(logits, batch).numpy()
    unlabeled = np.where(batch.seeds == 254, 254, 255)
    for i in range(2):
        energy = loss.energy(np.zeros(labels.shape[1:] + (3,)), Batch(None, unlabeled, batch.images), i)
        pixels = int((batch.seeds[i] != 254).sum())
        assert reg[i] * pixels == pytest.approx(energy.value(labels[i]), rel=1e-9)


def test_relaxed_potts_is_pce_plus_regulariser_and_differentiable():
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    loss = ScribblePotts(potts_weight=2.0)
    logits = torch.randn(2, 6, 7, 3, dtype=torch.float64, requires_grad=True)
    total = RelaxedPottsObjective(loss)(logits, None, torch.as_tensor(batch.seeds), batch=batch)
    ref = loss.value(torch.softmax(logits, -1), batch).mean()
    assert float(total.detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
    total.backward()
    assert torch.isfinite(logits.grad).all()


def test_pce_values_and_no_seed_item():
    logits = torch.zeros(2, 2, 2, 2, dtype=torch.float64)
    seeds = torch.tensor([[[0, 255], [255, 255]], [[255, 255], [255, 254]]])
    value = PartialCrossEntropy()(logits, None, seeds, batch=None)
    assert float(value) == pytest.approx(np.log(2) / 2)  # item 2 has no seed: 0, never nan
    with pytest.raises(ValueError, match="seeds: expected labels in \\[0, 2\\) or 254/255, got 5"):
        PartialCrossEntropy()(logits, None, torch.full((2, 2, 2), 5), batch=None)
    with pytest.raises(ValueError, match="seeds: expected shape"):
        PartialCrossEntropy()(logits, None, torch.zeros(2, 3, 2, dtype=torch.int64), batch=None)


def test_full_cross_entropy_ignores_void():
    logits = torch.zeros(1, 1, 2, 2)
    value = FullCrossEntropy()(logits, torch.tensor([[[0, 255]]]))
    assert float(value) == pytest.approx(np.log(2))


def test_relaxed_potts_needs_images():
    objective = RelaxedPottsObjective(ScribblePotts())
    with pytest.raises(ValueError, match="batch.images"):
        objective(
            torch.zeros(1, 2, 2, 2),
            None,
            torch.zeros(1, 2, 2, dtype=torch.int64),
            batch=Batch(None, np.zeros((1, 2, 2))),
        )
    with pytest.raises(TypeError, match="loss: expected a ScribblePotts-like loss"):
        RelaxedPottsObjective(object())
