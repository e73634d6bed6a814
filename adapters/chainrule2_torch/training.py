"""The scribble-supervised training loop: PCE-GD, Grid-GD, ADM, the robust trust region (Grid-TR)
and full supervision, with the paper's schedule (PAPER.md §4), built from the public pieces.

* Data: :class:`~chainrule2_torch.data.SampleDataset` + ``DataLoader`` + :func:`~chainrule2_torch.data.collate`
  (one :func:`~chainrule2_torch.data.normalize`); scores: :func:`~chainrule2_torch.data.evaluate`.
* Stage A: :class:`chainrule2.StageA` on the network's own NCHW logits; stage B: the network and a
  torch criterion (:class:`~chainrule2_torch.SeedAwareLoss`, :class:`~chainrule2_torch.RelaxedPottsLoss`)
  with a plain optimizer loop. :data:`METHOD_TABLE` says, per method, which criterion and which targets.
* All weakly supervised methods start from the same PCE warm-up (``warmup_epochs``; saved to and
  reused from ``warmup_checkpoint``), then train ``epochs`` more epochs with their own criterion; each
  phase has its own optimizer and poly learning-rate schedule.
* Trust-region methods run stage A every ``stage_a_every`` epochs on the full-size, un-augmented
  training images (network in eval mode), warm-started from the cached labels. The labels are cached
  per item (``<out>/stage_a/<id>.png``; soft targets of mean-field: ``<out>/stage_a/<id>.npz``), carried
  by each sample as its ``target`` and augmented jointly with the image; between stage-A epochs the
  network is never run for them.
* Every epoch appends one JSON line to ``<out>/metrics.jsonl`` and atomically replaces ``<out>/last.pt``
  (model, optimizer, schedule, phase, epoch, stage-A cache). The shuffling and augmentation streams are
  functions of (seed, epoch), so ``resume=True`` continues an interrupted run — at any epoch, also inside
  the first stage A after the warm-up — and ends with the same model and metrics as an uninterrupted run.
* Validation mIoU is logged every epoch; the test split is evaluated once, on the final model (never
  used for a choice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chainrule2.constants import UNLABELED
from chainrule2.divergences import NORMALIZATIONS, CrossEntropy, RobustCrossEntropy
from chainrule2.stage_a import AUTO, StageA
from chainrule2.trust_radius import check_max_changed
from chainrule2.validation import check_positive
from chainrule2_torch._atomic import atomic_write
from chainrule2_torch.data import (
    Augmentation,
    NoSeedsWarning,
    SampleDataset,
    collate,
    confusion_matrix,
    scores,
    write_panel,
)
from chainrule2_torch.distributed import SINGLE, Distributed, from_env
from chainrule2_torch.fitters import LearnedErrorRobustCE, autocast, check_amp, grad_scaler
from chainrule2_torch.model import resolve_device
from chainrule2_torch.objectives import RelaxedDenseLoss, RelaxedPottsLoss, SeedAwareLoss, output_logits

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "METHOD_TABLE",
    "Method",
    "StageACache",
    "TrainConfig",
    "default_error_prob",
    "evaluate_network",
    "predict_labels",
    "refresh_pseudo_labels",
    "train",
]

#: ε of the official setting (0.944 at C = 21) as a fraction of its upper bound (C−1)/C; the
#: default ε for C classes keeps that fraction: ε = 0.9912·(C−1)/C (PAPER.md §3–4).
UNIFORM_ERROR_FRACTION = 0.944 * 21 / 20
PHASE_SWITCHES = ("restart", "continue")
STAGE_A_SOLVERS = ("alpha-expansion", "mean-field")


def default_error_prob(num_classes: int, fraction: float = UNIFORM_ERROR_FRACTION) -> float:
    """ε = fraction·(C−1)/C: the official ε (0.944 for C = 21) carried over to C classes."""
    return fraction * (num_classes - 1) / num_classes


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (names match PAPER.md).

    Parameters
    ----------
    method : {"pce", "grid-gd", "dense-gd", "adm", "grid-tr", "dense-tr", "full"}
        ``dense-tr``: stage A by monotone mean-field on the dense CRF (λ = ``dense_weight``, β =
        ``trust_weight``), hard (arg-max) or ``soft_targets``; stage B as ``grid-tr``.
    epochs : int
        Epochs after the warm-up.
    warmup_epochs : int
        PCE warm-up epochs (all weakly supervised methods share it); ``full`` trains on the masks for
        ``warmup_epochs + epochs`` epochs (the same total), with no warm-up.
    stage_a_every : int
        Stage-A period in epochs (paper: 5).
    batch_size, crop_size, scale_range :
        Stage B batches: random scale, crop ``(H, W)`` and flip, joint with seeds and labels.
    lr, warmup_lr, momentum, weight_decay, optimizer :
        ``"adam"`` or ``"sgd"`` (momentum, weight decay); poly-0.9 decay over each phase.
    potts_weight : float
        λ (stage A and the Grid-GD relaxation alike).
    dense_weight : float
        λ of Dense-GD's relaxed dense CRF (:class:`~chainrule2.losses.DenseCRFLoss`, normalised per
        down-scaled pixel, rloss's kernel and down-scaling); choose it on validation. The default 0.005
        puts the term, on 96-px crops, at the magnitude of rloss's λ = 2e-9 on its 512-px crops
        (the per-pixel sum grows with the grid: λ_rloss · M_512² / M_96, M pixels of the down-scaled grid).
    neighbourhood : {4, 8}
    relaxation : {"bilinear", "squared", "tv"}
        Grid-GD's relaxation.
    trust_weight : float or "auto"
        β; ``"auto"``: per image the smallest β whose stage-A labels relabel at most ``max_changed`` of
        the free pixels from the network's arg-max (:mod:`chainrule2.trust_radius`, docs/concepts.md).
    max_changed : float, "seed_error" or None
        With ``trust_weight="auto"``: the bound τ, a fraction in (0, 1], or ``"seed_error"`` (the default,
        None): 1.5 × the network's error rate on the image's own seeds.
    error_prob : float, "learned" or None
        ε of the robust d_B (``grid-tr``, ``dense-tr``); None = :func:`default_error_prob`;
        ``"learned"``: the "Uniform" error model of PAPER.md §3, ε = sigmoid(u)·(C−1)/C with u trained
        beside the network from :func:`default_error_prob` (:class:`~chainrule2_torch.LearnedErrorRobustCE`;
        ε per epoch in ``metrics.jsonl``).
    error_lr : float
        The learning rate of a learned ε's u. Its own, because Adam moves a parameter by about its
        learning rate per step whatever the gradient's scale: at the network's 1e-3, u (4.7 at the
        default ε for C = 2) could move by < 0.5 in a 24-epoch phase, i.e. ε would stay fixed.
    max_sweeps : int
        Alpha-expansion sweeps.
    stage_a_solver : {"alpha-expansion", "mean-field"}
        Stage A's solver on the grid Potts energy: graph cuts (:class:`~chainrule2.solvers.AlphaExpansion`,
        the paper) or :class:`~chainrule2.solvers.MeanField` (a distribution per pixel, at
        ``mean_field_temperature``, at most ``mean_field_sweeps`` checkerboard sweeps). Used by
        ``adm`` and ``grid-tr``; ``dense-tr`` always solves its dense CRF by mean-field (with the same
        temperature and sweeps).
    soft_targets : bool
        Only with ``stage_a_solver="mean-field"`` or ``dense-tr``: stage B fits mean-field's distributions themselves
        (cached as float16 ``<out>/stage_a/<id>.npz``, augmented jointly with the image, all 0 on
        padding). False: the hard targets are the arg-max of the distribution (seeds stay exact),
        cached as labels like alpha-expansion's. Either way stage A warm-starts from the cache.
    mean_field_temperature : float
        T > 0 of the mean-field free energy (T → 0: the labels of a local minimum of the grid energy;
        larger T: softer distributions).
    mean_field_sweeps : int
        Upper bound on mean-field sweeps (it stops earlier when the free energy stops falling).
    stage_a_overlap : bool
        Take every stage A after the first off the critical path: it starts from a copy of the
        network at the start of its epoch (the logits a blocking stage A would use) and runs in a
        background thread while stage B trains that epoch on the previous targets; its labels are
        used from the next epoch on (one epoch later than without overlap) and are in that epoch's
        checkpoint. Give a ``batch_solver`` of worker processes
        (``ProcessBatchSolver(workers, always_spawn=True)``, what the CLI's ``--stage-a-overlap``
        does) so the solves run beside stage B, not in its interpreter. Deterministic and
        resumable like a blocking stage A.
    normalization : {"official", "mean", "item", "sum"}
        How the stage-B sum over pixels of ``adm`` and ``grid-tr`` is normalised
        (:class:`~chainrule2.divergences.SeedAwareObjective`); ``"mean"``: over the batch's pixels.
    pce_normalization : {"official", "mean", "item", "sum"}
        The same for the partial cross-entropy of the warm-up, ``pce`` and ``grid-gd``; ``"item"``:
        each item's mean over its seed pixels, averaged over the items.
    amp : False, True, "bf16" or "fp16"
        Mixed precision of stage B's forward pass (:func:`chainrule2_torch.fitters.autocast`): bf16
        (``True``) on the CPU or CUDA; fp16 on CUDA only, with loss scaling (a ``GradScaler``, kept in
        the checkpoint). The losses, stage A's logits and the evaluation stay in float32.
    phase_switch : {"restart", "continue"}
        At the end of the warm-up: ``"restart"`` builds the method's own optimizer with a fresh poly
        schedule at ``lr`` (the official code); ``"continue"`` keeps the warm-up's optimizer (its
        moments) and one poly schedule over all ``warmup_epochs + epochs``.
    seed : int
        Initialisation is the caller's; the shuffling and augmentation streams derive from this.
    """

    method: str = "grid-tr"
    epochs: int = 10
    warmup_epochs: int = 5
    stage_a_every: int = 5
    batch_size: int = 8
    crop_size: tuple[int, int] = (96, 96)
    scale_range: tuple[float, float] = (0.75, 1.25)
    lr: float = 1e-3
    warmup_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    potts_weight: float = 100.0
    dense_weight: float = 0.005
    neighbourhood: int = 8
    relaxation: str = "bilinear"
    trust_weight: float | str = 0.05
    max_changed: float | str | None = None
    error_prob: float | str | None = None
    error_lr: float = 0.05
    max_sweeps: int = 5
    stage_a_solver: str = "alpha-expansion"
    soft_targets: bool = False
    mean_field_temperature: float = 1.0
    mean_field_sweeps: int = 50
    stage_a_overlap: bool = False
    normalization: str = "mean"
    pce_normalization: str = "item"
    amp: bool | str = False
    phase_switch: str = "restart"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        for name in ("epochs", "warmup_epochs", "stage_a_every", "batch_size", "max_sweeps", "mean_field_sweeps"):
            value = getattr(self, name)
            low = 0 if name in ("epochs", "warmup_epochs") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        if len(self.crop_size) != 2 or min(self.crop_size) < 8:
            raise ValueError(f"crop_size: expected (H, W) with both >= 8, got {self.crop_size!r}")
        if self.stage_a_solver not in STAGE_A_SOLVERS:
            raise ValueError(f"stage_a_solver: expected one of {STAGE_A_SOLVERS}, got {self.stage_a_solver!r}")
        for name in ("soft_targets", "stage_a_overlap"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.soft_targets and self.stage_a_solver != "mean-field" and self.method != "dense-tr":
            raise ValueError(
                "soft_targets: True needs a stage A that returns a distribution per pixel, "
                f"stage_a_solver='mean-field'; got stage_a_solver={self.stage_a_solver!r}"
            )
        check_amp(self.amp)
        if self.phase_switch not in PHASE_SWITCHES:
            raise ValueError(f"phase_switch: expected one of {PHASE_SWITCHES}, got {self.phase_switch!r}")
        for name in ("normalization", "pce_normalization"):
            if getattr(self, name) not in NORMALIZATIONS:
                raise ValueError(f"{name}: expected one of {NORMALIZATIONS}, got {getattr(self, name)!r}")
        if isinstance(self.trust_weight, str):
            if self.trust_weight != "auto":
                raise ValueError(f"trust_weight: expected a number >= 0 or 'auto', got {self.trust_weight!r}")
            if self.max_changed is not None:
                check_max_changed(self.max_changed)
        else:
            check_positive(self.trust_weight, "trust_weight", allow_zero=True)
            if self.max_changed is not None:
                raise ValueError(
                    f"max_changed: only with trust_weight='auto', got {self.max_changed!r} with "
                    f"trust_weight={self.trust_weight!r}"
                )
        if isinstance(self.error_prob, str) and self.error_prob != "learned":
            raise ValueError(
                f"error_prob: expected a number in (0, (C-1)/C), 'learned' or None, got {self.error_prob!r}"
            )
        for name in ("lr", "error_lr", "potts_weight", "dense_weight", "mean_field_temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


# --- the methods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """How one method trains after the warm-up.

    ``targets``: what stage B fits — ``"seeds"`` (the scribbles only), ``"stage_a"`` (cached stage-A
    labels, refreshed every ``stage_a_every`` epochs) or ``"masks"`` (full supervision).
    ``criterion(config, num_classes)`` builds the stage-B criterion, called as
    ``criterion(output, targets, seeds[, images])``; ``needs_images``: pass the batch's images.
    ``warmup``: starts from the shared PCE warm-up.
    """

    name: str
    targets: str
    criterion: Callable[[TrainConfig, int], torch.nn.Module]
    warmup: bool = True
    needs_images: bool = False


def _pce(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    return SeedAwareLoss(None, normalization=config.pce_normalization)


def _grid_gd(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    from chainrule2.losses import ScribblePotts

    potts = ScribblePotts(config.potts_weight, neighbourhood=config.neighbourhood, relaxation=config.relaxation)
    return RelaxedPottsLoss(potts, normalization=config.pce_normalization)


def _dense_gd(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    from chainrule2.losses import DenseCRFLoss

    return RelaxedDenseLoss(DenseCRFLoss(config.dense_weight), normalization=config.pce_normalization)


def _adm(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    return SeedAwareLoss(CrossEntropy(), normalization=config.normalization)


def _grid_tr(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    divergence: Any
    if config.error_prob == "learned":
        divergence = LearnedErrorRobustCE(num_classes, default_error_prob(num_classes))
    else:
        eps = default_error_prob(num_classes) if config.error_prob is None else float(config.error_prob)
        divergence = RobustCrossEntropy(eps, num_classes)
    return SeedAwareLoss(divergence, normalization=config.normalization)


def _full(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    return SeedAwareLoss(CrossEntropy(), seed_divergence=None, normalization="mean")


#: Every method, by name: its stage-B criterion and targets (the one place a method is defined).
METHOD_TABLE: dict[str, Method] = {
    "pce": Method("pce", "seeds", _pce),
    "grid-gd": Method("grid-gd", "seeds", _grid_gd, needs_images=True),
    "dense-gd": Method("dense-gd", "seeds", _dense_gd, needs_images=True),
    "adm": Method("adm", "stage_a", _adm),
    "grid-tr": Method("grid-tr", "stage_a", _grid_tr),
    "dense-tr": Method("dense-tr", "stage_a", _grid_tr),  # the same robust d_B; stage A on the dense CRF
    "full": Method("full", "masks", _full, warmup=False),
}
METHODS = tuple(METHOD_TABLE)
WARMUP = Method("pce", "seeds", _pce)  #: the shared warm-up phase


def make_stage_a(config: TrainConfig, batch_solver: Any = None, device: str | torch.device = "cpu") -> StageA:
    """Stage A of ``config.method`` with the β·CE trust region: ``config.stage_a_solver``
    (alpha-expansion, or mean-field: soft) on the contrast-sensitive grid Potts; for ``dense-tr``,
    monotone mean-field (:class:`~chainrule2.solvers.DenseMeanField`) on the dense CRF of
    :class:`~chainrule2.losses.DenseCRFLoss` with λ = ``dense_weight``, batched on the model's
    ``device`` when that is not the CPU (per item on the host otherwise: faster there).

    ``on_failure="keep"``: an item whose stage A fails keeps its previous labels (its seeds the
    first time) and training goes on; :func:`refresh_pseudo_labels` counts and names such items.
    """
    from chainrule2.losses import DenseCRFLoss, ScribblePotts
    from chainrule2.solvers import AlphaExpansion, DenseMeanField, MeanField

    solver: Any = AlphaExpansion(max_sweeps=config.max_sweeps)
    loss: Any = ScribblePotts(potts_weight=config.potts_weight, neighbourhood=config.neighbourhood)
    if config.method == "dense-tr":
        solver = DenseMeanField(max_sweeps=config.mean_field_sweeps, temperature=config.mean_field_temperature,
                                batched=resolve_device(device).type != "cpu")  # fmt: skip
        loss = DenseCRFLoss(config.dense_weight)
    elif config.stage_a_solver == "mean-field":
        solver = MeanField(max_sweeps=config.mean_field_sweeps, temperature=config.mean_field_temperature)
    return StageA(
        solver,
        loss,
        CrossEntropy(),
        config.trust_weight,
        batch_solver=batch_solver,
        on_failure="keep",
        max_changed=config.max_changed,
    )


# --- prediction and scores -----------------------------------------------------------------------------


def _group_by_shape(samples: Sequence[Any], batch_size: int) -> Iterator[list[Any]]:
    groups: dict[tuple[int, int], list[Any]] = {}
    for s in samples:
        groups.setdefault(tuple(s.shape), []).append(s)
    for items in groups.values():
        for j in range(0, len(items), batch_size):
            yield items[j : j + batch_size]


def _eval_logits(
    network: torch.nn.Module, samples: Sequence[Any], batch_size: int, device: torch.device
) -> Iterator[tuple[list[Any], Any, torch.Tensor]]:
    """``(items, batch, logits NCHW)`` per batch of full-size images, network in eval mode, no gradient."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for items in _group_by_shape(samples, batch_size):
                batch = collate(items, device)
                yield items, batch, output_logits(network(batch.inputs)).float()
    finally:
        network.train(was_training)


def predict_labels(
    network: torch.nn.Module, samples: Sequence[Any], batch_size: int = 8, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """Arg-max predictions ``(H, W)`` uint8 of ``network`` (eval mode) on full-size images, keyed by id."""
    device = resolve_device(device)
    out = {}
    for items, _, logits in _eval_logits(network, samples, batch_size, device):
        for s, labels in zip(items, logits.argmax(1).to(torch.uint8).cpu().numpy(), strict=True):
            out[s.id] = labels
    return out


def evaluate_network(
    network: torch.nn.Module,
    samples: Sequence[Any],
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    distributed: Distributed = SINGLE,
) -> dict:
    """mIoU, pixel accuracy and per-class IoU (by class name), all in percent, on the items with masks.

    ``miou`` is None when no item has a mask (strict JSON: never NaN). Under ``torchrun`` each rank
    predicts its shard and the confusion matrices are summed over the ranks.
    """
    samples = [s for s in samples if s.mask is not None]
    if not samples:
        return {"miou": None, "pixel_accuracy": None, "iou": {}, "images": 0}
    num_classes = samples[0].num_classes
    local = distributed.shard(samples)
    preds = predict_labels(network, local, batch_size, device)
    conf = np.zeros((num_classes, num_classes), np.int64)
    for s in local:
        conf += confusion_matrix(preds[s.id], s.mask, num_classes)
    result = scores(distributed.sum(conf), samples[0].class_names)
    return {**result.as_dict(scale=100.0), "images": len(samples)}


def _miou(conf: np.ndarray | None) -> float | None:
    if conf is None:
        return None
    value = scores(conf).miou
    return None if math.isnan(value) else 100.0 * value


# --- stage A -----------------------------------------------------------------------------------------


class StageACache:
    """Stage-A targets keyed by item id, in memory and on disk (written atomically).

    Hard (``soft=False``): labels ``(H, W)`` uint8 in ``<folder>/<id>.png``. Soft: distributions
    ``(H, W, C)`` float16 in ``<folder>/<id>.npz`` (one array ``target``, compressed: the classes the
    label restriction rules out hold zeros); a pixel whose entries are all 0 has no target (an item
    stage A failed on the first time: its seeds one-hot, 0 elsewhere). The memory copy holds exactly
    the file's float16 values, so every rank and a resumed run train on the same numbers.
    """

    def __init__(self, folder: Path | None, soft: bool = False):
        self.folder = folder
        self.soft = bool(soft)
        self.suffix = ".npz" if self.soft else ".png"
        self.labels: dict[str, np.ndarray] = {}  #: the targets (labels or distributions) by item id
        #: ``trust_weight="auto"``: the β stage A chose last time per item, the next search's hint
        #: (``StageA.propose(beta_hint=...)``: a right hint costs 2 solves instead of 6); in ``last.pt``
        self.betas: dict[str, float] = {}

    def _stored(self, key: str, target: Any) -> np.ndarray:
        """``target`` as the cache keeps it: uint8 labels ``(H, W)`` or float16 distributions ``(H, W, C)``."""
        a = np.asarray(target)
        if self.soft:
            if a.ndim != 3 or not np.issubdtype(a.dtype, np.floating):
                raise ValueError(
                    f"target of {key!r}: expected a distribution (H, W, C) of floats, got {a.shape} {a.dtype}"
                )
            return a.astype(np.float16)
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"target of {key!r}: expected labels (H, W) of integers, got {a.shape} {a.dtype}")
        return a.astype(np.uint8)

    def put(self, key: str, target: np.ndarray) -> None:
        self.labels[key] = stored = self._stored(key, target)
        if self.folder is None:
            return
        if self.soft:
            atomic_write(self.folder / f"{key}.npz", lambda f: np.savez_compressed(f, target=stored))
        else:
            from PIL import Image

            image = Image.fromarray(stored)
            atomic_write(self.folder / f"{key}.png", lambda f: image.save(f, format="PNG"))

    def get(self, key: str) -> np.ndarray | None:
        """The cached target (labels or distribution) of ``key``, or None."""
        return self.labels.get(key)

    def labels_of(self, key: str) -> np.ndarray | None:
        """Hard labels ``(H, W)`` uint8 of ``key``: the labels, or the arg-max of the distribution
        with 255 where it has no mass (the pixels that carry no target); None if not cached."""
        target = self.labels.get(key)
        if target is None or not self.soft:
            return target
        labels = np.argmax(target, axis=-1).astype(np.uint8)
        labels[target.sum(axis=-1, dtype=np.float32) == 0] = UNLABELED
        return labels

    def initial(self, key: str, num_classes: int) -> np.ndarray | None:
        """Stage A's warm start for ``key``: the cached labels, or the distribution in float64 and
        renormalised (float16 sums are off by ~1e-3, the solver wants 1e-6); None (start cold) when
        nothing is cached or some pixel has no target (a failure's seeds)."""
        target = self.labels.get(key)
        if target is None:
            return None
        if not self.soft:
            return None if target.max() >= num_classes else target
        q = target.astype(np.float64)
        total = q.sum(axis=-1, keepdims=True)
        return None if not np.all(total > 0) else q / total

    def load(self, keys: Sequence[str]) -> None:
        """Read the targets of ``keys`` from their files (written by another rank)."""
        from chainrule2_torch.data import read_labels

        if self.folder is None:
            raise ValueError("StageACache.load: this cache has no folder to read labels from")
        for key in keys:
            path = self.folder / f"{key}{self.suffix}"
            if self.soft:
                with np.load(path) as saved:
                    self.labels[key] = self._stored(key, saved["target"])
            else:
                self.labels[key] = np.asarray(read_labels(path), np.uint8)

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.labels)

    def restore(self, state: dict[str, np.ndarray], write: bool = True) -> None:
        """Exactly the targets of ``state``; files an interrupted stage A wrote after it are removed
        (``write=False``: memory only, for the ranks other than the writer)."""
        self.labels = {}
        for key, target in state.items():
            if write:
                self.put(key, target)
            else:
                self.labels[key] = self._stored(key, target)
        if write and self.folder is not None and self.folder.is_dir():
            for path in self.folder.glob(f"*{self.suffix}"):
                if path.stem not in self.labels:
                    path.unlink()


def _seed_distribution(seeds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(H, W, C)``: one-hot on the seed pixels, 0 (no target) elsewhere: a soft cache's seeds-only entry."""
    out = np.zeros((*seeds.shape, num_classes), np.float16)
    ys, xs = np.nonzero(seeds < num_classes)
    out[ys, xs, seeds[ys, xs]] = 1.0
    return out


def refresh_pseudo_labels(
    network: torch.nn.Module,
    stage_a: StageA,
    samples: Sequence[Any],
    cache: StageACache,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    distributed: Distributed = SINGLE,
) -> dict:
    """Stage A on every item (full size, un-augmented, network in eval mode), warm-started from ``cache``.

    Returns the seconds spent; the fraction of pixels stage A changed from the network's arg-max;
    ``target_fit``: the fraction of pixels where the network's arg-max already agreed with the
    previous stage-A labels (how well stage B fitted its targets; None at the first stage A); and,
    on the items with masks, the network's and the new stage-A labels' mIoU (the mechanism).

    A soft stage A (``MeanField``) returns distributions: a soft cache (``cache.soft``) keeps them
    and the figures are those of their arg-max (:meth:`StageACache.labels_of`); a hard cache keeps
    the arg-max itself (seeds stay exact: mean-field keeps them one-hot). The warm start is
    :meth:`StageACache.initial`: the cached labels or distribution.

    ``stage_a_failures``: how many items stage A failed on (``StageA(on_failure="keep")``, logged
    with their ids as a warning). Such an item keeps its cached labels; the first time, its cache
    entry is its seeds (255 elsewhere: stage B's criterion trains it on its seeds only). The
    changed-pixel and mIoU figures are over the items stage A solved; ``target_fit`` counts only
    pixels whose previous target is a class (not a 255 left by a failure).

    Under ``torchrun`` each rank solves its own shard (``distributed.shard``) and writes those
    items' cache files (one writer per item); the ranks then read the others' labels from disk,
    and the figures are summed over the ranks. ``stage_a_items``: how many items each rank solved.

    With ``trust_weight="auto"`` each item's search starts at the β it got last time
    (``cache.betas``, saved in ``last.pt``; under ``torchrun`` rank 0 saves its own shard's, so
    the other ranks' first search after a resume starts cold: the same β wherever the changed
    fraction is monotone in β, more solves).
    """
    return _gather_stage_a(_solve_shard(network, stage_a, samples, cache, batch_size, device, distributed),
                           samples, cache, distributed)  # fmt: skip


@dataclass
class _ShardResult:
    """What one rank's stage A produced, before the ranks' figures are summed (:func:`_gather_stage_a`)."""

    local: list[Any]
    counts: np.ndarray  # changed, pixels, fit, fit pixels, failures, items with masks
    conf: np.ndarray  # (2, C, C): the network's and the new stage-A labels' confusion matrices
    solve_s: float
    betas: list[float]
    seconds: float


def _solve_shard(
    network: torch.nn.Module,
    stage_a: StageA,
    samples: Sequence[Any],
    cache: StageACache,
    batch_size: int,
    device: str | torch.device,
    distributed: Distributed,
) -> _ShardResult:
    """Stage A on this rank's shard: the cache entries of those items are replaced (no collective call,
    so it may run in a background thread beside stage B, see :class:`_BackgroundStageA`)."""
    device = resolve_device(device)
    start = time.perf_counter()
    local = distributed.shard(list(samples))
    num_classes = int(samples[0].num_classes)
    counts = np.zeros(6, np.int64)  # changed, pixels, fit, fit pixels, failures, items with masks
    conf = np.zeros((2, num_classes, num_classes), np.int64)  # network, stage-A labels
    solve_s, failed_ids, betas = 0.0, [], []
    for items, batch, logits in _eval_logits(network, local, batch_size, device):
        previous = [cache.labels_of(s.id) for s in items]
        # seeds kept by an earlier failure (no target elsewhere) are no labelling to warm-start from: start cold
        warm = [cache.initial(s.id, s.num_classes) for s in items]
        auto = getattr(stage_a, "trust_weight", None) == AUTO  # (a wrapper of a StageA may not say)
        hints = {"beta_hint": [cache.betas.get(s.id) for s in items]} if auto else {}
        proposal = stage_a.propose(logits, batch, initial=warm, class_axis=1, **hints)
        solve_s += proposal.report.solve_seconds
        betas += [b for b in proposal.report.betas if math.isfinite(b)]
        if hints:  # the next search starts at this one's β (a failed item's NaN is no hint)
            for s, b in zip(items, proposal.report.betas, strict=True):
                if math.isfinite(b):
                    cache.betas[s.id] = float(b)
                else:
                    cache.betas.pop(s.id, None)
        failed = {index for index, _, _ in proposal.report.failures}
        argmax = logits.argmax(1).cpu().numpy()
        targets = proposal.targets.cpu().numpy()
        if targets.ndim == argmax.ndim + 1:  # soft (N, C, H, W): distributions class-last
            targets = np.moveaxis(targets, 1, -1)
        for k, (s, target, net, old) in enumerate(zip(items, targets, argmax, previous, strict=True)):
            if old is not None:
                counted = old < s.num_classes
                counts[2] += int(np.count_nonzero((old == net) & counted))
                counts[3] += int(np.count_nonzero(counted))
            if k in failed:  # the cache keeps its previous labels; the first time, its seeds (255 elsewhere)
                failed_ids.append(s.id)
                if old is None:
                    cache.put(s.id, _seed_distribution(s.seeds, s.num_classes) if cache.soft else s.seeds)
                continue
            if target.ndim == 3 and not cache.soft:  # hard targets of a soft stage A: the arg-max
                target = target.argmax(-1)
            cache.put(s.id, target)
            labels = cache.labels_of(s.id)  # the figures are those of the labels as cached
            assert labels is not None  # just put
            counts[0] += int(np.count_nonzero(labels != net))
            counts[1] += labels.size
            if s.mask is not None:
                counts[5] += 1
                conf[0] += confusion_matrix(net, s.mask, num_classes)
                conf[1] += confusion_matrix(labels, s.mask, num_classes)
    counts[4] = len(failed_ids)
    if failed_ids:
        logger.warning(
            "stage A failed on %d item(s) %s: they keep their previous labels (their seeds only the first time)",
            len(failed_ids),
            failed_ids,
        )
    return _ShardResult(local, counts, conf, solve_s, betas, time.perf_counter() - start)


def _gather_stage_a(result: _ShardResult, samples: Sequence[Any], cache: StageACache,
                    distributed: Distributed) -> dict:  # fmt: skip
    """The ranks read each other's new cache files and sum the figures: the record of one stage A."""
    counts, conf = result.counts, result.conf
    start = time.perf_counter()
    if distributed.active:
        distributed.barrier()  # every rank has written its shard's files
        mine = {s.id for s in result.local}
        cache.load([s.id for s in samples if s.id not in mine])
        counts, conf = distributed.sum(counts), distributed.sum(conf)
    masked = counts[5] > 0
    betas = result.betas
    return {
        "stage_a_s": result.seconds + time.perf_counter() - start,
        "stage_a_solve_s": result.solve_s,
        "stage_a_items": [int(n) for n in distributed.gather(float(len(result.local)))],
        "stage_a_failures": int(counts[4]),
        **({"stage_a_beta_median": float(np.median(betas))} if betas else {}),  # trust_weight="auto", this rank
        "stage_a_changed": counts[0] / max(int(counts[1]), 1),
        "target_fit": counts[2] / counts[3] if counts[3] else None,
        "network_train_miou": _miou(conf[0]) if masked else None,
        "pseudo_miou": _miou(conf[1]) if masked else None,
    }


class _BackgroundStageA:
    """Stage A in a thread while stage B trains (``TrainConfig.stage_a_overlap``).

    It solves from a copy of the network taken now (the same logits as a blocking stage A at this
    point), so stage B's steps and its train/eval mode do not touch it; :meth:`join` waits for it and
    gathers the ranks' figures in the calling thread (the collectives stay in the training thread).
    The solves run beside stage B when the stage A's ``batch_solver`` is a pool of worker processes;
    in-process they share the training thread's interpreter.
    """

    def __init__(self, network: torch.nn.Module, stage_a: StageA, samples: Sequence[Any], cache: StageACache,
                 batch_size: int, device: torch.device, distributed: Distributed):  # fmt: skip
        import copy
        import threading

        self.samples, self.cache, self.distributed = samples, cache, distributed
        self.result: _ShardResult | None = None
        self.error: BaseException | None = None
        snapshot = copy.deepcopy(network)

        def work() -> None:
            try:
                self.result = _solve_shard(snapshot, stage_a, samples, cache, batch_size, device, distributed)
            except BaseException as err:  # re-raised by join() in the training thread
                self.error = err

        self.thread = threading.Thread(target=work, name="chainrule2-stage-a", daemon=True)
        self.thread.start()

    def join(self) -> dict:
        """The stage A's record (as :func:`refresh_pseudo_labels`), with ``stage_a_wait_s``: how long
        stage B had to wait for it after its epoch."""
        start = time.perf_counter()
        self.thread.join()
        wait = time.perf_counter() - start
        if self.error is not None:
            raise self.error
        assert self.result is not None
        record = _gather_stage_a(self.result, self.samples, self.cache, self.distributed)
        return {**record, "stage_a_overlapped": True, "stage_a_wait_s": wait}


# --- checkpoints -------------------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _load(path: Path, what: str, option: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, empty or foreign: say which file and what to do
        raise ValueError(f"{what} {path} cannot be read ({type(err).__name__}: {err}); delete it or {option}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{what} {path} is not a chainrule2 checkpoint; delete it or {option}")
    return state


def _fingerprint(network: torch.nn.Module, samples: Sequence[Any]) -> dict:
    """What shapes a warm-up beyond the config: the network's architecture and the training data."""
    h = hashlib.sha1()
    for s in samples:
        h.update(s.id.encode())
        h.update(np.ascontiguousarray(s.image).tobytes())
        h.update(np.ascontiguousarray(s.seeds).tobytes())
    params = [f"{k}:{tuple(v.shape)}" for k, v in network.state_dict().items()]
    return {
        "network": type(network).__name__,
        "parameters": hashlib.sha1("\n".join(params).encode()).hexdigest(),
        "data": h.hexdigest(),
        "items": len(samples),
    }


def _warmup_key(config: TrainConfig, fingerprint: dict) -> dict:
    keys = ("warmup_epochs", "batch_size", "crop_size", "scale_range", "lr", "warmup_lr", "momentum",
            "weight_decay", "optimizer", "pce_normalization", "seed")  # fmt: skip
    key = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items() if k in keys}
    # the warm-up sees one learning rate: `--lr 1e-4 --warmup-lr 1e-3` reuses the warm-up of `--lr 1e-3`
    # (stored as before, {"lr": rate, "warmup_lr": None}, so existing warm-up checkpoints still load)
    key["lr"], key["warmup_lr"] = config.warmup_lr or config.lr, None
    # with one schedule over the whole run, the warm-up's learning rates depend on the total length
    schedule: dict[str, Any] = {"phase_switch": config.phase_switch}
    if config.phase_switch == "continue":
        schedule["epochs"] = config.epochs
    # keyed only when on, so that the warm-up checkpoints written before amp existed still load
    precision = {"amp": amp} if (amp := check_amp(config.amp)) else {}
    return {**key, **schedule, **precision, **fingerprint}


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _same_config(saved: dict, config: TrainConfig) -> bool:
    """``saved`` (a checkpoint's config) is ``config``; a field the checkpoint predates counts as its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {**defaults, **saved} == dataclasses.asdict(config)


def _restore_run(
    path: Path, config: TrainConfig, network: torch.nn.Module, cache: StageACache, write: bool = True
) -> tuple[int, dict]:
    """Load ``last.pt`` into the network and the cache: returns the next epoch and the saved phase state."""
    state = _load(path, "resume: checkpoint", "start without --resume (with --overwrite)")
    if not _same_config(state.get("config") or {}, config):
        diff = _differences(state.get("config") or {}, dataclasses.asdict(config))
        raise ValueError(f"resume: {path} was written with a different configuration (fields {diff})")
    network.load_state_dict(state["model"])
    cache.restore(state["stage_a_cache"], write=write)
    cache.betas = dict(state.get("stage_a_betas") or {})
    logger.info("resumed from %s at epoch %d", path, state["epoch"] + 1)
    return state["epoch"] + 1, state["phase"]


def _restore_warmup(path: Path, key: dict, network: torch.nn.Module) -> dict | None:
    """Load a warm-up checkpoint written for exactly this warm-up (``key``); returns its phase state."""
    state = _load(path, "warmup_checkpoint:", "pass another --warmup-checkpoint")
    if state.get("warmup_config") != key:
        diff = _differences(state.get("warmup_config") or {}, key)
        raise ValueError(
            f"warmup_checkpoint: {path} was written for another warm-up (differing fields: {diff}); "
            "pass another --warmup-checkpoint"
        )
    network.load_state_dict(state["model"])
    logger.info("warm start from %s", path)
    return state.get("phase")


# --- one phase, one epoch ------------------------------------------------------------------------------


@dataclass
class _Phase:
    """The criterion, optimizer and poly schedule of one phase (the warm-up, or the method's epochs),
    and its precision: ``amp`` (:func:`~chainrule2_torch.fitters.check_amp`) and fp16's grad scaler."""

    name: str
    method: Method
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp: str | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def build(cls, name: str, method: Method, config: TrainConfig, network: torch.nn.Module, num_classes: int,
              steps: int, device: torch.device) -> _Phase:  # fmt: skip
        criterion = method.criterion(config, num_classes).to(device)
        lr = (config.warmup_lr or config.lr) if name == "warmup" else config.lr
        params: list[dict] = [{"params": list(network.parameters()), "lr": lr}]
        if learned := list(criterion.parameters()):  # a learned ε trains too, at its own rate, without decay
            params.append({"params": learned, "lr": config.error_lr, "weight_decay": 0.0})
        opt: torch.optim.Optimizer
        if config.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=lr, weight_decay=0.0)
        steps = max(1, steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps) ** 0.9)
        return cls(name, method, criterion, opt, sched, check_amp(config.amp), grad_scaler(config.amp))

    def state_dict(self) -> dict:
        state = {"name": self.name, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "criterion": self.criterion.state_dict()}  # fmt: skip
        if self.scaler is not None:  # fp16's loss scale: a resumed run goes on from the same scale
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict, criterion: bool = True) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if criterion:
            self.criterion.load_state_dict(state["criterion"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` and take the optimizer's step (through fp16's grad scaler, which
        skips a step whose gradients are inf or NaN), then the schedule's."""
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()


class RankBatches(torch.utils.data.Sampler):
    """This rank's share of every global batch of one epoch.

    The epoch's order is ``torch.randperm(n)`` from a generator seeded with (seed, epoch), cut into
    global batches of ``batch_size``; rank ``r`` of ``w`` takes positions ``r, r + w, ...`` of each.
    One process sees exactly those global batches, and ``w`` processes see the same global batches
    between them. A last global batch
    smaller than ``w`` is skipped by every rank (a rank without items cannot join the gradient
    all-reduce).
    """

    def __init__(self, n: int, batch_size: int, seed: int, distributed: Distributed = SINGLE):
        self.n, self.batch_size, self.seed, self.distributed = n, batch_size, seed, distributed

    def _global(self) -> list[list[int]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        batches = [order[b : b + self.batch_size] for b in range(0, self.n, self.batch_size)]
        return [b for b in batches if len(b) >= self.distributed.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        d = self.distributed
        return iter([b[d.rank :: d.world_size] for b in self._global()])

    def __len__(self) -> int:
        return len(self._global())


def _loader(samples: Sequence[Any], config: TrainConfig, epoch: int, device: torch.device,
            distributed: Distributed = SINGLE) -> torch.utils.data.DataLoader:  # fmt: skip
    """This epoch's batches: order and augmentation are functions of (seed, epoch) only."""
    (ch, cw), (lo, hi) = config.crop_size, config.scale_range
    augment = Augmentation(crop_size=(int(ch), int(cw)), scale_range=(float(lo), float(hi)))
    dataset = SampleDataset(samples, transform=lambda s, rng: augment(s, rng)[0], seed=config.seed)
    dataset.set_epoch(epoch)
    batches = RankBatches(len(samples), config.batch_size, config.seed * 1_000_003 + epoch, distributed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=lambda b: collate(b, device))


def train_epoch(network: torch.nn.Module, phase: _Phase, loader: Any, epoch: int, progress: Any) -> float:
    """One pass of stage B over ``loader``; returns the mean loss. A non-finite loss stops the run.

    ``network`` is what the forward pass runs: the network, or its ``DistributedDataParallel`` wrapper.
    """
    network.train()
    losses = []
    for batch in progress(loader):
        phase.optimizer.zero_grad(set_to_none=True)
        targets = {"seeds": None, "stage_a": batch.targets, "masks": batch.targets}[phase.method.targets]
        extra = (batch.images,) if phase.method.needs_images else ()
        with autocast(phase.amp, batch.inputs.device):  # the criterion promotes half logits to float32
            output = network(batch.inputs)
        if not bool(torch.isfinite(output_logits(output)).all()):
            _diverged(epoch, "the network's logits are NaN or inf")
        loss = phase.criterion(output, targets, batch.seeds, *extra)
        value = float(loss.detach())
        if not math.isfinite(value):
            _diverged(epoch, f"loss {value}")
        phase.step(loss)
        losses.append(value)
        progress.set_postfix(loss=f"{value:.4f}")
    return float(np.mean(losses))


def _with_targets(samples: Sequence[Any], method: Method, cache: StageACache) -> list[Any]:
    """The training samples carrying this phase's stage-B targets (augmented jointly with the image)."""
    if method.targets == "stage_a":
        return [s.replace(target=cache.get(s.id)) for s in samples]
    if method.targets == "masks":
        return [s.replace(target=s.mask) for s in samples]
    return list(samples)


def _diverged(epoch: int, what: str) -> None:
    raise FloatingPointError(
        f"stage B diverged at epoch {epoch} ({what}): training stopped; the last finished epoch is kept in "
        "last.pt (lower the learning rate and rerun with --resume, or start over)"
    )


class _Progress:
    """A tqdm bar per epoch (or nothing)."""

    def __init__(self, enabled: bool, desc: str):
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, iterable: Any) -> Any:
        if not self.enabled:
            return iterable
        from tqdm.auto import tqdm

        self.bar = tqdm(iterable, desc=self.desc, leave=False)
        return self.bar

    def set_postfix(self, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kw)


# --- the loop ------------------------------------------------------------------------------------------


def _usable(samples: Sequence[Any], method: Method) -> list[Any]:
    out = []
    for s in samples:
        if not hasattr(s, "seeds") or not hasattr(s, "num_seeds"):
            raise TypeError(f"train_samples: expected chainrule2_torch.data.Sample items, got {type(s).__name__}")
        if method.targets == "masks":
            if s.mask is None:
                warnings.warn(f"item {s.id!r} has no mask: skipped for full supervision", NoSeedsWarning, stacklevel=3)
                continue
        elif s.num_seeds == 0:
            warnings.warn(f"item {s.id!r} has no seed pixel: skipped for training", NoSeedsWarning, stacklevel=3)
            continue
        out.append(s)
    return out


def _check_samples(train_samples: list, others: Sequence[Any]) -> int:
    if not train_samples:
        raise ValueError(
            "train_samples: expected at least one training item with seeds (or a mask for 'full'), got none"
        )
    num_classes = int(train_samples[0].num_classes)
    for s in list(train_samples) + list(others):
        if not hasattr(s, "seeds") or not hasattr(s, "num_classes"):
            raise TypeError(
                f"val_samples, test_samples: expected chainrule2_torch.data.Sample items, got {type(s).__name__}"
            )
        if int(s.num_classes) != num_classes:
            raise ValueError(
                f"num_classes of {s.id!r}: expected {num_classes} (as the first item), got {s.num_classes}"
            )
    return num_classes


def _prepare_out(out: Path, resume: bool, overwrite: bool, write: bool = True) -> None:
    """Refuse to mix a new run into an old one; with ``overwrite`` the old results are kept aside until replaced."""
    out.mkdir(parents=True, exist_ok=True)
    existing = [n for n in ("metrics.jsonl", "last.pt", "final.json", "model.pt") if (out / n).exists()]
    if not existing or resume:
        return
    if not overwrite:
        raise FileExistsError(
            f"out_dir: {out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    for name in ("final.json", "model.pt"):  # stale until this run writes its own: rename, never delete
        if write and (out / name).exists():
            os.replace(out / name, out / f"previous.{name}")


def _read_metrics(path: Path, upto: int) -> list[str]:
    """The metrics lines of epochs ``<= upto`` (a crash between a line and its checkpoint leaves one more)."""
    if not path.exists():
        return []
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    return [x for x in lines if json.loads(x)["epoch"] <= upto]


def _strict(obj: Any) -> Any:
    """NaN/inf -> None, recursively (``final.json`` and ``metrics.jsonl`` are strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def train(
    config: TrainConfig,
    network: torch.nn.Module,
    train_samples: Sequence[Any],
    val_samples: Sequence[Any] = (),
    test_samples: Sequence[Any] = (),
    out_dir: str | os.PathLike = "runs/segmentation",
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    warmup_checkpoint: str | os.PathLike | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    panels: int = 4,
    batch_solver: Any = None,
    extra: dict | None = None,
    distributed: Distributed | None = None,
) -> dict:
    """Train ``network`` with ``config.method``; returns the final metrics (also in ``<out>/final.json``).

    Parameters
    ----------
    config : TrainConfig
    network : torch.nn.Module
        Images ``(N, 3, H, W)`` -> logits ``(N, C, H, W)`` (or ``{"out": logits}``).
    train_samples, val_samples, test_samples : sequences of Sample
        ``chainrule2_torch.data.Sample`` items. Training items without seeds (without a mask for
        ``full``) are skipped with a :class:`~chainrule2_torch.data.NoSeedsWarning` naming them.
    out_dir : path
        Metrics (``metrics.jsonl``), checkpoints (``last.pt``), stage-A cache, panels, ``final.json``, ``model.pt``.
    device : "cpu" or "cuda"
    resume : bool
        Continue from ``<out>/last.pt`` if it exists.
    overwrite : bool
        Start over in an ``out_dir`` that holds a run (refused otherwise).
    warmup_checkpoint : path or None
        Where the PCE warm-up is loaded from (if it exists) or saved to; keyed by the warm-up's
        configuration, the network's architecture and the training data (a mismatch is refused).
    stop_after_epoch : int or None
        Stop (as if interrupted) after this epoch (for testing resume).
    progress, panels :
        tqdm bars; how many training and test items get a PNG panel.
    batch_solver : callable or None
        Stage A's batch solver (e.g. ``chainrule2.solvers.ProcessBatchSolver(workers=2)``).
    extra : dict or None
        More entries for ``final.json`` (e.g. the command that made the run).
    distributed : Distributed or None
        This process's rank among ``torchrun``'s processes (default: from the environment, see
        :func:`chainrule2_torch.distributed.from_env`): stage B in ``DistributedDataParallel``,
        stage A and evaluation sharded over the ranks, files written by rank 0. ``batch_size`` is
        the global batch, split between the ranks.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    dist = distributed if distributed is not None else from_env(device)
    dev = dist.device if dist.device.type == "cuda" else resolve_device(device)
    autocast(config.amp, dev)  # an amp the device cannot run is refused before anything is written
    method = METHOD_TABLE[config.method]
    train_samples = _usable(list(train_samples), method)
    num_classes = _check_samples(train_samples, list(val_samples) + list(test_samples))
    _prepare_out(out, resume, overwrite, write=dist.is_main)
    dist.barrier()
    network.to(dev)
    warmup = config.warmup_epochs if method.warmup else 0
    total = config.warmup_epochs + config.epochs  # the same number of epochs for every method
    per_epoch = len(RankBatches(len(train_samples), config.batch_size, 0, dist))
    cache = StageACache(out / "stage_a", soft=config.soft_targets)
    stage_a = make_stage_a(config, batch_solver, dev) if method.targets == "stage_a" else None
    metrics_path, ckpt_path = out / "metrics.jsonl", out / "last.pt"
    # hashing every training image is only needed to key a warm-up checkpoint
    fingerprint = _fingerprint(network, train_samples) if warmup_checkpoint is not None else {}

    continuing = config.phase_switch == "continue"

    def phase_at(epoch: int, previous: _Phase | None = None) -> _Phase:
        name, kind = ("warmup", WARMUP) if epoch < warmup else ("main", method)
        if continuing and previous is not None:  # the same optimizer and schedule, the method's criterion
            return _Phase(name, kind, kind.criterion(config, num_classes).to(dev), previous.optimizer,
                          previous.scheduler, previous.amp, previous.scaler)  # fmt: skip
        steps = total if continuing else warmup if name == "warmup" else total - warmup
        return _Phase.build(name, kind, config, network, num_classes, steps * per_epoch, dev)

    start_epoch, saved_phase = 0, None
    if resume and ckpt_path.exists():
        start_epoch, saved_phase = _restore_run(ckpt_path, config, network, cache, write=dist.is_main)
    elif warmup > 0 and warmup_checkpoint is not None and Path(warmup_checkpoint).exists():
        saved_phase = _restore_warmup(Path(warmup_checkpoint), _warmup_key(config, fingerprint), network)
        start_epoch = warmup
    if dist.is_main:
        kept = _read_metrics(metrics_path, start_epoch - 1) if resume else []
        _atomic_write_text("".join(x + "\n" for x in kept), metrics_path)
    dist.barrier()
    trainee = network
    if dist.active:  # stage B's forward and backward; stage A and evaluation use the network itself
        ids = [dev.index] if dev.type == "cuda" else None
        trainee = torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)

    phase = phase_at(start_epoch) if start_epoch < total else None
    if phase is not None and saved_phase is not None and (saved_phase["name"] == phase.name or continuing):
        # the same phase (or one optimizer for the whole run): continue its optimizer and schedule exactly
        phase.load_state_dict(saved_phase, criterion=saved_phase["name"] == phase.name)
    for epoch in range(start_epoch, total):
        assert phase is not None  # built above whenever an epoch is left
        if epoch == warmup and phase.name == "warmup":
            phase = phase_at(epoch, phase)  # the phase switch
        name = "warmup" if phase.name == "warmup" else config.method
        record: dict = {"epoch": epoch, "phase": name}
        t0 = time.perf_counter()
        background = None
        if stage_a is not None and phase.method.targets == "stage_a" and (epoch - warmup) % config.stage_a_every == 0:
            if config.stage_a_overlap and epoch > warmup:  # every item has targets: this epoch trains on them
                samples = _with_targets(train_samples, phase.method, cache)
                background = _BackgroundStageA(network, stage_a, train_samples, cache, config.batch_size, dev, dist)
            else:
                record.update(refresh_pseudo_labels(network, stage_a, train_samples, cache, config.batch_size, dev,
                                                    dist))  # fmt: skip
        if background is None:
            samples = _with_targets(train_samples, phase.method, cache)
        bar = _Progress(progress and dist.is_main, f"epoch {epoch + 1}/{total} {name}")
        loss = train_epoch(trainee, phase, _loader(samples, config, epoch, dev, dist), epoch, bar)
        if background is not None:  # the next epoch trains on its labels; the checkpoint below holds them
            record.update(background.join())
        record["loss"] = dist.mean(loss)
        if not all(bool(torch.isfinite(p).all()) for p in network.parameters()):
            _diverged(epoch, "the weights are NaN or inf after the epoch's last step")  # never checkpointed
        record["epoch_s"] = time.perf_counter() - t0
        record["lr"] = phase.optimizer.param_groups[0]["lr"]
        for learned in getattr(phase.criterion, "learned", ()):
            if isinstance(learned, LearnedErrorRobustCE):
                record["error_prob"] = float(learned.error_prob.detach())
        if val_samples:
            record["val_miou"] = evaluate_network(network, val_samples, config.batch_size, dev, dist)["miou"]
        if dist.is_main:
            _write_epoch(record, network, phase, cache, config, epoch, warmup, warmup_checkpoint, fingerprint, out)
        if progress and dist.is_main:
            from tqdm.auto import tqdm

            tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
        dist.barrier()  # the checkpoint of this epoch exists before any rank goes on
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {"stopped_after_epoch": epoch}
    extra = {**(extra or {}), "seconds": time.perf_counter() - started}
    final = _finish(config, network, train_samples, val_samples, test_samples, cache, out, dev, panels, extra, dist)
    dist.barrier()  # the ranks leave together: none tears its process group down while rank 0 still writes
    return final


def _write_epoch(record: dict, network: torch.nn.Module, phase: _Phase, cache: StageACache, config: TrainConfig,
                 epoch: int, warmup: int, warmup_checkpoint: Any, fingerprint: dict, out: Path) -> None:  # fmt: skip
    """Rank 0: the epoch's metrics line, the warm-up checkpoint after the warm-up's last epoch, ``last.pt``."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(_strict(record)) + "\n")
    logger.info("%s", record)
    if epoch == warmup - 1 and warmup_checkpoint is not None and not Path(warmup_checkpoint).exists():
        _atomic_save({"model": network.state_dict(), "phase": phase.state_dict(),
                      "warmup_config": _warmup_key(config, fingerprint)}, Path(warmup_checkpoint))  # fmt: skip
    _atomic_save({"model": network.state_dict(), "phase": phase.state_dict(), "epoch": epoch,
                  "stage_a_cache": cache.state(), "stage_a_betas": dict(cache.betas),
                  "config": dataclasses.asdict(config)}, out / "last.pt")  # fmt: skip


def _finish(
    config: TrainConfig,
    network: torch.nn.Module,
    train_samples: Sequence[Any],
    val_samples: Sequence[Any],
    test_samples: Sequence[Any],
    cache: StageACache,
    out: Path,
    dev: torch.device,
    panels: int,
    extra: dict,
    dist: Distributed,
) -> dict:
    """Final scores (val, test once), the stage-A labels' mIoU; rank 0 writes panels, ``final.json``, ``model.pt``."""
    final: dict = {"method": config.method, "class_names": list(train_samples[0].class_names), **extra}
    if dist.active:
        final["world_size"] = dist.world_size
    if val_samples:
        final["val"] = evaluate_network(network, val_samples, config.batch_size, dev, dist)
    if test_samples:
        final["test"] = evaluate_network(network, test_samples, config.batch_size, dev, dist)
    if not dist.is_main:
        return final
    final.update(_final_mechanism(network, train_samples, cache, config.batch_size, dev))
    if panels:
        write_panels(network, train_samples[:panels], cache, out / "panels" / "train.png", dev)
        if test_samples:
            write_panels(network, list(test_samples)[:panels], None, out / "panels" / "test.png", dev)
    _atomic_write_text(json.dumps(_strict(final), indent=1, allow_nan=False), out / "final.json")
    _atomic_save(network.state_dict(), out / "model.pt")
    return final


def _final_mechanism(network: torch.nn.Module, samples: Sequence[Any], cache: StageACache, batch_size: int,
                     dev: torch.device) -> dict:  # fmt: skip
    """How well the final network fits its last targets (``target_fit``), its train mIoU and the labels' mIoU."""
    hard = {s.id: h for s in samples if (h := cache.labels_of(s.id)) is not None}  # the arg-max of soft targets
    cached = [s for s in samples if s.id in hard]
    if not cached:
        return {}
    preds = predict_labels(network, cached, batch_size, dev)
    # an item stage A failed on from the start holds its seeds (255 elsewhere): only real labels count
    labelled = {s.id: hard[s.id] < s.num_classes for s in cached}
    agree = sum(int(np.count_nonzero((preds[s.id] == hard[s.id]) & labelled[s.id])) for s in cached)
    counted = sum(int(np.count_nonzero(labelled[s.id])) for s in cached)
    out: dict = {"target_fit": agree / counted if counted else None}
    masked = [s for s in cached if s.mask is not None]
    num_classes = int(samples[0].num_classes)
    if masked:
        conf = np.zeros((num_classes, num_classes), np.int64)
        for s in masked:
            conf += confusion_matrix(preds[s.id], s.mask, num_classes)
        out["network_train_miou"] = _miou(conf)
    solved = [s for s in masked if labelled[s.id].all()]
    if solved:
        conf = np.zeros((num_classes, num_classes), np.int64)
        for s in solved:
            conf += confusion_matrix(hard[s.id], s.mask, num_classes)
        out["pseudo_miou"] = _miou(conf)
    return out


def write_panels(
    network: torch.nn.Module, samples: Sequence[Any], cache: StageACache | None, path: Path, device: Any = "cpu"
) -> None:
    """One PNG panel per item (``<path stem>_<id>.png``): image, seeds, stage-A labels, prediction, truth."""
    if not samples:
        return
    preds = predict_labels(network, samples, device=device)
    for s in samples:
        pseudo = cache.labels_of(s.id) if cache is not None else None
        caption = s.id
        if s.mask is not None:
            caption += f"  mIoU {_miou(confusion_matrix(preds[s.id], s.mask, s.num_classes)) or 0.0:.1f}"
        write_panel(path.parent / f"{path.stem}_{s.id}.png", np.asarray(s.image), s.seeds, pseudo, preds[s.id], s.mask,
                    num_classes=s.num_classes, caption=caption, class_names=s.class_names)  # fmt: skip
