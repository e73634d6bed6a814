"""TrustRegion: propose / fit / step, reports, warm starts, caching, configurations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective, Squared, softmax
from chainrule2.losses import ChainScribblePotts
from chainrule2.models import LinearClassifier, SGDFitter
from chainrule2.solvers import ChainViterbi, GradientStep


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(3, 20, 4))
    seeds = np.full((3, 20), cr.UNLABELED)
    seeds[:, 0], seeds[:, -1] = 0, 1
    model = LinearClassifier(4, 2, rng=rng)
    return cr.Composite(ChainScribblePotts(potts_weight=0.5), model), cr.Batch(inputs, seeds, images=inputs)


def _robust_tr(steps: int = 3) -> cr.TrustRegion:
    objective = SeedAwareObjective(RobustCrossEntropy(0.3, 2), normalization="mean")
    return cr.TrustRegion(ChainViterbi(), SGDFitter(objective, 0.1, steps=steps), CrossEntropy(), trust_weight=0.5)


def test_step_reports_both_stages() -> None:
    composite, batch = _problem()
    report = _robust_tr().step(composite, batch)
    assert len(report.stage_a.traces) == 3 and all(len(t) == 2 for t in report.stage_a.traces)
    assert report.stage_a.solve_seconds >= 0 and report.stage_a.predict_seconds >= 0
    assert report.stage_a.energy == pytest.approx(sum(t[-1] for t in report.stage_a.traces))
    assert report.stage_b.steps == 3 and len(report.stage_b.losses) == 3
    assert report.stage_b.seconds >= 0 and np.isfinite(report.stage_b.loss)
    assert report.targets.shape == (3, 20) and np.all(report.targets[:, 0] == 0)


def test_propose_does_not_touch_the_model_and_fit_does() -> None:
    composite, batch = _problem()
    tr = _robust_tr()
    before = composite.model.weights.copy()
    proposal = tr.propose(composite, batch)
    assert np.array_equal(composite.model.weights, before)
    tr.fit(composite, batch, proposal.targets)  # targets reused, e.g. from a cache
    assert not np.array_equal(composite.model.weights, before)


def test_stage_a_energy_is_exact_and_optimal() -> None:
    composite, batch = _problem()
    tr = _robust_tr()
    proposal = tr.propose(composite, batch)
    unary = 0.5 * -np.log(softmax(composite.model.predict(batch.inputs)))
    for i in range(3):
        energy = composite.loss.energy(unary[i], batch, i)
        assert energy.value(proposal.targets[i]) == pytest.approx(proposal.report.traces[i][-1])


def test_warm_start_never_ends_worse() -> None:
    composite, batch = _problem()
    tr = _robust_tr()
    cold = tr.propose(composite, batch)
    warm = tr.propose(composite, batch, initial=list(cold.targets))
    for c, w in zip(cold.report.traces, warm.report.traces, strict=True):
        assert w[0] == pytest.approx(c[-1]) and w[-1] <= w[0] + 1e-12
    with pytest.raises(ValueError, match="initial: expected 3 items"):
        tr.propose(composite, batch, initial=[None])


def test_regularised_loss_falls_under_robust_trust_region() -> None:
    composite, batch = _problem(1)
    tr = _robust_tr(steps=10)
    before = composite.value(batch)
    for _ in range(10):
        tr.step(composite, batch)
    assert composite.value(batch) < before


def test_gradient_descent_by_configuration_matches_a_hand_written_gradient_step() -> None:
    composite, batch = _problem(2)
    lr, beta = 0.05, 2.0
    sgd = SGDFitter(SeedAwareObjective(Squared(), seed_divergence=None, normalization="sum"), lr)
    gd = cr.TrustRegion(GradientStep(), sgd, Squared(), trust_weight=beta)
    model = composite.model
    start = {k: v.copy() for k, v in model.parameters().items()}
    # by hand: ∂L/∂z = J_softmaxᵀ ∂L/∂S, then θ -= (lr/β) ∂L/∂θ
    s = softmax(model.predict(batch.inputs))
    g = composite.loss.gradient(s, batch)
    dz = s * (g - np.sum(s * g, axis=-1, keepdims=True))
    grads = model.backward(batch.inputs, dz)
    gd.step(composite, batch)
    for name, param in model.parameters().items():
        np.testing.assert_allclose(param, start[name] - lr / beta * grads[name], rtol=1e-10, atol=1e-14)


def test_import_chainrule2_imports_neither_torch_nor_maxflow() -> None:
    code = "import chainrule2, chainrule2.testing, sys; print('torch' in sys.modules, 'maxflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_hyper_parameters_are_visible_in_repr() -> None:
    text = repr(_robust_tr())
    assert "trust_weight=0.5" in text and "error_prob=0.3" in text and "ChainViterbi" in text
