"""The core's array-API functions on every namespace of the ``xp`` fixture (numpy, array_api_strict,
torch): results in the input's namespace, equal to numpy's, and the same errors.

The functions: softmax/log_softmax, robust_log_likelihood, every divergence's ``__call__``,
``label_costs`` and ``gradient``, SeedAwareObjective and its gradient, and the array validators.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from chainrule2 import validation
from chainrule2.divergences import (
    KL,
    CrossEntropy,
    RobustCrossEntropy,
    SeedAwareObjective,
    Squared,
    log_softmax,
    robust_log_likelihood,
    softmax,
)

DIVERGENCES = [CrossEntropy(), KL(), Squared(), RobustCrossEntropy(error_prob=0.3, num_classes=3)]
NORMALIZATIONS = ("official", "mean", "item", "sum")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 logits (2, 4, 5, 3), labels with 254/255, soft targets, seeds (a few, one padding)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 4, 5, 3)) * 3
    labels = rng.integers(0, 3, size=(2, 4, 5))
    labels[0, 0, 0], labels[1, 2, 3] = 255, 254
    soft = rng.uniform(size=(2, 4, 5, 3)) + 0.1
    seeds = np.full(labels.shape, 255)
    seeds[0, 1, 1], seeds[0, 2, 2], seeds[1, 0, 0], seeds[1, 3, 4] = 2, 0, 1, 254
    return logits, labels, soft / soft.sum(-1, keepdims=True), seeds


def _numpy(x) -> np.ndarray:
    """A host copy of any namespace's array (numpy's reductions give a scalar, which has no DLPack)."""
    return np.asarray(x) if isinstance(x, np.generic) else np.from_dlpack(x)


def _same(result, like, expected: np.ndarray, rtol: float = 1e-12) -> None:
    """``result`` is an array of ``like``'s namespace holding ``expected``."""
    assert array_namespace(result) is array_namespace(like), f"result in {array_namespace(result).__name__}"
    np.testing.assert_allclose(_numpy(result), expected, rtol=rtol, atol=1e-13)


def test_softmax_and_log_softmax(xp) -> None:
    logits = _data()[0]
    z = xp.asarray(logits)
    _same(log_softmax(z), z, log_softmax(logits))
    _same(softmax(z), z, softmax(logits))
    huge = xp.asarray(np.array([[1e4, 0.0, -1e4]]))  # stable: no overflow in any namespace
    assert bool(np.all(np.isfinite(_numpy(log_softmax(huge)))))


def test_robust_log_likelihood(xp) -> None:
    logp = log_softmax(_data()[0])
    _same(robust_log_likelihood(xp.asarray(logp), 0.3, 3), xp.asarray(logp), robust_log_likelihood(logp, 0.3, 3))


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_divergence_value_and_gradient(xp, divergence, kind: str) -> None:
    logits, labels, soft, _ = _data()
    target = labels if kind == "labels" else soft
    z, t = xp.asarray(logits), xp.asarray(target)
    _same(divergence(t, z), z, divergence(target, logits))
    _same(divergence.gradient(t, z), z, divergence.gradient(target, logits))


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: type(d).__name__)
def test_label_costs(xp, divergence) -> None:
    logits = _data()[0]
    z = xp.asarray(logits)
    _same(divergence.label_costs(z), z, divergence.label_costs(logits))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize(
    "divergence",
    [RobustCrossEntropy(0.3, 3), None, "everywhere"],
    ids=["robust+seeds", "pce", "no-seed-term"],
)
def test_seed_aware_objective(xp, divergence, normalization: str) -> None:
    logits, labels, _, seeds = _data()
    if divergence == "everywhere":  # divergence on every valid pixel, seeds included
        objective = SeedAwareObjective(KL(), seed_divergence=None, normalization=normalization)
    else:
        objective = SeedAwareObjective(divergence, normalization=normalization)
    z, t, s = xp.asarray(logits), xp.asarray(labels), xp.asarray(seeds)
    _same(objective(z, t, s), z, np.asarray(objective(logits, labels, seeds)))
    _same(objective.gradient(z, t, s), z, objective.gradient(logits, labels, seeds))


def test_check_logits_accepts_and_returns_the_namespace(xp) -> None:
    z = xp.asarray(_data()[0])
    assert validation.check_logits(z) is array_namespace(z)


def test_check_logits_errors_are_the_same_in_every_namespace(xp) -> None:
    logits = _data()[0]
    bad = logits.copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="logits: expected finite values, got NaN or inf"):
        validation.check_logits(xp.asarray(bad))
    with pytest.raises(TypeError, match="logits: expected a real floating dtype"):
        validation.check_logits(xp.asarray(np.zeros((2, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"logits: expected at least 2 dimensions \(N, \.\.\., L\), got shape \(3,\)"):
        validation.check_logits(xp.asarray(np.zeros(3)))
    with pytest.raises(ValueError, match=r"logits: expected a non-empty batch, got shape \(0, 3\)"):
        validation.check_logits(xp.asarray(np.zeros((0, 3))))


def test_check_labels_in_every_namespace(xp) -> None:
    labels = _data()[1]
    validation.check_labels(xp.asarray(labels), 3)  # 254/255 allowed by default
    with pytest.raises(ValueError, match=r"labels: expected labels in \[0, 3\), got 255"):
        validation.check_labels(xp.asarray(labels), 3, allow_ignored=False)
    wrong = labels.copy()
    wrong[0, 3, 4] = 7
    with pytest.raises(ValueError, match=r"seeds: expected labels in \[0, 3\) or 254/255, got 7"):
        validation.check_labels(xp.asarray(wrong), 3, "seeds")
    with pytest.raises(TypeError, match="labels: expected an integer dtype"):
        validation.check_labels(xp.asarray(labels.astype(np.float64)), 3)


def test_the_divergences_refuse_bad_targets_alike(xp) -> None:
    logits, labels, soft, _ = _data()
    z = xp.asarray(logits)
    with pytest.raises(ValueError, match=r"target: expected labels of shape \(2, 4, 5\)"):
        CrossEntropy()(xp.asarray(labels[:, :3]), z)
    with pytest.raises(TypeError, match="target: expected dtype"):
        CrossEntropy()(xp.asarray(soft.astype(np.float32)), z)
