"""Structured pruning through grouped convolutions (ResNeXt-style bottlenecks) and GroupNorm: the i-th channel
of every group is one unit, so each group keeps the same width and the layers keep their number of groups."""
import copy

import pytest
import torch
from torch import nn

import secateurs.structured as st
from structured_helpers import check_half, check_ratio_zero, outputs
from structured_models import randomize_bn

X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class Bottleneck(nn.Module):
    """1x1 expand -> 3x3 grouped (cardinality 4) -> 1x1 project, with a residual (ResNeXt, Xie et al. 2017)."""

    def __init__(self, c: int = 8, width: int = 32, groups: int = 4, norm=nn.BatchNorm2d):
        super().__init__()
        self.a, self.n1 = nn.Conv2d(c, width, 1, bias=False), norm(width)
        self.g, self.n2 = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False), norm(width)
        self.c, self.n3 = nn.Conv2d(width, c, 1, bias=False), norm(c)

    def forward(self, x):
        y = torch.relu(self.n1(self.a(x)))
        y = torch.relu(self.n2(self.g(y)))
        return torch.relu(x + self.n3(self.c(y)))


class ResNeXtish(nn.Module):
    def __init__(self, norm=nn.BatchNorm2d):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.blocks = nn.Sequential(Bottleneck(norm=norm), Bottleneck(norm=norm))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def test_grouped_convolution_keeps_its_groups():
    torch.manual_seed(0)
    model = randomize_bn(ResNeXtish())
    check_ratio_zero(copy.deepcopy(model), X)
    rep = check_half(model, X)
    for blk in model.blocks:
        assert blk.g.groups == 4
        assert blk.g.in_channels == blk.g.out_channels == 16  # 8 per group -> 4 per group
        assert blk.g.weight.shape == (16, 4, 3, 3)
        assert blk.a.out_channels == blk.n1.num_features == 16 and blk.c.in_channels == 16
    assert all(g["units"] == 8 for g in rep.groups)  # residual stream, and per block: group-local in and out
    assert not any("grouped" in w for w in rep.warnings)


def test_channel_multiplier_inputs_are_kept_outputs_pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 16, 3, padding=1, groups=4),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    check_half(model, X)
    assert model[2].groups == 4 and model[2].in_channels == 4 and model[2].out_channels == 8


def test_group_norm_keeps_num_groups():
    torch.manual_seed(0)
    model = ResNeXtish(norm=lambda c: nn.GroupNorm(4, c))
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    check_ratio_zero(copy.deepcopy(model), X)
    before = st.count_params(model)
    # GroupNorm statistics include every channel of a group, so the zeroed model is not equivalent
    rep = check_half(model, X, equivalent=False)
    assert rep.params_after < before
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_groups == 4 and m.num_channels == m.weight.shape[0] and m.num_channels % 4 == 0
    assert outputs(model, X).isfinite().all()


@pytest.mark.parametrize("ratio", [0.25, 0.75])
def test_other_ratios_keep_equal_group_widths(ratio):
    torch.manual_seed(1)
    model = randomize_bn(ResNeXtish())
    st.prune(model, X, sparsity=ratio)
    for blk in model.blocks:
        assert blk.g.weight.shape[0] % 4 == 0 and blk.g.in_channels % 4 == 0
    assert outputs(model, X).shape == (2, 10)
