"""Validation-split probe: quality of the stage-A labels as a function of the trust weight β.

Loads a network checkpoint (e.g. the PCE warm-up), runs stage A (alpha-expansion on the grid
Potts + β·CE trust region) on every validation image from its seeds, and prints the mIoU of the
stage-A labels next to the network's own mIoU. Uses only the validation split.

    python examples/stage_a_probe.py --checkpoint runs/results/horse_full/warmup.pt --betas 0.05 0.5 2 8 16 32
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from chainrule2.base import Batch, Composite
from chainrule2.divergences import CrossEntropy
from chainrule2.losses import ScribblePotts
from chainrule2.solvers import AlphaExpansion
from chainrule2.trust_region import TrustRegion
from chainrule2_torch import data
from chainrule2_torch.data import confusion_matrix
from chainrule2_torch.model import TorchModel
from chainrule2_torch.networks import UNet
from chainrule2_torch.training import miou, predict_labels, to_inputs


class _Fixed:
    """A Model whose prediction is precomputed (stage A is then re-solved for many β)."""

    def __init__(self, logits: np.ndarray):
        self.logits = logits

    def predict(self, inputs: object) -> np.ndarray:
        return self.logits


class _NoFit:
    def fit(self, *args: object) -> None:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.5, 2.0, 8.0, 16.0, 32.0])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--length", type=float, default=1.0)
    p.add_argument("--potts-weight", type=float, default=100.0)
    args = p.parse_args()
    val = data.read_weizmann_horse(split="val", size=args.size, length=args.length, seed=0)
    net = UNet(3, 2, width=args.width)
    net.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=False)["model"])
    model = TorchModel(net)
    preds = predict_labels(model, val)
    result = {"network_val_miou": miou(sum(confusion_matrix(preds[s.id], s.mask, 2) for s in val))[0]}
    logits = {s.id: model.predict(to_inputs([s.image])) for s in val}
    loss = ScribblePotts(potts_weight=args.potts_weight)
    for beta in args.betas:
        tr = TrustRegion(AlphaExpansion(max_sweeps=5), _NoFit(), CrossEntropy(), trust_weight=beta)
        conf = 0
        for s in val:
            batch = Batch(None, s.seeds[None].astype(np.int64), s.image[None].astype(np.float64), (s.id,))
            conf = conf + confusion_matrix(
                tr.propose(Composite(loss, _Fixed(logits[s.id])), batch).targets[0], s.mask, 2
            )
        result[f"stage_a_val_miou_beta_{beta:g}"] = miou(conf)[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
