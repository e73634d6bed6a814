"""Dense-TR stage A through StageA: soft targets, numpy and torch alike, label restriction, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule2 import StageA
from chainrule2.base import Batch
from chainrule2.constants import PADDING, UNLABELED
from chainrule2.divergences import CrossEntropy
from chainrule2.energies import BilateralKernel, DenseMeanFieldEnergy
from chainrule2.losses import DenseCRFLoss, ScribblePotts
from chainrule2.solvers import DenseMeanField, MeanField, run


def _problem(n: int = 2, h: int = 10, w: int = 9, labels: int = 3, seed: int = 0):
    """Images with a bright left and dark right half, a scribble on each half, a noisy model."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, h, w, 3))
    images[:, :, : w // 2] = 200.0
    images += rng.normal(0, 5, images.shape)
    seeds = np.full((n, h, w), UNLABELED)
    seeds[:, 2:-2, 1] = 0
    seeds[:, 2:-2, -2] = 2  # label 1 appears in no seed: restricted away
    seeds[-1, -1, :] = PADDING
    logits = rng.normal(0, 1, (n, h, w, labels))
    return logits, Batch(None, seeds, images)


def _stage_a(solver: DenseMeanField | None = None, weight: float = 1.0) -> StageA:
    return StageA(solver or DenseMeanField(), DenseCRFLoss(weight, sigma_xy=20.0), CrossEntropy(), trust_weight=0.5)


def test_stage_a_gives_soft_targets_that_follow_the_image() -> None:
    logits, batch = _problem()
    proposal = _stage_a().propose(logits, batch)
    q = proposal.targets
    assert q.shape == logits.shape and q.dtype == np.float64
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-12)
    assert np.all(q[..., 1] == 0)  # only the seeds' classes
    assert np.array_equal(q[:, 2, 1], np.tile([1.0, 0.0, 0.0], (2, 1)))
    hard = q.argmax(-1)
    real = batch.seeds != PADDING
    half = logits.shape[2] // 2
    left, right = real[:, :, :half], real[:, :, half + 1 :]  # the boundary column is blurred by the down-scaling
    # the dense CRF carries each scribble's label over its half (the noisy model alone does not)
    assert np.all(hard[:, :, :half][left] == 0) and np.all(hard[:, :, half + 1 :][right] == 2)
    assert np.mean(logits.argmax(-1)[:, :, :half][left] == 0) < 0.5
    for trace in proposal.report.traces:
        assert all(b <= a for a, b in zip(trace, trace[1:], strict=False))


def test_numpy_and_torch_give_the_same_targets() -> None:
    torch = pytest.importorskip("torch")  # the core's tests run without torch
    logits, batch = _problem()
    expected = _stage_a().propose(logits, batch).targets
    torch_batch = Batch(None, torch.as_tensor(batch.seeds), torch.as_tensor(batch.images))
    nchw = torch.as_tensor(logits).permute(0, 3, 1, 2)
    got = _stage_a().propose(nchw, torch_batch, class_axis=1).targets
    assert isinstance(got, torch.Tensor) and got.shape == nchw.shape
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, rtol=0, atol=1e-12)


def test_warm_start_from_the_previous_targets_is_never_worse() -> None:
    logits, batch = _problem()
    stage_a = _stage_a(DenseMeanField(max_sweeps=3))
    first = stage_a.propose(logits, batch)
    second = stage_a.propose(logits, batch, initial=list(first.targets))
    for a, b in zip(first.report.traces, second.report.traces, strict=True):
        assert b[0] == pytest.approx(a[-1], rel=1e-9) and b[-1] <= a[-1]


def test_energies_match_the_loss_and_the_trust_region() -> None:
    logits, batch = _problem(n=1)
    batch = Batch(None, np.where(batch.seeds == PADDING, UNLABELED, batch.seeds), batch.images)
    loss = DenseCRFLoss(0.05, sigma_xy=20.0)
    (energy,) = DenseMeanField(temperature=0.7).energies(loss, logits, batch, CrossEntropy(), 0.5)
    assert energy.bilateral == loss.bilateral and energy.potts_weight == 0.05 and energy.temperature == 0.7
    assert energy.allowed_labels == (0, 2)
    np.testing.assert_allclose(energy.unary, 0.5 * np.asarray(CrossEntropy().label_costs(logits))[0])
    # |Ω|·loss.value on the same Q is the pairwise part of F (padding-free item: the same D)
    q = run(DenseMeanField(), energy).solution
    unary_and_entropy = energy.free_energy(q, 0.0)
    pairwise = energy.value(q) - unary_and_entropy
    assert pairwise == pytest.approx(float(loss.value(q[None], batch)[0]) * q.shape[0] * q.shape[1], rel=1e-9)
    unrestricted = DenseMeanField(restrict_labels=False).energies(loss, logits, batch, CrossEntropy(), 0.5)[0]
    assert unrestricted.allowed_labels is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_sweeps": 0}, ValueError, "max_sweeps"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"tolerance": 1.0}, ValueError, "tolerance"),
        ({"max_halvings": -1}, ValueError, "max_halvings"),
        ({"restrict_labels": 1}, TypeError, "restrict_labels"),
        ({"max_kernel_pixels": 1.5}, TypeError, "max_kernel_pixels"),
        ({"batched": 1}, TypeError, "batched: expected a bool"),
    ],
)
def test_bad_solver_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        DenseMeanField(**kwargs)


def test_bad_energies_arguments() -> None:
    logits, batch = _problem(n=1)
    solver = DenseMeanField()
    with pytest.raises(
        TypeError, match="loss: DenseMeanField solves the dense CRF of a chainrule2.losses.DenseCRFLoss"
    ):
        solver.energies(ScribblePotts(), logits, batch, CrossEntropy(), 0.5)
    with pytest.raises(ValueError, match="batch.images"):
        solver.energies(DenseCRFLoss(1.0), logits, Batch(None, batch.seeds, None), CrossEntropy(), 0.5)
    with pytest.raises(ValueError, match="trust_weight"):
        solver.energies(DenseCRFLoss(1.0), logits, batch, CrossEntropy(), -1.0)
    with pytest.raises(ValueError, match=r"logits: expected \(N, H, W, L\)"):
        solver.energies(DenseCRFLoss(1.0), logits[:, 0], Batch(None, batch.seeds[:, 0], batch.images[:, 0]),
                        CrossEntropy(), 0.5)  # fmt: skip
    with pytest.raises(ValueError, match="batch.seeds"):
        solver.energies(DenseCRFLoss(1.0), logits, Batch(None, batch.seeds[:, 1:], batch.images), CrossEntropy(), 0.5)


def test_bad_energy_arguments() -> None:
    unary, image, kernel = np.zeros((2, 3, 2)), np.zeros((2, 3, 3)), BilateralKernel()
    with pytest.raises(TypeError, match="unary: expected a numpy array"):
        DenseMeanFieldEnergy([[0.0]], image, kernel)
    with pytest.raises(ValueError, match="unary: expected finite"):
        DenseMeanFieldEnergy(np.full((2, 3, 2), np.nan), image, kernel)
    with pytest.raises(ValueError, match=r"image: expected grid \(2, 3\)"):
        DenseMeanFieldEnergy(unary, np.zeros((3, 3, 3)), kernel)
    with pytest.raises(TypeError, match="bilateral: expected a chainrule2.energies.bilateral.BilateralKernel"):
        DenseMeanFieldEnergy(unary, image, DenseCRFLoss(1.0))
    with pytest.raises(ValueError, match="potts_weight"):
        DenseMeanFieldEnergy(unary, image, kernel, -1.0)
    with pytest.raises(ValueError, match=r"seeds: expected class ids in \[0, 2\) or 254/255, got 7"):
        DenseMeanFieldEnergy(unary, image, kernel, 1.0, np.full((2, 3), 7))
    with pytest.raises(ValueError, match="allowed_labels: expected every seed label"):
        DenseMeanFieldEnergy(unary, image, kernel, 1.0, np.array([[1, 255, 255], [255, 255, 255]]), (0,))
    with pytest.raises(ValueError, match="allowed_labels: expected sorted distinct"):
        DenseMeanFieldEnergy(unary, image, kernel, 1.0, None, (1, 0))
    energy = DenseMeanFieldEnergy(unary, image, kernel)
    with pytest.raises(ValueError, match=r"solution: expected shape \(2, 3, 2\)"):
        energy.value(np.full((2, 3, 3), 1 / 3))
    with pytest.raises(ValueError, match="summing to 1"):
        energy.value(np.full((2, 3, 2), 0.3))
    with pytest.raises(TypeError, match="energy: DenseMeanField solves a DenseMeanFieldEnergy"):
        DenseMeanField().init(np.zeros((2, 3, 2)))


def test_grid_mean_field_is_refused_the_dense_loss_and_the_dense_solver_the_grid_energy() -> None:
    logits, batch = _problem(n=1)
    with pytest.raises(TypeError, match="loss"):
        MeanField().energies(DenseCRFLoss(1.0), logits, batch, CrossEntropy(), 0.5)
    grid = MeanField().energies(ScribblePotts(1.0), logits, batch, CrossEntropy(), 0.5)[0]
    with pytest.raises(TypeError, match="got MeanFieldEnergy"):
        DenseMeanField().step(grid, DenseMeanField().init(DenseMeanField().energies(
            DenseCRFLoss(1.0), logits, batch, CrossEntropy(), 0.5)[0]))  # fmt: skip


def test_the_batched_path_is_offered_only_when_asked_and_training_asks_for_it_off_the_cpu() -> None:
    pytest.importorskip("torch")  # the core's tests run without torch
    from chainrule2_torch.training import TrainConfig, make_stage_a

    assert DenseMeanField().batch_supported(DenseCRFLoss(0.3))
    assert not DenseMeanField(batched=False).batch_supported(DenseCRFLoss(0.3))
    config = TrainConfig(method="dense-tr", trust_weight=16.0)
    assert make_stage_a(config).solver.batched is False  # per item on the host: faster on a CPU
    logits, batch = _problem()
    host = StageA(DenseMeanField(batched=False), DenseCRFLoss(0.3), CrossEntropy(), 4.0).propose(logits, batch)
    batched = StageA(DenseMeanField(), DenseCRFLoss(0.3), CrossEntropy(), 4.0).propose(logits, batch)
    np.testing.assert_allclose(np.asarray(batched.targets), np.asarray(host.targets), atol=1e-7)
