"""A narrow VGG-11 with BatchNorm (Simonyan & Zisserman 2015) for 8x8 digits.

Simonyan & Zisserman (2015), "Very deep convolutional networks for large-scale image recognition", ICLR,
configuration A (11 weight layers: 8 convolutions + classifier), here with BatchNorm after every convolution
(as in the pruning literature's CIFAR VGGs), channels divided by 4 (16 ... 128), and a global-average-pool +
single linear classifier.  VGG-11 max-pools after each of its 5 stages; an 8x8 image only has room for two of
them if every convolution is to see at least 2x2, so later pools are dropped (8 -> 4 -> 2).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import register
from .resnet import kaiming_init_convs_

# configuration A of Simonyan & Zisserman (2015), channels / 4; "M" = 2x2 max-pool
VGG11_CFG: tuple[int | str, ...] = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")


class VGG(nn.Module):
    """VGG with BatchNorm; max-pools that would shrink the feature map below ``min_size`` are skipped."""

    def __init__(
        self,
        cfg: Sequence[int | str] = VGG11_CFG,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 8,
        min_size: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        size, channels = input_size, in_channels
        for v in cfg:
            if v == "M":
                if size // 2 >= min_size:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += [nn.Conv2d(channels, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU()]
            channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        kaiming_init_convs_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@register("model", "vgg11")
def vgg11(num_classes: int = 10, **kw: int) -> nn.Module:
    """Narrow VGG-11 with BatchNorm (Simonyan & Zisserman 2015), two max-pools for 8x8 inputs."""
    return VGG(VGG11_CFG, num_classes=num_classes, **kw)
