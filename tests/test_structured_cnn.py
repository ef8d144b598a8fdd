"""Structured pruning of plain CNNs: Conv → BatchNorm → next Conv, and flatten → Linear (LeNet-5, VGG-11)."""
import torch

from secateurs.zoo import build_model
from structured_helpers import check_half, check_ratio_zero

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _eval(name):
    torch.manual_seed(0)
    m = build_model(name)
    return m.eval()


def test_lenet5_flatten_into_linear():
    check_ratio_zero(_eval("lenet5"), X)
    model = _eval("lenet5")
    rep = check_half(model, X)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    fc1 = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    # flatten of C×H×W: the first Linear loses H·W columns per removed channel of the last conv
    assert fc1.in_features * 2 == [g for g in rep.widths.values()
                                   if "in_features" in g["before"]][0]["before"]["in_features"]
    assert all(c.out_channels > 0 for c in convs)


def test_vgg11_conv_bn_chain():
    check_ratio_zero(_eval("vgg11"), X)
    model = _eval("vgg11")
    rep = check_half(model, X)
    for name, w in rep.widths.items():
        if "out_channels" in w["before"]:
            assert w["after"]["out_channels"] == w["before"]["out_channels"] // 2
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bn.running_mean.numel() == bn.num_features == bn.weight.numel() for bn in bns)
