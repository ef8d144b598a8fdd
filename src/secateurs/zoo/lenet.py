"""LeNet-300-100 and LeNet-5 (LeCun et al. 1998), sized for the 8x8 digits images.

LeNet-300-100 is the fully connected network of LeCun et al. (1998), "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11); it is the standard MLP of the pruning literature (Han et al. 2015,
Frankle & Carbin 2019).  LeNet-5 is the convolutional network of the same paper, with 5x5 convolutions padded
so that the 8x8 input keeps a usable spatial size (8 -> pool -> 4 -> pool -> 2).
"""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import register


class LeNet300(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998): Flatten, 64 -> 300 -> 100 -> classes, ReLU between."""

    def __init__(self, num_classes: int = 10, in_features: int = 64):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.fc1(self.flatten(x)))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for 1x8x8 inputs: conv(6,5x5) - pool - conv(16,5x5) - pool - 120 - 84 - classes.

    Both convolutions are padded by 2 ("same" convolutions), so the spatial size goes 8 -> 4 -> 2 and the first
    fully connected layer sees 16 * 2 * 2 = 64 features.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 2 * 2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


@register("model", "lenet300")
def lenet300(num_classes: int = 10, **kw: int) -> nn.Module:
    """LeNet-300-100 MLP (LeCun et al. 1998) for 8x8 digits."""
    return LeNet300(num_classes=num_classes, **kw)


@register("model", "lenet5")
def lenet5(num_classes: int = 10, **kw: int) -> nn.Module:
    """LeNet-5 convolutional network (LeCun et al. 1998), padded for 8x8 digits."""
    return LeNet5(num_classes=num_classes, **kw)
