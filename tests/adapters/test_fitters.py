import copy

import numpy as np
import pytest
import torch

from chainrule2.base import Batch, FitReport, Fitter
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective
from chainrule2_torch import LearnedErrorRobustCE, OptimizerFitter, TorchModel


def make(device, steps=5, **kw):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    model = TorchModel(net, device=device)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    fitter = OptimizerFitter(opt, SeedAwareObjective(RobustCrossEntropy(0.3, 3)), steps=steps, **kw)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    seeds = np.full((2, 6, 6), 255, np.uint8)
    seeds[:, 0, 0] = 1
    targets = rng.integers(0, 3, size=(2, 6, 6))
    return model, fitter, Batch(x, seeds), targets


def test_fit_decreases_objective(device):
    model, fitter, batch, targets = make(device, steps=20)
    assert isinstance(fitter, Fitter)
    report = fitter.fit(model, batch, targets)
    assert isinstance(report, FitReport) and report.steps == 20 and len(report.losses) == 20
    assert report.losses[-1] < report.losses[0]


def test_soft_and_torch_targets(device):
    model, fitter, batch, targets = make(device, steps=2)
    soft = np.eye(3, dtype=np.float32)[targets]
    fitter.fit(model, batch, soft)
    fitter.fit(model, batch, torch.from_numpy(targets))


def test_scheduler_and_grad_clip(device):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5**i)
    fitter = OptimizerFitter(opt, SeedAwareObjective(CrossEntropy()), steps=3, scheduler=sched, grad_clip=1.0)
    _, _, batch, targets = make(device)
    fitter.fit(TorchModel(net, device), batch, targets)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_learned_error_prob_is_trained_and_matches_fixed(device):
    fixed = RobustCrossEntropy(0.4, 3)
    learned = LearnedErrorRobustCE(3, error_prob=0.4)
    z = torch.randn(2, 4, 4, 3, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 4, 4))
    np.testing.assert_allclose(learned(t, z).detach().numpy(), fixed(t, z).numpy(), rtol=1e-5)
    np.testing.assert_allclose(learned.gradient(t, z).numpy(), fixed.gradient(t, z).numpy(), rtol=1e-4, atol=1e-7)
    flip = LearnedErrorRobustCE(3, error_prob=0.4, parametrization="flip")
    assert float(flip.error_prob.detach()) == pytest.approx(0.4)

    model, _, batch, targets = make(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    fitter = OptimizerFitter(opt, SeedAwareObjective(learned), steps=3, error_lr=1.0)
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 1.0
    before = float(learned.u.detach())
    fitter.fit(model, batch, targets)
    assert float(learned.u.detach()) != before
    state = copy.deepcopy(fitter.state_dict())
    learned.u.data.fill_(0.0)
    fitter.load_state_dict(state)
    assert float(learned.u.detach()) != 0.0


def test_seedless_batch_no_division_by_zero():
    model, fitter, batch, targets = make("cpu", steps=1)
    batch = Batch(batch.inputs, np.full((2, 6, 6), 255, np.uint8))
    report = fitter.fit(model, batch, targets)
    assert np.isfinite(report.loss)


def test_bad_arguments():
    net = torch.nn.Conv2d(3, 3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    obj = SeedAwareObjective(CrossEntropy())
    with pytest.raises(TypeError, match="optimizer: expected a torch.optim.Optimizer"):
        OptimizerFitter("sgd", obj)
    with pytest.raises(ValueError, match="steps: expected an int >= 1, got 0"):
        OptimizerFitter(opt, obj, steps=0)
    with pytest.raises(ValueError, match="amp: expected"):
        OptimizerFitter(opt, obj, amp="fp8")
    with pytest.raises(ValueError, match="grad_clip"):
        OptimizerFitter(opt, obj, grad_clip=-1.0)
    with pytest.raises(ValueError, match="error_prob"):
        LearnedErrorRobustCE(2, error_prob=0.7)
    model, fitter, batch, targets = make("cpu")
    with pytest.raises(ValueError, match=r"targets: expected .* got \(2, 5, 6\)"):
        fitter.fit(model, batch, targets[:, :5])
    with pytest.raises(ValueError, match=r"batch.seeds: expected shape \(2, 6, 6\)"):
        fitter.fit(model, Batch(batch.inputs, batch.seeds[:, :3]), targets)
    with pytest.raises(ValueError, match="seeds: expected labels in"):  # seed class >= num_classes
        fitter.fit(model, Batch(batch.inputs, np.full((2, 6, 6), 7, np.uint8)), targets)


def test_fp16_on_cpu_is_a_clear_error():
    model, fitter, batch, targets = make("cpu", amp="fp16")
    with pytest.raises(ValueError, match="amp: 'fp16' needs a CUDA device"):
        fitter.fit(model, batch, targets)


def test_bf16_runs_the_network_in_bf16_and_the_objective_in_float32(device):
    model, fitter, batch, targets = make(device, steps=10, amp=True)
    assert fitter.amp == "bf16"
    seen = []
    model.network.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    objective = fitter.objective
    fitter.objective = lambda z, t, s: seen.append(z.dtype) or objective(z, t, s)
    report = fitter.fit(model, batch, targets)
    assert seen[:2] == [torch.bfloat16, torch.float32]
    assert report.losses[-1] < report.losses[0]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_cuda(amp):
    model, fitter, batch, targets = make("cuda", steps=10, amp=amp)
    report = fitter.fit(model, batch, targets)
    assert report.losses[-1] < report.losses[0]
