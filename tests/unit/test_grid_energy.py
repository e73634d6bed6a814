"""GridPotts, contrast weights and the ScribblePotts loss: known values and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainrule2.base import Batch
from chainrule2.constants import PADDING, UNLABELED
from chainrule2.energies.grid import (
    N4_OFFSETS,
    N8_OFFSETS,
    GridPotts,
    contrast_sigma2,
    contrast_weights,
    neighbourhood_offsets,
    pair_mask,
)
from chainrule2.losses.scribble import ScribblePotts


def _energy(h=2, w=3, num_labels=2, **kwargs):
    rng = np.random.default_rng(0)
    kwargs.setdefault("weights", rng.random((4, h, w)))
    return GridPotts(unary=rng.random((h, w, num_labels)), **kwargs)


# --- contrast weights ---------------------------------------------------------------------------
def test_offsets():
    assert neighbourhood_offsets(4) == ((0, 1), (1, 0))
    assert neighbourhood_offsets(8) == ((0, 1), (1, 0), (1, 1), (-1, 1))


def test_constant_image_gives_one_over_distance():
    w = contrast_weights(np.full((3, 3, 3), 7, dtype=np.uint8), neighbourhood=8)
    assert w.shape == (4, 3, 3)
    np.testing.assert_allclose(w[0][:, :2], 1.0)
    np.testing.assert_allclose(w[0][:, 2], 0.0)  # right neighbour outside the grid
    np.testing.assert_allclose(w[2][:2, :2], 1 / math.sqrt(2))
    np.testing.assert_allclose(w[3][0], 0.0)  # (-1, 1) leaves the grid from the first row
    np.testing.assert_allclose(w[3][1:, :2], 1 / math.sqrt(2))
    assert contrast_sigma2(np.zeros((3, 3))) == 1.0


def test_known_weight_and_automatic_sigma():
    image = np.array([[0.0, 1.0, 1.0]])
    # pairs (N4 in one row): d2 = 1 and 0 -> sigma2 = 0.5
    assert contrast_sigma2(image, 4) == pytest.approx(0.5)
    w = contrast_weights(image, 4)
    np.testing.assert_allclose(w[0, 0], [math.exp(-1.0), 1.0, 0.0])
    w = contrast_weights(image, 4, sigma=2.0)
    np.testing.assert_allclose(w[0, 0, 0], math.exp(-1.0 / 8.0))


def test_channels_are_summed_and_any_count_works():
    image = np.zeros((1, 2, 5))
    image[0, 1] = 1.0  # d2 = 5
    w = contrast_weights(image, 4, sigma=1.0)
    assert w[0, 0, 0] == pytest.approx(math.exp(-2.5))
    assert contrast_weights(np.zeros((2, 2)), 4).shape == (2, 2, 2)


def test_padding_pairs_are_excluded():
    image = np.zeros((2, 3))
    image[:, 2] = 100.0
    padding = np.zeros((2, 3), bool)
    padding[:, 2] = True
    w = contrast_weights(image, 8, padding_mask=padding)
    assert np.all(w[:, :, 2] == 0) and np.all(w[0][:, 1] == 0)
    assert contrast_sigma2(image, 8, padding) == 1.0  # only constant pairs remain
    assert pair_mask((2, 3), N8_OFFSETS, padding).sum() == 2 + 2 + 1 + 1  # the 2x2 block left of the padding


# --- GridPotts value ----------------------------------------------------------------------------
def test_value_known():
    unary = np.zeros((2, 2, 2))
    unary[0, 0, 1] = 3.0
    weights = np.ones((2, 2, 2))
    e = GridPotts(unary, weights, offsets=N4_OFFSETS, potts_weight=2.0, edge_scale=0.5)
    assert e.shape == (2, 2) and e.num_labels == 2
    assert e.value(np.zeros((2, 2), int)) == 0.0
    # one pixel different: 2 cut pairs * lambda 2 * scale 0.5 = 2, plus unary 3
    assert e.value(np.array([[1, 0], [0, 0]])) == 5.0
    assert isinstance(e.value(np.array([[1, 0], [0, 0]])), float)


def test_clamped_seeds_and_penalty():
    seeds = np.array([[1, UNLABELED], [UNLABELED, PADDING]])
    e = _energy(2, 2, seeds=seeds, offsets=N8_OFFSETS)
    assert e.value(np.zeros((2, 2), int)) == math.inf
    x = np.array([[1, 0], [0, 0]])
    assert np.isfinite(e.value(x))
    soft = _energy(2, 2, seeds=seeds, seed_penalty=10.0)
    assert soft.value(np.zeros((2, 2), int)) == pytest.approx(
        soft.value(x) - _pairwise_diff(soft, x) + 10.0 + _unary_diff(soft)
    )


def _pairwise_diff(e, x):
    return e.pairwise_value(x) - e.pairwise_value(np.zeros_like(x))


def _unary_diff(e):
    return e.unary[0, 0, 0] - e.unary[0, 0, 1]


def test_padding_pixels_contribute_nothing():
    seeds = np.full((2, 2), UNLABELED)
    seeds[1, 1] = PADDING
    e = _energy(2, 2, seeds=seeds)
    a = np.zeros((2, 2), int)
    b = a.copy()
    b[1, 1] = 1
    assert e.value(a) == e.value(b)


def test_allowed_labels():
    e = _energy(2, 2, num_labels=3, allowed_labels=(0, 2))
    assert e.labels == (0, 2)
    assert e.value(np.ones((2, 2), int)) == math.inf
    assert np.isfinite(e.value(np.full((2, 2), 2)))
    assert set(np.unique(e.unary_argmin())) <= {0, 2}


def test_energy_is_immutable():
    e = _energy()
    with pytest.raises(ValueError):
        e.unary[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        e.potts_weight = 3.0


# --- bad input: one test per case ---------------------------------------------------------------
def test_negative_weights():
    with pytest.raises(ValueError, match="weights: expected non-negative"):
        _energy(weights=-np.ones((4, 2, 3)))


def test_nan_weights():
    w = np.ones((4, 2, 3))
    w[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="weights: expected no NaN"):
        _energy(weights=w)


def test_negative_unary():
    with pytest.raises(ValueError, match="unary: expected non-negative"):
        GridPotts(-np.ones((2, 2, 2)), np.ones((4, 2, 2)))


def test_nan_unary():
    u = np.ones((2, 2, 2))
    u[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="unary: expected no NaN"):
        GridPotts(u, np.ones((4, 2, 2)))


def test_weight_size_mismatch():
    with pytest.raises(ValueError, match=r"weights: expected shape \(4, 2, 3\).*got \(4, 3, 3\)"):
        _energy(weights=np.ones((4, 3, 3)))


def test_seed_size_mismatch():
    with pytest.raises(ValueError, match=r"seeds: expected shape \(2, 3\)"):
        _energy(seeds=np.full((3, 3), UNLABELED))


def test_seed_label_out_of_range():
    seeds = np.full((2, 3), UNLABELED)
    seeds[0, 0] = 2
    with pytest.raises(ValueError, match=r"seeds: expected labels in \[0, 2\) or 254/255, got 2"):
        _energy(seeds=seeds)


def test_no_labels():
    with pytest.raises(ValueError, match="unary: expected at least one label"):
        GridPotts(np.ones((2, 2, 0)), np.ones((4, 2, 2)))


def test_non_2d_grid():
    with pytest.raises(ValueError, match=r"unary: expected a 2-D grid.*got shape \(2, 2, 2, 2\)"):
        GridPotts(np.ones((2, 2, 2, 2)), np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="image: expected a 2-D grid"):
        contrast_weights(np.ones((2, 2, 2, 2)))


def test_negative_potts_weight():
    with pytest.raises(ValueError, match="potts_weight: expected a finite number >= 0, got -1.0"):
        _energy(potts_weight=-1.0)


def test_bad_neighbourhood():
    with pytest.raises(ValueError, match="neighbourhood: expected 4 or 8, got 6"):
        contrast_weights(np.zeros((2, 2)), neighbourhood=6)


def test_allowed_labels_must_include_seeds():
    seeds = np.full((2, 3), UNLABELED)
    seeds[0, 0] = 1
    with pytest.raises(ValueError, match=r"allowed_labels: expected to include every seed label, missing \[1\]"):
        _energy(seeds=seeds, allowed_labels=(0,))


def test_labels_of_wrong_shape():
    with pytest.raises(ValueError, match=r"labels: expected labels of shape \(2, 3\), got \(3, 2\)"):
        _energy().value(np.zeros((3, 2), int))


def test_image_unary_size_mismatch_in_loss():
    batch = Batch(None, np.full((1, 4, 4), UNLABELED), np.zeros((1, 5, 4, 3)))
    with pytest.raises(ValueError, match=r"batch.images\[0\]: expected grid \(4, 4\)"):
        ScribblePotts().energy(np.zeros((4, 4, 2)), batch, 0)


# --- ScribblePotts ------------------------------------------------------------------------------
def _batch(n=2, h=5, w=6, c=3, num_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
    seeds = np.full((n, h, w), UNLABELED, dtype=np.int64)
    seeds[:, 0, 0] = 0
    seeds[:, -1, 0] = 2
    seeds[0, 2, 2] = 1
    seeds[1, :, -1] = PADDING
    logits = rng.normal(size=(n, h, w, num_labels))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return Batch(None, seeds, images), probs


def test_energy_uses_paper_weights_scale_and_restriction():
    batch, _ = _batch()
    loss = ScribblePotts(potts_weight=100.0)
    e = loss.energy(np.ones((5, 6, 3)), batch, 1)
    assert e.allowed_labels == (0, 2)
    assert loss.energy(np.ones((5, 6, 3)), batch, 0).allowed_labels is None  # all three present
    padding = batch.seeds[1] == PADDING
    pixels, pairs = (~padding).sum(), pair_mask((5, 6), N8_OFFSETS, padding).sum()
    assert e.edge_scale == pytest.approx(pixels / pairs)
    np.testing.assert_allclose(e.weights, contrast_weights(batch.images[1], 8, padding_mask=padding))
    assert e.potts_weight == 100.0 and e.seed_penalty is None
    assert ScribblePotts(restrict_labels=False).energy(np.ones((5, 6, 3)), batch, 1).allowed_labels is None
    one = Batch(None, np.where(batch.seeds == 2, UNLABELED, batch.seeds)[1:], batch.images[1:])
    assert ScribblePotts().energy(np.ones((5, 6, 3)), one, 0).allowed_labels is None  # one class present


@pytest.mark.parametrize("relaxation", ["bilinear", "squared", "tv"])
def test_relaxation_equals_discrete_energy_on_one_hot(relaxation):
    batch, _ = _batch()
    loss = ScribblePotts(potts_weight=3.0, relaxation=relaxation)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (2, 5, 6))
    labels = np.where(batch.seeds < 3, batch.seeds, labels)
    onehot = np.eye(3)[labels]
    values = loss.value(onehot, batch)
    for i in range(2):
        e = loss.energy(np.zeros((5, 6, 3)), batch, i)
        pixels = (batch.seeds[i] != PADDING).sum()
        assert values[i] == pytest.approx(e.pairwise_value(labels[i]) / pixels, rel=1e-12)


@pytest.mark.parametrize("relaxation", ["bilinear", "squared", "tv"])
def test_gradient_matches_finite_differences(relaxation):
    batch, probs = _batch()
    loss = ScribblePotts(potts_weight=2.0, relaxation=relaxation)
    grad = loss.gradient(probs, batch)
    rng = np.random.default_rng(2)
    direction = rng.normal(size=probs.shape)
    eps = 1e-6
    fd = (loss.value(probs + eps * direction, batch) - loss.value(probs - eps * direction, batch)) / (2 * eps)
    np.testing.assert_allclose(fd, np.sum((grad * direction).reshape(2, -1), axis=1), rtol=1e-6, atol=1e-8)


def test_value_runs_on_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    batch, probs = _batch()
    loss = ScribblePotts()
    expected = loss.value(probs, batch)
    got = loss.value(xps.asarray(probs), batch)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)


def test_value_runs_on_torch_with_autograd():
    torch = pytest.importorskip("torch")
    batch, probs = _batch()
    loss = ScribblePotts(relaxation="bilinear")
    t = torch.tensor(probs, requires_grad=True)
    costs = torch.as_tensor(np.stack([loss.pairwise(batch.images[i], batch.seeds[i]) for i in range(2)]))
    values = loss.value_from_weights(t, batch.seeds, costs)
    np.testing.assert_allclose(values.detach().numpy(), loss.value(probs, batch), rtol=1e-12)
    values.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), loss.gradient(probs, batch), rtol=1e-9, atol=1e-12)


def test_loss_bad_config():
    with pytest.raises(ValueError, match="relaxation: expected one of"):
        ScribblePotts(relaxation="l1")
    with pytest.raises(ValueError, match="potts_weight"):
        ScribblePotts(potts_weight=-1.0)
    with pytest.raises(ValueError, match="batch.images: ScribblePotts needs host images"):
        ScribblePotts().energy(np.zeros((2, 2, 2)), Batch(None, np.full((1, 2, 2), 255)), 0)
