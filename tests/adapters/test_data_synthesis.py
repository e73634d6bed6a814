"""Properties of scribble and click synthesis (hypothesis, random masks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from chainrule2_torch.data import synthesize_clicks, synthesize_scribbles


@st.composite
def masks(draw):
    """Random label maps: blocky class layouts (upsampled noise) with some ignored (255) pixels."""
    h, w = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    classes = draw(st.integers(1, 4))
    cell = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (h // cell + 1, w // cell + 1))
    mask = np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:h, :w].astype(np.uint8)
    if draw(st.booleans()):
        mask[rng.random((h, w)) < 0.05] = 255
    return mask, classes, seed


@settings(max_examples=60, deadline=None)
@given(masks(), st.sampled_from([1.0, 0.8, 0.5, 0.3]), st.integers(1, 5))
def test_scribbles_never_label_a_wrong_class(data, length, width):
    mask, classes, seed = data
    seeds = synthesize_scribbles(mask, np.random.default_rng(seed), length=length, width=width)
    lab = seeds != 255
    assert np.all(seeds[lab] == mask[lab])  # inside their region, never on ignored pixels
    # every connected region of every class gets a stroke
    for k in range(classes):
        regions, n = ndimage.label(mask == k, structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            assert np.any(lab[regions == r])


@settings(max_examples=60, deadline=None)
@given(masks(), st.integers(0, 4))
def test_clicks_inside_their_region_one_per_region(data, radius):
    mask, classes, seed = data
    seeds = synthesize_clicks(mask, np.random.default_rng(seed), radius=radius)
    lab = seeds != 255
    assert np.all(seeds[lab] == mask[lab])
    for k in range(classes):
        regions, n = ndimage.label(mask == k, structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            assert 1 <= np.count_nonzero(lab[regions == r]) <= (2 * radius + 1) ** 2


@settings(max_examples=25, deadline=None)
@given(masks())
def test_synthesis_deterministic_for_a_seed(data):
    mask, _, seed = data
    for fn in (synthesize_scribbles, synthesize_clicks):
        a = fn(mask, np.random.default_rng(seed))
        b = fn(mask, np.random.default_rng(seed))
        assert np.array_equal(a, b)


def test_shorter_strokes_are_shorter_and_inside_the_full_stroke():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 10:70] = 1
    full = synthesize_scribbles(mask, np.random.default_rng(0), length=1.0, width=1)
    counts = []
    for length in (1.0, 0.8, 0.5, 0.3):
        s = synthesize_scribbles(mask, np.random.default_rng(0), length=length, width=1)
        assert np.all(full[s != 255] == s[s != 255])  # a piece of the same skeleton stroke
        counts.append(np.count_nonzero(s == 1))
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] == pytest.approx(0.3 * counts[0], rel=0.15)


def test_scribble_follows_the_medial_axis_of_a_bar():
    mask = np.zeros((21, 61), np.uint8)
    mask[5:16, 5:56] = 1  # a bar with medial line y = 10
    s = synthesize_scribbles(mask, np.random.default_rng(0), width=1, num_classes=2, ignore=(0,))
    ys, xs = np.nonzero(s == 1)
    # on the medial line except near the ends (which, like a medial axis, run into the corners)
    assert np.mean(np.abs(ys - 10) <= 1) >= 0.8 and xs.max() - xs.min() >= 25
    assert np.all(s[mask == 0] == 255)  # class 0 ignored here


def test_bad_arguments():
    mask = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="length"):
        synthesize_scribbles(mask, np.random.default_rng(0), length=0.0)
    with pytest.raises(ValueError, match="mask"):
        synthesize_clicks(np.zeros((2, 2, 2), np.uint8), np.random.default_rng(0))
