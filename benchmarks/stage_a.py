"""Stage A (Potts grid CRF, alpha-expansion): chainrule2 on PyMaxflow against GCO (gco-wrapper).

GCO is used for this benchmark only (``pip install gco-wrapper``; research-only licence, never a
dependency). It works in integers, so its inputs are scaled (the largest term to ``--gco-scale``
units: large unaries abort GCO) and every labelling it returns is re-evaluated with chainrule2's
exact float64 energy. Timings of both solvers are interleaved in one process (shared, noisy
CPU); each case reports the median, min and max of ``--repeats`` runs.

    python benchmarks/stage_a.py --json                 # the default case set
    python benchmarks/stage_a.py --json --images 3 --repeats 5
    python benchmarks/stage_a.py --table result.json    # the markdown table of a saved result
    python benchmarks/stage_a.py --solvers --labels 5 21 --repeats 1   # AlphaExpansion vs ICM vs MeanField
    python benchmarks/stage_a.py --moves     # every move of one solve of a 513² smooth 5-label field
    python benchmarks/stage_a.py --device-path --repeats 5   # StageA seconds per image: MeanField batched
                                             # (numpy, torch CPU, CUDA if present) vs per item vs AlphaExpansion
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainrule2.energies.grid import GridPotts, contrast_weights, pair_slices  # noqa: E402
from chainrule2.solvers._expansion_graph import expansion_graph  # noqa: E402
from chainrule2.solvers._maxflow import import_maxflow  # noqa: E402
from chainrule2.solvers.alpha_expansion import AlphaExpansion, ExpansionMove  # noqa: E402
from chainrule2.solvers.base import run  # noqa: E402

logger = logging.getLogger("stage_a")


# --- data --------------------------------------------------------------------------------------
def load_images(data: Path, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from PIL import Image

    root = data / "grabcut_scribbles"
    names = [line.split(",")[0] for line in (root / "manifest.csv").read_text().splitlines()[1:] if line]
    out = []
    for name in sorted(names)[:count]:
        image = np.asarray(Image.open(root / "images" / f"{name}.jpg").convert("RGB"))
        scribble = np.asarray(Image.open(root / "scribbles-set-1" / f"{name}-anno.png"))
        out.append((name, image, scribble))
    return out


def resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    mode = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((size, size), mode))


def colour_unary(image: np.ndarray, scribble: np.ndarray, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """−log p(label | colour) of a simple colour model.

    2 labels: one Gaussian per scribble class (foreground 1, background 2). More labels: k-means
    of the colours (a few Lloyd steps from random pixels), soft assignment with a temperature.
    """
    x = image.reshape(-1, 3).astype(np.float64) / 255.0
    if num_labels == 2 and (scribble == 1).any() and (scribble == 2).any():
        centres = np.stack([x[(scribble == 2).ravel()].mean(0), x[(scribble == 1).ravel()].mean(0)])
    else:
        centres = x[rng.choice(len(x), num_labels, replace=False)]
        for _ in range(5):
            assign = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            for k in range(num_labels):
                if (assign == k).any():
                    centres[k] = x[assign == k].mean(0)
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1) / 0.02
    logp = -d2 - np.log(np.exp(-(d2 - d2.min(1, keepdims=True))).sum(1, keepdims=True)) + d2.min(1, keepdims=True)
    return (-logp).reshape(image.shape[0], image.shape[1], num_labels)


def smooth_unary(shape: tuple[int, int], num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """−log softmax of random smooth fields (Gaussian-filtered noise)."""
    from scipy.ndimage import gaussian_filter

    field = np.stack([gaussian_filter(rng.normal(size=shape), 8.0) for _ in range(num_labels)], axis=-1)
    field *= 3.0 / (field.std() + 1e-12)
    field -= field.max(-1, keepdims=True)
    return -(field - np.log(np.exp(field).sum(-1, keepdims=True)))


def make_energy(image: np.ndarray, unary: np.ndarray, potts_weight: float = 100.0) -> GridPotts:
    weights = contrast_weights(image, 8)
    h, w = image.shape[:2]
    pairs = (h * (w - 1)) + ((h - 1) * w) + 2 * (h - 1) * (w - 1)
    return GridPotts(unary, weights, potts_weight=potts_weight, edge_scale=h * w / pairs)


# --- GCO ----------------------------------------------------------------------------------------
def gco_inputs(energy: GridPotts, scale: float) -> dict:
    """Integer GCO inputs with the largest term scaled to ``scale`` units."""
    h, w = energy.shape
    index = np.arange(h * w).reshape(h, w)
    s1, s2, cw = [], [], []
    for k, offset in enumerate(energy.offsets):
        src, dst = pair_slices(offset, (h, w))
        a, b = index[src].ravel(), index[dst].ravel()
        s1.append(np.minimum(a, b))
        s2.append(np.maximum(a, b))
        cw.append(energy.edge_costs[k][src].ravel())
    s1, s2, cw = np.concatenate(s1), np.concatenate(s2), np.concatenate(cw)
    factor = scale / max(float(energy.cost_unary.max()), float(cw.max()), 1e-12)
    return {
        "unary": np.rint(energy.cost_unary.reshape(h * w, -1) * factor).astype(np.intc),
        "s1": s1.astype(np.intc),
        "s2": s2.astype(np.intc),
        "w": np.rint(cw * factor).astype(np.intc),
        "n": h * w,
        "labels": energy.num_labels,
    }


def gco_solve(inputs: dict, max_sweeps: int, initial: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Run GCO; returns labels and the seconds spent (excluding the per-site Python loop of a warm start)."""
    from gco.pygco import _cgco

    handle_out = np.empty(1, dtype=np.intc)
    t0 = time.perf_counter()
    _cgco.gcoCreateGeneralGraph(np.intc(inputs["n"]), np.intc(inputs["labels"]), handle_out)
    handle = handle_out[0]
    _cgco.gcoSetDataCost(handle, inputs["unary"])
    _cgco.gcoSetAllNeighbors(handle, inputs["s1"], inputs["s2"], inputs["w"], np.intc(inputs["s1"].size))
    smooth = (1 - np.eye(inputs["labels"])).astype(np.intc)
    _cgco.gcoSetSmoothCost(handle, smooth)
    setup = time.perf_counter() - t0
    if initial is not None:
        for site, label in enumerate(initial.ravel().tolist()):
            _cgco.gcoInitLabelAtSite(handle, np.intc(site), np.intc(label))
    t1 = time.perf_counter()
    energy_out = np.empty(1, dtype=np.longlong)
    _cgco.gcoExpansion(handle, np.intc(max_sweeps), energy_out)
    labels = np.empty(inputs["n"], dtype=np.intc)
    _cgco.gcoGetLabels(handle, labels)
    seconds = setup + time.perf_counter() - t1
    _cgco.gcoDestroyGraph(handle)
    return labels, seconds


# --- ours ----------------------------------------------------------------------------------------
def ours_solve(energy: GridPotts, max_sweeps: int, initial: np.ndarray | None) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    state = run(AlphaExpansion(max_sweeps=max_sweeps), energy, initial)
    return state.solution, time.perf_counter() - t0


def single_maxflow_seconds(energy: GridPotts) -> float:
    """One max-flow (graph already built) of the first expansion move on this grid: the floor for one move."""
    maxflow = import_maxflow()
    labels = energy.unary_argmin()
    times = []
    for _ in range(3):
        graph, _ids = expansion_graph(energy, labels, 0, maxflow)
        t0 = time.perf_counter()
        graph.maxflow()
        times.append(time.perf_counter() - t0)
    return min(times)


def warm_start(energy: GridPotts) -> np.ndarray:
    """A warm start like stage A's: the previous solution of a slightly different energy
    (one expansion sweep on the unary with 10 % noise)."""
    rng = np.random.default_rng(1)
    noisy = GridPotts(
        energy.unary * rng.uniform(0.9, 1.1, energy.unary.shape),
        energy.weights,
        potts_weight=energy.potts_weight,
        edge_scale=energy.edge_scale,
    )
    return run(AlphaExpansion(max_sweeps=2), noisy).solution


def bench_case(name: str, energy: GridPotts, warm: bool, args: argparse.Namespace) -> dict:
    initial = warm_start(energy) if warm else energy.unary_argmin()
    inputs = gco_inputs(energy, args.gco_scale)
    ours_t, gco_t = [], []
    ours_x = gco_x = None
    for _ in range(args.repeats):  # interleaved so CPU noise hits both
        ours_x, t = ours_solve(energy, args.max_sweeps, initial)
        ours_t.append(t)
        gco_x, t = gco_solve(inputs, args.max_sweeps, initial)
        gco_t.append(t)
    gco_x = np.asarray(gco_x, dtype=np.int64).reshape(energy.shape)
    e_ours, e_gco = energy.value(ours_x), energy.value(gco_x)
    case = {
        "name": name + (" warm" if warm else ""),
        "labels": energy.num_labels,
        "height": energy.shape[0],
        "width": energy.shape[1],
        "warm_start": warm,
        "seconds": {"median": statistics.median(ours_t), "min": min(ours_t), "max": max(ours_t)},
        "gco_seconds": {"median": statistics.median(gco_t), "min": min(gco_t), "max": max(gco_t)},
        "energy": e_ours,
        "gco_energy": e_gco,
        "start_energy": energy.value(initial),
        "time_ratio_vs_gco": statistics.median(ours_t) / statistics.median(gco_t),
        "energy_ratio_vs_gco": e_ours / e_gco if e_gco else (1.0 if e_ours == 0 else math.inf),
        "single_maxflow_seconds": single_maxflow_seconds(energy),
    }
    logger.info(
        "%s: ours %.3fs gco %.3fs ratio %.2f energy ratio %.8f",
        case["name"],
        case["seconds"]["median"],
        case["gco_seconds"]["median"],
        case["time_ratio_vs_gco"],
        case["energy_ratio_vs_gco"],
    )
    return case


def gil_during_maxflow(energy: GridPotts) -> dict:
    """Whether PyMaxflow's ``maxflow()`` holds the GIL: a Python thread counts while one max-flow
    runs, then for as long again; a held GIL stalls the count during the max-flow."""
    import threading

    graph, _ = expansion_graph(energy, energy.unary_argmin(), 0, import_maxflow())
    count, done = [0], [False]

    def spin() -> None:
        while not done[0]:
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.2)
    c0 = count[0]
    t0 = time.perf_counter()
    graph.maxflow()
    seconds = time.perf_counter() - t0
    c1 = count[0]
    time.sleep(seconds)
    c2 = count[0]
    done[0] = True
    thread.join()
    return {"maxflow_seconds": seconds, "python_progress_during_vs_after": (c1 - c0) / max(1, c2 - c1)}


def batch_speedup(energies: list[GridPotts], workers: int, repeats: int) -> dict:
    from chainrule2.solvers.base import solve_batch
    from chainrule2.solvers.parallel import ProcessBatchSolver, ThreadBatchSolver

    solver = AlphaExpansion()
    out = {}
    serial_t, proc_t, thread_t = [], [], []
    with ProcessBatchSolver(workers=workers) as procs:
        threads = ThreadBatchSolver(workers=workers)
        procs(solver, energies[:1], None)  # start the pool outside the timing
        for _ in range(repeats):
            t0 = time.perf_counter()
            serial = solve_batch(solver, energies)
            serial_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            parallel = procs(solver, energies, None)
            proc_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            threaded = threads(solver, energies, None)
            thread_t.append(time.perf_counter() - t0)
    identical = all(
        np.array_equal(a.solution, b.solution) and np.array_equal(a.solution, c.solution)
        for a, b, c in zip(serial, parallel, threaded, strict=True)
    )
    out.update(
        items=len(energies),
        workers=workers,
        serial_seconds=statistics.median(serial_t),
        process_speedup=statistics.median(serial_t) / statistics.median(proc_t),
        thread_speedup=statistics.median(serial_t) / statistics.median(thread_t),
        identical_to_serial=identical,
    )
    return out


def solver_comparison(energy: GridPotts, repeats: int) -> list[dict]:
    """Alpha-expansion, ICM and mean-field (T = 1, its argmax) on one energy: steps, median seconds, grid energy."""
    from chainrule2.energies import MeanFieldEnergy
    from chainrule2.solvers import ICM, MeanField

    out = []
    for solver, problem in (
        (AlphaExpansion(), energy),
        (ICM(max_sweeps=50), energy),
        (MeanField(), MeanFieldEnergy(energy)),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            state = run(solver, problem)
            times.append(time.perf_counter() - t0)
        labels = state.solution.argmax(axis=-1) if state.solution.ndim == 3 else state.solution
        out.append(
            {
                "solver": repr(solver),
                "steps": state.iteration,
                "seconds": statistics.median(times),
                "grid_energy": energy.value(labels),
            }
        )
    out.append(
        {"solver": "unary argmin", "steps": 0, "seconds": 0.0, "grid_energy": energy.value(energy.unary_argmin())}
    )
    return out


def move_log(energy: GridPotts, max_sweeps: int) -> dict:
    """One cold solve, move by move: free pixels, pixels changed, predicted energy change, seconds
    (graph building and max-flow), and the solve's total time in graph building (through
    ``AlphaExpansion.on_move``, the solver's public per-move hook)."""
    records: list[ExpansionMove] = []
    t0 = time.perf_counter()
    state = run(AlphaExpansion(max_sweeps=max_sweeps, on_move=records.append), energy)
    total = time.perf_counter() - t0
    moves = [
        {
            "sweep": m.sweep,
            "alpha": m.alpha,
            "free": m.nodes,
            "changed": m.changed,
            "delta": m.delta,
            "accepted": m.accepted,
            "seconds": m.build_seconds + m.flow_seconds,
        }
        for m in records
    ]
    build = sum(m.build_seconds for m in records)
    return {"seconds": total, "build_seconds": build, "trace": list(state.trace), "moves": moves}


def load_horses(data: Path, count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Weizmann horses (sorted by name) at ``size``² px: images ``(N, size, size, 3)`` and click seeds
    (2 % of the pixels, labelled from the figure-ground mask: 1 horse, 0 background; 255 elsewhere)."""
    from PIL import Image

    root = data / "weizmann_horse"
    names = sorted(p.name for p in (root / "rgb").glob("*.jpg"))[:count]
    images, seeds = [], []
    for name in names:
        images.append(resize(np.asarray(Image.open(root / "rgb" / name).convert("RGB")), size))
        mask = resize(np.asarray(Image.open(root / "figure_ground" / name).convert("L")), size, nearest=True) > 127
        clicks = rng.random(mask.shape) < 0.02
        seeds.append(np.where(clicks, mask.astype(np.int64), 255))
    return np.stack(images), np.stack(seeds)


def device_path(data: Path, count: int, size: int, repeats: int, beta: float) -> dict:
    """Stage-A seconds per image of :class:`chainrule2.StageA` on one batch of Weizmann horses, by path:
    AlphaExpansion (host), MeanField per item on the host, MeanField batched on numpy and on torch CPU
    (and CUDA when present), GradientStep batched on torch CPU; logits: smooth random 2-label fields.
    Interleaved runs; medians, and ratios against AlphaExpansion measured in the same run."""
    import torch

    import chainrule2 as cr
    from chainrule2.divergences import CrossEntropy, Squared
    from chainrule2.losses import ScribblePotts
    from chainrule2.solvers import GradientStep, MeanField, solve_batch

    rng = np.random.default_rng(0)
    images, seeds = load_horses(data, count, size, rng)
    logits = np.stack([-smooth_unary((size, size), 2, rng) for _ in range(count)])  # (N, H, W, 2), log-probabilities
    loss = ScribblePotts(potts_weight=100.0)
    batch = cr.Batch(None, seeds, images)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    paths = {
        "alpha-expansion (host)": (cr.StageA(AlphaExpansion(), loss, CrossEntropy(), beta), "numpy"),
        "mean-field per item (host)": (
            cr.StageA(MeanField(), loss, CrossEntropy(), beta, batch_solver=solve_batch), "numpy"),
        "mean-field batched numpy": (cr.StageA(MeanField(), loss, CrossEntropy(), beta), "numpy"),
        **{f"mean-field batched torch {d}": (cr.StageA(MeanField(), loss, CrossEntropy(), beta), d) for d in devices},
        "gradient-step batched torch cpu": (cr.StageA(GradientStep(), loss, Squared(), beta), "cpu"),
    }  # fmt: skip
    inputs = {"numpy": (logits, batch)}
    for d in devices:
        z, s, img = (torch.as_tensor(a, device=d) for a in (logits, seeds, images))
        inputs[d] = (z, cr.Batch(None, s, img))
    times: dict[str, list[float]] = {name: [] for name in paths}
    results: dict[str, object] = {}
    for stage_a, where in paths.values():  # warm-up (imports, allocations)
        stage_a.propose(*inputs[where])
    for _ in range(repeats):  # interleaved so CPU noise hits every path
        for name, (stage_a, where) in paths.items():
            t0 = time.perf_counter()
            out = stage_a.propose(*inputs[where])
            if where == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) / count)
            results[name] = out
    baseline = statistics.median(times["alpha-expansion (host)"])
    host_mf = np.asarray(results["mean-field per item (host)"].targets)  # type: ignore[attr-defined]
    rows = []
    for name, ts in times.items():
        targets = results[name].targets  # type: ignore[attr-defined]
        host = targets.cpu().numpy() if hasattr(targets, "cpu") else np.asarray(targets)
        rows.append(
            {
                "path": name,
                "seconds_per_image": {"median": statistics.median(ts), "min": min(ts), "max": max(ts)},
                "ratio_vs_alpha_expansion": statistics.median(ts) / baseline,
                "max_abs_diff_vs_per_item_mean_field": (
                    float(np.abs(host - host_mf).max()) if name.startswith("mean-field") else None
                ),
                "energy_per_image": results[name].report.energy / count,  # type: ignore[attr-defined]
            }
        )
    return {
        "images": count,
        "size": size,
        "labels": 2,
        "trust_weight": beta,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "paths": rows,
    }


def markdown_table(result: dict) -> str:
    """The cases of a ``--json`` result as the markdown table of docs/performance.md."""
    rows = [
        "| case | size | L | ours median s (min–max) | GCO median s (min–max) | one max-flow s | time ratio | energy ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        ours, gco = c["seconds"], c["gco_seconds"]
        rows.append(
            f"| {c['name']} | {c['height']}×{c['width']} | {c['labels']} "
            f"| {ours['median']:.3f} ({ours['min']:.2f}–{ours['max']:.2f}) "
            f"| {gco['median']:.3f} ({gco['min']:.2f}–{gco['max']:.2f}) | {c['single_maxflow_seconds']:.3f} "
            f"| **{c['time_ratio_vs_gco']:.2f}** | {c['energy_ratio_vs_gco']:.8f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--images", type=int, default=2, help="number of photos (sorted by name)")
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 3, 5, 21])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-sweeps", type=int, default=5)
    parser.add_argument("--gco-scale", type=float, default=1e6)
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--sizes", nargs="+", default=["full", "513"])
    parser.add_argument("--table", type=Path, help="print the markdown table of a saved --json result and exit")
    parser.add_argument(
        "--solvers", action="store_true", help="compare chainrule2's solvers on the first photo (513², colour) and exit"
    )
    parser.add_argument(
        "--moves",
        action="store_true",
        help="log every move of one cold solve of the first photo's 513² smooth 5-label case",
    )
    parser.add_argument(
        "--device-path",
        action="store_true",
        help="StageA seconds per image on --images Weizmann horses at --size px: MeanField batched (numpy, "
        "torch) vs per item vs AlphaExpansion; prints JSON and exits",
    )
    parser.add_argument("--size", type=int, default=96, help="image side for --device-path")
    parser.add_argument("--trust-weight", type=float, default=1.0, help="β for --device-path")
    args = parser.parse_args(argv)
    if args.device_path:  # no GCO needed
        result = device_path(args.data, args.images, args.size, args.repeats, args.trust_weight)
        result["command"] = "python benchmarks/stage_a.py " + " ".join(argv if argv is not None else sys.argv[1:])
        print(json.dumps(result, indent=1))
        return 0
    if args.moves:  # no GCO needed
        image = load_images(args.data, 1)[0][1]
        img = resize(image, 513)
        # a field of the same kind as the table's "smooth L=5" case (drawn first from seed 0, not
        # after the other cases' draws, so not the identical field)
        unary = smooth_unary(img.shape[:2], 5, np.random.default_rng(0))
        print(json.dumps(move_log(make_energy(img, unary), args.max_sweeps), indent=1))
        return 0
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return 0
    if args.solvers:  # no GCO needed
        name, image, scribble = load_images(args.data, 1)[0]
        img, scr = resize(image, 513), resize(scribble, 513, nearest=True)
        rng = np.random.default_rng(0)
        result = {
            f"{name} 513 colour L={num_labels}": solver_comparison(
                make_energy(img, colour_unary(img, scr, num_labels, rng)), args.repeats
            )
            for num_labels in args.labels
        }
        print(json.dumps(result, indent=1))
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        import gco.pygco  # noqa: F401
    except ImportError:
        print("this benchmark needs GCO: pip install gco-wrapper (benchmark only, research licence)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    cases = []
    photos = load_images(args.data, args.images)
    batch_energies = []
    for name, image, scribble in photos:
        for size in args.sizes:
            img = image if size == "full" else resize(image, int(size))
            scr = scribble if size == "full" else resize(scribble, int(size), nearest=True)
            for num_labels in args.labels:
                for kind in ("colour", "smooth"):
                    if kind == "smooth" and (num_labels not in (2, 5) or size == "full"):
                        continue  # random fields: a spot check at 513 only
                    unary = (
                        colour_unary(img, scr, num_labels, rng)
                        if kind == "colour"
                        else smooth_unary(img.shape[:2], num_labels, rng)
                    )
                    energy = make_energy(img, unary)
                    tag = f"{name} {size} {kind} L={num_labels}"
                    for warm in (False, True):
                        cases.append(bench_case(tag, energy, warm, args))
                    if size == "513" and num_labels == 5 and kind == "colour":
                        batch_energies.append(energy)
    result = {
        "command": "python benchmarks/stage_a.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cases": cases,
        "max_time_ratio": max(c["time_ratio_vs_gco"] for c in cases),
        "max_energy_ratio": max(c["energy_ratio_vs_gco"] for c in cases),
    }
    if not args.no_batch and batch_energies:
        while len(batch_energies) < 4:
            batch_energies = batch_energies + batch_energies
        result["batch"] = batch_speedup(batch_energies[:4], 2, max(1, args.repeats // 2))
        result["batch"]["gil"] = gil_during_maxflow(batch_energies[0])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for c in cases:
            print(
                f"{c['name']:<40} {c['height']}x{c['width']} ours {c['seconds']['median']:.3f}s "
                f"gco {c['gco_seconds']['median']:.3f}s ratio {c['time_ratio_vs_gco']:.2f} "
                f"energy ratio {c['energy_ratio_vs_gco']:.8f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
