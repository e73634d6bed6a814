"""examples/own_loop.py — a user's own module, dataset and loop with StageA and SeedAwareLoss — runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("maxflow")

ROOT = Path(__file__).resolve().parents[2]


def test_own_loop_example_runs_and_stage_a_labels_are_used():
    cmd = [sys.executable, "-W", "error", str(ROOT / "examples" / "own_loop.py"), "--images", "12", "--size", "32",
           "--warmup-epochs", "2", "--epochs", "2", "--stage-a-every", "1"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 <= out["val_miou_after_warmup"] <= 100 and 0 <= out["val_miou"] <= 100


def test_own_loop_stays_small():
    marked = [x for x in (ROOT / "examples" / "own_loop.py").read_text().splitlines() if "# chainrule2" in x]
    assert 0 < len(marked) <= 30
