import pytest
import torch

from chainrule2_torch.networks import DeepLabV3Plus, UNet, build_network


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 33, 47)])
def test_unet_shapes_any_size(shape):
    net = UNet(3, 4, width=4, depth=3)
    assert net(torch.zeros(shape)).shape == (shape[0], 4, *shape[2:])


@pytest.mark.parametrize("os_", [8, 16])
def test_deeplab_shapes(os_):
    net = DeepLabV3Plus(3, 5, output_stride=os_).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 49, 66)).shape == (1, 5, 49, 66)
    head = {id(p) for p in net.head_parameters()}
    assert head.isdisjoint(id(p) for p in net.backbone_parameters())


def test_weights_round_trip(tmp_path):
    net = UNet(3, 2, width=4, depth=2)
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    other = UNet(3, 2, width=4, depth=2, weights=path)
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.save({"model": net.state_dict()}, path)
    UNet(3, 2, width=4, depth=2, weights=str(path))


def test_deeplab_backbone_from_torchvision_style_checkpoint(tmp_path):
    ref = DeepLabV3Plus(3, 2)
    state = {k.removeprefix("backbone."): v for k, v in ref.state_dict().items() if k.startswith("backbone.")}
    state["features.18.0.weight"] = torch.zeros(1280, 320, 1, 1)  # torchvision extras are ignored
    state["classifier.1.weight"] = torch.zeros(1000, 1280)
    path = tmp_path / "mbv2.pth"
    torch.save(state, path)
    net = DeepLabV3Plus(3, 2, backbone_weights=path)
    assert torch.equal(net.backbone.features[5].conv[0][0].weight, ref.backbone.features[5].conv[0][0].weight)


def test_bad_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights: weights file .*missing.pt.* does not exist"):
        UNet(3, 2, weights=tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read weights from .*corrupt.pt"):
        UNet(3, 2, weights=corrupt)
    path = tmp_path / "w.pt"
    torch.save(UNet(3, 3, width=4, depth=2).state_dict(), path)
    with pytest.raises(ValueError, match="expected shape"):
        UNet(3, 2, width=4, depth=2, weights=path)
    with pytest.raises(ValueError, match="lacks"):
        UNet(3, 2, width=4, depth=3, weights=path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes: expected an int >= 2, got 1"):
        UNet(3, 1)
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3Plus(3, 2, output_stride=32)
    with pytest.raises(ValueError, match="name: expected one of"):
        build_network("resnet", 3, 2)
