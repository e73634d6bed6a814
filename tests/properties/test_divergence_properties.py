"""Hypothesis properties of every divergence (float64)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule2.divergences import KL, CrossEntropy, RobustCrossEntropy, SeedAwareObjective, Squared, softmax
from chainrule2.testing.strategies import labels_for, logits, probabilities_for

SETTINGS = settings(max_examples=60, deadline=None)


def _robust(z: np.ndarray, fraction: float) -> RobustCrossEntropy:
    c = z.shape[-1]
    return RobustCrossEntropy(error_prob=fraction * (c - 1) / c, num_classes=c)


@SETTINGS
@given(logits(scale=5.0))
def test_divergence_of_a_distribution_from_itself_is_zero(z) -> None:
    p = np.asarray(softmax(z))
    np.testing.assert_allclose(KL()(p, z), 0.0, atol=1e-12)
    np.testing.assert_allclose(Squared()(p, z), 0.0, atol=1e-12)


@SETTINGS
@given(st.data(), logits(), st.floats(0.01, 0.99))
def test_non_negative_and_finite_for_huge_logits(data, z, fraction) -> None:
    z = z * 1e3  # entries up to 3e4: softmax saturates completely
    labels = data.draw(labels_for(z))
    soft = data.draw(probabilities_for(z))
    for divergence in (CrossEntropy(), KL(), Squared(), _robust(z, fraction)):
        for target in (labels, soft):
            value = divergence(target, z)
            assert np.all(np.isfinite(value)) and np.all(value >= -1e-12)
            assert np.all(np.isfinite(divergence.gradient(target, z)))
        assert np.all(np.isfinite(divergence.label_costs(z)))


@SETTINGS
@given(st.data(), logits(scale=1e3), st.floats(0.01, 0.99))
def test_robust_cross_entropy_is_bounded(data, z, fraction) -> None:
    robust = _robust(z, fraction)
    c = z.shape[-1]
    a = robust.error_prob / (c - 1)
    labels = data.draw(labels_for(z, ignored=False))
    assert np.all(robust(labels, z) <= -math.log(a) + 1e-9)
    assert np.all(robust(labels, z) >= -math.log(1.0 - robust.error_prob) - 1e-9)


@SETTINGS
@given(st.data(), logits(scale=8.0))
def test_analytic_gradient_matches_finite_differences(data, z) -> None:
    labels = data.draw(labels_for(z))
    soft = data.draw(probabilities_for(z))
    h = 1e-6
    for divergence in (CrossEntropy(), KL(), Squared(), _robust(z, 0.5)):
        for target in (labels, soft):
            grad = divergence.gradient(target, z)
            direction = data.draw(st.integers(0, z.size - 1))
            e = np.zeros(z.size)
            e[direction] = h
            e = e.reshape(z.shape)
            numeric = (divergence(target, z + e).sum() - divergence(target, z - e).sum()) / (2 * h)
            assert abs(numeric - grad.reshape(-1)[direction]) < 1e-5 * (1 + abs(numeric))


@SETTINGS
@given(st.data(), logits(), st.sampled_from(["official", "mean", "sum"]))
def test_seed_aware_objective_is_finite_and_non_negative(data, z, normalization) -> None:
    labels = data.draw(labels_for(z))
    seeds = data.draw(labels_for(z))
    value = SeedAwareObjective(_robust(z, 0.5), normalization=normalization)(z, labels, seeds)
    assert np.isfinite(value) and value >= 0
