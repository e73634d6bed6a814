"""Summarise runs/results/<row>/<method>/ into the Markdown table of docs/results.md.

python examples/results_table.py runs/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METHODS = ("pce", "grid-gd", "adm", "grid-tr", "full")


def row(folder: Path) -> dict | None:
    final_path, metrics_path = folder / "final.json", folder / "metrics.jsonl"
    if not final_path.exists():
        return None
    final = json.loads(final_path.read_text())
    lines = [json.loads(x) for x in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    main = [r for r in lines if r["phase"] != "pce"] or lines
    epoch_s = sum(r["epoch_s"] for r in main) / max(len(main), 1)
    stage_a = sum(r.get("stage_a_s", 0.0) for r in main)
    total_main = sum(r["epoch_s"] for r in main)
    return {
        "test": final.get("test", {}).get("miou", float("nan")),
        "val": final.get("val", {}).get("miou", float("nan")),
        "pseudo": final.get("pseudo_miou"),
        "seconds": final.get("seconds", float("nan")),
        "epoch_s": epoch_s,
        "stage_a_share": stage_a / total_main if total_main else 0.0,
        "epochs": len(lines),
        "command": final.get("command", ""),
    }


def main(root: str = "runs/results") -> None:
    print(
        "| setting | method | test mIoU | val mIoU | stage-A labels mIoU (train) | s/epoch (after warm-up) | stage-A share | run s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    commands = []
    for setting in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for m in METHODS:
            r = row(setting / m)
            if r is None:
                continue
            pseudo = f"{r['pseudo']:.1f}" if r["pseudo"] is not None else "–"
            print(f"| {setting.name} | {m} | {r['test']:.1f} | {r['val']:.1f} | {pseudo} | {r['epoch_s']:.1f} | "
                  f"{100 * r['stage_a_share']:.0f} % | {r['seconds']:.0f} |")  # fmt: skip
            commands.append(r["command"])
    print()
    for c in commands:
        print(f"    {c}")


if __name__ == "__main__":
    main(*sys.argv[1:])
