"""The learned-ε error model in training (``error_prob="learned"``): ε starts at the default, trains
at its own learning rate, is logged per epoch, survives a resume, and bad settings are refused."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("maxflow")

import _tiny_runs as tiny  # noqa: E402  (tests/ is on sys.path through its conftest)

from chainrule2_torch import LearnedErrorRobustCE  # noqa: E402
from chainrule2_torch.training import METHOD_TABLE, TrainConfig, default_error_prob, train  # noqa: E402

RUN = dict(epochs=3, warmup_epochs=1, stage_a_every=2, error_prob="learned")


@pytest.fixture(scope="module")
def data():
    return tiny.demo_splits()


def _logged_eps(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r.get("error_prob") for r in rows]


def test_the_criterion_holds_a_learned_error_model_starting_at_the_default():
    criterion = METHOD_TABLE["grid-tr"].criterion(TrainConfig(method="grid-tr", error_prob="learned"), 3)
    (learned,) = list(criterion.learned)
    assert isinstance(learned, LearnedErrorRobustCE)
    assert float(learned.error_prob.detach()) == pytest.approx(default_error_prob(3), rel=1e-6)
    assert [p is learned.u for p in criterion.parameters()] == [True]


def test_learned_eps_moves_at_its_own_rate_and_is_logged_per_epoch(data, tmp_path):
    fast = train(tiny.tiny_config("grid-tr", **RUN), tiny.tiny_net(), *data, out_dir=tmp_path / "fast",
                 progress=False, panels=0)  # fmt: skip
    slow = train(tiny.tiny_config("grid-tr", **RUN, error_lr=1e-6), tiny.tiny_net(), *data,
                 out_dir=tmp_path / "slow", progress=False, panels=0)  # fmt: skip
    assert "miou" in fast["val"] and "miou" in slow["val"]
    fast_eps, slow_eps = _logged_eps(tmp_path / "fast"), _logged_eps(tmp_path / "slow")
    assert fast_eps[0] is None  # the warm-up (PCE) has no ε
    start = default_error_prob(3)
    assert all(e is not None and 0 < e < 2 / 3 for e in fast_eps[1:])
    assert slow_eps[-1] == pytest.approx(start, abs=1e-4)
    # Adam moves u by about error_lr per step: 3 epochs x 2 steps at 0.05 move ε visibly
    assert abs(fast_eps[-1] - start) > 10 * abs(slow_eps[-1] - start)


def test_a_resumed_run_continues_with_the_learned_eps(data, tmp_path):
    config = tiny.tiny_config("grid-tr", **RUN)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "a", progress=False, panels=0)
    train(config, tiny.tiny_net(), *data, out_dir=tmp_path / "b", progress=False, panels=0, stop_after_epoch=2)
    train(config, tiny.tiny_net(seed=9), *data, out_dir=tmp_path / "b", progress=False, panels=0, resume=True)
    assert _logged_eps(tmp_path / "b") == _logged_eps(tmp_path / "a")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(error_prob="learn"), "error_prob: expected a number in .*'learned' or None, got 'learn'"),
        (dict(error_prob="learned", error_lr=0.0), "error_lr: expected a finite number > 0, got 0.0"),
    ],
)
def test_bad_learned_eps_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(method="grid-tr", **kw)


def test_the_cli_takes_learned_or_a_number():
    cli = tiny.cli_module()
    assert cli.parse_args(["--error-prob", "learned"]).error_prob == "learned"
    assert cli.parse_args(["--error-prob", "0.3", "--error-lr", "0.1"]).error_lr == 0.1
    with pytest.raises(SystemExit):
        cli.parse_args(["--error-prob", "often"])
