"""The two claims of the generalized chain rule, checked exactly in float64 with torch.

(a) GradientStep + Squared d_A and d_B + one stage-B SGD step is back-propagation.
(b) ADM is configuration only: a discrete stage A with cross-entropy d_A, then one SGD step
    of cross-entropy toward its labels.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import chainrule2 as cr  # noqa: E402
from chainrule2.divergences import CrossEntropy, SeedAwareObjective, Squared, log_softmax  # noqa: E402
from chainrule2.losses import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion, GradientStep  # noqa: E402
from chainrule2.testing import brute_force_minimum  # noqa: E402
from chainrule2_torch import OptimizerFitter, TorchModel  # noqa: E402


def _network(num_labels: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(5, num_labels, 1)
    ).double()


def _batch(rng: np.random.Generator, n: int, h: int, w: int, num_labels: int) -> cr.Batch:
    images = rng.uniform(0, 255, size=(n, h, w, 3))
    seeds = np.full((n, h, w), cr.UNLABELED, dtype=np.int64)
    for i in range(n):
        for label in range(num_labels):
            seeds[i, rng.integers(h), rng.integers(w)] = label
    inputs = torch.as_tensor(images.transpose(0, 3, 1, 2) / 255.0)
    return cr.Batch(inputs=inputs, seeds=seeds, images=images)


def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    with torch.no_grad():
        return sum(float(torch.sum((p - q) ** 2)) for p, q in zip(a.parameters(), b.parameters(), strict=True)) ** 0.5


def _cross_entropy_step(stage_a, net, batch, loss, lr: float, beta: float):
    """One trust-region step: cross-entropy d_A, then one SGD step of cross-entropy (sum) in stage B."""
    trust_region = cr.TrustRegion(
        stage_a=stage_a,
        stage_b=OptimizerFitter(
            torch.optim.SGD(net.parameters(), lr=lr), SeedAwareObjective(CrossEntropy(), normalization="sum"), steps=1
        ),
        trust_divergence=CrossEntropy(),
        trust_weight=beta,
    )
    return trust_region.step(cr.Composite(loss=loss, model=TorchModel(net, dtype=torch.float64)), batch)


def _sgd_step_by_hand(net: torch.nn.Module, lr: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad


def _relative_error(a: torch.nn.Module, b: torch.nn.Module) -> float:
    with torch.no_grad():
        return _distance(a, b) / sum(float(torch.sum(p**2)) for p in a.parameters()) ** 0.5


@pytest.mark.parametrize("relaxation", ["bilinear", "squared", "tv"])
@pytest.mark.parametrize("trust_weight", [0.5, 4.0])
def test_gradient_step_with_squared_divergences_is_backpropagation(relaxation: str, trust_weight: float) -> None:
    rng = np.random.default_rng(0)
    batch = _batch(rng, n=2, h=6, w=7, num_labels=3)
    loss = ScribblePotts(potts_weight=3.0, relaxation=relaxation)
    lr = 0.05

    net = _network(3, seed=1)
    reference = copy.deepcopy(net)

    optimizer = cr.TrustRegion(
        stage_a=GradientStep(),
        stage_b=OptimizerFitter(
            torch.optim.SGD(net.parameters(), lr=lr),
            SeedAwareObjective(Squared(), seed_divergence=None, normalization="sum"),
            steps=1,
        ),
        trust_divergence=Squared(),
        trust_weight=trust_weight,
    )
    report = optimizer.step(cr.Composite(loss=loss, model=TorchModel(net, dtype=torch.float64)), batch)
    assert report.stage_b.steps == 1

    # Back-propagation of the same loss, learning rate η·α with α = 1/β.
    probs = torch.softmax(reference(batch.inputs).permute(0, 2, 3, 1), dim=-1)
    torch.sum(loss.value(probs, batch)).backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= (lr / trust_weight) * p.grad

    assert _distance(net, _network(3, seed=1)) > 1e-6  # the step moved the parameters
    assert _relative_error(net, reference) <= 1e-10


def test_adm_is_configuration_only() -> None:
    rng = np.random.default_rng(3)
    batch = _batch(rng, n=2, h=3, w=4, num_labels=2)  # binary and tiny: brute force is the reference
    loss = ScribblePotts(potts_weight=2.0)
    lr, beta = 0.1, 0.7

    net = _network(2, seed=2)
    reference = copy.deepcopy(net)
    report = _cross_entropy_step(AlphaExpansion(), net, batch, loss, lr, beta)

    # Stage A by hand: β·(−log S) plus the loss's own terms, minimised by enumeration.
    with torch.no_grad():
        logits = reference(batch.inputs).permute(0, 2, 3, 1).numpy()
    unary = beta * -np.asarray(log_softmax(logits))
    expected = np.stack([brute_force_minimum(loss.energy(unary[i], batch, i))[0] for i in range(2)])
    np.testing.assert_array_equal(report.targets, expected)

    # Stage B by hand: one SGD step of cross-entropy toward those labels (clean CE on the seeds).
    z = reference(batch.inputs).permute(0, 2, 3, 1)
    seeds = torch.as_tensor(batch.seeds)
    target = torch.where(seeds < 2, seeds, torch.as_tensor(expected))
    torch.nn.functional.cross_entropy(z.reshape(-1, 2), target.reshape(-1), reduction="sum").backward()
    _sgd_step_by_hand(reference, lr)
    assert _distance(net, _network(2, seed=2)) > 1e-6
    assert _relative_error(net, reference) <= 1e-10


def test_soft_stage_a_feeds_soft_targets_to_stage_b() -> None:
    """Mean-field stage A: the targets are the solver's distributions, and stage B takes one SGD
    step of soft cross-entropy toward them (clean CE on the seeds)."""
    from chainrule2.energies import MeanFieldEnergy
    from chainrule2.solvers import MeanField, run

    rng = np.random.default_rng(5)
    batch = _batch(rng, n=2, h=5, w=6, num_labels=3)
    loss = ScribblePotts(potts_weight=0.5)
    lr, beta, temperature = 0.1, 0.7, 0.8

    net = _network(3, seed=4)
    reference = copy.deepcopy(net)
    report = _cross_entropy_step(MeanField(temperature=temperature), net, batch, loss, lr, beta)

    with torch.no_grad():
        logits = reference(batch.inputs).permute(0, 2, 3, 1).numpy()
    unary = beta * -np.asarray(log_softmax(logits))
    expected = np.stack(
        [run(MeanField(), MeanFieldEnergy(loss.energy(unary[i], batch, i), temperature)).solution for i in range(2)]
    )
    np.testing.assert_array_equal(report.targets, expected)
    assert report.targets.shape == (2, 5, 6, 3)
    assert 0 < report.targets[batch.seeds == cr.UNLABELED].max() < 1  # soft away from the seeds

    z = reference(batch.inputs).permute(0, 2, 3, 1)
    seeds = torch.as_tensor(batch.seeds)
    seeded = seeds < 3
    logp = torch.log_softmax(z, dim=-1)
    soft = -(torch.as_tensor(expected) * logp).sum(-1)
    clean = -logp.gather(-1, torch.where(seeded, seeds, 0)[..., None])[..., 0]
    torch.sum(torch.where(seeded, clean, soft)).backward()
    _sgd_step_by_hand(reference, lr)
    assert _distance(net, _network(3, seed=4)) > 1e-6
    assert _relative_error(net, reference) <= 1e-10
