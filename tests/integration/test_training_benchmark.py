"""benchmarks/training.py --json (issue 12's figures) and benchmarks/pool_ab.py run on small data and print their figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("maxflow")

ROOT = Path(__file__).resolve().parents[2]


def test_training_benchmark_prints_one_json_object_with_its_ratios():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--json", "--dataset", "demo", "--images", "8",
           "--size", "32", "--warmup-epochs", "1", "--epochs", "2", "--stage-a-every", "1", "--repeats", "1"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dataset"] == "demo" and out["images"] == 8
    assert set(out["seconds_per_epoch"]) == {"pce", "grid-gd", "grid-tr", "grid-tr-overlap"}
    ratios = ("grid_tr_over_pce", "grid_gd_over_pce", "grid_tr_overlap_steady_over_pce", "stage_a_speedup_2proc",
              "machine_ceiling_2proc", "stage_a_parallel_efficiency")  # fmt: skip
    for key in ratios:
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert 0 < out["grid_tr_stage_a_share"] < 1
    assert len(out["stage_a_seconds_1proc"]) == len(out["stage_a_seconds_2proc"]) == 1


def test_pool_ab_prints_the_speed_up_of_each_pool():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pool_ab.py"), "--images", "6", "--size", "32", "--repeats", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out["speedup_2proc"]) == {"in_order", "largest_first", "largest_first_wide"}
    assert all(math.isfinite(v) and v > 0 for v in out["speedup_2proc"].values())
