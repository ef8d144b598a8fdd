"""Structured pruning of residual networks: every branch of an addition shares its channels (ResNet-20,
ResNet-18-style basic blocks, ResNet-50-style bottlenecks with 1x1 projection shortcuts)."""
import pytest
import torch

from secateurs.zoo import build_model
from structured_helpers import check_half, check_ratio_zero
from structured_models import ResNetStyle, randomize_bn

X3 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
X1 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_resnet20_residual_groups():
    torch.manual_seed(0)
    model = randomize_bn(build_model("resnet20"))
    check_ratio_zero(model, X1)
    rep = check_half(model, X1, atol=1e-4)
    # stage 1 has an identity shortcut: the stem, every block's conv2 and the stage's BNs are one group
    stage1 = [g for g in rep.groups if any(m["param"] == "conv1.weight" and m["dim"] == 0 for m in g["members"])]
    assert len(stage1) == 1
    names = {m["param"] for m in stage1[0]["members"]}
    assert {"layer1.0.conv2.weight", "layer1.2.bn2.weight", "layer2.0.conv1.weight"} <= names
    assert model.layer1[0].conv2.out_channels == model.conv1.out_channels == 8
    assert model.fc.in_features == 32


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_resnet_style(block):
    torch.manual_seed(0)
    model = randomize_bn(ResNetStyle(block))
    check_ratio_zero(model, X3)
    check_half(model, X3, atol=1e-4)
    assert model.stem[0].in_channels == 3  # the image's channels stay
    if block == "bottleneck":
        b = model.layers[0]
        assert (b.conv1.out_channels, b.conv2.out_channels, b.conv3.out_channels) == (4, 4, 16)
        assert b.down[0].out_channels == b.conv3.out_channels == model.layers[1].conv1.in_channels
