"""The cost of ``StageA(trust_weight="auto")`` against a fixed-β stage A, cold and with β hints.

The training case: stage A runs every few epochs on the same images, so each item's β of the
previous stage A is a hint for the next search (``StageA.propose(..., beta_hint=...)``). Simulated
with two PCE warm-up checkpoints a few epochs apart: the auto rule on the earlier network's logits
gives the previous labels and β per validation image; then, on the later network's logits, a
fixed-β stage A and the auto rule are timed (solver seconds, ``StageAReport.solve_seconds``, summed
over the images; interleaved; the median of ``--repeats`` runs) in four settings:

* ``cold``: no warm start, no hint (the first stage A of a run);
* ``hint``: no warm start, each image's previous β as its hint;
* ``warm``: both started from the previous labels (``initial``, as training does), no hint;
* ``warm+hint``: the training case: previous labels and previous β.

Each auto setting is timed with each ``--tolerance`` of the search (``BetaSearch(tolerance=...)``);
the label mIoU against the validation masks, the number of solves per image and the agreement of
the chosen β with the cold search are reported too. Prints JSON.

    # the earlier network: the warm-up of docs/results.md ("Adaptive trust region") with 7 epochs instead of 8
    python examples/segmentation_scribbles.py --dataset weizmann_horse --size 96 --width 8 --warmup-epochs 7 \\
        --limit 100 --method pce --epochs 0 --threads 1 --no-progress --out /tmp/horse96_w7 \\
        --warmup-checkpoint /tmp/horse96_warmup7.pt
    python benchmarks/auto_trust_weight.py --previous /tmp/horse96_warmup7.pt --checkpoint runs/adaptive/horse96_warmup.pt \\
        --dataset weizmann_horse --size 96 --limit 100 --fixed-beta 16 --repeats 3 --tolerance 0 0.2

``--previous`` equal to ``--checkpoint`` gives hints that are the answer (a network that did not move).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

import chainrule2 as cr  # noqa: E402
from chainrule2.divergences import CrossEntropy  # noqa: E402
from chainrule2.losses import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion, solve_batch  # noqa: E402


class CountingSolver:
    """The serial batch solver, counting the solves (one per energy)."""

    def __init__(self) -> None:
        self.solves = 0

    def __call__(self, solver, energies, initials, errors="raise"):  # noqa: ANN001, ANN204
        self.solves += len(energies)
        return solve_batch(solver, energies, initials, errors=errors)


def logits_of(checkpoint: str, samples: list, width: int) -> list:
    import torch

    from chainrule2_torch import data
    from chainrule2_torch.networks import build_network
    from chainrule2_torch.objectives import output_logits

    net = build_network("unet", 3, samples[0].num_classes, weights=checkpoint, width=width).eval()
    out = []
    with torch.no_grad():
        for s in samples:
            batch = data.collate([s])
            out.append((batch, output_logits(net(batch.inputs))))
    return out


def main(argv: list[str] | None = None) -> dict:
    from chainrule2_torch import data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the network whose stage A is timed (the later one)")
    p.add_argument("--previous", required=True, help="the network of the previous stage A (a few epochs earlier)")
    p.add_argument("--fixed-beta", type=float, required=True, help="the fixed β to compare with")
    p.add_argument("--tolerance", type=float, nargs="+", default=[0.0, 0.1])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settings", nargs="+", default=["cold", "hint", "warm", "warm+hint"],
                   choices=["cold", "hint", "warm", "warm+hint"], help="which settings to time (cold is always run)")  # fmt: skip
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--potts-weight", type=float, default=100.0)
    p.add_argument("--images", type=int, default=None, help="use only the first N validation images")
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None][: args.images]
    now, before = logits_of(args.checkpoint, val, args.width), logits_of(args.previous, val, args.width)
    loss, solver, divergence = (
        ScribblePotts(potts_weight=args.potts_weight),
        AlphaExpansion(max_sweeps=5),
        CrossEntropy(),
    )

    counter = CountingSolver()

    def auto(tolerance: float) -> cr.StageA:
        search = cr.BetaSearch(tolerance=tolerance)
        return cr.StageA(solver, loss, divergence, "auto", batch_solver=counter, beta_search=search)

    previous = [auto(0.0).propose(logits, batch, class_axis=1) for batch, logits in before]
    prev_labels = [[p.targets[0].numpy()] for p in previous]
    prev_betas = [list(p.report.betas) for p in previous]

    def run(stage_a: cr.StageA, warm: bool, hint: bool) -> tuple[float, list, list]:
        seconds, labels, betas = 0.0, [], []
        for k, (batch, logits) in enumerate(now):
            kwargs = {"beta_hint": prev_betas[k]} if hint else {}
            proposal = stage_a.propose(logits, batch, prev_labels[k] if warm else None, class_axis=1, **kwargs)
            seconds += proposal.report.solve_seconds
            labels.append(proposal.targets[0].numpy())
            betas += list(proposal.report.betas)
        return seconds, labels, betas

    settings = {"cold": (False, False), "hint": (False, True), "warm": (True, False), "warm+hint": (True, True)}
    cases: dict[str, tuple[cr.StageA, bool, bool]] = {}
    wanted = {"cold", *args.settings}
    for name, (warm, hint) in settings.items():
        if not hint and (name in wanted or f"{name}+hint" in wanted or (name == "cold" and "hint" in wanted)):
            cases[f"fixed {name}"] = (cr.StageA(solver, loss, divergence, args.fixed_beta), warm, False)
        if name in wanted:
            for tolerance in args.tolerance:
                cases[f"auto {name} tol {tolerance:g}"] = (auto(tolerance), warm, hint)
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    solves: dict[str, int] = {}
    outputs: dict[str, tuple[list, list]] = {}
    start = time.perf_counter()
    for _ in range(args.repeats):
        for name, (stage_a, warm, hint) in cases.items():
            counter.solves = 0
            s, labels, betas = run(stage_a, warm, hint)
            solves[name] = counter.solves
            seconds[name].append(s)
            outputs[name] = (labels, betas)
    num_classes = val[0].num_classes

    def miou(labels: list) -> float:
        return 100 * data.evaluate([(y, s.mask) for y, s in zip(labels, val, strict=True)], num_classes).miou

    cold_betas = outputs[f"auto cold tol {args.tolerance[0]:g}"][1]
    result: dict = {
        "command": " ".join(["python", "benchmarks/auto_trust_weight.py"] + (argv or sys.argv[1:])),
        "dataset": args.dataset, "size": args.size, "images": len(val), "fixed_beta": args.fixed_beta,
        "repeats": args.repeats, "seconds": round(time.perf_counter() - start, 1),
        "previous_auto_miou": miou([p.targets[0].numpy() for p in previous]),
        "hint_vs_final_beta_log2_abs_median": None, "cases": {},
    }  # fmt: skip
    hints = [b for bs in prev_betas for b in bs]
    result["hint_vs_final_beta_log2_abs_median"] = float(
        np.median(np.abs(np.log2(np.asarray(hints) / np.asarray(cold_betas))))
    )
    for name, times in seconds.items():
        labels, betas = outputs[name]
        warm = name.split()[1]
        baseline = statistics.median(seconds[f"fixed {warm.replace('+hint', '').replace('hint', 'cold')}"])
        entry = {"solve_seconds_median": statistics.median(times), "solve_seconds": times, "miou": miou(labels)}
        entry["ratio_to_fixed"] = entry["solve_seconds_median"] / baseline
        if name.startswith("auto"):
            entry["beta_equal_to_cold_search"] = float(np.mean(np.asarray(betas) == np.asarray(cold_betas)))
            entry["beta_median"] = float(np.median(betas))
            entry["solves_per_image"] = solves[name] / len(val)
        result["cases"][name] = entry
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
