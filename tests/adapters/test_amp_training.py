"""Mixed precision in the training loop (``TrainConfig.amp``, CLI ``--amp``): bf16 on the CPU runs
stage B's forward pass in bf16 and resumes exactly; fp16 is refused off CUDA before anything is
written; the warm-up key of a full-precision run is unchanged; on CUDA, fp16's loss scale is
checkpointed."""

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import _tiny_runs as tiny  # noqa: E402  (tests/ is on sys.path through its conftest)

from chainrule2_torch.fitters import check_amp  # noqa: E402
from chainrule2_torch.training import TrainConfig, _warmup_key, train  # noqa: E402

RUN = dict(epochs=2, warmup_epochs=1, stage_a_every=1)


@pytest.fixture(scope="module")
def data():
    return tiny.demo_splits()


def _same_networks(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_amp_values():
    assert [check_amp(v) for v in (False, None, True, "bf16", "bfloat16", "fp16", "float16")] == [
        None, None, "bf16", "bf16", "bf16", "fp16", "fp16"]  # fmt: skip
    for bad in ("fp8", 1, "BF16"):
        with pytest.raises(ValueError, match=r"amp: expected False, None, True, 'bf16' or 'fp16', got"):
            TrainConfig(amp=bad)


def test_fp16_on_the_cpu_is_refused_before_anything_is_written(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"amp: 'fp16' needs a CUDA device .* use 'bf16'"):
        train(tiny.tiny_config("grid-tr", amp="fp16", **RUN), tiny.tiny_net(), *data, out_dir=out, progress=False)
    assert not out.exists()


def test_bf16_trains_in_bf16_and_resumes_exactly(data, tmp_path):
    config = tiny.tiny_config("grid-tr", amp="bf16", **RUN)
    full_net = tiny.tiny_net()
    dtypes = []
    hook = full_net.register_forward_hook(lambda m, i, out: dtypes.append((m.training, out.dtype)))
    full = train(config, full_net, *data, out_dir=tmp_path / "full", progress=False, panels=0)
    hook.remove()
    # stage B's forward passes are bf16; stage A's and the evaluation's (eval mode) are float32
    assert {d for training, d in dtypes if training} == {torch.bfloat16}
    assert {d for training, d in dtypes if not training} == {torch.float32}
    plain = tiny.tiny_net()
    train(dataclasses.replace(config, amp=False), plain, *data, out_dir=tmp_path / "fp32", progress=False, panels=0)
    assert not torch.equal(plain.state_dict()["head.weight"], full_net.state_dict()["head.weight"])

    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "cut", progress=False, panels=0, stop_after_epoch=1)
    net = tiny.tiny_net(seed=99)
    resumed = train(config, net, *data, out_dir=tmp_path / "cut", progress=False, panels=0, resume=True)
    _same_networks(full_net, net)
    assert resumed["test"]["miou"] == full["test"]["miou"]
    with pytest.raises(ValueError, match=r"different configuration \(fields \['amp'\]\)"):
        train(dataclasses.replace(config, amp=False), tiny.tiny_net(), *data, out_dir=tmp_path / "cut",
              progress=False, panels=0, resume=True)  # fmt: skip


def test_the_warmup_key_names_amp_only_when_it_is_on(data, tmp_path):
    fingerprint = {"data": "x"}
    assert "amp" not in _warmup_key(TrainConfig(), fingerprint)  # warm-ups saved before amp existed still load
    assert _warmup_key(TrainConfig(amp=True), fingerprint)["amp"] == "bf16"
    ckpt = tmp_path / "warmup.pt"
    config = tiny.tiny_config("grid-tr", amp="bf16", **RUN)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "a", progress=False, panels=0, warmup_checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"another warm-up \(differing fields: \['amp'\]\)"):
        train(dataclasses.replace(config, amp=False), tiny.tiny_net(), *data, out_dir=tmp_path / "b",
              progress=False, panels=0, warmup_checkpoint=ckpt)  # fmt: skip


def test_cli_amp():
    cli = tiny.cli_module()
    assert cli.parse_args(["--demo", "--amp", "bf16"]).amp == "bf16"
    assert cli.parse_args(["--demo"]).amp is None
    with pytest.raises(SystemExit):
        cli.parse_args(["--demo", "--amp", "fp16"])
    assert cli.parse_args(["--demo", "--amp", "fp16", "--device", "cuda"]).amp == "fp16"


def test_cli_amp_fp16_error_names_the_options(capsys):
    with pytest.raises(SystemExit):
        tiny.cli_module().parse_args(["--amp", "fp16"])
    assert "--amp fp16: needs --device cuda" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_fp16_on_cuda_checkpoints_its_loss_scale_and_resumes(data, tmp_path):
    config = tiny.tiny_config("grid-tr", amp="fp16", **RUN)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path, device="cuda", progress=False, panels=0,
          stop_after_epoch=1)  # fmt: skip
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    assert state["phase"]["scaler"]["scale"] > 0
    final = train(config, tiny.tiny_net(seed=99), *data, out_dir=tmp_path, device="cuda", progress=False, panels=0,
                  resume=True)  # fmt: skip
    assert 0 <= final["test"]["miou"] <= 100
