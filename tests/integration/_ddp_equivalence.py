"""Launched by test_torchrun.py (alone, or under torchrun): a BN-free network trained with grid-tr, so
1 and 2 processes must agree up to the order of floating-point reductions. Writes
``<out>/result_rank<k>.json`` per rank."""

import json
import os
import sys
from pathlib import Path

import torch

from chainrule2_torch.data import make_demo_dataset
from chainrule2_torch.training import TrainConfig, train


def main(out: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    ).double()  # float64 and no batch norm: per-rank batches change nothing but the reduction order
    every = make_demo_dataset(12, 24, seed=0)
    config = TrainConfig(method="grid-tr", epochs=2, warmup_epochs=1, stage_a_every=1, batch_size=4,
                         crop_size=(24, 24), trust_weight=16.0, normalization="item", seed=1)  # fmt: skip
    final = train(config, _Float64(net), every[:8], every[8:], out_dir=out, progress=False, panels=0)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    rank = int(os.environ.get("RANK", "0"))  # a file per rank: the ranks' stdout lines can interleave
    result = {"val": final["val"]["miou"], "weights": [float(p.detach().sum()) for p in net.parameters()]}
    (Path(out) / f"result_rank{rank}.json").write_text(json.dumps(result))


class _Float64(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.double())


if __name__ == "__main__":
    main(sys.argv[1])
