"""Hypothesis strategies for small :class:`~chainrule2.energies.grid.GridPotts` energies (float64).

Small enough for brute force: ``max_height * max_width`` pixels and ``max_labels`` labels give
``max_labels ** (max_height * max_width)`` labellings.

Example
-------
>>> from hypothesis import given
>>> from chainrule2.testing.grid_strategies import grid_potts
>>> @given(grid_potts(max_labels=2))
... def test_value_is_finite_at_argmin(energy):
...     assert energy.value(energy.unary_argmin()) < float("inf")
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.energies.grid import GridPotts, neighbourhood_offsets

_VALUES = st.floats(0.0, 4.0, allow_nan=False, allow_infinity=False, width=64)


def _grid(draw: st.DrawFn, shape: tuple[int, ...], elements: st.SearchStrategy[float] = _VALUES) -> np.ndarray:
    return np.array(
        draw(st.lists(elements, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))), dtype=np.float64
    ).reshape(shape)


@st.composite
def grid_potts(
    draw: st.DrawFn,
    max_height: int = 3,
    max_width: int = 4,
    min_labels: int = 2,
    max_labels: int = 3,
    seeds: bool = True,
    padding: bool = True,
    allowed: bool = True,
    soft_seeds: bool | None = None,
) -> GridPotts:
    """A random :class:`GridPotts`: unary and weights in [0, 4], λ in [0, 2], N4 or N8, optional
    seeds (clamped or penalised), padding and label restriction."""
    h = draw(st.integers(1, max_height))
    w = draw(st.integers(1, max_width))
    num_labels = draw(st.integers(min_labels, max_labels))
    offsets = neighbourhood_offsets(draw(st.sampled_from((4, 8))))
    unary = _grid(draw, (h, w, num_labels))
    weights = _grid(draw, (len(offsets), h, w))
    potts_weight = draw(st.floats(0.0, 2.0, width=64))
    seed_map = None
    allowed_labels = None
    if allowed and draw(st.booleans()):
        allowed_labels = tuple(sorted(draw(st.sets(st.integers(0, num_labels - 1), min_size=1))))
    if seeds and draw(st.booleans()):
        pool = allowed_labels if allowed_labels is not None else tuple(range(num_labels))
        codes = st.sampled_from(pool + (UNLABELED,) * 3 + ((PADDING,) if padding else ()))
        seed_map = np.array(draw(st.lists(codes, min_size=h * w, max_size=h * w)), dtype=np.int64).reshape(h, w)
    use_penalty = draw(st.booleans()) if soft_seeds is None else soft_seeds
    penalty = draw(st.floats(0.0, 20.0, width=64)) if (use_penalty and seed_map is not None) else None
    return GridPotts(
        unary=unary,
        weights=weights,
        offsets=offsets,
        potts_weight=potts_weight,
        seeds=seed_map,
        seed_penalty=penalty,
        allowed_labels=allowed_labels,
    )


@st.composite
def grid_labels(draw: st.DrawFn, energy: GridPotts) -> np.ndarray:
    """A random labelling of ``energy``'s grid (any label in [0, L), feasible or not)."""
    h, w = energy.shape
    return np.array(
        draw(st.lists(st.integers(0, energy.num_labels - 1), min_size=h * w, max_size=h * w)), dtype=np.int64
    ).reshape(h, w)


def brute_force(energy: GridPotts) -> tuple[np.ndarray | None, float]:
    """The exact minimiser by enumeration (only for tiny grids); ``None`` (with ``inf``) when no labelling is feasible."""
    h, w = energy.shape
    labels = np.asarray(energy.labels)
    n = h * w
    if len(labels) ** n > 200_000:
        raise ValueError(f"energy: too large for brute force ({len(labels)}^{n} labellings)")
    best, best_value = None, np.inf
    # enumerate all labellings in chunks with numpy: index -> digits in base len(labels)
    count = len(labels) ** n
    idx = np.arange(count)
    digits = np.empty((count, n), dtype=np.int64)
    for j in range(n):
        digits[:, j] = idx % len(labels)
        idx = idx // len(labels)
    for row in labels[digits]:
        x = row.reshape(h, w)
        v = energy.value(x)
        if v < best_value:
            best, best_value = x, v
    return best, best_value


@st.composite
def scribble_batches(
    draw: st.DrawFn, max_batch: int = 3, max_height: int = 4, max_width: int = 5, max_labels: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random stage-A batch ``(logits (N, H, W, L), seeds (N, H, W), images (N, H, W, 3))`` in float64:
    logits in [-5, 5], seeds mixing class ids, 255 (unlabeled) and 254 (padding), images in [0, 255]
    (a few equal colours, so some weights are exactly 1)."""
    n = draw(st.integers(1, max_batch))
    h, w = draw(st.integers(1, max_height)), draw(st.integers(1, max_width))
    num_labels = draw(st.integers(2, max_labels))
    logits = _grid(draw, (n, h, w, num_labels), st.floats(-5.0, 5.0, width=64))
    codes = st.sampled_from(tuple(range(num_labels)) + (UNLABELED,) * 4 + (PADDING,))
    seeds = np.array(draw(st.lists(codes, min_size=n * h * w, max_size=n * h * w)), dtype=np.int64).reshape(n, h, w)
    images = _grid(draw, (n, h, w, 3), st.sampled_from((0.0, 10.0, 128.0, 255.0)) | st.floats(0.0, 255.0, width=64))
    return logits, seeds, images
