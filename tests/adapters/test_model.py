import numpy as np
import pytest
import torch

from chainrule2.base import Composite, Model
from chainrule2_torch import TorchModel


class Net(torch.nn.Module):
    def __init__(self, c=3, labels=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, labels, 3, padding=1)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.conv(x))


def test_predict_layout_eval_nograd_and_mode_restored(device):
    torch.manual_seed(0)
    net = Net()
    model = TorchModel(net, device=device)
    assert isinstance(model, Model)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)
    out = model.predict(x)
    assert isinstance(out, np.ndarray) and out.shape == (2, 5, 7, 4) and out.dtype == np.float32
    assert net.training  # restored
    # eval mode: dropout off, so deterministic and equal to the NCHW output permuted
    ref = net.eval().conv(torch.from_numpy(x).to(device)).permute(0, 2, 3, 1).cpu().detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    net.train()
    np.testing.assert_array_equal(model.predict(torch.from_numpy(x)), out)
    # eval-mode state is also restored
    net.eval()
    model.predict(x)
    assert not net.training


def test_logits_has_autograd(device):
    model = TorchModel(Net(), device=device)
    z = model.logits(np.zeros((1, 3, 4, 4), np.float32))
    assert z.shape == (1, 4, 4, 4) and z.requires_grad and z.device.type == device


def test_dict_output_is_accepted():
    class DictNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return {"out": self.conv(x)}

    assert TorchModel(DictNet()).predict(np.zeros((1, 3, 2, 2), np.float32)).shape == (1, 2, 2, 2)


def test_composite_accepts_torch_model():
    Composite(loss=None, model=TorchModel(Net()))


def test_bad_inputs():
    with pytest.raises(TypeError, match="network: expected a torch.nn.Module"):
        TorchModel(object())
    with pytest.raises(ValueError, match="device"):
        TorchModel(Net(), device="tpu")
    model = TorchModel(Net())
    with pytest.raises(ValueError, match=r"inputs: expected images \(N, C, H, W\), got shape \(3, 4, 4\)"):
        model.predict(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="inputs: expected a numpy array or a torch tensor, got list"):
        model.predict([[1.0]])


def test_output_size_mismatch_is_named():
    model = TorchModel(torch.nn.Conv2d(3, 2, 3))  # no padding: shrinks the map
    with pytest.raises(ValueError, match="network: expected logits"):
        model.predict(np.zeros((1, 3, 6, 6), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        TorchModel(Net(), device="cuda")
