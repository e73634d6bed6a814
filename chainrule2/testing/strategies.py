"""Hypothesis strategies for the core's arrays and energies (float64, small sizes).

Example
-------
>>> from hypothesis import given
>>> from chainrule2.testing.strategies import logits
>>> @given(logits())
... def test_finite(z):
...     assert z.ndim >= 2
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.energies.chain import ChainPotts
from chainrule2.energies.linearized import LinearizedEnergy

__all__ = ["chain_potts", "labels_for", "linearized", "logits", "probabilities_for"]


@st.composite
def logits(
    draw: st.DrawFn, max_batch: int = 3, max_side: int = 4, max_labels: int = 5, scale: float = 30.0
) -> np.ndarray:
    """Float64 logits ``(N, H, W, L)`` with entries in ``[-scale, scale]`` (large values test stability)."""
    shape = (
        draw(st.integers(1, max_batch)),
        draw(st.integers(1, max_side)),
        draw(st.integers(1, max_side)),
        draw(st.integers(2, max_labels)),
    )
    elements = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=64)
    return draw(hnp.arrays(np.float64, shape, elements=elements))


@st.composite
def labels_for(draw: st.DrawFn, logits_array: np.ndarray, ignored: bool = True) -> np.ndarray:
    """Integer labels matching ``logits_array`` (N, ..., L): classes, plus 254/255 if ``ignored``."""
    num_labels = logits_array.shape[-1]
    codes = list(range(num_labels)) + ([UNLABELED, PADDING] if ignored else [])
    return draw(hnp.arrays(np.int64, logits_array.shape[:-1], elements=st.sampled_from(codes)))


@st.composite
def probabilities_for(draw: st.DrawFn, logits_array: np.ndarray) -> np.ndarray:
    """Soft targets (rows on the simplex) shaped like ``logits_array``."""
    raw = draw(hnp.arrays(np.float64, logits_array.shape, elements=st.floats(0.0, 1.0, width=64)))
    raw = raw + 1e-3
    return raw / raw.sum(axis=-1, keepdims=True)


@st.composite
def chain_potts(draw: st.DrawFn, max_length: int = 7, max_labels: int = 3, seeds: bool = True) -> ChainPotts:
    """A small :class:`ChainPotts` (brute-forceable), with optional seeds and padding."""
    n = draw(st.integers(1, max_length))
    num_labels = draw(st.integers(1, max_labels))
    values = st.floats(-3.0, 3.0, allow_nan=False, width=64)
    unary = draw(hnp.arrays(np.float64, (n, num_labels), elements=values))
    weights = draw(hnp.arrays(np.float64, (n - 1,), elements=st.floats(0.0, 3.0, width=64)))
    seed_map = None
    if seeds and draw(st.booleans()):
        codes = st.sampled_from(list(range(num_labels)) + [UNLABELED] * 3 + [PADDING])
        seed_map = draw(hnp.arrays(np.int64, (n,), elements=codes))
    return ChainPotts(unary, weights, seed_map)


@st.composite
def linearized(draw: st.DrawFn, max_side: int = 4, max_labels: int = 4) -> LinearizedEnergy:
    """A :class:`LinearizedEnergy` at a random point of the simplex."""
    z = draw(logits(max_batch=1, max_side=max_side, max_labels=max_labels, scale=5.0))[0]
    probs = np.exp(z - z.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    grad = draw(hnp.arrays(np.float64, probs.shape, elements=st.floats(-5.0, 5.0, width=64)))
    beta = draw(st.floats(0.1, 10.0, width=64))
    return LinearizedEnergy(probs, draw(st.floats(-10.0, 10.0, width=64)), grad, beta)
