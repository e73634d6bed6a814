"""Validation-split probe: quality of the stage-A labels as a function of the trust weight β.

Loads a network checkpoint (e.g. the PCE warm-up), computes its logits on every validation image
once, runs stage A (alpha-expansion on the grid Potts + β·CE trust region) from those logits and the
seeds for each β, and prints the mIoU of the stage-A labels next to the network's own mIoU. Uses
only the validation split. Stage A is :class:`chainrule2.StageA` on the logits: no model wrapper,
no fitter.

    python examples/stage_a_probe.py --checkpoint runs/results/horse_full/warmup.pt --dataset weizmann_horse \\
        --width 8 --betas 0.05 0.5 2 8 16 32

With ``--trust-weight auto`` it also runs the adaptive trust region (``StageA(trust_weight="auto",
max_changed=τ)``) for each ``--max-changed`` τ and reports its label mIoU and the median over the
images of the β it chose; ``--repeats R`` times stage A (solver seconds over all images, cold
start) with the best fixed β and with the auto rule at the first τ, interleaved, R times.
``--json FILE`` writes the result; ``--table FILE...`` prints the markdown table of several
results (docs/results.md, "Adaptive trust region") and exits:

    python examples/stage_a_probe.py --checkpoint runs/adaptive/horse96_warmup.pt --dataset weizmann_horse \\
        --size 96 --limit 100 --width 8 --trust-weight auto --max-changed 0.1 --json runs/adaptive/horse96.json
    python examples/stage_a_probe.py --table runs/adaptive/*.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

DEFAULT_BETAS = [0.05, 0.5, 2.0, 8.0, 16.0, 32.0]


def _beta_key(beta: float) -> str:
    return f"stage_a_val_miou_beta_{beta:g}"


def _tau(tau: float | str) -> str:
    """τ as it appears in the result's keys: ``0.1``, or ``seed-error`` for ``max_changed="seed_error"``."""
    return tau.replace("_", "-") if isinstance(tau, str) else f"{tau:g}"


def _parse_tau(text: str) -> float | str:
    return "seed_error" if text == "seed-error" else float(text)


def _tau_key(tau: float | str) -> str:
    return f"stage_a_val_miou_auto_tau_{_tau(tau)}"


def _max_changed(text: str) -> float | str:
    if text in ("seed_error", "seed-error"):
        return "seed_error"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1] or 'seed_error', got {text!r}") from None


def main(argv: list[str] | None = None) -> dict:
    from chainrule2_torch import data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a last.pt, warm-up checkpoint or model.pt of the network (required)")
    p.add_argument("--betas", type=float, nargs="+", default=DEFAULT_BETAS)
    p.add_argument("--trust-weight", choices=("auto",), default=None,
                   help="also run the adaptive trust region (StageA(trust_weight='auto'))")  # fmt: skip
    p.add_argument("--max-changed", type=_max_changed, nargs="+", default=None, metavar="TAU",
                   help="tau of the auto rule: the fraction of free pixels stage A may relabel from the network's "
                        "arg-max, or seed_error (per image, the network's error rate on its seeds; default: "
                        "chainrule2.trust_radius.DEFAULT_MAX_CHANGED)")  # fmt: skip
    p.add_argument("--warm-start", choices=("initial", "previous"), default="initial",
                   help="where each solve of the auto rule's search starts (chainrule2.BetaSearch.warm_start)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=0,
                   help="time stage A with the best fixed beta and with auto (the first tau), this many times each")  # fmt: skip
    p.add_argument("--network", choices=("unet", "deeplabv3plus"), default="unet")
    p.add_argument("--width", type=int, default=8, help="U-Net width (as trained)")
    p.add_argument("--potts-weight", type=float, default=100.0)
    p.add_argument("--json", default=None, help="also write the result to this file")
    p.add_argument("--table", nargs="+", default=None, metavar="JSON",
                   help="print the markdown table of these probe results and exit")  # fmt: skip
    data.add_data_arguments(p)
    args = p.parse_args(argv)
    if args.table:
        print(table([json.loads(Path(f).read_text()) for f in args.table]))
        return {}
    if args.checkpoint is None:
        p.error("--checkpoint is required (unless --table)")
    if args.max_changed is not None and args.trust_weight != "auto":
        p.error("--max-changed: only with --trust-weight auto")
    if args.repeats < 0:
        p.error(f"--repeats: expected an int >= 0, got {args.repeats}")
    result = probe(
        args, " ".join(["python", "examples/stage_a_probe.py"] + (argv if argv is not None else sys.argv[1:]))
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return result


def probe(args: argparse.Namespace, command: str) -> dict:
    import numpy as np
    import torch

    import chainrule2 as cr
    from chainrule2.divergences import CrossEntropy
    from chainrule2.losses import ScribblePotts
    from chainrule2.solvers import AlphaExpansion
    from chainrule2.trust_radius import DEFAULT_MAX_CHANGED, changed_fraction, excess_divergence, free_pixels
    from chainrule2_torch import data
    from chainrule2_torch.networks import build_network
    from chainrule2_torch.objectives import output_logits

    _, val, _ = data.load_splits(args)
    val = [s for s in val if s.mask is not None]
    if not val:
        raise SystemExit(f"--dataset {args.dataset}: no validation image with a mask")
    num_classes = val[0].num_classes
    kwargs = {"width": args.width} if args.network == "unet" else {}
    net = build_network(args.network, 3, num_classes, weights=args.checkpoint, **kwargs).eval()
    batches = []
    with torch.no_grad():
        for s in val:
            batch = data.collate([s])
            batches.append((s, batch, output_logits(net(batch.inputs))))
    pairs = [(logits.argmax(1)[0].numpy(), s.mask) for s, _, logits in batches]
    result: dict = {
        "dataset": args.dataset,
        "size": args.size,
        "val_images": len(batches),
        "checkpoint": args.checkpoint,
        "command": command,
        "network_val_miou": 100 * data.evaluate(pairs, num_classes).miou,
        "warm_start": args.warm_start,
    }
    search = cr.BetaSearch(warm_start=args.warm_start)
    loss = ScribblePotts(potts_weight=args.potts_weight)
    solver = AlphaExpansion(max_sweeps=5)

    # The arg-max over the labels stage A may use (the seeds' classes), per image: what "changed" counts from.
    references = []
    for _, batch, logits in batches:
        seeds = np.asarray(batch.seeds)
        costs = CrossEntropy().label_costs(np.moveaxis(logits.numpy().astype(np.float64), 1, -1))
        grid = loss.energy(costs[0], cr.Batch(None, seeds, np.asarray(batch.images)), 0)
        references.append((grid.unary_argmin(), free_pixels(seeds[0]), costs[0]))

    def run(stage_a):
        """Labels, mask, report, the fraction of free pixels changed from the arg-max and d_A's excess, per image."""
        out = []
        for (s, batch, logits), (reference, free, costs) in zip(batches, references, strict=True):
            proposal = stage_a.propose(logits, batch, class_axis=1)
            labels = proposal.targets[0].numpy()
            changed = changed_fraction(labels, reference, free)
            out.append((labels, s.mask, proposal.report, changed, excess_divergence(labels, costs, reference, free)))
        return out

    def summarise(runs) -> tuple[float, float, float]:
        miou = 100 * data.evaluate([(labels, mask) for labels, mask, *_ in runs], num_classes).miou
        return miou, statistics.median(r[3] for r in runs), statistics.median(r[4] for r in runs)

    for beta in args.betas:
        runs = run(cr.StageA(solver, loss, CrossEntropy(), trust_weight=beta))
        miou, changed, excess = summarise(runs)
        result[_beta_key(beta)] = miou
        result[f"changed_median_beta_{beta:g}"] = changed
        result[f"excess_divergence_median_beta_{beta:g}"] = excess
    taus = []
    if args.trust_weight == "auto":
        taus = args.max_changed or [DEFAULT_MAX_CHANGED]
        for tau in taus:
            runs = run(
                cr.StageA(solver, loss, CrossEntropy(), trust_weight="auto", max_changed=tau, beta_search=search)
            )
            miou, changed, excess = summarise(runs)
            result[_tau_key(tau)] = miou
            result[f"changed_median_auto_tau_{_tau(tau)}"] = changed
            result[f"excess_divergence_median_auto_tau_{_tau(tau)}"] = excess
            betas = [b for r in runs for b in r[2].betas]
            result[f"beta_median_auto_tau_{_tau(tau)}"] = statistics.median(betas)
            result[f"beta_range_auto_tau_{_tau(tau)}"] = [min(betas), max(betas)]
    if args.repeats and taus:
        best = max(args.betas, key=lambda b: result[_beta_key(b)])
        fixed = cr.StageA(solver, loss, CrossEntropy(), trust_weight=best)
        auto = cr.StageA(solver, loss, CrossEntropy(), trust_weight="auto", max_changed=taus[0], beta_search=search)
        seconds: dict[str, list[float]] = {"fixed": [], "auto": []}
        for _ in range(args.repeats):
            for name, stage_a in (("fixed", fixed), ("auto", auto)):
                start = time.perf_counter()
                total = sum(stage_a.propose(logits, batch, class_axis=1).report.solve_seconds
                            for _, batch, logits in batches)  # fmt: skip
                seconds[name].append(total)
                seconds[name + "_wall"] = seconds.get(name + "_wall", []) + [time.perf_counter() - start]
        result["timing"] = {
            "fixed_beta": best,
            "max_changed": _tau(taus[0]),
            "repeats": args.repeats,
            "fixed_solve_seconds": seconds["fixed"],
            "auto_solve_seconds": seconds["auto"],
            "ratio_of_medians": statistics.median(seconds["auto"]) / statistics.median(seconds["fixed"]),
        }
    return result


def _name(r: dict) -> str:
    """A result's row name: data set and size (and the search's warm start when not the default)."""
    warm = r.get("warm_start", "initial")
    return f"{r['dataset']} {r['size']} px" + ("" if warm == "initial" else f", warm start {warm}")


def table(results: list[dict]) -> str:
    """Markdown tables of probe results, one row per result.

    1. best fixed β vs one fixed β for all rows (the β of the common grid with the best mean) vs the
       auto rule with its main setting (``seed_error`` when present, else the first τ);
    2. the auto rule with every τ probed (mIoU and its difference to the best fixed β);
    3. every fixed β (mIoU, the median fraction of free pixels it relabels, the median d_A excess);
    4. the timing, where measured.
    """
    rows = sorted(results, key=lambda r: (r["dataset"], r["size"], r.get("warm_start", "initial")))
    taus = sorted(
        {_parse_tau(k.rsplit("_", 1)[1]) for r in rows for k in r if k.startswith("stage_a_val_miou_auto_tau_")},
        key=lambda t: (isinstance(t, str), t),
    )
    main = "seed_error" if "seed_error" in taus else (taus[0] if taus else None)
    grid = [sorted(float(k.rsplit("_", 1)[1]) for k in r if k.startswith("stage_a_val_miou_beta_")) for r in rows]
    common = sorted(set.intersection(*(set(g) for g in grid))) if grid else []
    one = max(common, key=lambda b: statistics.mean(r[_beta_key(b)] for r in rows)) if common else None
    best = [max(g, key=lambda b, r=r: r[_beta_key(b)]) for r, g in zip(rows, grid, strict=True)]

    def delta(r: dict, key: str, b: float) -> str:
        return f"{r[key]:.1f} ({r[key] - r[_beta_key(b)]:+.1f})"

    head = ["data set", "val images", "network", "best fixed β", "its mIoU"]
    if one is not None:
        head.append(f"one fixed β = {one:g} (Δ)")
    if main is not None:
        head += [f"auto, max_changed = {_tau(main)} (Δ)", "median β chosen (range)", "median changed"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, b in zip(rows, best, strict=True):
        row = [_name(r), str(r["val_images"]), f"{r['network_val_miou']:.1f}", f"{b:g}", f"{r[_beta_key(b)]:.1f}"]
        if one is not None:
            row.append(delta(r, _beta_key(one), b))
        if main is not None:
            t = _tau(main)
            lo, hi = r[f"beta_range_auto_tau_{t}"]
            row += [delta(r, _tau_key(main), b), f"{r[f'beta_median_auto_tau_{t}']:.3g} ({lo:.3g}–{hi:.3g})",
                    f"{100 * r[f'changed_median_auto_tau_{t}']:.0f} %"]  # fmt: skip
        out.append("| " + " | ".join(row) + " |")
    if taus:
        out += ["", "Auto rule with each `max_changed` (stage-A val mIoU, Δ to the best fixed β):", ""]
        out.append("| data set | " + " | ".join(f"τ = {_tau(t)}" for t in taus) + " |")
        out.append("|" + "---|" * (len(taus) + 1))
        for r, b in zip(rows, best, strict=True):
            cells = [delta(r, _tau_key(t), b) if _tau_key(t) in r else "–" for t in taus]
            out.append(f"| {_name(r)} | " + " | ".join(cells) + " |")
    all_betas = sorted(set().union(*(set(g) for g in grid))) if grid else []
    out += [
        "",
        "Every fixed β: stage-A val mIoU (median fraction of free pixels relabelled; median d_A excess, nats):",
        "",
    ]
    out.append("| data set | " + " | ".join(f"β = {b:g}" for b in all_betas) + " |")
    out.append("|" + "---|" * (len(all_betas) + 1))
    for r in rows:
        cells = []
        for b in all_betas:
            if _beta_key(b) not in r:
                cells.append("–")
                continue
            changed = r.get(f"changed_median_beta_{b:g}", math.nan)
            excess = r.get(f"excess_divergence_median_beta_{b:g}", math.nan)
            cells.append(f"{r[_beta_key(b)]:.1f} ({100 * changed:.0f} %; {excess:.3f})")
        out.append(f"| {_name(r)} | " + " | ".join(cells) + " |")
    timing = [r for r in rows if "timing" in r]
    if timing:
        out += ["", "| data set | fixed β | auto τ | runs | fixed s (median) | auto s (median) | auto / fixed |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in timing:
            t = r["timing"]
            fixed, auto = statistics.median(t["fixed_solve_seconds"]), statistics.median(t["auto_solve_seconds"])
            out.append(
                f"| {_name(r)} | {t['fixed_beta']:g} | {t['max_changed']} | {t['repeats']} | "
                f"{fixed:.2f} | {auto:.2f} | {t['ratio_of_medians']:.2f} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    main()
