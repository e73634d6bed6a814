"""A/B of the two scheduling choices of :class:`chainrule2.solvers.ProcessBatchSolver`: largest-first
submission and widened pipes. Prints JSON.

The energies are those of ``benchmarks/training.py``'s throughput test (48 Weizmann horse
training images at 96 px if present, else demo images; β = 16), from an untrained network of seed 0
unless ``--checkpoint`` names a warm-up. Three pools of 2 worker processes solve them, interleaved,
``--repeats`` times, and a serial solve alongside gives the speed-up of each:

* ``in_order``: items submitted in their order, Linux's default 64 kB pipes;
* ``largest_first``: items submitted costliest first (:func:`~chainrule2.solvers.parallel.largest_first`);
* ``largest_first_wide``: the same, with the pipes widened (:func:`~chainrule2.solvers.parallel.widen_pipes`),
  i.e. what ``ProcessBatchSolver`` does.

    python benchmarks/pool_ab.py --repeats 25
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

from chainrule2.solvers import solve_batch  # noqa: E402
from chainrule2.solvers.parallel import _solve_one, largest_first, widen_pipes  # noqa: E402
from chainrule2_torch.data import collate, data_root, make_demo_dataset, read_weizmann_horse  # noqa: E402
from chainrule2_torch.networks import UNet  # noqa: E402
from chainrule2_torch.objectives import output_logits  # noqa: E402
from chainrule2_torch.training import TrainConfig, make_stage_a  # noqa: E402


def energies_of(args: argparse.Namespace) -> tuple[object, list]:
    if (data_root() / "weizmann_horse").is_dir():
        samples = read_weizmann_horse(split="train", size=args.size, limit=args.images, seed=0)
    else:
        samples = make_demo_dataset(args.images, args.size, seed=0)
    torch.manual_seed(0)
    net = UNet(3, samples[0].num_classes, width=8)
    if args.checkpoint:
        net.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["model"])
    stage_a = make_stage_a(TrainConfig(trust_weight=16.0))
    energies = []
    with torch.no_grad():
        for sample in samples:
            batch = collate([sample])
            logits = output_logits(net.eval()(batch.inputs)).permute(0, 2, 3, 1).numpy().astype(np.float64)
            host = batch._replace(seeds=batch.seeds.numpy())
            energies += stage_a.solver.energies(stage_a.loss, logits, host, stage_a.trust_divergence, 16.0)
    return stage_a.solver, energies


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--checkpoint", default=None, help="a warm-up checkpoint of a width-8 UNet (default: untrained)")
    p.add_argument("--repeats", type=int, default=25)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    solver, energies = energies_of(args)
    items = [(solver, e, None) for e in energies]
    orders = {"in_order": list(range(len(items))), "largest_first": largest_first(energies)}
    pools = {"in_order": ProcessPoolExecutor(2), "largest_first": ProcessPoolExecutor(2),
             "largest_first_wide": widen_pipes(ProcessPoolExecutor(2))}  # fmt: skip
    seconds: dict[str, list[float]] = {"serial": [], **{name: [] for name in pools}}
    try:
        for pool in pools.values():  # start the workers before timing
            list(pool.map(_solve_one, items[:4]))
        for r in range(args.repeats):
            t = time.perf_counter()
            solve_batch(solver, energies)
            seconds["serial"].append(time.perf_counter() - t)
            names = list(pools)
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
                order = orders.get(name, orders["largest_first"])
                t = time.perf_counter()
                futures = {i: pools[name].submit(_solve_one, items[i]) for i in order}
                for i in range(len(items)):
                    futures[i].result()
                seconds[name].append(time.perf_counter() - t)
    finally:
        for pool in pools.values():
            pool.shutdown()
    serial = statistics.median(seconds["serial"])
    result = {
        "command": " ".join(["python", "benchmarks/pool_ab.py"] + (argv or sys.argv[1:])),
        "images": len(energies), "repeats": args.repeats,
        "speedup_2proc": {name: serial / statistics.median(seconds[name]) for name in pools},
        "seconds_median": {name: statistics.median(v) for name, v in seconds.items()},
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
