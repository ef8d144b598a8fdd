"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"), for 8x8 digits.

Inverted residual blocks (Table 1): a 1x1 expansion conv (factor t) + BN + ReLU6, a 3x3 depthwise conv + BN +
ReLU6, a 1x1 linear projection + BN, with an identity shortcut when stride is 1 and widths match.  Scaled to the
8x8 input: a 3x3 stem of 16 channels, stages (t, c, n, s) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 1),
(6, 64, 2, 2), a 1x1 conv to 256, global pooling and a linear classifier.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import register
from .resnet import kaiming_init_convs_


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise (3x3) → project (1x1, linear), with a shortcut when shapes allow (Fig. 3b)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 setting: tuple = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 1), (6, 64, 2, 2)), last: int = 256):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 16, 3)]
        cin = 16
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        kaiming_init_convs_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("model", "mobilenetv2")
def mobilenetv2(num_classes: int = 10, **kw: int) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise convolutions, scaled to 8x8."""
    return MobileNetV2(num_classes=num_classes, **kw)
