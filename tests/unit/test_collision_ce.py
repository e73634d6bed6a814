"""CollisionCrossEntropy: d(t ‖ S) = −log Σ_k t_k S_k, its properties, gradient and namespaces (Hypothesis, float64)."""

from __future__ import annotations

import math

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule2.divergences import CollisionCrossEntropy, CrossEntropy, SeedAwareObjective, softmax
from chainrule2.testing.strategies import labels_for, logits, probabilities_for

SETTINGS = settings(max_examples=60, deadline=None)
CCE = CollisionCrossEntropy()


def test_known_values() -> None:
    z = np.log(np.array([[[0.25, 0.75]]]))
    t = np.array([[[0.5, 0.5]]])
    assert CCE(t, z)[0, 0] == pytest.approx(-math.log(0.5))
    assert CCE(np.array([[1]]), z)[0, 0] == pytest.approx(-math.log(0.75))
    assert CCE(np.array([[[0.2, 0.8]]]), z)[0, 0] == pytest.approx(-math.log(0.2 * 0.25 + 0.8 * 0.75))


@SETTINGS
@given(st.data(), logits(scale=5.0))
def test_equals_cross_entropy_for_one_hot_targets(data, z) -> None:
    labels = data.draw(labels_for(z))
    np.testing.assert_allclose(CCE(labels, z), CrossEntropy()(labels, z), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(CCE.gradient(labels, z), CrossEntropy().gradient(labels, z), atol=1e-12)
    np.testing.assert_allclose(CCE.label_costs(z), -np.log(softmax(z)), rtol=1e-10)
    onehot = np.eye(z.shape[-1])[np.where(labels < z.shape[-1], labels, 0)]
    valid = labels < z.shape[-1]
    np.testing.assert_allclose(CCE(onehot, z) * valid, CrossEntropy()(labels, z), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.data(), logits())
def test_non_negative_and_finite_for_huge_logits(data, z) -> None:
    z = z * 1e3  # softmax saturates completely
    for target in (data.draw(labels_for(z)), data.draw(probabilities_for(z))):
        value = CCE(target, z)
        assert np.all(np.isfinite(value)) and np.all(value >= -1e-12)
        assert np.all(np.isfinite(CCE.gradient(target, z)))
    assert np.all(np.isfinite(CCE.label_costs(z)))


@SETTINGS
@given(st.data(), logits(scale=5.0))
def test_symmetric_and_not_zero_at_s_equal_t(data, z) -> None:
    s = np.asarray(softmax(z))
    t = data.draw(probabilities_for(z))
    np.testing.assert_allclose(CCE(t, z), CCE(s, np.log(t)), rtol=1e-10)  # d(t ‖ S) = d(S ‖ t)
    np.testing.assert_allclose(CCE(s, z), -np.log(np.sum(s * s, axis=-1)), rtol=1e-10)
    assert np.all(CCE(s, z) > 0)  # a softmax is never one-hot: d(S ‖ S) > 0 unlike KL
    # minimised over S by the one-hot S on argmax t: d >= −log max t
    assert np.all(CCE(t, z) >= -np.log(t.max(-1)) - 1e-12)


def test_zero_only_in_the_one_hot_limit() -> None:
    for big in (5.0, 20.0, 40.0):
        z = np.array([[[big, 0.0, 0.0]]])
        value = CCE(np.array([[0]]), z)[0, 0]
        assert 0 <= value < 3 * math.exp(-big) and (value > 0 or big > 30)  # 2e^-40 rounds to 0 in float64
    assert CCE(np.array([[[0.9, 0.1, 0.0]]]), np.array([[[40.0, 0.0, 0.0]]]))[0, 0] == pytest.approx(-math.log(0.9))


@SETTINGS
@given(logits(scale=5.0))
def test_uniform_target_is_constant_with_zero_gradient(z) -> None:
    num = z.shape[-1]
    t = np.full(z.shape, 1.0 / num)
    np.testing.assert_allclose(CCE(t, z), math.log(num), rtol=1e-12)
    np.testing.assert_allclose(CCE.gradient(t, z), 0.0, atol=1e-12)


@SETTINGS
@given(st.data(), logits(scale=3.0))
def test_gradient_matches_finite_differences(data, z) -> None:
    t = data.draw(probabilities_for(z))
    grad = CCE.gradient(t, z)
    direction = np.random.default_rng(0).normal(size=z.shape)
    h = 1e-6
    fd = (CCE(t, z + h * direction).sum() - CCE(t, z - h * direction).sum()) / (2 * h)
    assert float(np.sum(grad * direction)) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    posterior = t * softmax(z) / np.sum(t * softmax(z), -1, keepdims=True)
    np.testing.assert_allclose(grad, softmax(z) - posterior, atol=1e-12)


def test_namespaces_autograd_and_zero_rows() -> None:
    torch = pytest.importorskip("torch")  # the core's tests run without torch
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 5, 3)) * 4
    t = rng.dirichlet(np.ones(3), size=(2, 5))
    t[0, 0] = 0.0  # a zero row gives 0 and no gradient
    t[1, 1] = [0.0, 1.0, 0.0]
    value, grad = CCE(t, z), CCE.gradient(t, z)
    assert value[0, 0] == 0.0 and np.all(grad[0, 0] == 0.0)
    zt = torch.tensor(z, requires_grad=True)
    vt = CCE(torch.tensor(t), zt)
    vt.sum().backward()
    assert zt.grad is not None
    np.testing.assert_allclose(vt.detach().numpy(), value, rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), grad, atol=1e-12)
    np.testing.assert_allclose(np.asarray(CCE(xps.asarray(t), xps.asarray(z))), value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(CCE.gradient(xps.asarray(t), xps.asarray(z))), grad, atol=1e-12)


def test_as_stage_b_divergence_and_bad_inputs() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1, 4, 3))
    seeds = np.array([[0, 255, 255, 254]])
    soft = rng.dirichlet(np.ones(3), size=(1, 4))
    objective = SeedAwareObjective(CCE, normalization="sum")
    expected = CrossEntropy()(np.array([[0]]), z[:, :1]).sum() + CCE(soft, z)[0, 1:3].sum()
    assert float(objective(z, soft, seeds)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="target"):
        CCE(soft[..., :2], z)
    with pytest.raises(TypeError, match="target"):
        CCE(soft.astype(np.float32), z)
    with pytest.raises(ValueError, match="logits"):
        CCE(soft, np.full_like(z, np.nan))
