"""The prepared GPU check: what the project asks of a lent GPU (docs/scaling.md#the-gpu-path), in one
call, with one JSON report. Prints the report and writes it, with one log per step, to ``--out``.

    python benchmarks/gpu_check.py --prepare                  # here, once: wheels and data into .gpu_kit/
    python benchmarks/gpu_check.py --out "$OUT"               # there: the device tool's run, carry [".gpu_kit"]
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # the same steps, tiny, on the CPU

The device machine has torch, numpy, scipy, pytest and hypothesis but not PyMaxflow,
array-api-compat or array-api-strict, and no network: ``--prepare`` downloads their CPython 3.12 wheels and copies the
Weizmann horses (17 MB) into ``.gpu_kit/`` (git-ignored), which the run installs into a temporary
folder. Steps, in order of importance; each runs in a subprocess with its own limit, and a step is
skipped once ``--budget`` seconds are spent:

1. ``pytest -m cuda``: the CUDA-marked tests (stage A and stage B on the device, AMP, fp16's scaler).
2. The demo (``--demo``, seed 0) on the CPU in float32 and on ``--device`` in float32, bf16 and fp16:
   val/test mIoU, training seconds, mean epoch seconds, stage A's share of the epochs.
3. Agreement: the device's float32 demo network evaluated on the CPU and on the device, in float32
   and under bf16 autocast, on 8 unseen demo images: max |Δ logit| and the fraction of equal arg-max labels.
4. Stage A on the device: ``benchmarks/stage_a.py --device-path`` (MeanField batched in torch on CUDA
   against alpha-expansion on the host).
5. Training cost: ``benchmarks/training.py --json --device <device> --amp bf16`` (stage B on the
   device, stage A on the host's cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / ".gpu_kit"
#: what the device machine lacks (its image has the rest), distribution -> module; the versions of this
#: machine's environment. array-api-strict: test modules import it at collection time.
WHEELS = {"PyMaxflow": "maxflow", "array-api-compat": "array_api_compat", "array-api-strict": "array_api_strict"}
#: (name, --device is the GPU, --amp) of the demo runs; the CPU float32 run is the reference
DEMOS = (("cpu_fp32", False, None), ("device_fp32", True, None), ("device_bf16", True, "bf16"),
         ("device_fp16", True, "fp16"))  # fmt: skip


def prepare(data: Path) -> None:
    """Download the missing packages' cp312 wheels and copy the horses into ``.gpu_kit/``."""
    from importlib.metadata import version

    wheels = KIT / "whl"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *platforms, "-d", str(wheels), *pins], check=True)  # fmt: skip
    horses = data / "weizmann_horse"
    if not horses.is_dir():
        raise SystemExit(f"--prepare: {horses} not found (pass --data)")
    target = KIT / "data" / "weizmann_horse"
    if not target.exists():
        shutil.copytree(horses, target)
    print(json.dumps({"kit": str(KIT), "wheels": sorted(p.name for p in wheels.iterdir()), "data": str(target)}))


def _environment(site: Path) -> dict:
    """The subprocesses' environment: the repository and its adapter on the path, the kit's packages and data."""
    paths = [str(ROOT), str(ROOT / "adapters")] + ([str(site)] if site.is_dir() else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    if (KIT / "data").is_dir():
        env["CHAINRULE2_DATA"] = str(KIT / "data")
    return env


def _install(site: Path) -> dict:
    """The kit's wheels into ``site`` where a package is missing (nothing to do on a prepared machine)."""
    missing = [name for name, module in WHEELS.items()
               if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode]  # fmt: skip
    wheels = sorted((KIT / "whl").glob("*.whl"))
    if missing and wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)  # fmt: skip
    return {"missing": missing, "installed": [w.name for w in wheels] if missing else []}


class Steps:
    """Runs each step's command with a limit, appends its output to a log under ``out``, keeps the budget."""

    def __init__(self, out: Path, env: dict, budget: float):
        self.out, self.env, self.deadline = out, env, time.monotonic() + budget

    def run(self, log: str, command: list[str], limit: float) -> dict:
        left = self.deadline - time.monotonic()
        if left < 10:
            return {"skipped": "budget spent"}
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True,
                                  timeout=min(limit, left))  # fmt: skip
            rc, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as err:
            rc, stdout, stderr = "timeout", _text(err.stdout), _text(err.stderr)
        with open(self.out / log, "a") as f:
            f.write(f"$ {' '.join(command)}\n{stdout}\n{stderr}\n[rc {rc}]\n")
        return {"rc": rc, "seconds": round(time.monotonic() - started, 1), "stdout": stdout}


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _pytest(steps: Steps, quick: bool) -> dict:
    target = ["tests/adapters/test_amp_training.py"] if quick else ["tests"]
    # a module that cannot be collected there must not keep the other modules' CUDA tests from running
    result = steps.run("pytest.log", [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                                      "--continue-on-collection-errors", *target], 300)  # fmt: skip
    lines = result.pop("stdout", "").strip().splitlines()
    result["summary"] = next((x for x in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|deselected)", x)),
                             None)  # fmt: skip
    return result


def _demo_figures(out: Path) -> dict:
    """mIoU, seconds, mean epoch seconds per phase and stage A's share, from the run's own files."""
    final = json.loads((out / "final.json").read_text())
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    figures: dict = {"val_miou": final["val"]["miou"], "test_miou": final["test"]["miou"], "seconds": final["seconds"]}
    for phase in sorted({r["phase"] for r in records}):
        figures[f"{phase}_epoch_s"] = statistics.mean(r["epoch_s"] for r in records if r["phase"] == phase)
    figures["stage_a_share"] = sum(r.get("stage_a_s", 0.0) for r in records) / sum(r["epoch_s"] for r in records)
    return figures


def _demos(steps: Steps, device: str, quick: bool, folder: Path) -> dict:
    results = {}
    for name, on_device, amp in DEMOS:
        if amp == "fp16" and not device.startswith("cuda"):
            results[name] = {"skipped": "fp16 needs CUDA"}
            continue
        out = folder / name
        command = [sys.executable, "examples/segmentation_scribbles.py", "--demo", "--no-progress", "--out", str(out),
                   "--device", device if on_device else "cpu"]  # fmt: skip
        command += ["--amp", amp] if amp else []
        command += ["--epochs", "1", "--warmup-epochs", "1", "--limit", "12", "--size", "32"] if quick else []
        result = steps.run("demo.log", command, 240)
        result.pop("stdout", None)
        if result.get("rc") == 0:
            result.update(_demo_figures(out))
        results[name] = result
    return results


def agreement(model_path: Path, device: str, width: int, size: int) -> dict:
    """One network's logits on the CPU vs on ``device`` (float32), and under bf16 autocast there."""
    import numpy as np
    import torch

    from chainrule2_torch.data import collate, make_demo_dataset
    from chainrule2_torch.networks import UNet

    samples = make_demo_dataset(8, size, seed=12345)  # not the demo's images
    net = UNet(3, samples[0].num_classes, width=width)
    net.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    net.eval()
    inputs = collate(samples).inputs

    def logits(where: str, amp: bool = False) -> np.ndarray:
        with torch.no_grad(), torch.autocast(torch.device(where).type, dtype=torch.bfloat16, enabled=amp):
            return net.to(where)(inputs.to(where)).float().cpu().numpy()

    cpu, dev, bf16 = logits("cpu"), logits(device), logits(device, amp=True)
    return {
        "images": len(samples),
        "max_abs_logit_diff_device_vs_cpu": float(np.abs(dev - cpu).max()),
        "argmax_agreement_device_vs_cpu": float((dev.argmax(1) == cpu.argmax(1)).mean()),
        "max_abs_logit_diff_bf16_vs_fp32": float(np.abs(bf16 - dev).max()),
        "argmax_agreement_bf16_vs_fp32": float((bf16.argmax(1) == dev.argmax(1)).mean()),
    }


def _json_step(steps: Steps, log: str, command: list[str], limit: float) -> dict:
    result = steps.run(log, command, limit)
    stdout = result.pop("stdout", "")
    if result.get("rc") == 0:
        result["result"] = json.loads(stdout[stdout.index("{") :])
    return result


def check(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.gettempdir()) / "chainrule2_gpu_site"
    report: dict = {"setup": _install(site)}
    steps = Steps(out, _environment(site), args.budget)
    probe = steps.run(
        "setup.log",
        [
            sys.executable,
            "-c",
            "import json, torch; print(json.dumps({'torch': "
            "torch.__version__, 'cuda': torch.cuda.is_available(), 'gpu': "
            "torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))",
        ],
        60,
    )
    report["setup"].update(json.loads(probe["stdout"]) if probe.get("rc") == 0 else {"probe": probe})
    report["pytest_cuda"] = _pytest(steps, args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        report["demo"] = _demos(steps, args.device, args.quick, Path(tmp))
        model = Path(tmp) / "device_fp32" / "model.pt"
        if model.exists():
            command = [sys.executable, __file__, "--agreement", str(model), "--device", args.device,
                       "--size", "32" if args.quick else "96"]  # fmt: skip
            report["agreement"] = _json_step(steps, "demo.log", command, 120)
    small = ["--images", "2", "--repeats", "1", "--size", "32"] if args.quick else ["--images", "8", "--repeats", "5"]
    root = steps.env.get("CHAINRULE2_DATA")  # the kit's copy, else the caller's data root, else stage_a.py's default
    data = ["--data", root] if root else []
    report["stage_a_device"] = _json_step(steps, "stage_a.log", [sys.executable, "benchmarks/stage_a.py",
                                                                 "--device-path", *small, *data], 240)  # fmt: skip
    tiny = ["--dataset", "demo", "--images", "8", "--epochs", "2", "--warmup-epochs", "1", "--repeats", "1"]
    report["training"] = _json_step(steps, "training.log", [sys.executable, "benchmarks/training.py", "--json",
                                    "--device", args.device, "--amp", "bf16", *(tiny if args.quick else [])],
                                    360)  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepare", action="store_true", help="download the wheels and copy the data into .gpu_kit/")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="with --prepare: the data root")
    p.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check"), help="report and logs (default $OUT)")
    p.add_argument("--device", default="cuda", help="the device under test")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke test of this script)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for all steps; later steps are skipped")
    p.add_argument("--agreement", type=Path, default=None, help=argparse.SUPPRESS)  # step 3, in its own process
    p.add_argument("--size", type=int, default=96, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.prepare:
        prepare(args.data)
        return None
    if args.agreement is not None:
        print(json.dumps(agreement(args.agreement, args.device, width=16, size=args.size)))
        return None
    report = check(args)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
