"""chainrule2.validation: the one home of the argument checks (issue 14, item 4), and checks that run
once at the public boundary: the stage-B objective scans the logits for NaN/inf once per call."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule2.divergences as divergences
from chainrule2.divergences import KL, CrossEntropy, RobustCrossEntropy, SeedAwareObjective, Squared
from chainrule2.validation import (
    check_axis,
    check_choice,
    check_error_prob,
    check_instance,
    check_int,
    check_positive,
    check_probability,
)


def test_check_int() -> None:
    assert check_int(3, "steps") == 3
    assert type(check_int(np.int64(3), "steps")) is int
    assert check_int(None, "seed", allow_none=True) is None
    with pytest.raises(TypeError, match=r"^steps: expected an int, got bool$"):
        check_int(True, "steps")
    with pytest.raises(TypeError, match=r"^seed: expected an int or None, got float$"):
        check_int(1.0, "seed", allow_none=True)
    with pytest.raises(ValueError, match=r"^steps: expected an int >= 1, got 0$"):
        check_int(0, "steps")
    with pytest.raises(ValueError, match=r"^num_classes: expected an int in \[2, 254\], got 255$"):
        check_int(255, "num_classes", minimum=2, maximum=254)
    assert check_int(-1, "class_axis", minimum=None) == -1


def test_check_positive() -> None:
    assert check_positive(2, "beta") == 2.0
    assert check_positive(np.float32(0.5), "beta") == 0.5
    assert check_positive(0, "beta", allow_zero=True) == 0.0
    assert check_positive(None, "sigma", allow_none=True) is None
    with pytest.raises(TypeError, match=r"^beta: expected a real number, got str$"):
        check_positive("1", "beta")
    with pytest.raises(ValueError, match=r"^beta: expected a finite number > 0, got 0.0$"):
        check_positive(0, "beta")
    with pytest.raises(ValueError, match=r"^w: expected a finite number >= 0, got inf$"):
        check_positive(float("inf"), "w", allow_zero=True)
    with pytest.raises(ValueError, match=r"^sigma: expected a finite number > 0 or None, got -1.0$"):
        check_positive(-1, "sigma", allow_none=True)


def test_check_probability_and_error_prob() -> None:
    assert check_probability(0.5, "p") == 0.5
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^p: expected a value in \(0, 1\), got"):
            check_probability(bad, "p")
    with pytest.raises(TypeError, match=r"^p: expected a float, got bool$"):
        check_probability(True, "p")
    message = r"^error_prob: expected a value in \(0, \(C-1\)/C\) = \(0, 0\.75\) for num_classes=4, got 0\.8$"
    with pytest.raises(ValueError, match=message):
        check_error_prob(0.8, 4)


def test_check_axis_choice_instance() -> None:
    assert check_axis(-1, 4) == -1
    with pytest.raises(ValueError, match=r"^class_axis: expected an int in \[-4, 4\), got 4$"):
        check_axis(4, 4)
    with pytest.raises(TypeError, match=r"^class_axis: expected an int in \[-4, 4\), got '1'$"):
        check_axis("1", 4)
    assert check_choice("sum", "normalization", ("mean", "sum")) == "sum"
    with pytest.raises(ValueError, match=r"^normalization: expected one of \('mean', 'sum'\), got 'max'$"):
        check_choice("max", "normalization", ("mean", "sum"))
    solver = CrossEntropy()
    assert check_instance(solver, "trust_divergence") is solver
    with pytest.raises(TypeError, match=r"^stage_b: expected an instance, got the class KL; call it: KL\(\.\.\.\)$"):
        check_instance(KL, "stage_b", call="(...)")


# --- one scan of the logits per public call ----------------------------------------------------------


@pytest.fixture
def scans(monkeypatch):
    """The number of ``check_logits`` calls (each one a full NaN/inf scan, a host sync on a GPU) made by
    the divergences module since the fixture was set up."""
    calls = []
    checked = divergences.check_logits

    def counting(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("name", "logits"))
        return checked(*args, **kwargs)

    monkeypatch.setattr(divergences, "check_logits", counting)
    return calls


def _data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3))
    targets = rng.integers(0, 3, size=(2, 4, 5))
    seeds = np.full((2, 4, 5), 255)
    seeds[:, 0, :2] = 1
    seeds[1, 3] = 254
    soft = rng.uniform(0.1, 1.0, size=(2, 4, 5, 3))
    return logits, targets, seeds, soft / soft.sum(-1, keepdims=True)


OBJECTIVES = [
    SeedAwareObjective(RobustCrossEntropy(0.3, 3)),  # Grid-TR: 4 scans per call before issue 14
    SeedAwareObjective(CrossEntropy(), normalization="item"),
    SeedAwareObjective(Squared(), seed_divergence=None, normalization="mean"),
    SeedAwareObjective(KL(), seed_divergence=Squared()),
    SeedAwareObjective(None, normalization="mean"),  # PCE
]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_the_stage_b_objective_scans_the_logits_once(scans, objective, soft) -> None:
    logits, targets, seeds, probs = _data()
    objective(logits, probs if soft else targets, seeds)
    assert len(scans) == 1
    objective.gradient(logits, probs if soft else targets, seeds)
    assert len(scans) == 2


@pytest.mark.parametrize("divergence", [CrossEntropy(), KL(), Squared(), RobustCrossEntropy(0.3, 3)], ids=repr)
def test_a_divergence_called_alone_still_checks_once(scans, divergence) -> None:
    logits, targets, _, probs = _data()
    divergence(targets, logits)
    divergence(probs, logits)
    divergence.gradient(targets, logits)
    divergence.label_costs(logits)
    assert len(scans) == 4
    bad = logits.copy()
    bad[0, 0, 0, 0] = np.nan
    for call in (lambda: divergence(targets, bad), lambda: divergence.gradient(targets, bad)):
        with pytest.raises(ValueError, match="logits: expected finite values, got NaN or inf"):
            call()


def test_the_objective_still_refuses_bad_logits_and_targets() -> None:
    logits, targets, seeds, _ = _data()
    objective = SeedAwareObjective(RobustCrossEntropy(0.3, 3))
    bad = logits.copy()
    bad[1, 2, 3, 0] = np.inf
    with pytest.raises(ValueError, match="logits: expected finite values, got NaN or inf"):
        objective(bad, targets, seeds)
    wrong = targets.copy()
    wrong[0, 1, 1] = 7
    with pytest.raises(ValueError, match=r"target: expected labels in \[0, 3\) or 254/255, got 7"):
        objective(logits, wrong, seeds)
    with pytest.raises(ValueError, match=r"logits: expected 4 classes on the last axis \(num_classes\), got 3"):
        SeedAwareObjective(RobustCrossEntropy(0.3, 4))(logits, targets, seeds)


def test_a_subclass_that_overrides_the_public_call_is_called() -> None:
    class Doubled(CrossEntropy):
        def __call__(self, target, logits):
            return 2.0 * super().__call__(target, logits)

    logits, targets, seeds, _ = _data()
    plain = SeedAwareObjective(CrossEntropy(), normalization="sum")(logits, targets, seeds)
    doubled = SeedAwareObjective(Doubled(), seed_divergence=Doubled(), normalization="sum")(logits, targets, seeds)
    assert doubled == pytest.approx(2.0 * plain, rel=1e-12)


def test_the_torch_criterion_scans_the_logits_once(scans) -> None:
    torch = pytest.importorskip("torch")
    from chainrule2_torch import SeedAwareLoss

    logits, targets, seeds, _ = _data()
    criterion = SeedAwareLoss(RobustCrossEntropy(0.3, 3), normalization="official", class_axis=-1)
    loss = criterion(torch.tensor(logits, requires_grad=True), torch.tensor(targets), torch.tensor(seeds))
    loss.backward()
    assert len(scans) == 1
