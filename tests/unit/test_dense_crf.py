"""DenseCRFLoss: the relaxed dense CRF of the DenseCRF loss against brute force, its gradient, namespaces, errors."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest

from chainrule2.base import Batch
from chainrule2.constants import PADDING, UNLABELED
from chainrule2.losses import DenseCRFLoss
from chainrule2.losses.dense import bilinear_matrix, nearest_indices


def _data(n: int = 2, h: int = 6, w: int = 5, labels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, 3)).astype(np.uint8)
    seeds = np.full((n, h, w), UNLABELED)
    seeds[0, 0, 0] = 1
    seeds[-1, -1, :] = PADDING
    probs = rng.uniform(0.05, 1.0, size=(n, h, w, labels))
    return images, seeds, probs / probs.sum(-1, keepdims=True)


def _brute(loss: DenseCRFLoss, probs: np.ndarray, images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Σ_k S_kᵀ W (1 − S_k) (normalised as documented) by a double loop over the down-scaled grid."""
    n, h, w, _ = probs.shape
    hs, ws = loss.grid((h, w))
    rows, cols = bilinear_matrix(h, hs), bilinear_matrix(w, ws)
    ri, ci = nearest_indices(h, hs), nearest_indices(w, ws)
    sxy = loss.sigma_xy * loss.scale
    out = []
    for i in range(n):
        small = np.einsum("ah,hwl,bw->abl", rows, probs[i], cols)
        image = images[i].astype(np.float64)[ri][:, ci]
        keep = seeds[i][ri][:, ci] != PADDING
        total, pixels = 0.0, int(keep.sum())
        for a in range(hs * ws):
            ya, xa = divmod(a, ws)
            for b in range(hs * ws):
                yb, xb = divmod(b, ws)
                if a == b or not keep[ya, xa] or not keep[yb, xb]:
                    continue
                d_xy = ((ya - yb) ** 2 + (xa - xb) ** 2) / (2 * sxy**2)
                d_rgb = float(np.sum((image[ya, xa] - image[yb, xb]) ** 2)) / (2 * loss.sigma_rgb**2)
                total += np.exp(-d_xy - d_rgb) * (small[ya, xa].sum() - small[ya, xa] @ small[yb, xb])
        out.append(loss.weight * total / max(pixels, 1))
    return np.array(out)


LOSSES = [
    DenseCRFLoss(2.0, sigma_rgb=40.0, sigma_xy=3.0, scale=1.0, chunk=7),
    DenseCRFLoss(0.5, scale=0.5),
    DenseCRFLoss(1.0, sigma_rgb=30.0, sigma_xy=4.0, scale=0.6, chunk=3),
]


@pytest.mark.parametrize("loss", LOSSES)
def test_value_matches_brute_force(loss: DenseCRFLoss) -> None:
    images, seeds, probs = _data()
    value = loss.value(probs, Batch(None, seeds, images))
    assert value.shape == (2,)
    np.testing.assert_allclose(value, _brute(loss, probs, images, seeds), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_brute_force_differences(loss: DenseCRFLoss) -> None:
    images, seeds, probs = _data(h=4, w=4, seed=1)
    batch = Batch(None, seeds, images)
    grad = loss.gradient(probs, batch)
    assert grad.shape == probs.shape
    rng = np.random.default_rng(2)
    for _ in range(6):
        idx = tuple(int(rng.integers(0, s)) for s in probs.shape)
        step = np.zeros_like(probs)
        step[idx] = 1e-6
        fd = (_brute(loss, probs + step, images, seeds).sum() - _brute(loss, probs - step, images, seeds).sum()) / 2e-6
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_gradient_vs_finite_differences_and_torch_autograd() -> None:
    torch = pytest.importorskip("torch")  # the core's tests run without torch
    loss = DenseCRFLoss(3.0, sigma_rgb=20.0, sigma_xy=6.0, scale=0.5, chunk=5)
    images, seeds, probs = _data(h=10, w=8, seed=3)
    batch = Batch(None, seeds, images)
    grad = loss.gradient(probs, batch)
    direction = np.random.default_rng(4).normal(size=probs.shape)
    h = 1e-6
    fd = (loss.value(probs + h * direction, batch).sum() - loss.value(probs - h * direction, batch).sum()) / (2 * h)
    assert float(np.sum(grad * direction)) == pytest.approx(fd, rel=1e-6)
    t = torch.tensor(probs, requires_grad=True)
    loss.value(t, batch).sum().backward()
    assert t.grad is not None
    np.testing.assert_allclose(t.grad.numpy(), grad, rtol=1e-10, atol=1e-13)


def test_numpy_torch_and_array_api_strict_agree() -> None:
    torch = pytest.importorskip("torch")  # the core's tests run without torch
    loss = DenseCRFLoss(1.5, sigma_rgb=25.0, sigma_xy=5.0, chunk=4)
    images, seeds, probs = _data(h=8, w=8)
    batch = Batch(None, seeds, images)
    value, grad = loss.value(probs, batch), loss.gradient(probs, batch)
    t = torch.tensor(probs)
    np.testing.assert_allclose(loss.value(t, batch).numpy(), value, rtol=1e-12)
    np.testing.assert_allclose(loss.gradient(t, batch).numpy(), grad, rtol=1e-12, atol=1e-15)
    s = xps.asarray(probs)
    np.testing.assert_allclose(np.asarray(loss.value(s, batch)), value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(loss.gradient(s, batch)), grad, rtol=1e-12, atol=1e-15)
    t32 = torch.tensor(probs, dtype=torch.float32)
    np.testing.assert_allclose(loss.value(t32, batch).numpy(), value, rtol=1e-4)


def test_kernel_is_symmetric_with_zero_diagonal() -> None:
    loss = DenseCRFLoss(1.0, sigma_rgb=30.0, sigma_xy=4.0, scale=1.0, chunk=3)
    images, seeds, _ = _data(h=5, w=4)
    items = loss.items(images, seeds)
    m = items.features.shape[1]
    kernel = loss.filter(np.broadcast_to(np.eye(m), (2, m, m)).copy(), items)  # W I = W (rows = columns)
    np.testing.assert_allclose(kernel, np.swapaxes(kernel, 1, 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.diagonal(kernel, axis1=1, axis2=2), 0.0, atol=1e-12)
    assert kernel.min() >= 0.0
    padded = items.mask[1] == 0
    assert padded.any() and np.all(kernel[1][padded] == 0) and np.all(kernel[1][:, padded] == 0)


def test_zero_for_a_constant_one_hot_labelling_and_non_negative() -> None:
    images, seeds, probs = _data(h=8, w=6)
    batch = Batch(None, seeds, images)
    for loss in LOSSES:
        for k in range(3):
            onehot = np.zeros_like(probs)
            onehot[..., k] = 1.0
            np.testing.assert_allclose(loss.value(onehot, batch), 0.0, atol=1e-12)
        rng = np.random.default_rng(5)
        for _ in range(5):
            p = rng.dirichlet(np.full(3, 0.3), size=probs.shape[:-1])
            assert np.all(loss.value(p, batch) >= -1e-12)


def test_one_hot_value_is_twice_the_potts_energy() -> None:
    loss = DenseCRFLoss(1.0, sigma_rgb=50.0, sigma_xy=2.0, scale=1.0)
    images, seeds, _ = _data(h=4, w=4)
    labels = np.random.default_rng(6).integers(0, 3, size=seeds.shape)
    onehot = np.eye(3)[labels]
    items = loss.items(images, seeds)
    m = items.features.shape[1]
    kernel = loss.filter(np.broadcast_to(np.eye(m), (2, m, m)).copy(), items)
    flat = labels.reshape(2, -1)
    energy = [np.triu(kernel[i] * (flat[i][:, None] != flat[i][None, :]), 1).sum() for i in range(2)]
    pixels = items.mask.sum(1)
    np.testing.assert_allclose(loss.value(onehot, Batch(None, seeds, images)), 2 * np.array(energy) / pixels)


def test_down_scaling_operators() -> None:
    np.testing.assert_array_equal(nearest_indices(6, 3), [0, 2, 4])
    half = bilinear_matrix(6, 3)
    np.testing.assert_allclose(half, np.kron(np.eye(3), [[0.5, 0.5]]))  # scale 0.5 = 2-pixel averages
    np.testing.assert_allclose(bilinear_matrix(5, 5), np.eye(5))
    np.testing.assert_allclose(bilinear_matrix(7, 3).sum(1), 1.0)
    assert DenseCRFLoss(1.0).grid((96, 97)) == (48, 48)
    assert DenseCRFLoss(1.0, scale=0.1).grid((4, 4)) == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"weight": 1.0, "sigma_rgb": 0.0}, "sigma_rgb"),
        ({"weight": 1.0, "sigma_xy": -3.0}, "sigma_xy"),
        ({"weight": 1.0, "scale": 0.0}, "scale"),
        ({"weight": 1.0, "scale": 1.5}, "scale"),
        ({"weight": 1.0, "chunk": 0}, "chunk"),
        ({"weight": 1.0, "chunk": 2.5}, "chunk"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        DenseCRFLoss(**kwargs)


def test_bad_inputs_give_clear_errors() -> None:
    loss = DenseCRFLoss(1.0)
    images, seeds, probs = _data()
    with pytest.raises(ValueError, match="batch.images"):
        loss.value(probs, Batch(None, seeds, None))
    with pytest.raises(ValueError, match="batch.seeds"):
        loss.value(probs, Batch(None, seeds[:, :-1], images))
    with pytest.raises(ValueError, match="images"):
        loss.value(probs, Batch(None, seeds, images[:, :-1]))
    with pytest.raises(ValueError, match="probs"):
        loss.value(probs[0], Batch(None, seeds, images))
