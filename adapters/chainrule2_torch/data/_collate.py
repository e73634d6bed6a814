"""Collation of samples into a :class:`chainrule2.base.Batch` and a torch ``Dataset`` wrapper."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from chainrule2.base import Batch

from ._sample import Sample

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SampleDataset", "collate", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  #: per-channel mean of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)  #: per-channel std of images scaled to [0, 1]


def normalize(
    images: np.ndarray,
    device: str | torch.device = "cpu",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8/float 0..255 images -> normalised float32 tensor ``(N, 3, H, W)`` on ``device``:
    ``(image / 255 - mean) / std``."""
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32).to(device)
    x = x.permute(0, 3, 1, 2) / 255.0
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def collate(
    samples: Sequence[Sample],
    device: str | torch.device = "cpu",
    *,
    seeds_as: str = "tensor",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Batch:
    """Stack samples of one size into a :class:`~chainrule2.base.Batch`.

    Parameters
    ----------
    samples : sequence of Sample
        Non-empty, all of the same ``(H, W)`` (crop or resize first).
    device : str or torch.device
        Where ``inputs`` (and tensor seeds) go.
    seeds_as : {"tensor", "numpy"}
        ``"tensor"``: int64 tensors on ``device``; ``"numpy"``: int64 host arrays (seeds and targets).
    mean, std : 3 floats
        Normalisation of images scaled to [0, 1] (ImageNet statistics by default).

    Returns
    -------
    Batch
        ``inputs``: float32 tensor ``(N, 3, H, W)``, normalised; ``seeds``: int64 ``(N, H, W)``
        (255 unlabeled, 254 padding); ``images``: float64 numpy ``(N, H, W, 3)`` in 0..255 (host
        copies for contrast-sensitive weights); ``ids``: tuple of str; ``targets``: the samples'
        ``target`` (e.g. cached stage-A labels) stacked like the seeds, or None; soft targets
        ``(H, W, C)`` become float32 ``(N, C, H, W)`` (the class axis of the logits, all 0 where a
        pixel has no target), a tensor on ``device`` or, with ``seeds_as="numpy"``, a host array.

    Examples
    --------
    >>> from chainrule2_torch.data import make_demo_dataset
    >>> batch = collate(make_demo_dataset(2)[:2])
    >>> tuple(batch.inputs.shape), batch.images.shape
    ((2, 3, 96, 96), (2, 96, 96, 3))
    """
    samples = list(samples)
    if not samples:
        raise ValueError("samples: expected at least one sample, got an empty sequence")
    foreign = sorted({type(s).__name__ for s in samples if not isinstance(s, Sample)})
    if foreign:
        raise TypeError(
            f"samples: expected chainrule2_torch.data.Sample items (numpy image, seeds, mask), got {foreign} "
            "(a Dataset of your own that returns tensors needs its own collate, as in examples/own_loop.py)"
        )
    shapes = {s.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"samples: expected one (H, W) for the whole batch, got {sorted(shapes)} (resize or crop first)"
        )
    if seeds_as not in ("tensor", "numpy"):
        raise ValueError(f"seeds_as: expected 'tensor' or 'numpy', got {seeds_as!r}")
    with_target = [s.target is not None for s in samples]
    if any(with_target) and not all(with_target):
        missing = [s.id for s in samples if s.target is None]
        raise ValueError(f"samples: expected a target on every sample or on none, got none on {missing[:5]}")
    kinds = {s.target.ndim for s in samples if s.target is not None}
    if len(kinds) > 1:
        soft = [s.id for s in samples if s.target is not None and s.target.ndim == 3]
        raise ValueError(
            f"samples: expected labels on every sample or soft targets on every one, got soft on {soft[:5]}"
        )
    images = np.stack([s.image for s in samples])
    inputs = normalize(images, device, mean, std)

    def labels(arrays: list[np.ndarray]) -> np.ndarray | torch.Tensor:
        stacked = np.stack(arrays).astype(np.int64)
        return torch.from_numpy(stacked).to(inputs.device) if seeds_as == "tensor" else stacked

    def distributions(arrays: list[np.ndarray]) -> np.ndarray | torch.Tensor:
        stacked = np.ascontiguousarray(np.stack(arrays).astype(np.float32).transpose(0, 3, 1, 2))
        return torch.from_numpy(stacked).to(inputs.device) if seeds_as == "tensor" else stacked

    targets = None
    if all(with_target):
        stack = distributions if kinds == {3} else labels
        targets = stack([s.target for s in samples if s.target is not None])
    return Batch(
        inputs=inputs,
        seeds=labels([s.seeds for s in samples]),
        images=images.astype(np.float64),
        ids=tuple(s.id for s in samples),
        targets=targets,
    )


class SampleDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` over samples, with an optional per-item transform.

    Parameters
    ----------
    samples : sequence of Sample
    transform : callable (Sample, numpy.random.Generator) -> Sample, optional
        E.g. ``lambda s, rng: Augmentation((64, 64))(s, rng)[0]``.
    seed : int
        The transform's rng for item ``i`` at epoch ``e`` is ``default_rng([seed, e, i])``:
        reproducible and independent of worker scheduling. Call :meth:`set_epoch` every epoch.

    Use with ``DataLoader(dataset, batch_size=..., collate_fn=collate)``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Sample, np.random.Generator], Sample] | None = None,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of the transform for this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples[index]
        if self.transform is None:
            return sample
        return self.transform(sample, np.random.default_rng([self.seed, self.epoch, int(index)]))
