"""Summarise runs/results/<setting>/<method>/ into the Markdown table of docs/results.md, and a bar chart.

python examples/results_table.py runs/results [--figure runs/results/results.png] [--metric test|val]
python examples/results_table.py runs/investigation --metric val     # the validation-only investigation
python examples/results_table.py runs/final --metric summary         # seeds aggregated, one row per setting

Runs are read from ``<root>/<setting>/<method>/final.json`` (and ``metrics.jsonl`` next to it), as
``examples/results.sh`` writes them. Several training seeds of one method are also found in
``<root>/<setting>/<method>/seed<k>/`` or ``<root>/<setting>/<method>_seed<k>/``: the table then has one row
per run (method ``grid-tr (seed 1)``) and the figure shows the mean with a ±1 sd error bar. The Markdown table
goes to stdout; the figure (mIoU per setting, one bar per method, drawn with Pillow from the runs' files
only) to ``--figure`` (default ``<root>/results.png``; ``--no-figure`` skips it). Missing or NaN values
print as ``n/a``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from chainrule2_torch._atomic import atomic_write

METHODS = ("warmup", "pce", "grid-gd", "dense-gd", "adm", "grid-tr", "dense-tr", "full")
#: bar colours (Okabe-Ito, none of them grey like anti-aliased text)
COLOURS = {
    "warmup": (0, 0, 0),
    "pce": (230, 159, 0),
    "grid-gd": (86, 180, 233),
    "dense-gd": (240, 228, 66),
    "adm": (0, 158, 115),
    "grid-tr": (0, 114, 178),
    "dense-tr": (213, 94, 0),
    "full": (204, 121, 167),
}
# figure geometry (px); the size follows from the numbers of settings and methods only, see figure_size
BAR_W, BAR_GAP, GROUP_PAD, MIN_GROUP_W = 30, 4, 30, 150
LEFT, LEGEND_W, TOP, PLOT_H, BOTTOM = 64, 120, 48, 320, 40


def _number(value) -> float | None:
    """A finite float, or None for a missing / null / NaN / non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _miou(value) -> float | None:
    """``final.json``'s ``test`` / ``val`` entry: ``{"miou": x, ...}``, a bare number, or missing."""
    return _number(value.get("miou") if isinstance(value, dict) else value)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def row(folder: Path) -> dict | None:
    """One run's numbers from ``folder/final.json`` and ``folder/metrics.jsonl``; None without ``final.json``.

    Missing or NaN values (no test split, no metrics file) are None.
    """
    final_path, metrics_path = folder / "final.json", folder / "metrics.jsonl"
    if not final_path.exists():
        return None
    final = json.loads(final_path.read_text())
    if not isinstance(final, dict):
        raise ValueError(f"{final_path}: expected a JSON object, got {type(final).__name__}")
    lines = []
    if metrics_path.exists():
        lines = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
    main = [r for r in lines if r.get("phase") != "warmup"] or lines
    epoch_times = [t for t in (_number(r.get("epoch_s")) for r in main) if t is not None]
    total_main = sum(epoch_times)
    stage_a_s = sum(_number(r.get("stage_a_s")) or 0.0 for r in main)
    stage_a = [r for r in main if r.get("stage_a_solve_s") is not None]
    first = stage_a[0] if stage_a else {}
    return {
        # the mechanism, on the training images (validation-only investigation; see mechanism())
        "val_after_switch": _number(main[0].get("val_miou")) if main and main is not lines else None,
        "network_train_first": _number(first.get("network_train_miou")),
        "pseudo_first": _number(first.get("pseudo_miou")),
        "changed_first": _number(first.get("stage_a_changed")),
        "target_fit": _number(final.get("target_fit")),
        "network_train_final": _number(final.get("network_train_miou")),
        "test": _miou(final.get("test")),
        "val": _miou(final.get("val")),
        "pseudo": final.get("pseudo_miou"),
        "seconds": _number(final.get("seconds")),
        "epoch_s": total_main / len(epoch_times) if epoch_times else None,
        "stage_a_share": (stage_a_s / total_main if total_main else 0.0) if epoch_times else None,
        "epochs": len(lines),
        "command": final.get("command", ""),
    }


def _seed(name: str, prefix: str) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"seed(\d+)", name)
    return int(match.group(1)) if match else None


def runs(setting: Path, method: str) -> list[tuple[int | None, dict]]:
    """The runs of ``method`` in ``setting``: ``<method>/``, ``<method>/seed<k>/``, ``<method>_seed<k>/``.

    Returns ``(seed or None, row)`` pairs, the unseeded folder first, then by seed.
    """
    found: list[tuple[int | None, Path]] = [(None, setting / method)]
    base = setting / method
    if base.is_dir():
        found += [(k, p) for p in base.iterdir() if p.is_dir() and (k := _seed(p.name, "")) is not None]
    found += [(k, p) for p in setting.iterdir() if p.is_dir() and (k := _seed(p.name, f"{method}_")) is not None]
    out = [(k, r) for k, p in found if (r := row(p)) is not None]
    return sorted(out, key=lambda kr: -1 if kr[0] is None else kr[0])


def collect(root: str | Path) -> list[tuple[str, str, list[tuple[int | None, dict]]]]:
    """``(setting, method, runs)`` for every setting folder of ``root`` (sorted) and method (``METHODS`` order)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: expected a folder of runs (<root>/<setting>/<method>/final.json), got {root}")
    out = []
    for setting in sorted(p for p in root.iterdir() if p.is_dir()):
        for m in METHODS:
            found = runs(setting, m)
            if found:
                out.append((setting.name, m, found))
    return out


def markdown(groups) -> list[str]:
    """The table's lines (header, one row per run) then the runs' commands, as printed by :func:`main`."""
    lines = [
        "| setting | method | test mIoU | val mIoU | stage-A labels mIoU (train) | s/epoch (after warm-up) | stage-A share | run s |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|",
    ]
    commands = []
    for setting, m, found in groups:
        for seed, r in found:
            name = m if seed is None else f"{m} (seed {seed})"
            pseudo = "–" if r["pseudo"] is None else _fmt(_number(r["pseudo"]), ".1f")
            share = "n/a" if r["stage_a_share"] is None else f"{100 * r['stage_a_share']:.0f} %"
            lines.append(
                f"| {setting} | {name} | {_fmt(r['test'], '.1f')} | {_fmt(r['val'], '.1f')} | {pseudo} | "
                f"{_fmt(r['epoch_s'], '.1f')} | {share} | {_fmt(r['seconds'], '.0f')} |"
            )
            commands.append(r["command"])
    lines.append("")
    lines += [f"    {c}" for c in commands]
    return lines


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample sd (None below 2 values) and count of the non-missing ``values``."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return mean, sd, len(xs)


MECHANISM = (
    ("val", "val mIoU"),
    ("val_after_switch", "val mIoU, 1st epoch after warm-up"),
    ("network_train_first", "network train mIoU at 1st stage A"),
    ("pseudo_first", "stage-A labels train mIoU, 1st"),
    ("changed_first", "pixels changed by 1st stage A (%)"),
    ("target_fit", "final fit to its targets (%)"),
    ("network_train_final", "final network train mIoU"),
)


def mechanism(groups) -> list[str]:
    """Validation-only table, one row per (setting, method): mean ± sd over the training seeds (n) of the
    val mIoU and of the mechanism on the training images. No test column: the investigation chooses on val."""
    lines = ["| setting | method | n | " + " | ".join(title for _, title in MECHANISM) + " | val per seed |"]
    lines.append("|---|---|---|" + "---|" * (len(MECHANISM) + 1))
    for setting, m, found in groups:
        cells = []
        for key, _ in MECHANISM:
            scale = 100.0 if key in ("changed_first", "target_fit") else 1.0
            mean, sd, n = mean_sd([None if r[key] is None else scale * r[key] for _, r in found])
            cells.append("n/a" if mean is None else f"{mean:.1f}" + ("" if sd is None else f" ± {sd:.1f}"))
        per_seed = ", ".join(f"{'?' if k is None else k}: {_fmt(r['val'], '.1f')}" for k, r in found)
        lines.append(f"| {setting} | {m} | {len(found)} | " + " | ".join(cells) + f" | {per_seed} |")
    return lines


def _cell(values: list[float | None]) -> str:
    mean, sd, n = mean_sd(values)
    return "n/a" if mean is None else f"{mean:.1f}" + ("" if sd is None else f" ± {sd:.1f}")


def compare(found_a, found_b, metric: str = "test") -> dict | None:
    """``b − a`` on ``metric``, paired by training seed: the mean difference, its per-seed values and
    the verdict. A difference counts (``"win"`` / ``"loss"``) only when its mean exceeds the larger of the
    two methods' seed sd (the research standard: inside the seeds' spread it is a ``"tie"``)."""
    a = {k: r[metric] for k, r in found_a if r[metric] is not None}
    b = {k: r[metric] for k, r in found_b if r[metric] is not None}
    seeds = sorted(set(a) & set(b), key=lambda k: -1 if k is None else k)
    if not seeds:
        return None
    diffs = [b[k] - a[k] for k in seeds]
    mean = sum(diffs) / len(diffs)
    spread = max((sd for _, sd, _ in (mean_sd([a[k] for k in seeds]), mean_sd([b[k] for k in seeds]))
                  if sd is not None), default=None)  # fmt: skip
    verdict = "tie" if spread is None or abs(mean) <= spread else ("win" if mean > 0 else "loss")
    return {"mean": mean, "diffs": diffs, "seeds": seeds, "spread": spread, "verdict": verdict}


#: what a variant setting ``<base>_<variant>`` without its own runs of them takes from ``<base>``
BASELINES = ("warmup", "pce", "grid-gd", "dense-gd", "full")
#: what a variant that runs baselines only (e.g. ``_gd0.1``, Grid-GD at its own λ) also takes from
#: ``<base>``: the methods it is the baseline of, so that the row shows ``grid-tr − grid-gd``
COMPARED = ("grid-tr", "dense-tr")


def _base_setting(setting: str, by_setting: dict) -> str | None:
    """The longest other setting ``b`` with ``setting == b + "_" + ...`` that has a pce run, or None."""
    bases = [b for b in by_setting if b != setting and setting.startswith(b + "_") and "pce" in by_setting[b]]
    return max(bases, key=len) if bases else None


SUMMARY_PAIRS = (
    ("grid-tr", "pce"),
    ("adm", "pce"),
    ("grid-tr", "warmup"),
    ("grid-tr", "grid-gd"),
    ("dense-tr", "pce"),
    ("dense-tr", "dense-gd"),
    ("grid-gd", "pce"),
    ("dense-gd", "pce"),
)


def summary(groups, metric: str = "test") -> list[str]:
    """One row per setting: ``metric`` mIoU mean ± sd over the training seeds of every method run there,
    the paired differences of :data:`SUMMARY_PAIRS` (mean, per-seed values, verdict of :func:`compare`) and
    the share of the PCE → full-supervision gap that grid-tr closes; then one command per (setting, method)
    (the seed-0 run's; the other seeds differ only in ``--seed``). A variant setting ``<base>_<variant>``
    (e.g. ``horse_full_long_auto``, only grid-tr) is compared with the :data:`BASELINES` of ``<base>``
    (the same runs, paired by seed; their commands are listed once, under ``<base>``); a variant that
    runs baselines only (``horse_full_long_gd1``) also takes the :data:`COMPARED` methods of ``<base>``."""
    by_setting: dict[str, dict[str, list]] = {}
    for setting, m, found in groups:
        by_setting.setdefault(setting, {})[m] = found
    own = {setting: set(found_by) for setting, found_by in by_setting.items()}
    for setting, found_by in by_setting.items():  # a variant compares with its base setting's baselines
        base = _base_setting(setting, by_setting)
        if base is not None:
            borrowed = BASELINES + (COMPARED if set(found_by) <= set(BASELINES) else ())
            for m in borrowed:
                if m not in found_by and m in by_setting[base]:
                    found_by[m] = by_setting[base][m]
    methods = [m for m in METHODS if any(m in ms for ms in by_setting.values())]
    pairs = [(b, a) for b, a in SUMMARY_PAIRS if b in methods and a in methods]
    head = ["setting", "seeds"] + methods + [f"{b} − {a}" for b, a in pairs]
    if "full" in methods and "pce" in methods and "grid-tr" in methods:
        head.append("gap closed by grid-tr")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    commands = []
    for setting, found_by in by_setting.items():
        seeds = sorted({k for found in found_by.values() for k, _ in found}, key=lambda k: -1 if k is None else k)
        cells = [setting, ", ".join("–" if k is None else str(k) for k in seeds)]
        cells += [_cell([r[metric] for _, r in found_by[m]]) if m in found_by else "" for m in methods]
        for b, a in pairs:
            c = compare(found_by[a], found_by[b], metric) if a in found_by and b in found_by else None
            cells.append("" if c is None else f"{c['mean']:+.1f} ({', '.join(f'{d:+.1f}' for d in c['diffs'])}; "
                         f"{c['verdict']})")  # fmt: skip
        if len(head) > len(cells):
            means = {m: mean_sd([r[metric] for _, r in found_by[m]])[0] if m in found_by else None
                     for m in ("pce", "grid-tr", "full")}  # fmt: skip
            gap = None if None in means.values() else means["full"] - means["pce"]
            # a gap inside the seeds' spread (full supervision no better than PCE) has no share to close
            noise = max((sd for m in ("pce", "full") if m in found_by
                         and (sd := mean_sd([r[metric] for _, r in found_by[m]])[1])),
                        default=0.0)  # fmt: skip
            cells.append("n/a" if not gap or gap <= noise else f"{100 * (means['grid-tr'] - means['pce']) / gap:.0f} %")
        lines.append("| " + " | ".join(cells) + " |")
        for m in methods:
            if m in own[setting]:  # a borrowed baseline's command is listed under its own setting
                commands.append(found_by[m][0][1]["command"])
    lines.append("")
    lines += [f"    {c}" for c in commands]
    return lines


def figure_size(n_settings: int, n_methods: int) -> tuple[int, int]:
    """The figure's ``(width, height)`` in px for ``n_settings`` groups of ``n_methods`` bars."""
    group_w = max(n_methods * (BAR_W + BAR_GAP), MIN_GROUP_W) + GROUP_PAD
    return LEFT + max(n_settings, 1) * group_w + LEGEND_W, TOP + PLOT_H + BOTTOM


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def _text_w(draw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to at most ``width`` px."""
    if _text_w(draw, text, font) <= width:
        return text
    while text and _text_w(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def write_figure(groups, path: str | Path, metric: str = "test") -> Path:
    """Grouped bar chart of ``metric`` mIoU: one group per setting, one bar per method, mean ± sd over seeds.

    Parameters
    ----------
    groups : list of (setting, method, runs)
        As :func:`collect` returns.
    path : path
        Output ``.png``, written atomically (temporary file in the same folder, then :func:`os.replace`).
    metric : {"test", "val"}
        Which ``final.json`` mIoU.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from PIL import Image, ImageDraw

    if metric not in ("test", "val"):
        raise ValueError(f"metric: expected 'test' or 'val', got {metric!r}")
    settings = list(dict.fromkeys(s for s, _, _ in groups))
    methods = [m for m in METHODS if any(g[1] == m for g in groups)]
    stats = {(s, m): mean_sd([r[metric] for _, r in found]) for s, m, found in groups}
    width, height = figure_size(len(settings), len(methods))
    group_w = max(len(methods) * (BAR_W + BAR_GAP), MIN_GROUP_W) + GROUP_PAD
    tops = [mean + (sd or 0.0) for mean, sd, _ in stats.values() if mean is not None]
    peak = 1.12 * max(tops) if tops else 100.0  # room for the value labels
    step = 10.0 if peak <= 50 else 20.0
    y_max = step * max(1, math.ceil(peak / step))
    base_y, plot_right = TOP + PLOT_H, width - LEGEND_W

    def y_of(v: float) -> float:
        return base_y - PLOT_H * max(0.0, v) / y_max

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    small, normal = _font(11), _font(13)
    several = any(n > 1 for _, _, n in stats.values())
    title = f"{metric} mIoU (x100) per setting and method"
    if several:
        title += "; mean ± 1 sd over seeds (n under the bar)"
    draw.text((8, 8), _fit(draw, title, normal, width - 16), fill=(0, 0, 0), font=normal)
    for i in range(round(y_max / step) + 1):  # y grid, ticks and labels
        v = i * step
        y = round(y_of(v))
        draw.line((LEFT, y, plot_right, y), fill=(225, 225, 225) if i else (0, 0, 0))
        label = f"{v:.0f}"
        draw.text((LEFT - 6 - _text_w(draw, label, small), y - 7), label, fill=(0, 0, 0), font=small)
    draw.line((LEFT, TOP, LEFT, base_y), fill=(0, 0, 0))
    draw.text((8, TOP - 18), "mIoU", fill=(0, 0, 0), font=small)
    for gi, setting in enumerate(settings):
        x0 = LEFT + gi * group_w + GROUP_PAD // 2
        bars_w = len(methods) * (BAR_W + BAR_GAP) - BAR_GAP
        bx0 = x0 + (group_w - GROUP_PAD - bars_w) // 2
        for mi, m in enumerate(methods):
            if (setting, m) not in stats:
                continue  # not run in this setting: an empty slot
            mean, sd, n = stats[(setting, m)]
            x = bx0 + mi * (BAR_W + BAR_GAP)
            cx = x + BAR_W // 2
            if mean is None:
                w = _text_w(draw, "n/a", small)
                draw.text((cx - w // 2, base_y - 16), "n/a", fill=(110, 110, 110), font=small)
                continue
            draw.rectangle((x, round(y_of(mean)), x + BAR_W - 1, base_y - 1), fill=COLOURS[m])
            top = mean
            if sd is not None:
                top = mean + sd
                y_hi, y_lo = round(y_of(mean + sd)), round(y_of(mean - sd))
                draw.line((cx, y_hi, cx, y_lo), fill=(0, 0, 0), width=1)
                draw.line((cx - 5, y_hi, cx + 5, y_hi), fill=(0, 0, 0))
                draw.line((cx - 5, y_lo, cx + 5, y_lo), fill=(0, 0, 0))
            labels = [f"{mean:.1f}"] + ([f"±{sd:.1f}"] if sd is not None else [])
            y_text = round(y_of(top)) - 4 - 13 * len(labels)
            for j, text in enumerate(labels):
                w = _text_w(draw, text, small)
                draw.text((cx - w // 2, y_text + 13 * j), text, fill=(0, 0, 0), font=small)
            if several:
                text = f"n={n}"
                draw.text((cx - _text_w(draw, text, small) // 2, base_y + 22), text, fill=(90, 90, 90), font=small)
        name = _fit(draw, setting, normal, group_w - 8)
        draw.text((x0 + (group_w - GROUP_PAD - _text_w(draw, name, normal)) // 2, base_y + 6), name,
                  fill=(0, 0, 0), font=normal)  # fmt: skip
    for mi, m in enumerate(methods):  # legend, right of the plot
        y = TOP + 4 + 20 * mi
        draw.rectangle((plot_right + 14, y, plot_right + 27, y + 13), fill=COLOURS[m], outline=(60, 60, 60))
        draw.text((plot_right + 33, y), m, fill=(0, 0, 0), font=normal)
    return atomic_write(path, lambda f: canvas.save(f, format="PNG"))


def main(root: str = "runs/results", figure: str | Path | None = None, metric: str = "test",
         settings: list[str] | None = None) -> Path | None:  # fmt: skip
    """Print the Markdown table of the runs under ``root``; write the figure (``<root>/results.png`` by default).

    ``figure=False`` writes none; ``settings``: shell patterns, only the settings matching one. Returns the figure's path (None when none was written: no figure, or no run).
    """
    groups = collect(root)
    if settings:  # shell-style patterns of setting names
        import fnmatch

        groups = [g for g in groups if any(fnmatch.fnmatchcase(g[0], pattern) for pattern in settings)]
    tables = {"val": mechanism, "summary": summary, "summary-val": lambda g: summary(g, "val")}
    for line in tables.get(metric, markdown)(groups):
        print(line)
    if figure is False or not groups:
        return None
    path = write_figure(groups, Path(root) / "results.png" if figure is None else figure,
                        {"summary": "test", "summary-val": "val"}.get(metric, metric))  # fmt: skip
    print(f"figure: {path}", file=sys.stderr)
    return path


BLOCK = re.compile(r"(<!-- results_table: (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /results_table -->)", re.DOTALL)


def update_doc(path: str | Path) -> int:
    """Regenerate every block ``<!-- results_table: ARGS -->`` … ``<!-- /results_table -->`` of the
    Markdown file ``path`` with this script's table for ``ARGS`` (e.g. ``runs/investigation --metric
    summary-val --settings '*_long*'``; the commands list is dropped, no figure). Written atomically;
    returns the number of blocks."""
    import contextlib
    import io
    import shlex

    text = Path(path).read_text()

    def table(match: re.Match) -> str:
        parser = _parser()
        args = parser.parse_args(shlex.split(match.group("args")))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(args.root, False, args.metric, args.settings)
        rows = [line for line in out.getvalue().splitlines() if line.startswith("|")]
        return match.group(1) + "\n".join(rows) + "\n" + match.group(4)

    new, count = BLOCK.subn(table, text)
    atomic_write(path, lambda f: f.write(new.encode()))
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-doc", default=None, metavar="MARKDOWN",
                        help="regenerate the <!-- results_table: ARGS --> blocks of this Markdown file instead")  # fmt: skip
    parser.add_argument("root", nargs="?", default="runs/results", help="folder of <setting>/<method>/ runs")
    parser.add_argument("--figure", default=None, help="PNG bar chart (default: <root>/results.png)")
    parser.add_argument("--no-figure", action="store_true", help="print the table only")
    parser.add_argument("--settings", nargs="+", default=None, metavar="PATTERN",
                        help="only the settings whose names match one of these shell patterns, e.g. '*_long*'")  # fmt: skip
    parser.add_argument("--metric", choices=("test", "val", "summary", "summary-val"), default="test",
                        help="test: the results table and figure; val: the validation-only investigation table "
                             "(mean ± sd over seeds, the mechanism on the training images, no test column); "
                             "summary: one row per setting, test mIoU mean ± sd over the seeds per method, the "
                             "paired method differences with their verdict and the gap grid-tr closes; "
                             "summary-val: the same on the validation split (for choosing)")  # fmt: skip
    return parser


def _cli(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.update_doc:
        print(f"{update_doc(args.update_doc)} table(s) regenerated in {args.update_doc}", file=sys.stderr)
        return
    try:
        main(args.root, False if args.no_figure else args.figure, args.metric, args.settings)
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    _cli()
