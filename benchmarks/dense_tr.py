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
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    result = measure(
        args, " ".join(["python", "benchmarks/dense_tr.py"] + (argv if argv is not None else sys.argv[1:]))
    )
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


if __name__ == "__main__":
    main()
