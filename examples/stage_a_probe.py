"""Validation-split probe: quality of the stage-A labels as a function of the trust weight β.

Loads a network checkpoint (e.g. the PCE warm-up), computes its logits on every validation image
once, runs stage A (alpha-expansion on the grid Potts + β·CE trust region) from those logits and the
seeds for each β, and prints the mIoU of the stage-A labels next to the network's own mIoU. Uses
only the validation split. Stage A is :class:`chainrule2.StageA` on the logits: no model wrapper,
no fitter.

    python examples/stage_a_probe.py --checkpoint runs/results/horse_full/warmup.pt --dataset weizmann_horse \\
        --width 8 --betas 0.05 0.5 2 8 16 32
"""

from __future__ import annotations

import argparse
import json

import torch

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy
from chainrule2.losses import ScribblePotts
from chainrule2.solvers import AlphaExpansion
from chainrule2_torch import data
from chainrule2_torch.networks import build_network
from chainrule2_torch.objectives import output_logits


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a last.pt, warm-up checkpoint or model.pt of the network")
    p.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.5, 2.0, 8.0, 16.0, 32.0])
    p.add_argument("--network", choices=("unet", "deeplabv3plus"), default="unet")
    p.add_argument("--width", type=int, default=8, help="U-Net width (as trained)")
    p.add_argument("--potts-weight", type=float, default=100.0)
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None]
    if not val:
        raise SystemExit(f"--dataset {args.dataset}: no validation image with a mask")
    num_classes = val[0].num_classes
    net = build_network(args.network, 3, num_classes, **({"width": args.width} if args.network == "unet" else {}))
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    net.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    net.eval()
    batches = []
    with torch.no_grad():
        for s in val:
            batch = data.collate([s])
            batches.append((s, batch, output_logits(net(batch.inputs))))
    pairs = [(logits.argmax(1)[0].numpy(), s.mask) for s, _, logits in batches]
    result = {"network_val_miou": 100 * data.evaluate(pairs, num_classes).miou}
    loss = ScribblePotts(potts_weight=args.potts_weight)
    for beta in args.betas:
        stage_a = cr.StageA(AlphaExpansion(max_sweeps=5), loss, CrossEntropy(), trust_weight=beta)
        pairs = [
            (stage_a.propose(logits, batch, class_axis=1).targets[0].numpy(), s.mask) for s, batch, logits in batches
        ]
        result[f"stage_a_val_miou_beta_{beta:g}"] = 100 * data.evaluate(pairs, num_classes).miou
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
