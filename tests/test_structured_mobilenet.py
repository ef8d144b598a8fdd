"""Structured pruning of MobileNetV2 inverted residuals: a depthwise convolution couples its input and output
channels (the expansion conv, the depthwise conv and its BN are one group) and stays depthwise."""
import torch

from secateurs.zoo import build_model
from structured_helpers import check_half, check_ratio_zero
from structured_models import randomize_bn

X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_inverted_residual_depthwise():
    torch.manual_seed(0)
    model = randomize_bn(build_model("mobilenetv2"))
    check_ratio_zero(model, X)
    check_half(model, X, atol=1e-4)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels == m.weight.shape[0]
            assert m.weight.shape[1] == 1
    block = model.features[2]  # expand 16 -> 96 -> depthwise -> project 24
    assert block.conv[0][0].out_channels == block.conv[1][0].in_channels == 48
