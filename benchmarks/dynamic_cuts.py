"""What re-using the max-flow across the β search of ``trust_weight="auto"`` would save (a measurement,
not a code path of :class:`chainrule2.StageA`).

Between two queries of one item's β search only β changes, so with two labels only the t-links of
the exact cut change (``t = u(second) − u(first)`` with ``u = loss unary + β·d_A``); the pairwise
edges stay. Boykov–Kolmogorov max-flow can then keep its flow and search trees and only push the
difference (Kohli & Torr, "Efficiently solving dynamic Markov random fields using graph cuts",
ICCV 2005; PyMaxflow's ``add_grid_tedges`` on a solved graph, ``mark_grid_nodes``,
``maxflow(reuse_trees=True)``). This script runs the same search (:class:`~chainrule2.BetaSearch`,
``max_changed="seed_error"``) per validation image three ways and times them, single-threaded:

* ``fixed``: one stage-A problem at ``--fixed-beta``, built and cut (the baseline);
* ``fresh``: every query builds its problem and cuts it from scratch (what StageA does);
* ``dynamic``: every query builds its problem (for the unary) but the cut re-uses one graph,
  built once, by updating its t-links to the query's β.

Each is timed cold (no hint) and with each image's cold β as its hint (``hint``: a network that did
not move between stage As, the best case of training). The chosen β and the energy of the chosen
labels must agree between ``fresh`` and ``dynamic`` (both are exact minimisers); the script checks
it. Prints JSON.

    python benchmarks/dynamic_cuts.py --checkpoint runs/adaptive/horse192_warmup.pt \\
        --dataset weizmann_horse --size 192 --limit 100 --images 12 --fixed-beta 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from auto_trust_weight import logits_of  # noqa: E402

import chainrule2 as cr  # noqa: E402
from chainrule2.divergences import CrossEntropy  # noqa: E402
from chainrule2.losses import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion  # noqa: E402
from chainrule2.solvers._expansion_graph import binary_cut, binary_grid, binary_tlinks, clamp_capacity  # noqa: E402
from chainrule2.solvers._maxflow import import_maxflow  # noqa: E402
from chainrule2.trust_radius import BetaSearch, changed_fraction, free_pixels, seed_error_bound  # noqa: E402


class ReusedCut:
    """The exact two-label cut of one item at any β, on one graph whose t-links follow β."""

    def __init__(self, energy: object, clamp: float) -> None:
        maxflow = import_maxflow()
        h, w = energy.shape
        self.graph = maxflow.GraphFloat(h * w, len(energy.offsets) * h * w)
        self.ids = binary_grid(self.graph, energy)  # the pairwise edges do not depend on β
        self.first, self.second = energy.labels
        self.clamp = clamp  # the t-link of a clamped seed, large enough at every β of the search
        self.t: np.ndarray | None = None

    def solve(self, energy: object) -> np.ndarray:
        t = binary_tlinks(energy, self.first, self.second, self.clamp)
        change = t if self.t is None else t - self.t
        self.graph.add_grid_tedges(self.ids, np.maximum(change, 0.0), np.maximum(-change, 0.0))
        if self.t is None:
            self.graph.maxflow()
        else:
            self.graph.mark_grid_nodes(self.ids)
            self.graph.maxflow(reuse_trees=True)
        self.t = t
        return np.where(self.graph.get_grid_segments(self.ids), self.second, self.first).astype(np.int64)


def main(argv: list[str] | None = None) -> dict:
    from chainrule2_torch import data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fixed-beta", type=float, required=True)
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--potts-weight", type=float, default=100.0)
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None][: args.images]
    loss, divergence, search = ScribblePotts(potts_weight=args.potts_weight), CrossEntropy(), BetaSearch()
    solver = AlphaExpansion(max_sweeps=5)
    seconds = {name: 0.0 for name in ("fixed", "fresh", "dynamic", "fresh hint", "dynamic hint")}
    queries = {"cold": 0, "hint": 0}
    for batch, logits in logits_of(args.checkpoint, val, args.width):
        host = cr.StageA._host_batch(batch)
        logits = logits.permute(0, 2, 3, 1).numpy().astype(np.float64)

        def build(beta: float, logits: np.ndarray = logits, host: cr.Batch = host) -> object:
            return solver.energies(loss, logits, host, divergence, beta)[0]

        if len(build(1.0).labels) != 2:
            raise SystemExit("this measurement is for two-label problems (the exact cut)")
        t = time.perf_counter()
        fixed = build(args.fixed_beta)
        binary_cut(fixed, *fixed.labels)
        seconds["fixed"] += time.perf_counter() - t
        reference, free = fixed.unary_argmin(), free_pixels(host.seeds[0])
        bound = seed_error_bound(np.argmax(logits[0], axis=-1), host.seeds[0])
        top = build(search.high)  # the largest unary of the search: its clamp holds at every β
        first, second = top.labels
        clamp = clamp_capacity(top, top.cost_unary[:, :, second] - top.cost_unary[:, :, first])
        choices = {}
        for hint in (None, "cold"):
            start = None if hint is None else choices["fresh"].beta
            for way in ("fresh", "dynamic"):
                t = time.perf_counter()
                state, cut = search.start(bound, start), None
                while (beta := state.next_beta) is not None:
                    energy = build(beta)
                    if way == "fresh":
                        labels = binary_cut(energy, *energy.labels)
                    else:
                        cut = cut or ReusedCut(energy, clamp)
                        labels = cut.solve(energy)
                    state.tell(beta, changed_fraction(labels, reference, free), (energy, labels))
                seconds[way + ("" if hint is None else " hint")] += time.perf_counter() - t
                choice = state.result()
                if hint is None:
                    choices[way] = choice
                if way == "dynamic":  # the same search and an exact minimiser, whichever cut
                    energy, labels = choice.state
                    if hint is None and choice.beta != choices["fresh"].beta:
                        raise AssertionError(f"dynamic cut chose β {choice.beta}, fresh {choices['fresh'].beta}")
                    exact = binary_cut(energy, *energy.labels)
                    if not np.isclose(energy.value(labels), energy.value(exact), rtol=1e-9, atol=1e-9):
                        raise AssertionError("the re-used cut is not a minimiser")
                else:
                    queries["cold" if hint is None else "hint"] += choice.solves
    result = {
        "command": " ".join(["python", "benchmarks/dynamic_cuts.py"] + (argv or sys.argv[1:])),
        "images": len(val), "fixed_beta": args.fixed_beta, "seconds": seconds,
        "queries_per_image": {k: v / len(val) for k, v in queries.items()},
        "over_fixed": {k: v / seconds["fixed"] for k, v in seconds.items() if k != "fixed"},
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
