"""benchmarks/training.py --json (issue 12's figures), benchmarks/pool_ab.py and the prepared GPU check
(benchmarks/gpu_check.py) run on small data and print their figures."""

import json
import math
import os
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


def test_the_prepared_gpu_check_runs_every_step_on_the_cpu(shared_data, tmp_path):
    """benchmarks/gpu_check.py is run once, unattended, when a session is lent a GPU: here its steps
    run on the CPU at tiny sizes, so a broken step is found before a GPU's minutes are spent on it."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick", "--out",
           str(tmp_path)]  # fmt: skip
    env = {**os.environ, "CHAINRULE2_DATA": str(shared_data)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["setup"]["torch"] and report["setup"]["missing"] == []
    assert report["pytest_cuda"]["rc"] in (0, 5) and report["pytest_cuda"]["summary"]  # 5: every test deselected
    demo = report["demo"]
    assert demo["device_fp16"] == {"skipped": "fp16 needs CUDA"}
    for name in ("cpu_fp32", "device_fp32", "device_bf16"):
        assert demo[name]["rc"] == 0 and 0 <= demo[name]["test_miou"] <= 100 and 0 < demo[name]["stage_a_share"] < 1
    agreement = report["agreement"]["result"]
    assert agreement["max_abs_logit_diff_device_vs_cpu"] == 0.0  # the "device" is the CPU here
    assert 0 < agreement["max_abs_logit_diff_bf16_vs_fp32"] < 1 and agreement["argmax_agreement_bf16_vs_fp32"] > 0.9
    assert report["stage_a_device"]["rc"] == 0 and report["stage_a_device"]["result"]["paths"]
    training = report["training"]["result"]
    assert training["device"] == "cpu" and training["amp"] == "bf16" and training["grid_tr_over_pce"] > 0
    assert {p.name for p in tmp_path.iterdir()} >= {"report.json", "pytest.log", "demo.log", "training.log"}
