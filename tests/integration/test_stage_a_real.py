"""Stage A on real photos with real human scribbles (GrabCut, scribble set 1).

The paper's stage-A energy — contrast-sensitive N8 Potts with λ = 100, |Ω|/|N| scaling and clamped
seeds — added to a simple colour-model unary must segment far better than the unary alone.
Measured when written (160 px, 33 photos): 0.764 mIoU with the Potts term vs 0.607 without.
Mean-field (T = 1, the argmax of its distributions) is a local method: 0.623 (measured 2026-11-25).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("maxflow")
pytest.importorskip("torch")

import chainrule2 as cr  # noqa: E402
from chainrule2.energies import MeanFieldEnergy  # noqa: E402
from chainrule2.losses import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion, MeanField, run  # noqa: E402
from chainrule2_torch.data import confusion_matrix, read_grabcut, scores  # noqa: E402


def _colour_unary(image: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Squared distance to each class's mean scribble colour, normalised: (H, W, 2)."""
    means = np.stack([image[seeds == k].mean(axis=0) for k in range(2)])
    distance = ((image[:, :, None, :] - means) ** 2).sum(axis=-1)
    return 0.3 * distance / distance.mean()


def test_potts_stage_a_improves_on_the_colour_model_with_real_scribbles(shared_data) -> None:
    samples = read_grabcut(shared_data / "grabcut_scribbles", split="all", size=160)
    assert len(samples) == 33
    loss = ScribblePotts(potts_weight=100.0)
    with_potts = without = 0
    for sample in samples:
        image, seeds = np.asarray(sample.image, np.float64), np.asarray(sample.seeds).astype(np.int64)
        unary = _colour_unary(image, seeds)
        energy = loss.energy(unary, cr.Batch(None, seeds[None], image[None]), 0)
        labels = run(AlphaExpansion(), energy).solution
        seeded = seeds < 2
        assert np.array_equal(labels[seeded], seeds[seeded])
        with_potts = with_potts + confusion_matrix(labels, np.asarray(sample.mask), 2)
        alone = np.where(seeded, seeds, unary.argmin(axis=-1))
        without = without + confusion_matrix(alone, np.asarray(sample.mask), 2)
    potts_miou, unary_miou = scores(with_potts).miou, scores(without).miou
    assert potts_miou > 0.72, potts_miou
    assert potts_miou > unary_miou + 0.1, (potts_miou, unary_miou)


def test_mean_field_stage_a_improves_on_the_colour_model_with_real_scribbles(shared_data) -> None:
    samples = read_grabcut(shared_data / "grabcut_scribbles", split="all", size=160)
    loss = ScribblePotts(potts_weight=100.0)
    with_potts = without = 0
    for sample in samples:
        image, seeds = np.asarray(sample.image, np.float64), np.asarray(sample.seeds).astype(np.int64)
        unary = _colour_unary(image, seeds)
        energy = MeanFieldEnergy(loss.energy(unary, cr.Batch(None, seeds[None], image[None]), 0))
        state = run(MeanField(), energy)
        assert state.trace[-1] < state.trace[0]
        labels = state.solution.argmax(axis=-1)
        with_potts = with_potts + confusion_matrix(labels, np.asarray(sample.mask), 2)
        alone = np.where(seeds < 2, seeds, unary.argmin(axis=-1))
        without = without + confusion_matrix(alone, np.asarray(sample.mask), 2)
    assert scores(with_potts).miou > scores(without).miou + 0.01, (scores(with_potts).miou, scores(without).miou)
