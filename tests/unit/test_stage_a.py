"""StageA: stage A as a function of logits, in the caller's array namespace, with clear layout errors."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy, softmax
from chainrule2.losses import ChainScribblePotts, ScribblePotts
from chainrule2.solvers import ChainViterbi, MeanField

maxflow = pytest.importorskip("maxflow")
from chainrule2.solvers import AlphaExpansion  # noqa: E402


def _grid(rng, n=2, h=5, w=6, c=3):
    logits = rng.normal(size=(n, h, w, c))
    seeds = np.full((n, h, w), cr.UNLABELED)
    seeds[:, 0, 0], seeds[:, -1, -1] = 0, 1
    images = rng.uniform(0, 255, size=(n, h, w, 3))
    return logits, cr.Batch(None, seeds, images=images, ids=tuple(f"i{k}" for k in range(n)))


def _stage_a(solver=None, beta=2.0):
    return cr.StageA(solver or AlphaExpansion(), ScribblePotts(potts_weight=5.0), CrossEntropy(), trust_weight=beta)


def test_propose_needs_no_model_and_solves_the_exact_energy():
    logits, batch = _grid(np.random.default_rng(0))
    proposal = _stage_a().propose(logits, batch)
    assert proposal.targets.shape == (2, 5, 6) and proposal.targets.dtype == np.int64
    loss = ScribblePotts(potts_weight=5.0)
    for i in range(2):
        energy = loss.energy(2.0 * -np.log(softmax(logits))[i], batch, i)
        assert energy.value(proposal.targets[i]) == pytest.approx(proposal.report.traces[i][-1])
    assert np.all(proposal.targets[:, 0, 0] == 0) and np.all(proposal.targets[:, -1, -1] == 1)


def test_trust_region_propose_is_stage_a_on_the_models_prediction():
    from chainrule2.divergences import SeedAwareObjective
    from chainrule2.models import LinearClassifier, SGDFitter

    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 9, 4))
    seeds = np.full((2, 9), cr.UNLABELED)
    seeds[:, 0] = 1
    model = LinearClassifier(4, 2, rng=rng)
    batch = cr.Batch(inputs, seeds, images=inputs)
    loss = ChainScribblePotts(potts_weight=0.5)
    tr = cr.TrustRegion(ChainViterbi(), SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1), CrossEntropy(), 0.5)
    via_tr = tr.propose(cr.Composite(loss, model), batch)
    direct = cr.StageA(ChainViterbi(), loss, CrossEntropy(), 0.5).propose(model.predict(inputs), batch)
    np.testing.assert_array_equal(via_tr.targets, direct.targets)


@pytest.mark.parametrize("class_axis", [1, -1, 3])
def test_class_axis_gives_the_same_labels(class_axis):
    logits, batch = _grid(np.random.default_rng(2))
    reference = _stage_a().propose(logits, batch).targets
    moved = np.moveaxis(logits, -1, class_axis)
    np.testing.assert_array_equal(_stage_a().propose(moved, batch, class_axis=class_axis).targets, reference)


def test_soft_targets_come_back_in_the_callers_layout():
    logits, batch = _grid(np.random.default_rng(3))
    nchw = np.moveaxis(logits, -1, 1)
    soft = _stage_a(MeanField(max_sweeps=3)).propose(nchw, batch, class_axis=1).targets
    assert soft.shape == nchw.shape
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-9)


def test_warm_start_from_cached_labels_never_ends_worse():
    logits, batch = _grid(np.random.default_rng(4))
    cold = _stage_a().propose(logits, batch)
    warm = _stage_a().propose(logits, batch, initial=[cold.targets[0], None])
    assert warm.report.traces[0][0] == pytest.approx(cold.report.traces[0][-1])
    assert warm.report.traces[0][-1] <= cold.report.traces[0][-1] + 1e-9


def test_array_api_strict_in_array_api_strict_out():
    xps = pytest.importorskip("array_api_strict")
    logits, batch = _grid(np.random.default_rng(5))
    strict_batch = batch._replace(seeds=xps.asarray(batch.seeds), images=xps.asarray(batch.images))
    out = _stage_a().propose(xps.asarray(logits), strict_batch).targets
    assert type(out) is type(xps.asarray(0))
    np.testing.assert_array_equal(np.asarray(out), _stage_a().propose(logits, batch).targets)


def test_layout_mistakes_and_bad_input_get_clear_errors():
    logits, batch = _grid(np.random.default_rng(6))
    nchw = np.ascontiguousarray(np.moveaxis(logits, -1, 1))
    with pytest.raises(ValueError, match="for NCHW logits \\(N, C, H, W\\) pass class_axis=1"):
        _stage_a().propose(nchw, batch)
    with pytest.raises(ValueError, match="for NHWC logits pass class_axis=-1"):
        _stage_a().propose(logits, batch, class_axis=1)
    with pytest.raises(ValueError, match="match batch.seeds"):
        _stage_a().propose(logits[:1], batch)  # a model that returned another batch size
    with pytest.raises(ValueError, match="class_axis: expected an int in"):
        _stage_a().propose(logits, batch, class_axis=7)
    with pytest.raises(ValueError, match="channels-first images"):
        _stage_a().propose(logits, batch._replace(images=np.moveaxis(batch.images, -1, 1)))
    with pytest.raises(TypeError, match="batch.seeds: expected a numpy array, a torch tensor"):
        _stage_a().propose(logits, batch._replace(seeds=batch.seeds.tolist()))
    with pytest.raises(TypeError, match="batch.seeds: expected integer labels"):
        _stage_a().propose(logits, batch._replace(seeds=batch.seeds.astype(float)))
    with pytest.raises(TypeError, match="batch: expected a chainrule2.Batch"):
        _stage_a().propose(logits, (None, batch.seeds))
    with pytest.raises(ValueError, match="initial: expected 2 items"):
        _stage_a().propose(logits, batch, initial=[None])
    with pytest.raises(TypeError, match="solver: expected a Subproblem"):
        cr.StageA(object(), ScribblePotts(), CrossEntropy(), 1.0)
    with pytest.raises(ValueError, match="trust_weight: expected a finite number >= 0"):
        cr.StageA(AlphaExpansion(), ScribblePotts(), CrossEntropy(), -1.0)
    with pytest.raises(TypeError, match="batch_solver: expected None or a callable"):
        cr.StageA(AlphaExpansion(), ScribblePotts(), CrossEntropy(), 1.0, batch_solver=3)


def test_keep_changes_nothing_on_a_clean_batch():
    logits, batch = _grid(np.random.default_rng(7))
    strict = _stage_a().propose(logits, batch)
    kept = cr.StageA(AlphaExpansion(), ScribblePotts(potts_weight=5.0), CrossEntropy(), 2.0, on_failure="keep")
    proposal = kept.propose(logits, batch)
    np.testing.assert_array_equal(proposal.targets, strict.targets)
    assert proposal.report.traces == strict.report.traces and proposal.report.failures == ()
    assert strict.report.failures == ()


def test_a_solver_class_is_refused_with_advice():
    with pytest.raises(TypeError, match=r"solver: expected an instance, got the class AlphaExpansion; call it"):
        cr.StageA(AlphaExpansion, ScribblePotts(), CrossEntropy(), 1.0)
