"""Divergences: known values, every array namespace, analytic gradients, the stage-B objective."""

from __future__ import annotations

import math

import array_api_strict as xps
import numpy as np
import pytest

from chainrule2.divergences import (
    KL,
    CrossEntropy,
    RobustCrossEntropy,
    SeedAwareObjective,
    Squared,
    log_softmax,
    softmax,
)

DIVERGENCES = [CrossEntropy(), KL(), Squared(), RobustCrossEntropy(error_prob=0.3, num_classes=3)]


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 4, 5, 3)) * 3
    labels = rng.integers(0, 3, size=(2, 4, 5))
    labels[0, 0, 0], labels[1, 2, 3] = 255, 254
    soft = rng.uniform(size=(2, 4, 5, 3)) + 0.1
    return logits, labels, soft / soft.sum(-1, keepdims=True)


def test_known_values() -> None:
    logits = np.array([[[0.0, math.log(3.0)]]])  # S = (1/4, 3/4)
    labels = np.array([[1]])
    assert CrossEntropy()(labels, logits)[0, 0] == pytest.approx(-math.log(0.75))
    assert Squared()(labels, logits)[0, 0] == pytest.approx(0.5 * (0.25**2 + 0.25**2))
    eps = 0.2  # C = 2: a = 0.2, b = 0.6
    assert RobustCrossEntropy(eps, 2)(labels, logits)[0, 0] == pytest.approx(-math.log(0.2 + 0.6 * 0.75))
    soft = np.array([[[0.5, 0.5]]])
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert KL()(soft, logits)[0, 0] == pytest.approx(kl)
    assert CrossEntropy()(soft, logits)[0, 0] == pytest.approx(kl + math.log(2.0))


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: type(d).__name__)
def test_label_costs_are_one_hot_divergences(divergence) -> None:
    logits, _, _ = _data()
    costs = divergence.label_costs(logits)
    for k in range(3):
        labels = np.full(logits.shape[:-1], k)
        np.testing.assert_allclose(costs[..., k], divergence(labels, logits), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: type(d).__name__)
def test_ignored_labels_cost_nothing(divergence) -> None:
    logits, labels, _ = _data()
    values = divergence(labels, logits)
    assert values[0, 0, 0] == 0 and values[1, 2, 3] == 0
    grad = divergence.gradient(labels, logits)
    assert np.all(grad[0, 0, 0] == 0) and np.all(grad[1, 2, 3] == 0)


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_same_result_on_numpy_array_api_strict_and_torch(divergence, kind) -> None:
    torch = pytest.importorskip("torch")
    logits, labels, soft = _data()
    target = labels if kind == "labels" else soft
    expected = divergence(target, logits)
    strict = divergence(xps.asarray(target), xps.asarray(logits))
    assert isinstance(strict, type(xps.asarray(1.0)))
    np.testing.assert_allclose(np.asarray(strict), expected, rtol=1e-12)
    z = torch.tensor(logits, requires_grad=True)
    value = divergence(torch.as_tensor(target), z)
    assert isinstance(value, torch.Tensor)
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-12)
    value.sum().backward()  # autograd flows and agrees with the analytic gradient
    np.testing.assert_allclose(z.grad.numpy(), divergence.gradient(target, logits), rtol=1e-9, atol=1e-12)


def test_log_softmax_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, 0.0, -1e4]])
    assert np.all(np.isfinite(log_softmax(logits)))
    np.testing.assert_allclose(softmax(logits).sum(-1), 1.0)


def test_robust_weight_down_weights_confident_disagreement() -> None:
    robust = RobustCrossEntropy(error_prob=0.5, num_classes=3)
    logits = np.array([[[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # confident vs. unsure
    grad = robust.gradient(np.array([[1, 1]]), logits)
    ce = CrossEntropy().gradient(np.array([[1, 1]]), logits)
    # ∂ℓ/∂z = m·(CE gradient) with m = bS_x/(a + bS_x) (PAPER.md §3): near 0 where the
    # network confidently disagrees with the label; here a = b = 1/4.
    s = softmax(logits)[0, :, 1]
    m = 0.25 * s / (0.25 + 0.25 * s)
    np.testing.assert_allclose(grad[0], m[:, None] * ce[0], rtol=1e-12)
    assert m[0] < 1e-4 and m[1] == pytest.approx(0.25)


class TestSeedAwareObjective:
    def setup_method(self) -> None:
        self.logits, self.targets, _ = _data()
        self.seeds = np.full(self.targets.shape, 255)
        self.seeds[0, 1, 1], self.seeds[1, 0, 0], self.seeds[1, 3, 4] = 2, 0, 254

    def test_official_normalisation(self) -> None:
        robust = RobustCrossEntropy(0.3, 3)
        objective = SeedAwareObjective(robust, normalization="official")
        is_seed = self.seeds < 3
        rest = ~is_seed & (self.seeds != 254) & (self.targets < 3)
        total = robust(self.targets, self.logits)[rest].sum()
        total += CrossEntropy()(np.where(is_seed, self.seeds, 255), self.logits).sum()
        assert float(objective(self.logits, self.targets, self.seeds)) == pytest.approx(total / 2 / 2)

    def test_mean_and_sum(self) -> None:
        s = SeedAwareObjective(CrossEntropy(), normalization="sum")(self.logits, self.targets, self.seeds)
        m = SeedAwareObjective(CrossEntropy(), normalization="mean")(self.logits, self.targets, self.seeds)
        valid = (self.seeds < 3) | ((self.seeds == 255) & (self.targets < 3))
        assert float(m) == pytest.approx(float(s) / valid.sum())

    def test_no_seed_pixels_never_divides_by_zero(self) -> None:
        seeds = np.full(self.targets.shape, 255)
        for normalization in ("official", "mean", "sum"):
            value = SeedAwareObjective(CrossEntropy(), normalization=normalization)(self.logits, self.targets, seeds)
            assert np.isfinite(value)
        nothing = np.full(self.targets.shape, 254)
        assert SeedAwareObjective(CrossEntropy(), normalization="mean")(self.logits, self.targets, nothing) == 0

    def test_gradient_matches_autograd(self) -> None:
        torch = pytest.importorskip("torch")
        objective = SeedAwareObjective(RobustCrossEntropy(0.3, 3))
        z = torch.tensor(self.logits, requires_grad=True)
        objective(z, torch.as_tensor(self.targets), torch.as_tensor(self.seeds)).backward()
        np.testing.assert_allclose(
            z.grad.numpy(), objective.gradient(self.logits, self.targets, self.seeds), rtol=1e-9, atol=1e-14
        )

    def test_seed_pixels_use_clean_cross_entropy(self) -> None:
        # With the pseudo-label contradicting the seed, the seed pixel still pulls toward the seed.
        objective = SeedAwareObjective(RobustCrossEntropy(0.3, 3), normalization="sum")
        only_seed = np.full(self.targets.shape, 254)
        only_seed[0, 1, 1] = 2
        value = objective(self.logits, np.zeros_like(self.targets), only_seed)
        assert float(value) == pytest.approx(-log_softmax(self.logits)[0, 1, 1, 2])
