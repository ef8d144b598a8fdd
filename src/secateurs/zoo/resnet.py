"""ResNet-20, the CIFAR-style residual network of He et al. (2016), for 8x8 digits.

He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition", CVPR, section 4.2: a 3x3 stem
convolution, then three stages of n = 3 BasicBlocks with 16, 32 and 64 channels (6n + 2 = 20 layers), global
average pooling and one linear layer.  Strides are 1, 2, 2, so an 8x8 input is seen at 8x8, 4x4 and 2x2.  Where a
block changes shape the shortcut is option B of the paper: a 1x1 convolution followed by BatchNorm.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import register


def kaiming_init_convs_(model: nn.Module) -> nn.Module:
    """He-normal init (He et al. 2015, fan-out, ReLU gain) of every Conv2d weight, in place; BN keeps (1, 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN, option B) shortcut (He et al. 2016, Fig. 2)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR-style ResNet-(6n+2) (He et al. 2016, section 4.2) with stages of 16, 32, 64 channels."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet depth must be 6n + 2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        widths = (width, 2 * width, 4 * width)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        in_planes = width
        stages = []
        for planes, stride in zip(widths, (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)
        kaiming_init_convs_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register("model", "resnet20")
def resnet20(num_classes: int = 10, **kw: int) -> nn.Module:
    """ResNet-20 (He et al. 2016): 3 stages x 3 BasicBlocks, 16/32/64 channels, option-B shortcuts."""
    return ResNetCifar(depth=20, num_classes=num_classes, **kw)
