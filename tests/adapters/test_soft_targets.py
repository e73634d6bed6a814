"""Soft stage-A targets: the sample, the joint augmentation (argmax = the augmented hard labels,
all 0 on padding), collation to (N, C, H, W), the loss ignoring their padding, the soft cache
and its warm start, and the configuration that asks for them."""

import _tiny_runs as tiny  # tests/ is on sys.path through its conftest
import numpy as np
import pytest
import torch

from chainrule2.divergences import CollisionCrossEntropy, CrossEntropy, RobustCrossEntropy
from chainrule2_torch.data import Augmentation, collate, make_demo_dataset
from chainrule2_torch.objectives import SeedAwareLoss
from chainrule2_torch.training import StageACache, TrainConfig, make_stage_a, refresh_pseudo_labels

C = 3


def _soft(rng, shape, num_classes=C, dtype=np.float16):
    return rng.dirichlet(np.full(num_classes, 0.5), size=shape).astype(dtype)


def _unique_argmax(q):
    top = np.sort(q.astype(np.float64), axis=-1)
    return top[..., -1] > top[..., -2]


@pytest.mark.parametrize("k", range(8))
def test_augmented_soft_target_has_the_augmented_hard_argmax(k):
    sample = make_demo_dataset(1, 40, seed=k)[0]
    rng = np.random.default_rng(100 + k)
    soft = _soft(rng, sample.shape)
    hard = soft.astype(np.float64).argmax(-1).astype(np.uint8)
    aug = Augmentation(crop_size=(32, 36), scale_range=(0.5, 1.6))  # scales both ways, crops with padding
    out_soft, _ = aug(sample.replace(target=soft), np.random.default_rng(k))
    out_hard, _ = aug(sample.replace(target=hard), np.random.default_rng(k))
    assert out_soft.target.shape == (32, 36, C) and out_soft.target.dtype == np.float16
    np.testing.assert_array_equal(out_soft.image, out_hard.image)
    np.testing.assert_array_equal(out_soft.seeds, out_hard.seeds)
    padding = out_hard.target == 254
    np.testing.assert_array_equal(out_soft.target.sum(-1) == 0, padding)  # all 0 exactly where labels are 254
    inside = ~padding & _unique_argmax(out_soft.target)
    assert inside.sum() > 0.9 * (~padding).sum() > 0  # float16 ties are rare
    np.testing.assert_array_equal(out_soft.target.argmax(-1)[inside], out_hard.target[inside])
    # every pixel is one source pixel's distribution, copied (no interpolation)
    source = {tuple(v) for v in soft.reshape(-1, C).tolist()}
    assert all(tuple(v) in source for v in out_soft.target[~padding].tolist())


def test_a_flip_alone_mirrors_the_soft_target():
    sample = make_demo_dataset(1, 24, seed=0)[0]
    soft = _soft(np.random.default_rng(0), sample.shape, dtype=np.float32)
    aug = Augmentation(crop_size=(24, 24), scale_range=(1.0, 1.0))
    flipped = [aug(sample.replace(target=soft), np.random.default_rng(k))[0] for k in range(6)]
    kinds = set()
    for out in flipped:
        mirrored = np.array_equal(out.target, soft[:, ::-1])
        assert mirrored or np.array_equal(out.target, soft)
        assert np.array_equal(out.image, sample.image[:, ::-1] if mirrored else sample.image)
        kinds.add(mirrored)
    assert kinds == {True, False}


def test_collate_soft_targets_to_nchw_float32():
    samples = make_demo_dataset(3, 16, seed=1)
    rng = np.random.default_rng(2)
    soft = [s.replace(target=_soft(rng, s.shape)) for s in samples]
    batch = collate(soft)
    assert tuple(batch.targets.shape) == (3, C, 16, 16) and batch.targets.dtype == torch.float32
    np.testing.assert_array_equal(batch.targets[1].permute(1, 2, 0).numpy(), soft[1].target.astype(np.float32))
    host = collate(soft, seeds_as="numpy")
    assert isinstance(host.targets, np.ndarray) and host.targets.shape == (3, C, 16, 16)
    mixed = [soft[0], samples[1].replace(target=samples[1].mask)]
    with pytest.raises(ValueError, match="labels on every sample or soft targets on every one"):
        collate(mixed)


def test_sample_refuses_a_soft_target_that_is_not_a_distribution():
    s = make_demo_dataset(1, 8, seed=0)[0]
    good = np.full((8, 8, C), 1 / C, np.float32)
    assert s.replace(target=good).target.dtype == np.float32  # kept as given
    s.replace(target=np.zeros((8, 8, C), np.float16))  # all 0: no target anywhere
    with pytest.raises(ValueError, match=r"target of 'demo000': expected a soft target of shape \(8, 8, 3\)"):
        s.replace(target=np.full((8, 8, 2), 0.5, np.float32))
    with pytest.raises(ValueError, match="finite probabilities >= 0"):
        s.replace(target=np.where(np.arange(C) == 0, -0.5, 0.75) * np.ones((8, 8, 1)))
    with pytest.raises(ValueError, match="summing to 1 .* off by up to 0.5"):
        s.replace(target=good * 1.5)
    with pytest.raises(ValueError, match="finite"):
        s.replace(target=np.full((8, 8, C), np.nan))


def _one_hot(labels, num_classes=C):
    out = np.zeros(labels.shape + (num_classes,), np.float32)
    inside = labels < num_classes
    out[inside, labels[inside]] = 1.0
    return out


@pytest.mark.parametrize("normalization", ["mean", "item", "official", "sum"])
@pytest.mark.parametrize("divergence", [CrossEntropy(), RobustCrossEntropy(0.3, C), CollisionCrossEntropy()])
def test_all_zero_soft_targets_are_ignored_as_254_labels(divergence, normalization):
    rng = np.random.default_rng(3)
    logits = torch.as_tensor(rng.normal(size=(2, C, 6, 7)))
    labels = rng.integers(0, C, size=(2, 6, 7))
    seeds = np.full((2, 6, 7), 255, np.int64)
    seeds[:, 0, :3] = labels[:, 0, :3]
    labels[0, :, -2:] = 254  # padding columns
    labels[1, -1] = 254
    hard_seeds = np.where(labels == 254, 254, seeds)
    soft = torch.as_tensor(_one_hot(labels)).permute(0, 3, 1, 2)
    loss = SeedAwareLoss(divergence, normalization=normalization)
    expected = loss(logits, torch.as_tensor(labels), torch.as_tensor(hard_seeds))
    # the seeds marking the padding (as Augmentation crops them) or not: the zeros alone are enough
    for s in (hard_seeds, seeds):
        got = loss(logits, soft, torch.as_tensor(s))
        assert float(got) == pytest.approx(float(expected), rel=1e-12)


def test_soft_targets_train_the_network_toward_themselves():
    logits = torch.zeros(1, C, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64).view(1, C, 1, 1).expand(1, C, 2, 2)
    loss = SeedAwareLoss(CrossEntropy(), normalization="mean")
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(200):
        opt.zero_grad()
        loss(logits, target, torch.full((1, 2, 2), 255)).backward()
        opt.step()
    np.testing.assert_allclose(torch.softmax(logits, 1)[0, :, 0, 0].detach().numpy(), [0.7, 0.2, 0.1], atol=1e-4)


# --- the soft cache --------------------------------------------------------------------------------


def test_the_soft_cache_stores_float16_distributions_that_every_reader_sees_alike(tmp_path):
    rng = np.random.default_rng(4)
    q = _soft(rng, (5, 6), dtype=np.float64)
    q[0, 0] = 0.0  # a pixel without a target
    cache = StageACache(tmp_path, soft=True)
    cache.put("a", q)
    assert cache.get("a").dtype == np.float16 and (tmp_path / "a.npz").exists()
    other = StageACache(tmp_path, soft=True)  # another rank reads the file
    other.load(["a"])
    np.testing.assert_array_equal(other.get("a"), cache.get("a"))
    labels = cache.labels_of("a")
    assert labels.dtype == np.uint8 and labels[0, 0] == 255
    np.testing.assert_array_equal(labels.reshape(-1)[1:], q.argmax(-1).reshape(-1)[1:])
    assert cache.initial("a", C) is None  # a pixel with no target: start cold
    cache.put("b", _soft(rng, (5, 6)))
    warm = cache.initial("b", C)
    assert warm.dtype == np.float64 and np.abs(warm.sum(-1) - 1).max() < 1e-12
    np.testing.assert_array_equal(warm.argmax(-1), cache.labels_of("b"))
    with pytest.raises(ValueError, match=r"target of 'c': expected a distribution \(H, W, C\) of floats"):
        cache.put("c", np.zeros((5, 6), np.uint8))
    with pytest.raises(ValueError, match=r"target of 'c': expected labels \(H, W\) of integers"):
        StageACache(tmp_path / "hard").put("c", q)


def test_restoring_the_soft_cache_removes_only_its_later_files(tmp_path):
    rng = np.random.default_rng(5)
    cache = StageACache(tmp_path, soft=True)
    cache.put("a", _soft(rng, (4, 4)))
    state = cache.state()
    cache.put("a", _soft(rng, (4, 4)))  # an interrupted stage A's later writes
    cache.put("b", _soft(rng, (4, 4)))
    (tmp_path / "mine.png").write_bytes(b"not the cache's")  # another kind of file is left alone
    restored = StageACache(tmp_path, soft=True)
    restored.restore(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "mine.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["target"], state["a"])
    np.testing.assert_array_equal(restored.get("a"), state["a"])


class _Recorder:
    """A stage A that records the warm starts it is given."""

    def __init__(self, stage_a):
        self.stage_a, self.initials = stage_a, []

    def propose(self, logits, batch, initial=None, class_axis=-1):
        self.initials.append(list(initial))
        return self.stage_a.propose(logits, batch, initial=initial, class_axis=class_axis)


def test_mean_field_warm_starts_from_the_cached_distribution(tmp_path):
    from chainrule2_torch.networks import UNet

    samples = make_demo_dataset(3, 16, seed=2)
    torch.manual_seed(0)
    net = UNet(3, C, width=4, depth=2)
    config = TrainConfig(stage_a_solver="mean-field", soft_targets=True, mean_field_temperature=20.0, trust_weight=1.0)
    stage_a = _Recorder(make_stage_a(config))
    cache = StageACache(tmp_path, soft=True)
    first = refresh_pseudo_labels(net, stage_a, samples, cache, batch_size=3)
    assert stage_a.initials[0] == [None] * 3 and first["target_fit"] is None
    cached = {s.id: cache.get(s.id).copy() for s in samples}
    assert any((q.max(-1) < 0.99).any() for q in cached.values())  # T = 20: some pixels are soft
    second = refresh_pseudo_labels(net, stage_a, samples, cache, batch_size=3)
    for s, warm in zip(samples, stage_a.initials[1], strict=True):
        q = cached[s.id].astype(np.float64)
        np.testing.assert_allclose(warm, q / q.sum(-1, keepdims=True), rtol=0, atol=1e-15)
    # the figures are those of the arg-max of the cached distributions
    labels = {s.id: cached[s.id].argmax(-1) for s in samples}
    net.eval()
    with torch.no_grad():
        argmax = {s.id: p for s, p in zip(samples, net(collate(samples).inputs).argmax(1).numpy(), strict=True)}
    fit = np.mean([np.mean(labels[s.id] == argmax[s.id]) for s in samples])
    assert second["target_fit"] == pytest.approx(fit)
    for s in samples:  # seeds stay exact
        hard = cache.labels_of(s.id)
        np.testing.assert_array_equal(hard[s.seeds < C], s.seeds[s.seeds < C])


# --- configuration --------------------------------------------------------------------------------


def test_bad_soft_target_configurations_are_refused():
    with pytest.raises(ValueError, match="soft_targets: True needs .* stage_a_solver='mean-field'.*'alpha-expansion'"):
        TrainConfig(soft_targets=True)
    with pytest.raises(ValueError, match="stage_a_solver: expected one of"):
        TrainConfig(stage_a_solver="icm")
    with pytest.raises(ValueError, match="soft_targets: expected True or False, got 1"):
        TrainConfig(stage_a_solver="mean-field", soft_targets=1)
    with pytest.raises(ValueError, match="mean_field_temperature: expected a finite number > 0, got 0"):
        TrainConfig(stage_a_solver="mean-field", mean_field_temperature=0)
    with pytest.raises(ValueError, match="mean_field_sweeps: expected an int >= 1"):
        TrainConfig(stage_a_solver="mean-field", mean_field_sweeps=0)
    config = TrainConfig(stage_a_solver="mean-field", mean_field_temperature=2.0, mean_field_sweeps=7)
    solver = make_stage_a(config).solver
    assert type(solver).__name__ == "MeanField" and (solver.temperature, solver.max_sweeps) == (2.0, 7)


def test_cli_flags_reach_the_config_and_misuse_is_refused(capsys):
    cli = tiny.cli_module()
    args = cli.parse_args(["--stage-a-solver", "mean-field", "--soft-targets", "--mean-field-temperature", "3"])
    assert (args.stage_a_solver, args.soft_targets, args.mean_field_temperature) == ("mean-field", True, 3.0)
    for argv in (["--soft-targets"], ["--mean-field-temperature", "2"], ["--mean-field-sweeps", "9"]):
        with pytest.raises(SystemExit):
            cli.parse_args(argv)
        assert "only with --stage-a-solver mean-field" in capsys.readouterr().err
