"""A small VGG-style CNN for 28x28 images (Fashion-MNIST): the structured-pruning demo's model.

Three 3x3 conv-BN-ReLU stages of 16, 32 and 64 channels (Simonyan & Zisserman 2015's pattern of stacked 3x3
convolutions), 2x2 max pooling after the first two, global average pooling and a linear classifier: 24,058
parameters and 1.9M MACs per 28x28 image, so that it trains in minutes on one CPU thread while its
channels, coupled through BatchNorm, are what structured pruning removes.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import register
from .resnet import kaiming_init_convs_


class ConvNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        kaiming_init_convs_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("model", "convnet")
def convnet(num_classes: int = 10, **kw) -> nn.Module:
    """Small VGG-style CNN (3 conv-BN-ReLU stages, 16/32/64 channels) for 28x28 images such as Fashion-MNIST."""
    return ConvNet(num_classes=num_classes, **kw)
