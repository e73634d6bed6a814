"""Scribble-supervised segmentation, end to end: PCE-GD, Grid-GD, ADM, the robust trust region
(Grid-TR) and full supervision on one data set, with the same code on CPU or CUDA.

Quick demo (generated data, no download, a few minutes on a CPU)::

    python examples/segmentation_scribbles.py --demo

A results-table row (see docs/results.md)::

    python examples/segmentation_scribbles.py --dataset weizmann_horse --method grid-tr --size 96 --threads 1 \\
        --epochs 6 --warmup-epochs 6 --seed 0 --out runs/horse/grid-tr \\
        --warmup-checkpoint runs/horse/warmup.pt

Outputs in ``--out``: ``metrics.jsonl`` (one JSON line per epoch), ``final.json`` (val/test mIoU,
per-class IoU, stage-A pseudo-label mIoU), ``panels/*.png`` (image | seeds | stage-A labels |
prediction | truth), ``last.pt`` (for ``--resume``), ``model.pt`` and the stage-A label cache
``stage_a/<id>.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from chainrule2_torch.networks import build_network
from chainrule2_torch.training import METHODS, TrainConfig, train

DATASETS = ("demo", "weizmann_horse", "grabcut", "camvid", "isbi2012", "folder", "voc")


def load_data(args: argparse.Namespace) -> tuple[list, list, list]:
    """(train, val, test) lists of ``chainrule2_torch.data.Sample``."""
    from chainrule2_torch import data

    sup = "clicks" if args.supervision == "clicks" else "scribbles"
    kw = dict(size=args.size, supervision=sup, length=args.length, seed=args.data_seed)
    if args.dataset == "demo":
        every = data.make_demo_dataset(
            args.limit or 48, args.size, seed=args.data_seed, supervision=sup, length=args.length
        )
        n = len(every)
        return every[: n // 2], every[n // 2 : 3 * n // 4], every[3 * n // 4 :]
    if args.dataset == "grabcut":
        kw["supervision"] = "real" if args.supervision == "real" else sup
        read = data.read_grabcut
    elif args.dataset == "weizmann_horse":
        read = data.read_weizmann_horse
    elif args.dataset == "camvid":
        read = data.read_camvid
    elif args.dataset == "isbi2012":
        read = data.read_isbi2012
    elif args.dataset == "folder":
        read = data.read_folder
    else:
        read = data.read_voc
    root = args.root
    splits = []
    for split in ("train", "val", "test"):
        limit = args.limit if split == "train" else args.eval_limit
        splits.append(read(root, split, limit=limit, **kw) if root else read(split=split, limit=limit, **kw))
    return tuple(splits)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--demo", action="store_true",
                   help="short grid-tr run on the generated demo data set (48 images, 96 px, 10+10 epochs, beta 16, "
                        "1 thread; seconds on an idle CPU)")  # fmt: skip
    p.add_argument("--method", choices=METHODS, default="grid-tr")
    p.add_argument("--dataset", choices=DATASETS, default="demo")
    p.add_argument("--root", default=None, help="data set folder (default: ../shared/data/<name>)")
    p.add_argument("--supervision", choices=("scribbles", "clicks", "real"), default="scribbles",
                   help="'real' = GrabCut's human scribbles")  # fmt: skip
    p.add_argument("--length", type=float, default=1.0, help="scribble length fraction (1.0, 0.8, 0.5, 0.3)")
    p.add_argument("--size", type=int, default=96, help="images are resized so that the longer side is this")
    p.add_argument("--limit", type=int, default=None, help="at most this many training images")
    p.add_argument("--eval-limit", type=int, default=None, help="at most this many val/test images")
    p.add_argument("--network", choices=("unet", "deeplabv3plus"), default="unet")
    p.add_argument("--width", type=int, default=16, help="U-Net width")
    p.add_argument("--weights", default=None, help="local weights file for the network (nothing is downloaded)")
    p.add_argument("--epochs", type=int, default=6, help="epochs after the warm-up")
    p.add_argument("--warmup-epochs", type=int, default=6, help="PCE warm-up epochs (paper: 60)")
    p.add_argument("--warmup-checkpoint", default=None, help="load the PCE warm-up from / save it to this file")
    p.add_argument("--stage-a-every", type=int, default=5, help="stage-A period in epochs (paper: 5)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=None, help="square crop side for stage B (default: --size)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--potts-weight", type=float, default=100.0, help="lambda")
    p.add_argument("--trust-weight", type=float, default=0.05, help="beta")
    p.add_argument("--error-prob", type=float, default=None, help="epsilon (default 0.9912*(C-1)/C)")
    p.add_argument("--relaxation", choices=("bilinear", "squared", "tv"), default="bilinear")
    p.add_argument("--seed", type=int, default=0, help="training seed (init, order, augmentation)")
    p.add_argument("--data-seed", type=int, default=0, help="split and seed-synthesis seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>/<method>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.demo:
        # The demo's defaults replace the normal ones; options given on the command line still win.
        p.set_defaults(dataset="demo", size=96, limit=48, epochs=10, warmup_epochs=10, stage_a_every=2, width=16,
                       trust_weight=16.0, threads=1)  # fmt: skip
        args = p.parse_args(argv)
    if args.out is None:
        args.out = f"runs/{args.dataset}/{args.method}"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    train_s, val_s, test_s = load_data(args)
    num_classes = train_s[0].num_classes
    kwargs = {"width": args.width} if args.network == "unet" else {}
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = build_network(args.network, 3, num_classes, weights=args.weights, **kwargs)
    crop = args.crop or args.size
    config = TrainConfig(
        method=args.method, epochs=args.epochs, warmup_epochs=args.warmup_epochs, stage_a_every=args.stage_a_every,
        batch_size=args.batch_size, crop_size=(crop, crop), lr=args.lr, optimizer=args.optimizer,
        potts_weight=args.potts_weight, relaxation=args.relaxation, trust_weight=args.trust_weight,
        error_prob=args.error_prob, seed=args.seed,
    )  # fmt: skip
    start = time.perf_counter()
    final = train(config, net, train_s, val_s, test_s, out_dir=args.out, device=args.device, resume=args.resume,
                  warmup_checkpoint=args.warmup_checkpoint, stop_after_epoch=args.stop_after_epoch,
                  progress=not args.no_progress)  # fmt: skip
    final["seconds"] = time.perf_counter() - start
    final["command"] = " ".join(
        ["python", "examples/segmentation_scribbles.py"] + (argv if argv is not None else sys.argv[1:])
    )
    (Path(args.out) / "final.json").write_text(json.dumps(final, indent=1))
    summary = {k: final[k]["miou"] for k in ("val", "test") if k in final}
    print(json.dumps({"method": args.method, "out": args.out, "miou": summary, "seconds": round(final["seconds"], 1)}))
    return final


if __name__ == "__main__":
    main()
