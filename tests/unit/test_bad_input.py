"""Issue 2 §8: bad input gets a ValueError/TypeError naming the argument, showing expected vs got."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective, Squared
from chainrule2.energies import ChainPotts
from chainrule2.losses import ChainScribblePotts
from chainrule2.models import LinearClassifier, SGDFitter
from chainrule2.solvers import ChainViterbi, GradientStep

LOGITS = np.zeros((2, 3, 4))


def test_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"target: expected labels of shape \(2, 3\) .*got \(2, 4\)"):
        CrossEntropy()(np.zeros((2, 4), dtype=np.int64), LOGITS)
    with pytest.raises(ValueError, match=r"target: expected soft targets of shape \(2, 3, 4\).*got \(2, 3, 5\)"):
        CrossEntropy()(np.zeros((2, 3, 5)), LOGITS)
    with pytest.raises(ValueError, match=r"seeds: expected shape \(2, 3\).*got \(3, 3\)"):
        SeedAwareObjective(CrossEntropy())(LOGITS, np.zeros((2, 3), np.int64), np.zeros((3, 3), np.int64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_logits(bad: float) -> None:
    logits = LOGITS.copy()
    logits[1, 2, 3] = bad
    with pytest.raises(ValueError, match="logits: expected finite values, got NaN or inf"):
        Squared().label_costs(logits)


def test_labels_outside_range() -> None:
    with pytest.raises(ValueError, match=r"target: expected labels in \[0, 4\) or 254/255, got 7"):
        CrossEntropy()(np.array([[0, 1, 7], [0, 0, 0]]), LOGITS)
    with pytest.raises(ValueError, match=r"target: expected labels in \[0, 4\) or 254/255, got -1"):
        CrossEntropy()(np.array([[0, 1, -1], [0, 0, 0]]), LOGITS)
    with pytest.raises(ValueError, match=r"seeds: expected labels in \[0, 4\) or 254/255, got 253"):
        SeedAwareObjective(CrossEntropy())(LOGITS, np.zeros((2, 3), np.int64), np.full((2, 3), 253))


@pytest.mark.parametrize("error_prob", [0.0, -0.1, 0.75, 0.9])
def test_error_prob_outside_its_interval(error_prob: float) -> None:
    with pytest.raises(ValueError, match=r"error_prob: expected a value in \(0, \(C-1\)/C\) = \(0, 0\.75\)"):
        RobustCrossEntropy(error_prob=error_prob, num_classes=4)


def test_error_prob_must_match_logits_classes() -> None:
    with pytest.raises(ValueError, match="logits: expected 3 classes on the last axis"):
        RobustCrossEntropy(error_prob=0.1, num_classes=3).label_costs(LOGITS)


def test_empty_batch() -> None:
    with pytest.raises(ValueError, match=r"logits: expected a non-empty batch, got shape \(0, 3, 4\)"):
        CrossEntropy().label_costs(np.zeros((0, 3, 4)))
    model = LinearClassifier(2, 3, rng=np.random.default_rng(0))
    batch = cr.Batch(inputs=np.zeros((0, 5, 2)), seeds=np.zeros((0, 5), np.int64))
    tr = cr.TrustRegion(ChainViterbi(), SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match="non-empty batch"):
        tr.propose(cr.Composite(ChainScribblePotts(), model), batch)


def test_integer_logits() -> None:
    with pytest.raises(TypeError, match="logits: expected a real floating dtype, got int64"):
        CrossEntropy()(np.zeros((2, 3), np.int64), np.zeros((2, 3, 4), np.int64))


def test_trust_region_arguments() -> None:
    fitter = SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1)
    with pytest.raises(ValueError, match=r"trust_weight: expected a finite number >= 0, got -1.0"):
        cr.TrustRegion(ChainViterbi(), fitter, CrossEntropy(), -1.0)
    with pytest.raises(TypeError, match="stage_b: expected a Fitter"):
        cr.TrustRegion(ChainViterbi(), object(), CrossEntropy(), 1.0)
    with pytest.raises(TypeError, match="trust_divergence: GradientStep solves the Euclidean trust region"):
        model = LinearClassifier(2, 3, rng=np.random.default_rng(0))
        batch = cr.Batch(inputs=np.zeros((1, 5, 2)), seeds=np.full((1, 5), 255))
        cr.TrustRegion(GradientStep(), fitter, CrossEntropy(), 1.0).propose(
            cr.Composite(ChainScribblePotts(), model), batch
        )


def test_model_must_predict_an_array_of_logits() -> None:
    class Listy:
        def predict(self, inputs):
            return [[[0.0, 1.0]]]

    tr = cr.TrustRegion(ChainViterbi(), SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1), CrossEntropy(), 1.0)
    with pytest.raises(
        TypeError, match="logits: expected a numpy array, a torch tensor or another array-API array, got list"
    ):
        tr.propose(cr.Composite(ChainScribblePotts(), Listy()), cr.Batch(None, np.full((1, 1), 255)))
    with pytest.raises(TypeError, match="model: expected an object with a predict"):
        cr.Composite(ChainScribblePotts(), object())


def test_chain_energy_arguments() -> None:
    with pytest.raises(ValueError, match="edge_weights: expected finite values >= 0"):
        ChainPotts(np.zeros((3, 2)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"seeds: expected labels in \[0, 2\) or 254/255, got 5"):
        ChainPotts(np.zeros((3, 2)), np.ones(2), np.array([0, 5, 255]))
    with pytest.raises(ValueError, match=r"initial: expected labels of shape \(3,\), got \(4,\)"):
        ChainViterbi().init(ChainPotts(np.zeros((3, 2)), np.ones(2)), np.zeros(4, np.int64))
