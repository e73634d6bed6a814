"""Scribble-supervised segmentation, end to end: PCE-GD, Grid-GD, ADM, the robust trust region
(Grid-TR) and full supervision on one data set, with the same code on CPU or CUDA.

Quick demo (generated data, no download, seconds on a CPU)::

    python examples/segmentation_scribbles.py --demo

Your own folder of images, scribbles and masks (layout in docs/own_data.md)::

    python examples/segmentation_scribbles.py --dataset folder --root path/to/folder --method grid-tr \\
        --trust-weight 16 --out runs/mine/grid-tr

A results-table row (see docs/results.md)::

    python examples/segmentation_scribbles.py --dataset weizmann_horse --method grid-tr --size 96 --threads 1 \\
        --epochs 6 --warmup-epochs 6 --seed 0 --out runs/horse/grid-tr \\
        --warmup-checkpoint runs/horse/warmup.pt

Several processes (stage B in DistributedDataParallel, stage A sharded over the ranks; see
docs/scaling.md)::

    torchrun --nproc_per_node 2 examples/segmentation_scribbles.py --demo --out runs/demo2

Outputs in ``--out``: ``metrics.jsonl`` (one JSON line per epoch), ``final.json`` (val/test mIoU and
per-class IoU by class name in percent, stage-A pseudo-label mIoU, the command), ``panels/*.png``
(image | seeds | stage-A labels | prediction | truth), ``last.pt`` (for ``--resume``), ``model.pt``
and the stage-A label cache ``stage_a/<id>.png`` (``stage_a/<id>.npz`` with ``--soft-targets``). An ``--out`` that holds a run is refused unless
``--resume`` or ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable

from chainrule2.divergences import NORMALIZATIONS
from chainrule2_torch.data import add_data_arguments, load_splits
from chainrule2_torch.distributed import from_env
from chainrule2_torch.networks import build_network
from chainrule2_torch.training import METHODS, TrainConfig, train

# error_prob 0.1: the best of six grid-tr settings on the demo's validation split over 5 seeds (docs/results.md)
DEMO_DEFAULTS = dict(dataset="demo", size=96, limit=48, epochs=10, warmup_epochs=10, stage_a_every=2, width=16,
                     trust_weight=16.0, error_prob=0.1, threads=1)  # fmt: skip


def _number_or(keyword: str, number: str) -> Callable[[str], float | str]:
    """An argparse type: the word ``keyword`` as it is, else a float (``number`` says which, for the error)."""

    def parse(text: str) -> float | str:
        if text == keyword:
            return text
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {number} or {keyword!r}, got {text!r}") from None

    return parse


_error_prob = _number_or("learned", "a number in (0, (C-1)/C)")
_trust_weight = _number_or("auto", "a number >= 0")
_max_changed = _number_or("seed_error", "a fraction in (0, 1]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--demo", action="store_true",
                   help="short grid-tr run on the generated demo data set (48 images, 96 px, 10+10 epochs, beta 16, "
                        "1 thread; seconds on an idle CPU)")  # fmt: skip
    p.add_argument("--method", choices=METHODS, default="grid-tr")
    add_data_arguments(p)
    p.add_argument("--network", choices=("unet", "deeplabv3plus"), default="unet")
    p.add_argument("--width", type=int, default=16, help="U-Net width")
    p.add_argument("--weights", default=None, help="local weights file for the network (nothing is downloaded)")
    p.add_argument("--epochs", type=int, default=24, help="epochs after the warm-up (docs/results.md: 24 + 24)")
    p.add_argument("--warmup-epochs", type=int, default=24, help="PCE warm-up epochs (paper: 60)")
    p.add_argument("--warmup-checkpoint", default=None, help="load the PCE warm-up from / save it to this file")
    p.add_argument("--stage-a-every", type=int, default=4, help="stage-A period in epochs (paper: 5)")
    p.add_argument("--stage-a-workers", type=int, default=1,
                   help="processes that solve stage A (1: in-process, or one worker process with --stage-a-overlap)")  # fmt: skip
    p.add_argument("--stage-a-overlap", action="store_true",
                   help="solve every stage A after the first in the background while stage B trains its epoch "
                        "on the previous targets (its labels are used from the next epoch); the solves run in "
                        "--stage-a-workers worker processes")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=None, help="square crop side for stage B (default: --size)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the method's epochs (after the warm-up)")
    p.add_argument("--warmup-lr", type=float, default=None, help="learning rate of the PCE warm-up (default: --lr)")
    p.add_argument("--potts-weight", type=float, default=100.0, help="lambda")
    p.add_argument(
        "--dense-weight",
        type=float,
        default=0.005,
        help="lambda of the dense CRF of dense-gd and dense-tr (per down-scaled pixel)",
    )
    p.add_argument("--trust-weight", type=_trust_weight, default="auto",
                   help="beta, or 'auto' (the default: the best fixed beta moves with the image size, the paper's "
                        "0.05 is for ~500 px, 16 was best at 96 px): per image the smallest beta whose stage-A "
                        "labels relabel at most --max-changed of the free pixels (docs/concepts.md)")  # fmt: skip
    p.add_argument("--max-changed", type=_max_changed, default=None,
                   help="with --trust-weight auto: a fraction in (0, 1], or seed_error (the default: 1.5 x the "
                        "network's error rate on the image's seeds)")  # fmt: skip
    p.add_argument(
        "--error-prob",
        type=_error_prob,
        default=None,
        help="epsilon of the robust d_B (default 0.9912*(C-1)/C), or 'learned' (trained beside the network)",
    )
    p.add_argument("--error-lr", type=float, default=0.05, help="learning rate of a learned epsilon's logit")
    p.add_argument("--stage-a-solver", choices=("alpha-expansion", "mean-field"), default="alpha-expansion",
                   help="stage A's solver: graph cuts (the paper) or mean-field (a distribution per pixel; hard "
                        "targets are its arg-max unless --soft-targets)")  # fmt: skip
    p.add_argument("--soft-targets", action="store_true",
                   help="with --stage-a-solver mean-field or --method dense-tr: stage B fits the distributions themselves "
                        "(cached as <out>/stage_a/<id>.npz)")  # fmt: skip
    p.add_argument("--mean-field-temperature", type=float, default=None,
                   help="with --stage-a-solver mean-field: temperature T > 0 of the free energy (default 1.0)")  # fmt: skip
    p.add_argument("--mean-field-sweeps", type=int, default=None,
                   help="with --stage-a-solver mean-field: at most this many sweeps (default 50)")  # fmt: skip
    p.add_argument("--relaxation", choices=("bilinear", "squared", "tv"), default="bilinear")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default="mean",
                   help="stage-B normalisation of adm/grid-tr: mean over the batch's pixels, per item, the official "
                        "code's (sum / seed pixels / batch size), or none")  # fmt: skip
    p.add_argument("--pce-normalization", choices=NORMALIZATIONS, default="item",
                   help="normalisation of the partial cross-entropy (warm-up, pce, grid-gd)")  # fmt: skip
    p.add_argument("--phase-switch", choices=("restart", "continue"), default="restart",
                   help="after the warm-up: a fresh optimizer and schedule (restart) or the warm-up's optimizer "
                        "with one schedule over the whole run (continue)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="training seed (init, order, augmentation)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: batch-norm statistics over every rank's batch "
                        "(torch.nn.SyncBatchNorm; without it each rank normalises its own)")  # fmt: skip
    p.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                   help="mixed precision for stage B's forward pass: bf16 (CPU or CUDA) or fp16 (CUDA, with loss "
                        "scaling); default full precision")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>/<method>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that holds a run")
    p.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.demo:
        # The demo's defaults replace the normal ones; options given on the command line still win.
        p.set_defaults(**DEMO_DEFAULTS)
        args = p.parse_args(argv)
    if args.stage_a_solver != "mean-field" and args.method != "dense-tr":  # dense-tr: always mean-field
        for flag in ("soft_targets", "mean_field_temperature", "mean_field_sweeps"):
            if getattr(args, flag) not in (None, False):
                p.error(f"--{flag.replace('_', '-')}: only with --stage-a-solver mean-field or --method dense-tr, "
                        f"got --stage-a-solver {args.stage_a_solver}")  # fmt: skip
    if args.sync_bn and not args.device.startswith("cuda"):
        p.error(
            f"--sync-bn: needs --device cuda (torch.nn.SyncBatchNorm runs on GPUs only), got --device {args.device}"
        )
    if args.amp == "fp16" and not args.device.startswith("cuda"):
        p.error(f"--amp fp16: needs --device cuda (its loss scaling is CUDA's), got --device {args.device}; "
                "use --amp bf16")  # fmt: skip
    if args.out is None:
        args.out = f"runs/{args.dataset}/{args.method}"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    train_s, val_s, test_s = load_splits(args)
    if not train_s:
        raise SystemExit(f"--dataset {args.dataset}: the training split is empty (check --root and --limit)")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kwargs = {"width": args.width} if args.network == "unet" else {}
    net = build_network(args.network, 3, train_s[0].num_classes, weights=args.weights, **kwargs)
    crop = args.crop or args.size
    config = TrainConfig(
        method=args.method, epochs=args.epochs, warmup_epochs=args.warmup_epochs, stage_a_every=args.stage_a_every,
        batch_size=args.batch_size, crop_size=(crop, crop), lr=args.lr, warmup_lr=args.warmup_lr, optimizer=args.optimizer,
        potts_weight=args.potts_weight, dense_weight=args.dense_weight, relaxation=args.relaxation,
        trust_weight=args.trust_weight,
        error_prob=args.error_prob, error_lr=args.error_lr, normalization=args.normalization, pce_normalization=args.pce_normalization,
        phase_switch=args.phase_switch, max_changed=args.max_changed, amp=args.amp or False,
        stage_a_solver=args.stage_a_solver, soft_targets=args.soft_targets, stage_a_overlap=args.stage_a_overlap,
        **{k: v for k in ("mean_field_temperature", "mean_field_sweeps") if (v := getattr(args, k)) is not None},
        seed=args.seed,
    )  # fmt: skip
    dist = from_env(args.device)  # one process, or this rank of torchrun's
    if args.sync_bn and dist.active:  # same parameters and state-dict keys: checkpoints load without it
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    launcher = ["torchrun", f"--nproc_per_node {dist.world_size}"] if dist.active else ["python"]
    command = " ".join(launcher + ["examples/segmentation_scribbles.py"] + (argv if argv is not None else sys.argv[1:]))
    with contextlib.ExitStack() as stack:
        batch_solver = None
        if args.stage_a_workers > 1 or args.stage_a_overlap:  # overlap: solves in processes beside stage B
            from chainrule2.solvers import ProcessBatchSolver

            pool = ProcessBatchSolver(workers=args.stage_a_workers, always_spawn=args.stage_a_overlap)
            batch_solver = stack.enter_context(pool)
        final = train(config, net, train_s, val_s, test_s, out_dir=args.out, device=args.device, resume=args.resume,
                      overwrite=args.overwrite, warmup_checkpoint=args.warmup_checkpoint,
                      stop_after_epoch=args.stop_after_epoch, progress=not args.no_progress,
                      batch_solver=batch_solver, extra={"command": command}, distributed=dist)  # fmt: skip
    if dist.active:
        torch.distributed.destroy_process_group()
    if not dist.is_main:
        return final
    summary = {k: final[k]["miou"] for k in ("val", "test") if k in final}
    print(
        json.dumps(
            {"method": args.method, "out": args.out, "miou": summary, "seconds": round(final.get("seconds", 0), 1)}
        )
    )
    return final


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileExistsError, FileNotFoundError) as err:  # bad input, missing data, a folder in use
        raise SystemExit(f"error: {err}") from None
