"""StageA on torch logits: NCHW with class_axis=1, targets back as tensors on the logits' device."""

import numpy as np
import pytest
import torch

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy
from chainrule2.losses import ScribblePotts

pytest.importorskip("maxflow")
from chainrule2.solvers import AlphaExpansion  # noqa: E402


def test_torch_nchw_logits_in_torch_labels_out(device):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    seeds = np.full((2, 5, 6), 255)
    seeds[:, 0, 0] = 2
    images = rng.uniform(0, 255, size=(2, 5, 6, 3))
    stage_a = cr.StageA(AlphaExpansion(), ScribblePotts(potts_weight=5.0), CrossEntropy(), trust_weight=2.0)
    reference = stage_a.propose(np.moveaxis(logits, 1, -1), cr.Batch(None, seeds, images)).targets
    t = torch.as_tensor(logits, device=device).requires_grad_(True)  # autograd is cut, not an error
    batch = cr.Batch(None, torch.as_tensor(seeds, device=device), torch.as_tensor(images, device=device))
    out = stage_a.propose(t, batch, class_axis=1).targets
    assert isinstance(out, torch.Tensor) and out.device == t.device and out.dtype == torch.int64
    np.testing.assert_array_equal(out.cpu().numpy(), reference)


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 3, 6, 7)) * 2  # NCHW, float64
    seeds = np.full((3, 6, 7), 255)
    seeds[0, 0, 0], seeds[0, 4, 5], seeds[1, 2, 2], seeds[2, 1, 1], seeds[2, 5, 6] = 1, 2, 0, 1, 0
    seeds[1, :, 0] = 254  # padding
    images = rng.uniform(0, 255, size=(3, 6, 7, 3))
    return logits, seeds, images


def _stage_a(kind: str, **kwargs) -> cr.StageA:
    from chainrule2.divergences import Squared
    from chainrule2.solvers import GradientStep, MeanField

    if kind == "mean-field":
        return cr.StageA(MeanField(max_sweeps=10), ScribblePotts(potts_weight=5.0), CrossEntropy(), 0.5, **kwargs)
    return cr.StageA(GradientStep(), ScribblePotts(potts_weight=5.0), Squared(), 2.0, **kwargs)


@pytest.mark.parametrize("kind", ["mean-field", "gradient-step"])
def test_batched_stage_a_on_the_logits_device_equals_the_host_path(device, kind, monkeypatch):
    """MeanField and GradientStep solve the batch on the tensors' device: the host copy (to_host) is
    never called, the targets are tensors there, and they are the host path's (a batch solver given)."""
    import chainrule2.stage_a as stage_a_module
    from chainrule2.solvers import solve_batch

    logits, seeds, images = _problem()
    host = _stage_a(kind, batch_solver=solve_batch).propose(logits, cr.Batch(None, seeds, images), class_axis=1)

    def no_host_copy(x, name):
        raise AssertionError(f"stage A copied {name} to the host")

    monkeypatch.setattr(stage_a_module, "to_host", no_host_copy)
    t = torch.as_tensor(logits, device=device).requires_grad_(True)
    batch = cr.Batch(None, torch.as_tensor(seeds, device=device), torch.as_tensor(images, device=device))
    out = _stage_a(kind).propose(t, batch, class_axis=1)
    assert isinstance(out.targets, torch.Tensor) and out.targets.device == t.device
    assert out.targets.shape == t.shape and not out.targets.requires_grad
    np.testing.assert_allclose(out.targets.cpu().numpy(), host.targets, atol=1e-7)
    assert len(out.report.traces) == 3 and out.report.failures == ()
    for got, expected in zip(out.report.traces, host.report.traces, strict=True):
        assert got[-1] == pytest.approx(expected[-1], rel=1e-9)
        assert all(b <= a for a, b in zip(got, got[1:], strict=False))  # F per item never increases
    assert out.report.solve_seconds > 0


def test_batched_stage_a_moves_host_seeds_and_warm_starts_to_the_device(device):
    logits, seeds, images = _problem(1)
    stage_a = _stage_a("mean-field")
    t = torch.as_tensor(logits, device=device)
    cold = stage_a.propose(t, cr.Batch(None, seeds, images), class_axis=1)  # numpy seeds and images
    assert cold.targets.device == t.device
    warm_start = [None, np.argmax(logits[1], axis=0), torch.moveaxis(cold.targets[2], 0, -1)]
    warm = stage_a.propose(t, cr.Batch(None, seeds, images), warm_start, class_axis=1)
    reference = _stage_a("mean-field").propose(
        np.moveaxis(logits, 1, -1), cr.Batch(None, seeds, images),
        [None, warm_start[1], warm_start[2].cpu().numpy()],
    )  # fmt: skip
    np.testing.assert_allclose(torch.moveaxis(warm.targets, 1, -1).cpu().numpy(), reference.targets, atol=1e-7)
    assert warm.report.traces[2][0] == pytest.approx(cold.report.traces[2][-1], rel=1e-9)  # started where it stopped


def test_batched_stage_a_hands_a_failing_item_to_the_host_path(device):
    """Non-finite logits in one item: the host path keeps that item (on_failure="keep") and reports it."""
    logits, seeds, images = _problem(2)
    logits[1, 0, 2, 2] = np.nan
    t = torch.as_tensor(logits, device=device)
    out = _stage_a("mean-field", on_failure="keep").propose(
        t, cr.Batch(None, seeds, images, ids=("a", "b", "c")), class_axis=1
    )
    assert out.targets.device == t.device
    assert [(i, item) for i, item, _ in out.report.failures] == [(1, "b")]
    with pytest.raises(ValueError, match="item 'b'"):
        _stage_a("mean-field").propose(t, cr.Batch(None, seeds, images, ids=("a", "b", "c")), class_axis=1)


def test_auto_trust_weight_stays_on_the_host(device):
    """trust_weight="auto" runs its β search on the host path (documented), and still returns tensors."""
    from chainrule2.solvers import MeanField

    logits, seeds, images = _problem(3)
    stage_a = cr.StageA(MeanField(max_sweeps=3), ScribblePotts(potts_weight=5.0), CrossEntropy(), "auto")
    assert not stage_a._batched()
    out = stage_a.propose(torch.as_tensor(logits, device=device), cr.Batch(None, seeds, images), class_axis=1)
    assert out.targets.device.type == torch.device(device).type and len(out.report.betas) == 3
