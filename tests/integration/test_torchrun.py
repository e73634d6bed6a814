"""torchrun --nproc_per_node 2 on the CPU (gloo): the run finishes, the ranks solve disjoint shards that
cover every training image, rank 0 alone writes, and the checkpoint loads in a single process."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")
if not torch.distributed.is_available():  # pragma: no cover - every wheel we install has it
    pytest.skip("torch.distributed is not available", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [shutil.which("torchrun") or "torchrun"]


@pytest.mark.parametrize("mode", ["labels", "soft", "overlap"])
def test_two_processes_train_share_stage_a_and_resume_in_one(tmp_path, mode):
    """labels: alpha-expansion; soft: mean-field distributions; overlap: --stage-a-overlap (the second
    stage A in each rank's background thread and worker process, the collectives after the epoch)."""
    soft = mode == "soft"
    out = tmp_path / "ddp"
    args = ["--demo", "--limit", "12", "--size", "24", "--epochs", "2", "--warmup-epochs", "1", "--stage-a-every", "1",
            "--out", str(out), "--no-progress"]  # fmt: skip
    args += ["--stage-a-solver", "mean-field", "--soft-targets"] if soft else []
    args += ["--stage-a-overlap"] if mode == "overlap" else []
    cmd = _torchrun() + ["--standalone", "--nproc_per_node", "2", str(ROOT / "examples" / "segmentation_scribbles.py")]
    result = subprocess.run(cmd + args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 2 and final["command"].startswith("torchrun --nproc_per_node 2")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2]  # one writer: no line twice
    stage_a = [r for r in lines if "stage_a_items" in r]
    assert len(stage_a) == 2 and all(r["stage_a_items"] == [3, 3] for r in stage_a)  # 6 training images
    assert [r.get("stage_a_overlapped", False) for r in stage_a] == [False, mode == "overlap"]
    cached = sorted(p.stem for p in (out / "stage_a").glob("*.npz" if soft else "*.png"))
    assert cached == [f"demo{k:03d}" for k in range(6)]  # disjoint shards (3 + 3) covering all 6
    assert not list(out.glob(".*.tmp")) and not list((out / "stage_a").glob(".*.tmp"))

    # the distributed checkpoint loads in a single-process run (same model, same test mIoU)
    from chainrule2_torch.data import make_demo_dataset
    from chainrule2_torch.networks import UNet
    from chainrule2_torch.training import evaluate_network

    net = UNet(3, 3, width=16)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    test = make_demo_dataset(12, 24, seed=0)[9:]
    assert evaluate_network(net, test, batch_size=8)["miou"] == pytest.approx(final["test"]["miou"], abs=1e-9)
    resumed = subprocess.run([sys.executable, str(ROOT / "examples" / "segmentation_scribbles.py"), *args,
                              "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((out / "final.json").read_text())
    assert again["test"]["miou"] == pytest.approx(final["test"]["miou"], abs=1e-9) and "world_size" not in again


def test_one_and_two_processes_agree_without_batch_norm(tmp_path):
    """Same global batches, gradients averaged over equal halves: equal up to reduction order."""
    script = str(ROOT / "tests" / "integration" / "_ddp_equivalence.py")
    one = subprocess.run([sys.executable, script, str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)  # fmt: skip
    two = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node", "2", script, str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    a = json.loads((tmp_path / "one" / "result_rank0.json").read_text())
    b = [json.loads((tmp_path / "two" / f"result_rank{k}.json").read_text()) for k in (0, 1)]
    assert b[0] == b[1]  # both ranks hold the same model
    assert b[0]["weights"] == pytest.approx(a["weights"], rel=1e-9, abs=1e-9)
    assert b[0]["val"] == pytest.approx(a["val"], abs=1e-9)


def test_sync_bn_is_refused_on_the_cpu_and_keeps_checkpoints_loadable(capsys):
    """``--sync-bn`` (torch.nn.SyncBatchNorm, GPUs only) says so on the CPU; the converted network has
    the plain network's state-dict keys, so its checkpoints load without it."""
    import _tiny_runs as tiny  # tests/ is on sys.path through its conftest

    cli = tiny.cli_module()
    with pytest.raises(SystemExit):
        cli.parse_args(["--demo", "--sync-bn"])
    assert "--sync-bn: needs --device cuda" in capsys.readouterr().err
    assert cli.parse_args(["--demo", "--sync-bn", "--device", "cuda"]).sync_bn
    plain = tiny.tiny_net()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tiny.tiny_net())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert synced.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(synced.state_dict())
