"""The reusable scribble-supervised training loop: PCE-GD, Grid-GD, ADM, the robust trust region
(Grid-TR) and full supervision, with the paper's schedule (PAPER.md §4).

* All weakly supervised methods start from the same PCE warm-up (``warmup_epochs``; saved to and
  reused from ``warmup_checkpoint``), then train ``epochs`` more epochs with their own objective.
* Trust-region methods run stage A every ``stage_a_every`` epochs on the full-size, un-augmented
  training images (network in eval mode), warm-started from the cached labels. The labels are
  cached on disk keyed by item id (``<out>/stage_a/<id>.png``) and augmented jointly with the
  image; between stage-A epochs the network is never run for them.
* Every epoch appends one JSON line to ``<out>/metrics.jsonl`` and saves ``<out>/last.pt`` (model,
  optimizer, scheduler, epoch, RNG states and the stage-A cache), so ``resume=True`` continues an
  interrupted run and ends with the same result as an uninterrupted one.
* Validation mIoU is logged every epoch; the test split is evaluated once, on the final model
  (never used for a choice).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chainrule2.base import Batch, Composite
from chainrule2.constants import PADDING
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective
from chainrule2_torch.data import Augmentation, NoSeedsWarning, confusion_matrix, scores, write_panel
from chainrule2_torch.fitters import OptimizerFitter
from chainrule2_torch.model import TorchModel
from chainrule2_torch.objectives import FullCrossEntropy, PartialCrossEntropy, RelaxedPottsObjective

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "METHODS", "train", "evaluate", "miou", "default_error_prob", "to_inputs"]

METHODS = ("pce", "grid-gd", "adm", "grid-tr", "full")
TR_METHODS = ("adm", "grid-tr")
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255

#: ε of the official setting (0.944 at C = 21) as a fraction of its upper bound (C−1)/C; the
#: default ε for C classes keeps that fraction: ε = 0.9912·(C−1)/C (PAPER.md §3–4).
UNIFORM_ERROR_FRACTION = 0.944 * 21 / 20


def default_error_prob(num_classes: int, fraction: float = UNIFORM_ERROR_FRACTION) -> float:
    """ε = fraction·(C−1)/C: the official ε (0.944 for C = 21) carried over to C classes."""
    return fraction * (num_classes - 1) / num_classes


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (names match PAPER.md).

    Parameters
    ----------
    method : {"pce", "grid-gd", "adm", "grid-tr", "full"}
    epochs : int
        Epochs after the warm-up.
    warmup_epochs : int
        PCE warm-up epochs (all weakly supervised methods share it); ``full`` trains on the masks for
        ``warmup_epochs + epochs`` epochs (the same total), with no warm-up.
    stage_a_every : int
        Stage-A period in epochs (paper: 5).
    batch_size, crop_size, scale_range :
        Stage B batches: random scale, crop ``(H, W)`` and flip, joint with seeds and labels.
    lr, momentum, weight_decay, optimizer :
        ``"adam"`` or ``"sgd"`` (momentum, weight decay); poly-0.9 decay over the post-warm-up epochs.
    potts_weight : float
        λ (stage A and the Grid-GD relaxation alike).
    neighbourhood : {4, 8}
    relaxation : {"bilinear", "squared", "tv"}
        Grid-GD's relaxation.
    trust_weight : float
        β.
    error_prob : float or None
        ε of the robust d_B (``grid-tr``); None = :func:`default_error_prob`.
    max_sweeps : int
        Alpha-expansion sweeps.
    seed : int
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
    neighbourhood: int = 8
    relaxation: str = "bilinear"
    trust_weight: float = 0.05
    error_prob: float | None = None
    max_sweeps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        for name in ("epochs", "warmup_epochs", "stage_a_every", "batch_size", "max_sweeps"):
            value = getattr(self, name)
            low = 0 if name in ("epochs", "warmup_epochs") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        if len(self.crop_size) != 2 or min(self.crop_size) < 8:
            raise ValueError(f"crop_size: expected (H, W) with both >= 8, got {self.crop_size!r}")


def to_inputs(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack RGB uint8 images ``(H, W, 3)`` into normalised network inputs ``(N, 3, H, W)`` float32."""
    x = (np.stack([np.asarray(i, np.float32) for i in images]) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def miou(conf: np.ndarray) -> tuple[float, list[float]]:
    """mIoU (×100) over the classes present in truth or prediction, and the per-class IoU (nan if absent)."""
    result = scores(conf)
    return result.miou * 100, [float(v) for v in result.iou]


def _group_by_shape(samples: Sequence[Any], batch_size: int) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(tuple(s.image.shape[:2]), []).append(i)
    out = []
    for idx in groups.values():
        out += [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]
    return out


def predict_labels(model: TorchModel, samples: Sequence[Any], batch_size: int = 8) -> dict[str, np.ndarray]:
    """Arg-max predictions ``(H, W)`` uint8 on full-size images, keyed by id."""
    out = {}
    for idx in _group_by_shape(samples, batch_size):
        logits = model.predict(to_inputs([samples[i].image for i in idx]))
        for k, i in enumerate(idx):
            out[samples[i].id] = logits[k].argmax(-1).astype(np.uint8)
    return out


def evaluate(model: TorchModel, samples: Sequence[Any], num_classes: int, batch_size: int = 8) -> dict:
    """mIoU and per-class IoU of the model's predictions on full-size images with masks."""
    samples = [s for s in samples if s.mask is not None]
    if not samples:
        return {"miou": float("nan"), "iou": [], "images": 0}
    preds = predict_labels(model, samples, batch_size)
    conf = sum(confusion_matrix(preds[s.id], np.asarray(s.mask), num_classes) for s in samples)
    m, per_class = miou(conf)
    return {"miou": m, "iou": per_class, "images": len(samples)}


class StageACache:
    """Stage-A labels keyed by item id, in memory and on disk (``<folder>/<id>.png``)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.labels: dict[str, np.ndarray] = {}

    def put(self, key: str, labels: np.ndarray) -> None:
        self.labels[key] = np.asarray(labels, np.uint8)
        if self.folder is not None:
            from PIL import Image

            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{key}.png"
            tmp = path.with_suffix(".tmp.png")
            Image.fromarray(self.labels[key]).save(tmp)
            os.replace(tmp, path)

    def get(self, key: str) -> np.ndarray | None:
        return self.labels.get(key)

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.labels)

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for key, labels in state.items():
            self.put(key, labels)


def _rng_state(rng: np.random.Generator) -> dict:
    return {
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def _set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return the run's numpy Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _make_optimizer(config: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=0.0)


def _objective(config: TrainConfig, phase: str, num_classes: int) -> Any:
    if phase == "pce" or (phase == "main" and config.method == "pce"):
        return PartialCrossEntropy()
    if config.method == "full":
        return FullCrossEntropy()
    if config.method == "grid-gd":
        from chainrule2.losses import ScribblePotts

        return RelaxedPottsObjective(
            ScribblePotts(
                potts_weight=config.potts_weight, neighbourhood=config.neighbourhood, relaxation=config.relaxation
            )
        )
    if config.method == "adm":
        return SeedAwareObjective(CrossEntropy(), normalization="mean")
    eps = default_error_prob(num_classes) if config.error_prob is None else config.error_prob
    return SeedAwareObjective(RobustCrossEntropy(eps, num_classes), normalization="mean")


def _trust_region(config: TrainConfig, fitter: Any, batch_solver: Any = None) -> Any:
    from chainrule2.losses import ScribblePotts
    from chainrule2.solvers import AlphaExpansion
    from chainrule2.trust_region import TrustRegion

    loss = ScribblePotts(potts_weight=config.potts_weight, neighbourhood=config.neighbourhood)
    stage_a = TrustRegion(
        stage_a=AlphaExpansion(max_sweeps=config.max_sweeps),
        stage_b=fitter,
        trust_divergence=CrossEntropy(),
        trust_weight=config.trust_weight,
        batch_solver=batch_solver,
    )
    return loss, stage_a


def run_stage_a(
    trust_region: Any, loss: Any, model: TorchModel, samples: Sequence[Any], cache: StageACache, batch_size: int
) -> dict:
    """Stage A on every training item (full size, un-augmented), warm-started from ``cache``.

    Returns timings and the pseudo-labels' mIoU against the masks (where masks exist).
    """
    composite = Composite(loss=loss, model=model)
    predict_s = solve_s = 0.0
    conf = None
    for idx in _group_by_shape(samples, batch_size):
        items = [samples[i] for i in idx]
        batch = Batch(
            to_inputs([s.image for s in items]),
            np.stack([np.asarray(s.seeds) for s in items]),
            np.stack([np.asarray(s.image, np.float64) for s in items]),
            tuple(s.id for s in items),
        )
        initial = [cache.get(s.id) for s in items]
        initial = [None if a is None else a.astype(np.int64) for a in initial]
        proposal = trust_region.propose(composite, batch, initial=initial)
        predict_s += proposal.report.predict_seconds
        solve_s += proposal.report.solve_seconds
        for s, labels in zip(items, proposal.targets, strict=True):
            cache.put(s.id, labels)
            if s.mask is not None:
                c = confusion_matrix(np.asarray(labels), np.asarray(s.mask), s.num_classes)
                conf = c if conf is None else conf + c
    result = {"stage_a_predict_s": predict_s, "stage_a_solve_s": solve_s}
    if conf is not None:
        result["pseudo_miou"] = miou(conf)[0]
    return result


def _collate(samples: Sequence[Any], pseudo: Sequence[np.ndarray | None]) -> tuple[Batch, np.ndarray, np.ndarray]:
    seeds = np.stack([np.asarray(s.seeds) for s in samples]).astype(np.int64)
    images = np.stack([np.asarray(s.image, np.float64) for s in samples])
    batch = Batch(to_inputs([s.image for s in samples]), seeds, images, tuple(s.id for s in samples))
    masks = np.stack(
        [np.asarray(s.mask) if s.mask is not None else np.full(s.seeds.shape, 255, np.uint8) for s in samples]
    )
    if pseudo[0] is None:
        targets = seeds.copy()
    else:
        targets = np.stack(pseudo).astype(np.int64)
        targets = np.where(seeds < samples[0].num_classes, seeds, targets)  # seeds always win
        targets = np.where(seeds == PADDING, PADDING, targets)
    return batch, targets, masks.astype(np.int64)


def _usable(samples: Sequence[Any], method: str) -> list[Any]:
    out = []
    for s in samples:
        if method == "full":
            if s.mask is None:
                warnings.warn(f"item {s.id!r} has no mask: skipped for full supervision", NoSeedsWarning, stacklevel=3)
                continue
        elif not np.any(np.asarray(s.seeds) < s.num_classes):
            warnings.warn(f"item {s.id!r} has no seed pixel: skipped for training", NoSeedsWarning, stacklevel=3)
            continue
        out.append(s)
    return out


def train(
    config: TrainConfig,
    network: torch.nn.Module,
    train_samples: Sequence[Any],
    val_samples: Sequence[Any] = (),
    test_samples: Sequence[Any] = (),
    out_dir: str | os.PathLike = "runs/segmentation",
    device: str = "cpu",
    resume: bool = False,
    warmup_checkpoint: str | os.PathLike | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    panels: int = 4,
    batch_solver: Any = None,
) -> dict:
    """Train ``network`` with ``config.method``; returns the final metrics (also in ``<out>/final.json``).

    Parameters
    ----------
    config : TrainConfig
    network : torch.nn.Module
        Images ``(N, 3, H, W)`` -> logits ``(N, C, H, W)``.
    train_samples, val_samples, test_samples : sequences of Sample
        Items with ``id``, ``image`` ``(H, W, 3)`` uint8, ``seeds`` ``(H, W)``, ``mask`` or None and
        ``num_classes`` (``chainrule2_torch.data.Sample``). Training items without seeds are skipped
        with a warning.
    out_dir : path
        Metrics (``metrics.jsonl``), checkpoints (``last.pt``), stage-A cache, panels.
    device : "cpu" or "cuda"
    resume : bool
        Continue from ``<out>/last.pt`` if it exists.
    warmup_checkpoint : path or None
        Where the PCE warm-up is loaded from (if it exists) or saved to (the TR methods start from it).
    stop_after_epoch : int or None
        Stop (as if interrupted) after this epoch (for testing resume).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_samples = _usable(list(train_samples), config.method)
    if not train_samples:
        raise ValueError(
            "train_samples: expected at least one training item with seeds (or a mask for 'full'), got none"
        )
    num_classes = int(train_samples[0].num_classes)
    for s in list(train_samples) + list(val_samples) + list(test_samples):
        if int(s.num_classes) != num_classes:
            raise ValueError(
                f"num_classes of {s.id!r}: expected {num_classes} (as the first item), got {s.num_classes}"
            )
    rng = seed_everything(config.seed)
    model = TorchModel(network, device=device)
    augment = Augmentation(crop_size=tuple(config.crop_size), scale_range=tuple(config.scale_range))
    per_epoch = math.ceil(len(train_samples) / config.batch_size)
    warmup = 0 if config.method == "full" else config.warmup_epochs
    total = config.warmup_epochs + config.epochs  # the same number of epochs for every method
    cache = StageACache(out / "stage_a")
    metrics_path = out / "metrics.jsonl"
    ckpt_path = out / "last.pt"

    def make_fitter(phase: str) -> OptimizerFitter:
        lr = (config.warmup_lr or config.lr) if phase == "pce" else config.lr
        opt = _make_optimizer(config, network.parameters(), lr)
        n_epochs = warmup if phase == "pce" else total - warmup
        iters = max(1, n_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / iters) ** 0.9)
        return OptimizerFitter(opt, _objective(config, phase, num_classes), steps=1, scheduler=sched)

    start_epoch = 0
    phase = "pce" if warmup > 0 else "main"
    fitter = make_fitter(phase)
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["config"] != dataclasses.asdict(config):
            raise ValueError(f"resume: {ckpt_path} was written with a different configuration")
        network.load_state_dict(state["model"])
        start_epoch = state["epoch"] + 1
        phase = "pce" if start_epoch < warmup else "main"
        fitter = make_fitter(phase)
        fitter.load_state_dict(state["fitter"])
        cache.restore(state["stage_a_cache"])
        _set_rng_state(rng, state["rng"])
        logger.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    elif warmup > 0 and warmup_checkpoint is not None and Path(warmup_checkpoint).exists():
        state = torch.load(warmup_checkpoint, map_location="cpu", weights_only=False)
        if state.get("warmup_config") != _warmup_key(config):
            raise ValueError(
                f"warmup_checkpoint: {warmup_checkpoint} was written with a different warm-up configuration"
            )
        network.load_state_dict(state["model"])
        _set_rng_state(rng, state["rng"])
        start_epoch = warmup
        phase = "main"
        fitter = make_fitter(phase)
        logger.info("warm start from %s", warmup_checkpoint)
    elif not resume and metrics_path.exists():
        metrics_path.unlink()

    loss = trust_region = None
    if config.method in TR_METHODS:
        loss, trust_region = _trust_region(config, fitter, batch_solver)

    final: dict = {}
    for epoch in range(start_epoch, total):
        if phase == "pce" and epoch >= warmup:
            phase = "main"
            fitter = make_fitter(phase)
        record: dict = {"epoch": epoch, "phase": phase if phase == "pce" else config.method}
        t0 = time.perf_counter()
        stage_a_s = 0.0
        if phase == "main" and config.method in TR_METHODS and (epoch - warmup) % config.stage_a_every == 0:
            t_a = time.perf_counter()
            record.update(run_stage_a(trust_region, loss, model, train_samples, cache, config.batch_size))
            stage_a_s = time.perf_counter() - t_a
        order = rng.permutation(len(train_samples))
        losses = []
        bar = tqdm(
            range(per_epoch), desc=f"epoch {epoch + 1}/{total} {record['phase']}", disable=not progress, leave=False
        )
        use_pseudo = phase == "main" and config.method in TR_METHODS
        for b in bar:
            items, pseudo = [], []
            for i in order[b * config.batch_size : (b + 1) * config.batch_size]:
                s = train_samples[int(i)]
                aug, p = augment(s, rng, pseudo=cache.get(s.id) if use_pseudo else None)
                items.append(aug)
                pseudo.append(p)
            batch, targets, masks = _collate(items, pseudo)
            if phase == "main" and config.method == "full":
                targets = masks
            report = fitter.fit(model, batch, targets)
            losses.append(report.loss)
            bar.set_postfix(loss=f"{report.loss:.4f}")
        record["loss"] = float(np.mean(losses))
        record["epoch_s"] = time.perf_counter() - t0
        record["stage_a_s"] = stage_a_s
        record["lr"] = fitter.optimizer.param_groups[0]["lr"]
        if val_samples:
            record["val_miou"] = evaluate(model, val_samples, num_classes, config.batch_size)["miou"]
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("%s", record)
        if progress:
            tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
        if epoch == warmup - 1 and warmup_checkpoint is not None and not Path(warmup_checkpoint).exists():
            Path(warmup_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"model": network.state_dict(), "rng": _rng_state(rng), "warmup_config": _warmup_key(config)},
                warmup_checkpoint,
            )
        torch.save(
            {
                "model": network.state_dict(),
                "fitter": fitter.state_dict(),
                "epoch": epoch,
                "rng": _rng_state(rng),
                "stage_a_cache": cache.state(),
                "config": dataclasses.asdict(config),
            },
            ckpt_path.with_suffix(".tmp"),
        )
        os.replace(ckpt_path.with_suffix(".tmp"), ckpt_path)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {"stopped_after_epoch": epoch}

    final["method"] = config.method
    if val_samples:
        final["val"] = evaluate(model, val_samples, num_classes, config.batch_size)
    if test_samples:
        final["test"] = evaluate(model, test_samples, num_classes, config.batch_size)
    if config.method in TR_METHODS and cache.labels:
        conf = None
        for s in train_samples:
            if s.mask is not None and cache.get(s.id) is not None:
                c = confusion_matrix(cache.get(s.id), np.asarray(s.mask), num_classes)
                conf = c if conf is None else conf + c
        if conf is not None:
            final["pseudo_miou"] = miou(conf)[0]
    if panels:
        write_panels(model, train_samples[:panels], cache, out / "panels" / "train.png", num_classes)
        if test_samples:
            write_panels(model, list(test_samples)[:panels], None, out / "panels" / "test.png", num_classes)
    with open(out / "final.json", "w") as f:
        json.dump(final, f, indent=1)
    torch.save(network.state_dict(), out / "model.pt")
    return final


def _warmup_key(config: TrainConfig) -> dict:
    keys = (
        "warmup_epochs",
        "batch_size",
        "crop_size",
        "scale_range",
        "lr",
        "warmup_lr",
        "momentum",
        "weight_decay",
        "optimizer",
        "seed",
    )
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items() if k in keys}


def write_panels(
    model: TorchModel, samples: Sequence[Any], cache: StageACache | None, path: Path, num_classes: int
) -> None:
    """One PNG panel per item (``<path stem>_<id>.png``): image, seeds, stage-A labels, prediction, truth."""
    if not samples:
        return
    preds = predict_labels(model, samples)
    for s in samples:
        pseudo = cache.get(s.id) if cache is not None else None
        caption = s.id
        if s.mask is not None:
            caption += f"  mIoU {miou(confusion_matrix(preds[s.id], np.asarray(s.mask), num_classes))[0]:.1f}"
        write_panel(path.parent / f"{path.stem}_{s.id}.png", np.asarray(s.image), s.seeds, pseudo, preds[s.id], s.mask,
                    num_classes=num_classes, caption=caption)  # fmt: skip
