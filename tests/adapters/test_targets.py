"""Sample.target: cached stage-A labels travel with the image through augmentation and collation."""

import numpy as np
import pytest

from chainrule2_torch.data import Augmentation, SampleDataset, collate, make_demo_dataset


def test_target_is_augmented_exactly_as_the_mask():
    sample = make_demo_dataset(1, 40, seed=0)[0]
    with_target = sample.replace(target=sample.mask)
    aug = Augmentation(crop_size=(32, 32), scale_range=(0.6, 1.5))
    for k in range(5):  # random scales, flips and crops (with padding outside the image)
        out, _ = aug(with_target, np.random.default_rng(k))
        np.testing.assert_array_equal(out.target, out.mask)
        assert out.target.shape == (32, 32)


def test_collate_stacks_targets_and_a_dataset_reproduces_its_epochs():
    samples = [s.replace(target=s.mask) for s in make_demo_dataset(3, 24, seed=1)]
    aug = Augmentation(crop_size=(16, 16))
    dataset = SampleDataset(samples, transform=lambda s, rng: aug(s, rng)[0], seed=3)
    dataset.set_epoch(2)
    first = collate([dataset[i] for i in range(3)])
    again = collate([dataset[i] for i in range(3)])
    assert tuple(first.targets.shape) == (3, 16, 16) and str(first.targets.dtype) == "torch.int64"
    assert bool((first.targets == again.targets).all()) and bool((first.inputs == again.inputs).all())
    with pytest.raises(ValueError, match="target of 'demo000': expected shape"):
        samples[0].replace(target=np.zeros((3, 3), np.uint8))
