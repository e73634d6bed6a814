"""Draw docs/architecture.png: chainrule2's layers and the path of one training step through them.

Run ``python docs/make_architecture.py`` (Pillow) after moving a module between layers. Before it
draws, it reads every module's imports (``ast``, nothing is imported) and refuses to draw a
picture that is not true: each box of the layer diagram may import only from the boxes in the
rows below it (a package's top ``__init__``, which re-exports, excepted), PyMaxflow only from
``chainrule2.solvers``, torch only from ``chainrule2_torch``. ``--check`` runs that check alone.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().with_name("architecture.png")

# --- the layers: (band, rows of (box name, the modules it holds, what is in it)) -----------------------
# Rows are listed top to bottom; a box may import from any box of a lower row of its band or of a lower band.
LAYERS = [
    (
        "examples/, benchmarks/  (scripts: may import everything below)",
        "scripts",
        [
            [
                ("examples/", [], "segmentation_scribbles.py, own_loop.py, chain_numpy.py, results_table.py, ..."),
                ("benchmarks/", [], "stage_a.py: AlphaExpansion against GCO, per-move log"),
            ]
        ],
    ),
    (
        "chainrule2_torch  (adapters/): the only package that imports torch",
        "adapter",
        [
            [("training", ["training"], "train, TrainConfig, METHOD_TABLE, StageACache, refresh_pseudo_labels")],
            [
                ("fitters", ["fitters"], "OptimizerFitter, LearnedErrorRobustCE"),
                ("objectives", ["objectives"], "SeedAwareLoss, RelaxedPottsLoss, output_logits"),
            ],
            [
                ("model", ["model"], "TorchModel, resolve_device"),
                ("networks", ["networks"], "UNet, DeepLabV3+"),
                ("data", ["data"], "Sample, readers, Augmentation, collate, metrics, panels"),
            ],
            [
                ("distributed", ["distributed"], "torchrun: rank, shards, the few collectives"),
                ("_atomic", ["_atomic"], "atomic_write"),
            ],
        ],
    ),
    (
        "chainrule2  (the core): numpy, scipy, array-api-compat; never torch (ruff TID251)",
        "core",
        [
            [("trust_region", ["trust_region"], "TrustRegion: propose (stage A) + fit (stage B)")],
            [("stage_a", ["stage_a"], "StageA.propose: logits in, targets out, in the caller's arrays")],
            [("trust_radius", ["trust_radius"], "BetaSearch: trust_weight='auto', the beta of each item")],
            [
                (
                    "solvers",
                    ["solvers"],
                    "AlphaExpansion (_expansion_graph, _maxflow), ICM, MeanField, ChainViterbi, GradientStep, "
                    "solve_batch, ProcessBatchSolver",
                )
            ],
            [
                ("losses", ["losses"], "ScribblePotts, ChainScribblePotts, DenseCRFLoss"),
                ("models", ["models"], "LinearClassifier, SGDFitter (numpy)"),
                ("testing", ["testing"], "check_subproblem, strategies"),
            ],
            [
                ("energies", ["energies"], "GridPotts, MeanFieldEnergy, ChainPotts"),
                ("base", ["base"], "Batch, SolverState, the protocols"),
            ],
            [
                (
                    "divergences",
                    ["divergences"],
                    "CrossEntropy, CollisionCrossEntropy, KL, Squared, RobustCrossEntropy, SeedAwareObjective",
                )
            ],
            [
                (
                    "validation, constants",
                    ["validation", "constants"],
                    "check_*: argument, expected, got; 254/255",
                )
            ],
        ],
    ),
    (
        "third-party",
        "external",
        [
            [
                ("numpy, scipy", [], "and array-api-compat: everywhere"),
                ("PyMaxflow", [], "lazily, by solvers only"),
                ("torch", [], "chainrule2_torch only"),
            ]
        ],
    ),
]

# --- one training step (chainrule2_torch.train, method "grid-tr"): (layer, code, what happens) ------
STAGE_A = [
    (
        "adapter",
        "training.refresh_pseudo_labels",
        "network in eval mode, no grad, on the full-size un-augmented images: logits (N, C, H, W)",
    ),
    (
        "core",
        "chainrule2.StageA.propose(logits, batch, initial, class_axis=1)",
        "one copy to the host; warm start: the cached labels",
    ),
    ("core", "solver.energies (DiscreteSubproblem)", "unary = beta * CrossEntropy().label_costs(logits)"),
    ("core", "loss.energy (ScribblePotts)", "one GridPotts per item: contrast weights, seeds clamped"),
    (
        "core",
        "batch_solver -> run(AlphaExpansion)",
        "sweeps of expansion moves: _expansion_graph -> _maxflow -> PyMaxflow",
    ),
    ("adapter", "StageACache.put", "targets back as a tensor on the logits' device; <out>/stage_a/<id>.png"),
]
STAGE_B = [
    (
        "adapter",
        "data: SampleDataset -> DataLoader -> collate",
        "Sample.target = cached labels, augmented with the image (scale, crop, flip) -> Batch",
    ),
    ("adapter", "network(batch.inputs)", "train mode: logits (N, C, H, W)"),
    (
        "core",
        "SeedAwareLoss -> divergences.SeedAwareObjective",
        "criterion(output, batch.targets, batch.seeds): CE on seeds, RobustCrossEntropy elsewhere",
    ),
    ("adapter", "loss.backward(); optimizer.step(); scheduler.step()", "one stage-B step per batch; every epoch"),
]

COLOURS = {  # fill, outline
    "scripts": ("#e8e8e8", "#6b6b6b"),
    "adapter": ("#fde3c8", "#b35900"),
    "core": ("#d8e6f5", "#2f5f8f"),
    "external": ("#f6f6f6", "#9a9a9a"),
}


# --- the check ---------------------------------------------------------------------------------------
def _modules() -> Iterator[tuple[str, Path]]:
    for package, folder in (
        ("chainrule2", ROOT / "chainrule2"),
        ("chainrule2_torch", ROOT / "adapters" / "chainrule2_torch"),
    ):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            yield ".".join((package, *parts)), path


def _imports(module: str, path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: against the module's package (``a.b.__init__`` and ``a.b.c`` are in ``a.b``)
                base = module.split(".")[: -node.level]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module


def _box_of(module: str) -> tuple[int, str] | None:
    """(rank, box name) of a module of chainrule2 or chainrule2_torch; rank grows downwards."""
    parts = module.split(".")
    if parts[0] not in ("chainrule2", "chainrule2_torch") or len(parts) < 2 or parts[1] == "__init__":
        return None
    band_name = "core" if parts[0] == "chainrule2" else "adapter"
    rank = 0
    for _, band, rows in LAYERS:
        for row in rows:
            rank += 1
            for name, members, _ in row:
                if band == band_name and parts[1] in members:
                    return rank, f"{parts[0]}.{name}"
    raise SystemExit(f"{module}: in no box of LAYERS (add it to the picture)")


def check() -> list[str]:
    """Every import that the picture says cannot happen."""
    problems = []
    for module, path in _modules():
        here = _box_of(module)
        for target in _imports(module, path):
            top = target.split(".")[0]
            if top == "maxflow" and not module.startswith("chainrule2.solvers."):
                problems.append(f"{module} imports PyMaxflow (only chainrule2.solvers may)")
            if top == "torch" and not module.startswith("chainrule2_torch"):
                problems.append(f"{module} imports torch (only chainrule2_torch may)")
            there = _box_of(target) if top in ("chainrule2", "chainrule2_torch") else None
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] <= here[0]:
                problems.append(f"{module} ({here[1]}) imports {target} ({there[1]}): not from a row below")
    return problems


# --- the drawing -------------------------------------------------------------------------------------
def _fonts():
    from PIL import ImageFont

    def font(size: int, bold: bool = False):
        try:
            return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
        except OSError:  # no DejaVu on this machine: Pillow's own scalable font
            return ImageFont.load_default(size)

    return {"title": font(30, True), "head": font(19, True), "box": font(16, True), "text": font(15), "small": font(14)}


def _wrap(draw, text: str, font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def _box(draw, xy, layer: str, title: str, text: str, fonts, radius: int = 8) -> None:
    fill, outline = COLOURS[layer]
    x0, y0, x1, _ = xy
    draw.rounded_rectangle(xy, radius=radius, fill=fill, outline=outline, width=2)
    draw.text((x0 + 10, y0 + 7), title, font=fonts["box"], fill="#1a1a1a")
    y = y0 + 30
    for line in _wrap(draw, text, fonts["small"], x1 - x0 - 20):
        draw.text((x0 + 10, y), line, font=fonts["small"], fill="#333333")
        y += 18


def _box_height(draw, width: float, text: str, fonts) -> int:
    return 38 + 18 * len(_wrap(draw, text, fonts["small"], width - 20))


def _arrow(draw, x: float, y0: float, y1: float, colour: str = "#444444") -> None:
    draw.line((x, y0, x, y1 - 9), fill=colour, width=3)
    draw.polygon([(x - 7, y1 - 11), (x + 7, y1 - 11), (x, y1)], fill=colour)


def draw(path: Path) -> None:
    from PIL import Image, ImageDraw

    width = 1640
    image = Image.new("RGB", (width, 2400), "white")  # cropped to the drawing at the end
    d = ImageDraw.Draw(image)
    fonts = _fonts()
    d.text((30, 22), "chainrule2: the layers, and one training step through them", font=fonts["title"], fill="#111111")

    # left: the layers
    left, right = 30, 800
    d.text((left, 76), "Layers: a box imports only from the rows below it", font=fonts["head"], fill="#111111")
    y = 108
    for label, band, rows in LAYERS:
        band_top = y
        y += 30
        for row in rows:
            box_w = (right - left - 20 - 10 * (len(row) - 1)) / len(row)
            h = max(_box_height(d, box_w, text, fonts) for _, _, text in row)
            for k, (name, _, text) in enumerate(row):
                x0 = left + 10 + k * (box_w + 10)
                _box(d, (x0, y, x0 + box_w, y + h), band, name, text, fonts)
            y += h + 8
        fill, outline = COLOURS[band]
        d.rounded_rectangle((left, band_top, right, y + 2), radius=12, outline=outline, width=3)
        d.text((left + 12, band_top + 6), label, font=fonts["box"], fill=outline)
        y += 16
    bottom = y

    # right: one training step
    left, right = 850, 1610
    centre = (left + right) / 2
    d.text(
        (left, 76), "One training step  (chainrule2_torch.train, method grid-tr)", font=fonts["head"], fill="#111111"
    )
    y = 108
    for n, (heading, steps) in enumerate(
        (
            ("Stage A: every stage_a_every epochs (after the PCE warm-up)", STAGE_A),
            ("Stage B: every epoch, on the cached labels", STAGE_B),
        )
    ):
        if n:  # the cached labels carry stage A's result into stage B (a constant there: no gradient)
            _arrow(d, right - 90, y, y + 40)
            d.text((right - 80, y + 8), "cached labels", font=fonts["small"], fill="#333333")
            y += 4
        d.text((left, y), heading, font=fonts["box"], fill="#111111")
        y += 36 if n else 28
        for k, (layer, code, text) in enumerate(steps):
            h = _box_height(d, right - left, text, fonts)
            _box(d, (left, y, right, y + h), layer, code, text, fonts)
            y += h
            if k < len(steps) - 1:
                _arrow(d, centre, y, y + 22)
                y += 22
    d.text(
        (left, y + 8),
        "then the next batch; every stage_a_every epochs, stage A again (warm-started from the cache)",
        font=fonts["small"],
        fill="#333333",
    )
    y += 50
    x = left
    for layer, name in (("core", "chainrule2 (core)"), ("adapter", "chainrule2_torch (adapter)")):
        fill, outline = COLOURS[layer]
        d.rounded_rectangle((x, y, x + 26, y + 18), radius=4, fill=fill, outline=outline, width=2)
        d.text((x + 34, y), name, font=fonts["text"], fill="#222222")
        x += 60 + d.textlength(name, font=fonts["text"])
    bottom = max(bottom, y + 30)
    d.text(
        (30, bottom),
        "Made by docs/make_architecture.py, which first checks every import against these rows.",
        font=fonts["small"],
        fill="#666666",
    )
    image.crop((0, 0, width, bottom + 34)).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the imports against the layers")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    if not args.check:
        draw(args.out)
        print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
