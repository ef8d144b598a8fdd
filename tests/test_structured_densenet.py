"""Structured pruning through concatenation (DenseNet): each concatenated part keeps its own channel group, and
the layers that read the concatenation lose the matching input channels at the right offsets."""
import torch

from structured_helpers import check_half, check_ratio_zero
from structured_models import DenseNetStyle, randomize_bn

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_dense_block():
    torch.manual_seed(0)
    model = randomize_bn(DenseNetStyle())
    check_ratio_zero(model, X)
    rep = check_half(model, X, atol=1e-4)
    # stem 16 -> 8, each layer's growth 8 -> 4: the transition reads 8 + 4 + 4 + 4 = 20 channels
    assert model.stem.out_channels == 8
    assert [l.conv.out_channels for l in model.block] == [4, 4, 4]
    assert [l.bn.num_features for l in model.block] == [8, 12, 16]
    assert model.trans[0].num_features == model.trans[2].in_channels == 20
    # the transition BN is a member of four groups, each at its own offset
    offsets = sorted(m["offset"] for g in rep.groups for m in g["members"] if m["param"] == "trans.0.weight")
    assert offsets == [0, 16, 24, 32]
