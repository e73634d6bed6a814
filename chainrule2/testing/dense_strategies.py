"""Hypothesis strategies for small :class:`~chainrule2.energies.DenseMeanFieldEnergy` problems (float64).

Small enough for an explicit O(N²) kernel: at most ``max_height * max_width`` pixels.

Example
-------
>>> from hypothesis import given
>>> from chainrule2.testing.dense_strategies import dense_energies
>>> @given(dense_energies())
... def test_cold_start_is_feasible(energy):
...     assert energy.value(energy.minimiser(energy.unary)) < float("inf")
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.energies.bilateral import BilateralKernel
from chainrule2.energies.dense import DenseMeanFieldEnergy

_VALUES = st.floats(0.0, 4.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def bilateral_kernels(draw: st.DrawFn) -> BilateralKernel:
    """A kernel with bandwidths that make the entries of a tiny image neither all 0 nor all 1."""
    return BilateralKernel(
        sigma_rgb=draw(st.floats(5.0, 200.0, width=64)),
        sigma_xy=draw(st.floats(0.5, 6.0, width=64)),
        scale=draw(st.sampled_from((1.0, 0.5, 0.7))),
        chunk=draw(st.integers(1, 8)),
    )


@st.composite
def dense_energies(
    draw: st.DrawFn,
    max_height: int = 4,
    max_width: int = 4,
    max_labels: int = 3,
    seeds: bool = True,
    padding: bool = True,
    allowed: bool = True,
) -> DenseMeanFieldEnergy:
    """A random :class:`DenseMeanFieldEnergy`: unary in [0, 4], RGB or grey image in 0..255, λ in
    [0, 2], T in [0.05, 4], optional seeds (with padding) and label restriction."""
    h = draw(st.integers(1, max_height))
    w = draw(st.integers(1, max_width))
    num_labels = draw(st.integers(2, max_labels))
    unary = np.array(draw(st.lists(_VALUES, min_size=h * w * num_labels, max_size=h * w * num_labels)))
    channels = draw(st.sampled_from((1, 3)))
    image = np.array(draw(st.lists(st.integers(0, 255), min_size=h * w * channels, max_size=h * w * channels)))
    allowed_labels = None
    if allowed and draw(st.booleans()):
        allowed_labels = tuple(sorted(draw(st.sets(st.integers(0, num_labels - 1), min_size=1))))
    seed_map = None
    if seeds and draw(st.booleans()):
        pool = allowed_labels if allowed_labels is not None else tuple(range(num_labels))
        codes = st.sampled_from(pool + (UNLABELED,) * 3 + ((PADDING,) if padding else ()))
        seed_map = np.array(draw(st.lists(codes, min_size=h * w, max_size=h * w)), dtype=np.int64).reshape(h, w)
    return DenseMeanFieldEnergy(
        unary=unary.reshape(h, w, num_labels),
        image=image.reshape(h, w, channels).astype(np.uint8),
        bilateral=draw(bilateral_kernels()),
        potts_weight=draw(st.floats(0.0, 2.0, width=64)),
        seeds=seed_map,
        allowed_labels=allowed_labels,
        temperature=draw(st.floats(0.05, 4.0, width=64)),
    )


@st.composite
def distributions(draw: st.DrawFn, energy: DenseMeanFieldEnergy) -> np.ndarray:
    """A random feasible Q of ``energy``: positive on the allowed labels, one-hot on the seeds."""
    h, w, num_labels = energy.shape
    raw = np.array(
        draw(st.lists(st.floats(0.01, 1.0, width=64), min_size=h * w * num_labels, max_size=h * w * num_labels))
    )
    q = np.where(energy.allowed_mask, raw.reshape(h, w, num_labels), 0.0)
    q /= q.sum(axis=-1, keepdims=True)
    if energy.clamped.any():
        assert energy.seeds is not None
        q[energy.clamped] = np.eye(num_labels)[energy.seeds[energy.clamped]]
    return q
