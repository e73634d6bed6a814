"""Core edge cases: more classes than the seed values leave room for, classes passed for instances,
mismatched per-item arguments. Each is refused with an error that names the argument."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective, softmax
from chainrule2.energies.grid import N4_OFFSETS, GridPotts, contrast_weights
from chainrule2.losses import ChainScribblePotts, ScribblePotts
from chainrule2.models import LinearClassifier, SGDFitter
from chainrule2.solvers import ChainViterbi, ProcessBatchSolver, ThreadBatchSolver, solve_batch
from chainrule2.validation import check_labels

pytest.importorskip("maxflow")
from chainrule2.solvers import AlphaExpansion  # noqa: E402

RESERVED = r"expected at most 254 (classes|labels)[ a-z]* \(254/255 are reserved for padding/unlabeled seeds\), got 300"


def _grid(num_labels, n=1, h=4, w=5, seed=0):
    rng = np.random.default_rng(seed)
    seeds = np.full((n, h, w), cr.UNLABELED)
    seeds[:, 0, 0], seeds[:, -1, -1] = 0, 1
    return rng.normal(size=(n, h, w, num_labels)), cr.Batch(None, seeds, images=rng.uniform(0, 255, (n, h, w, 3)))


def _stage_a(**kw):
    return cr.StageA(AlphaExpansion(), ScribblePotts(potts_weight=2.0), CrossEntropy(), 1.0, **kw)


# --- more than 254 labels ---------------------------------------------------------------------------


@pytest.mark.parametrize("on_failure", ["raise", "keep"])
def test_stage_a_refuses_300_classes(on_failure):
    logits, batch = _grid(300)
    with pytest.raises(ValueError, match="logits: " + RESERVED):
        _stage_a(on_failure=on_failure).propose(logits, batch)


def test_a_grid_with_300_labels_and_unlabeled_seeds_is_refused():
    unary = np.zeros((2, 3, 300))
    weights = contrast_weights(np.zeros((2, 3)), 4)
    seeds = np.full((2, 3), cr.UNLABELED)
    seeds[0, 0] = 7
    with pytest.raises(ValueError, match="unary: " + RESERVED):
        GridPotts(unary, weights, offsets=N4_OFFSETS, seeds=seeds)
    assert GridPotts(unary, weights, offsets=N4_OFFSETS).num_labels == 300  # no seeds: no collision


def test_254_labels_clamp_only_the_real_seeds():
    unary = np.random.default_rng(0).uniform(size=(2, 3, 254))
    seeds = np.full((2, 3), cr.UNLABELED)
    seeds[0, 0], seeds[1, 2] = 253, cr.PADDING
    energy = GridPotts(unary, contrast_weights(np.zeros((2, 3)), 4), offsets=N4_OFFSETS, seeds=seeds)
    assert energy.clamped.sum() == 1 and energy.clamped[0, 0]
    assert energy.padding.sum() == 1 and energy.padding[1, 2]


def test_divergences_refuse_300_classes_with_integer_targets():
    logits = np.zeros((1, 3, 300))
    labels = np.array([[0, 255, 299]])
    with pytest.raises(ValueError, match="logits: " + RESERVED):
        SeedAwareObjective(CrossEntropy())(logits, labels, labels)
    with pytest.raises(ValueError, match="logits: " + RESERVED):
        SeedAwareObjective(None)(logits, labels, labels)
    with pytest.raises(ValueError, match="logits: " + RESERVED):
        CrossEntropy()(labels, logits)
    with pytest.raises(ValueError, match=r"labels \(num_classes\): " + RESERVED):
        check_labels(labels, 300, "labels")
    check_labels(labels, 300, "labels", allow_ignored=False)  # 255 is a class when nothing is ignored
    soft = np.asarray(softmax(np.zeros((1, 3, 300))))
    assert CrossEntropy()(soft, logits).shape == (1, 3)  # soft targets carry no reserved values


def test_the_torch_criterion_refuses_300_classes():
    torch = pytest.importorskip("torch")
    from chainrule2_torch import SeedAwareLoss

    seeds = torch.full((1, 2, 2), 255, dtype=torch.int64)
    with pytest.raises(ValueError, match="logits: " + RESERVED):
        SeedAwareLoss(RobustCrossEntropy(0.5, 300), normalization="mean")(torch.zeros(1, 300, 2, 2), seeds, seeds)


# --- a class passed instead of an instance -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"solver": AlphaExpansion}, "solver"),
        ({"loss": ScribblePotts}, "loss"),
        ({"trust_divergence": CrossEntropy}, "trust_divergence"),
        ({"batch_solver": ProcessBatchSolver}, "batch_solver"),
    ],
)
def test_stage_a_says_to_call_a_class(kw, name):
    args = {"solver": AlphaExpansion(), "loss": ScribblePotts(), "trust_divergence": CrossEntropy()} | kw
    cls = next(iter(kw.values())).__name__
    with pytest.raises(TypeError, match=rf"^{name}: expected an instance, got the class {cls}; call it: {cls}\(\)$"):
        cr.StageA(trust_weight=1.0, **args)


def test_trust_region_says_to_call_a_class():
    fitter = SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1)
    with pytest.raises(TypeError, match=r"^stage_a: expected an instance, got the class AlphaExpansion; call it"):
        cr.TrustRegion(stage_a=AlphaExpansion, stage_b=fitter, trust_divergence=CrossEntropy(), trust_weight=1.0)
    with pytest.raises(TypeError, match=r"^stage_b: expected an instance, got the class SGDFitter; call it"):
        cr.TrustRegion(ChainViterbi(), SGDFitter, CrossEntropy(), 1.0)
    with pytest.raises(TypeError, match=r"^trust_divergence: expected an instance, got the class CrossEntropy"):
        cr.TrustRegion(ChainViterbi(), fitter, CrossEntropy, 1.0)


# --- per-item arguments of the wrong length -----------------------------------------------------------


def _energies(n=3):
    logits, batch = _grid(3, n=n)
    return AlphaExpansion().energies(ScribblePotts(potts_weight=2.0), logits, batch, CrossEntropy(), 1.0)


@pytest.mark.parametrize("batch_solver", [solve_batch, ThreadBatchSolver(2), ProcessBatchSolver(2)])
@pytest.mark.parametrize("count", [2, 4])
def test_batch_solvers_name_initials_of_the_wrong_length(batch_solver, count):
    with pytest.raises(ValueError, match=rf"^initials: expected 3 items \(one per energy\), got {count}$"):
        batch_solver(AlphaExpansion(), _energies(), [None] * count)
    with pytest.raises(ValueError, match=r"errors: expected one of \('raise', 'return'\), got 'ignore'"):
        batch_solver(AlphaExpansion(), _energies(), errors="ignore")


def test_stage_a_names_per_item_arguments_of_the_wrong_length():
    logits, batch = _grid(3, n=2)
    with pytest.raises(ValueError, match=r"initial: expected 2 items \(one per batch item\), got 3"):
        _stage_a().propose(logits, batch, initial=[None] * 3)
    with pytest.raises(ValueError, match=r"batch.ids: expected 2 ids \(one per item of batch.seeds\), got 1"):
        _stage_a().propose(logits, batch._replace(ids=("a",)))

    def short(solver, energies, initials):
        return solve_batch(solver, energies, initials)[:1]

    for on_failure in ("raise", "keep"):  # the caller's batch solver is wrong, not an item
        with pytest.raises(ValueError, match=r"batch_solver: expected 2 states \(one per energy\), got 1"):
            _stage_a(batch_solver=short, on_failure=on_failure).propose(logits, batch)


def test_trust_region_names_a_model_that_returns_another_batch_size():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 9, 4))
    seeds = np.full((2, 9), cr.UNLABELED)
    seeds[:, 0] = 1

    class Dropping(LinearClassifier):
        def predict(self, inputs):  # noqa: ANN001, ANN201
            return super().predict(inputs)[:1]

    composite = cr.Composite(ChainScribblePotts(potts_weight=0.5), Dropping(4, 2, rng=rng))
    tr = cr.TrustRegion(ChainViterbi(), SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1), CrossEntropy(), 0.5)
    with pytest.raises(ValueError, match=r"composite.model: expected predict\(batch.inputs\) to return logits for 2 "):
        tr.propose(composite, cr.Batch(inputs, seeds, images=inputs))
