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
