"""How stage A's cost grows with the image size and the number of labels (docs/scaling.md).

Real photos (Weizmann horse if present, else the generated demo images) resized to each size; the
unary is β·CE of smooth random logits with L classes (a confident, spatially coherent "network"),
the pairwise term the contrast-sensitive N8 Potts of the paper (λ = 100), one short scribble per
class (so all L labels are in play; with the paper's label restriction only the scribbled classes are). Alpha-expansion (5 sweeps) seconds per image, the median of ``--repeats`` solves.

    python benchmarks/stage_a_scaling.py --json
    python benchmarks/stage_a_scaling.py --json --sizes 96 192 --labels 2 21 --images 2
    python benchmarks/stage_a_scaling.py --table scaling.json     # the markdown table of a saved result
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chainrule2 as cr  # noqa: E402
from chainrule2.divergences import CrossEntropy  # noqa: E402
from chainrule2.losses import ScribblePotts  # noqa: E402
from chainrule2.solvers import AlphaExpansion  # noqa: E402


def _photos(n: int) -> list[np.ndarray]:
    from chainrule2_torch.data import data_root, make_demo_dataset, read_weizmann_horse

    if (data_root() / "weizmann_horse").is_dir():
        return [np.asarray(s.image) for s in read_weizmann_horse(split="train", size=None, limit=n, seed=0)]
    return [np.asarray(s.image) for s in make_demo_dataset(n, 256, seed=0)]


def _problem(photo: np.ndarray, size: int, labels: int, rng: np.random.Generator):
    from chainrule2_torch.data import resize_image, target_size

    h, w = target_size(photo.shape[:2], size)
    image = resize_image(photo, (h, w)).astype(np.float64)
    logits = np.stack([gaussian_filter(rng.normal(size=(h, w)), sigma=max(h, w) / 16) for _ in range(labels)], -1)
    logits *= 8.0 / logits.std()
    seeds = np.full((h, w), cr.UNLABELED, np.int64)
    for k in range(labels):  # one short stroke per class: every label stays free (no label restriction)
        seeds[(k + 1) * h // (labels + 1), w // 4 : w // 4 + max(2, w // 8)] = k
    return logits[None], cr.Batch(None, seeds[None], images=image[None])


def measure(sizes: list[int], label_counts: list[int], images: int, repeats: int) -> list[dict]:
    stage_a = cr.StageA(AlphaExpansion(max_sweeps=5), ScribblePotts(potts_weight=100.0), CrossEntropy(), 16.0)
    photos = _photos(images)
    rows = []
    for size in sizes:
        for labels in label_counts:
            rng = np.random.default_rng(size * 100 + labels)
            problems = [_problem(p, size, labels, rng) for p in photos]
            seconds = []
            for _ in range(repeats):
                t = time.perf_counter()
                for logits, batch in problems:
                    stage_a.propose(logits, batch)
                seconds.append((time.perf_counter() - t) / len(problems))
            h, w = problems[0][0].shape[1:3]
            rows.append({"size": size, "shape": [int(h), int(w)], "labels": labels, "pixels": int(h * w),
                         "seconds_per_image": statistics.median(seconds), "runs": seconds})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    """Seconds per image: one row per size, one column per number of labels."""
    labels = sorted({r["labels"] for r in rows})
    lines = ["| image (H×W) | pixels | " + " | ".join(f"L = {n}" for n in labels) + " |"]
    lines.append("|---|---|" + "---|" * len(labels))
    for size in sorted({r["size"] for r in rows}):
        of = {r["labels"]: r for r in rows if r["size"] == size}
        first = next(iter(of.values()))
        cells = [f"{of[n]['seconds_per_image']:.3f} s" if n in of else "–" for n in labels]
        lines.append(f"| {first['shape'][0]}×{first['shape'][1]} | {first['pixels']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON list (the default output)")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 192, 384])
    p.add_argument("--labels", type=int, nargs="+", default=[2, 5, 11, 21])
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--table", default=None, help="print the markdown table of a saved --json result and exit")
    args = p.parse_args(argv)
    if args.table:
        rows = json.loads(Path(args.table).read_text())
        print(table(rows))
        return rows
    rows = measure(args.sizes, args.labels, args.images, args.repeats)
    print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
