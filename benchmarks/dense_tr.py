"""Dense-TR stage A against Grid-TR's: seconds per image and the label mIoU on the validation images.

Loads a network checkpoint (e.g. a PCE warm-up), computes its logits on every validation image
once, then runs stage A from those logits and the seeds: alpha-expansion on the grid Potts
(``ScribblePotts(--grid-potts-weight)``, ``--grid-beta``) and mean-field on the dense CRF
(``DenseMeanField`` with ``DenseCRFLoss(λ)``) for every pair of ``--betas`` × ``--dense-weights``.
For each it prints the mIoU of the hard stage-A labels (the soft targets' arg-max), the solver
seconds per image (``StageAReport.solve_seconds``, problem building included) and, for the dense
runs, the median number of mean-field steps. One process, single-threaded: set OMP_NUM_THREADS=1.

    CHAINRULE2_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/dense_tr.py \\
        --checkpoint runs/adaptive/horse96_warmup.pt --dataset weizmann_horse --size 96 --limit 100 --width 8 \\
        --betas 4 16 --dense-weights 0.01 0.03 0.1 0.3 1 --json runs/dense_tr/horse96.json

``--batched`` instead times the dense stage A of one β and λ on the first ``--images`` validation
images, by path: per item on the host (``StageA(batch_solver=solve_batch)``) and batched
(``DenseMeanField.run_batch``) on numpy and on torch CPU, the images padded to one grid (seed 254,
bottom and right; the logits are the network's on each image, padded) so that one batch holds
them all; and per item on each unpadded image (what stage A costs with batches by shape).
Interleaved ``--repeats`` runs after a warm-up, one torch thread; seconds per image (wall time of
``StageA.propose``), medians, the ratios batched / host measured in the same run, and how far the
batched targets are from the host path's:

    CHAINRULE2_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/dense_tr.py --batched \\
        --checkpoint runs/investigation/warmups/horse_full_long-seed0.pt --dataset weizmann_horse --length 1.0 \\
        --size 96 --limit 100 --width 8 --images 20 --betas 64 --dense-weights 0.3 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))


def main(argv: list[str] | None = None) -> dict:
    from chainrule2_torch import data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a warm-up checkpoint or model.pt of the network")
    p.add_argument("--width", type=int, default=8, help="U-Net width (as trained)")
    p.add_argument("--grid-beta", type=float, default=16.0, help="β of the grid stage A (alpha-expansion)")
    p.add_argument("--grid-potts-weight", type=float, default=100.0)
    p.add_argument("--betas", type=float, nargs="+", default=[4.0, 16.0], help="β of the dense stage A")
    p.add_argument("--dense-weights", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0], help="λ")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-sweeps", type=int, default=50)
    p.add_argument("--json", default=None)
    p.add_argument("--batched", action="store_true", help="time the host per-item path against the batched path")
    p.add_argument("--images", type=int, default=20, help="--batched: validation images (the first ones)")
    p.add_argument("--repeats", type=int, default=5, help="--batched: interleaved runs after a warm-up")
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    command = " ".join(["python", "benchmarks/dense_tr.py"] + (argv if argv is not None else sys.argv[1:]))
    if args.batched and (len(args.betas) != 1 or len(args.dense_weights) != 1):
        p.error("--batched: give one --betas and one --dense-weights")
    result = measure_batched(args, command) if args.batched else measure(args, command)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return result


def measure(args: argparse.Namespace, command: str) -> dict:
    import numpy as np
    import torch

    import chainrule2 as cr
    from chainrule2.divergences import CrossEntropy
    from chainrule2.losses import DenseCRFLoss, ScribblePotts
    from chainrule2.solvers import AlphaExpansion, DenseMeanField
    from chainrule2_torch import data
    from chainrule2_torch.networks import build_network
    from chainrule2_torch.objectives import output_logits

    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None]
    num_classes = val[0].num_classes
    net = build_network("unet", 3, num_classes, weights=args.checkpoint, width=args.width).eval()
    batches = []
    with torch.no_grad():
        for s in val:
            batch = data.collate([s])
            batches.append((s, batch, output_logits(net(batch.inputs))))
    pixels = [int(np.prod(s.mask.shape)) for s in val]
    network = [(logits.argmax(1)[0].numpy(), s.mask) for s, _, logits in batches]
    result: dict = {
        "command": command,
        "val_images": len(batches),
        "pixels_median": statistics.median(pixels),
        "network_val_miou": 100 * data.evaluate(network, num_classes).miou,
    }

    def run(stage_a) -> dict:
        pairs, seconds, steps = [], 0.0, []
        for s, batch, logits in batches:
            proposal = stage_a.propose(logits, batch, class_axis=1)
            targets = proposal.targets[0].numpy()
            pairs.append((targets.argmax(0) if targets.ndim == 3 else targets, s.mask))
            seconds += proposal.report.solve_seconds
            steps.extend(len(t) - 1 for t in proposal.report.traces)
        return {
            "miou": 100 * data.evaluate(pairs, num_classes).miou,
            "seconds_per_image": seconds / len(batches),
            "steps_median": statistics.median(steps),
        }

    grid = cr.StageA(
        AlphaExpansion(max_sweeps=5), ScribblePotts(args.grid_potts_weight), CrossEntropy(), args.grid_beta
    )
    result["grid_alpha_expansion"] = {"beta": args.grid_beta, "potts_weight": args.grid_potts_weight, **run(grid)}
    print(json.dumps(result["grid_alpha_expansion"]), file=sys.stderr)
    result["dense_mean_field"] = []
    solver = DenseMeanField(max_sweeps=args.max_sweeps, temperature=args.temperature)
    for beta in args.betas:
        for weight in args.dense_weights:
            row = {"beta": beta, "weight": weight, **run(cr.StageA(solver, DenseCRFLoss(weight), CrossEntropy(), beta))}
            print(json.dumps(row), file=sys.stderr)
            result["dense_mean_field"].append(row)
    return result


def measure_batched(args: argparse.Namespace, command: str) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    import chainrule2 as cr
    from chainrule2.constants import PADDING
    from chainrule2.divergences import CrossEntropy
    from chainrule2.losses import DenseCRFLoss
    from chainrule2.solvers import DenseMeanField, solve_batch
    from chainrule2_torch import data
    from chainrule2_torch.networks import build_network
    from chainrule2_torch.objectives import output_logits

    torch.set_num_threads(1)
    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None][: args.images]
    num_classes = val[0].num_classes
    net = build_network("unet", 3, num_classes, weights=args.checkpoint, width=args.width).eval()
    items = []  # per image: host Batch of one, NCHW float32 logits
    with torch.no_grad():
        for s in val:
            b = data.collate([s], seeds_as="numpy")
            items.append((cr.Batch(None, b.seeds, b.images), output_logits(net(b.inputs)).numpy()))
    n = len(items)
    grid = (max(b.seeds.shape[1] for b, _ in items), max(b.seeds.shape[2] for b, _ in items))
    logits = np.zeros((n, num_classes) + grid, dtype=np.float32)  # the padding's logits are ignored
    seeds = np.full((n,) + grid, PADDING, dtype=np.int64)
    images = np.zeros((n,) + grid + (3,))
    for i, (b, z) in enumerate(items):
        h, w = b.seeds.shape[1:]
        logits[i, :, :h, :w], seeds[i, :h, :w], images[i, :h, :w] = z[0], b.seeds[0], b.images[0]
    solver = DenseMeanField(max_sweeps=args.max_sweeps, temperature=args.temperature)
    loss, beta = DenseCRFLoss(args.dense_weights[0]), args.betas[0]
    host, batched = (cr.StageA(solver, loss, CrossEntropy(), beta, batch_solver=b) for b in (solve_batch, None))
    padded = cr.Batch(None, seeds, images)
    torch_in = (torch.as_tensor(logits), cr.Batch(None, torch.as_tensor(seeds), torch.as_tensor(images)))

    def unpadded() -> list:
        return [host.propose(z, b, class_axis=1) for b, z in items]

    paths = {
        "host per item, padded": lambda: host.propose(logits, padded, class_axis=1),
        "batched numpy, padded": lambda: batched.propose(logits, padded, class_axis=1),
        "batched torch cpu, padded": lambda: batched.propose(*torch_in, class_axis=1),
        "host per item, unpadded": unpadded,
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}  # (user, system) seconds
    out: dict[str, object] = {name: run() for name, run in paths.items()}  # warm-up
    for _ in range(args.repeats):  # interleaved, so the shared machine's load hits every path
        for name, run in paths.items():
            before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            out[name] = run()
            times[name].append((time.perf_counter() - t0) / n)
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu[name].append(((after.ru_utime - before.ru_utime) / n, (after.ru_stime - before.ru_stime) / n))
    reference = np.asarray(out["host per item, padded"].targets)  # type: ignore[attr-defined]
    real = seeds != PADDING
    rows = []
    for name, ts in times.items():
        result = out[name]
        if isinstance(result, list):  # unpadded: one proposal per image, back on the padded grid
            q = np.zeros_like(reference)
            for i, p in enumerate(result):
                h, w = items[i][0].seeds.shape[1:]
                q[i, :, :h, :w] = p.targets[0]
            traces = [t for p in result for t in p.report.traces]
        else:
            q = np.asarray(result.targets.cpu() if hasattr(result.targets, "cpu") else result.targets)  # type: ignore[attr-defined]
            traces = list(result.report.traces)  # type: ignore[attr-defined]
        diff = np.abs(q - reference).max(axis=1)[real]
        rows.append(
            {
                "path": name,
                "seconds_per_image": {"median": statistics.median(ts), "min": min(ts), "max": max(ts)},
                # this process's CPU time: user (the arithmetic) and system (page faults of new memory)
                "user_seconds_per_image": statistics.median(u for u, _ in cpu[name]),
                "system_seconds_per_image": statistics.median(k for _, k in cpu[name]),
                "ratio_vs_host_padded": statistics.median(ts) / statistics.median(times["host per item, padded"]),
                "ratio_vs_host_unpadded": statistics.median(ts) / statistics.median(times["host per item, unpadded"]),
                "max_abs_diff_vs_host_padded": float(diff.max()),
                "labels_equal_to_host_padded": float(np.mean((q.argmax(1) == reference.argmax(1))[real])),
                "steps_median": statistics.median(len(t) - 1 for t in traces),
                "miou": 100
                * data.evaluate(
                    [(q[i].argmax(0)[: s.mask.shape[0], : s.mask.shape[1]], s.mask) for i, s in enumerate(val)],
                    num_classes,
                ).miou,
            }
        )
    return {
        "command": command,
        "images": n,
        "grid": list(grid),
        "pixels_median": statistics.median(int(np.prod(s.mask.shape)) for s in val),
        "beta": beta,
        "weight": args.dense_weights[0],
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "paths": rows,
    }


if __name__ == "__main__":
    main()
