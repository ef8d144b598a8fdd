"""Structured pruning of a user's own attention: q/k/v ``nn.Linear`` projections and heads split with
``view(B, T, h, D // h)`` (or a fused ``Linear(D, 3D)`` reshaped to ``(B, T, 3, h, D // h)``).  Whole heads go when
the head split is visible in the trace and the module's head count can be written back; otherwise exactly the
widths that module reads are kept and the rest is pruned, and the call never fails."""
import copy

import pytest
import torch
from torch import nn

import secateurs.structured as st
from secateurs.errors import InvalidArgumentError
from structured_helpers import check_half, outputs
from structured_models import CustomViT, SplitAttention

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _vit(**kw):
    torch.manual_seed(0)
    return CustomViT(**kw).eval()


def _projections(attn):
    return [attn.qkv] if attn.fused else [attn.q, attn.k, attn.v]


@pytest.mark.parametrize("fused", [False, True])
def test_whole_heads_go_and_num_heads_is_written_back(fused):
    model = _vit(fused=fused)
    rep = check_half(model, X, ignore=["patch"])  # the residual width kept: outputs equal the zeroed model's
    heads = [g for g in rep.groups if g["kind"] == "heads"]
    assert len(heads) == 2 and all(g["units"] == 4 and g["kept"] == 2 for g in heads)
    for blk in model.blocks:
        assert blk.attn.num_heads == 2 and blk.attn.head_dim == 8
        assert sum(p.out_features for p in _projections(blk.attn)) == 3 * 16 and blk.attn.proj.in_features == 16
        assert blk.mlp[0].out_features == 32
    assert not any("reshape" in w for w in rep.warnings)


@pytest.mark.parametrize("fused", [False, True])
def test_the_heads_kept_are_the_important_ones(fused):
    model = _vit(fused=fused)
    with torch.no_grad():  # heads 1 and 3 of every block ten times larger in q, k, v and the output projection
        for blk in model.blocks:
            for lin in _projections(blk.attn):
                w = lin.weight.view(-1, 4, 8, lin.in_features)
                w[:, [1, 3]] *= 10
            blk.attn.proj.weight.view(-1, 4, 8)[:, [1, 3]] *= 10
    original = copy.deepcopy(model)
    rep = st.prune(model, X, sparsity=0.5, method="l2", ignore=["patch"])
    heads = [g for g in rep.groups if g["kind"] == "heads"]
    assert [g["removed"] for g in heads] == [[0, 2], [0, 2]]
    for blk, ref in zip(model.blocks, original.blocks):  # the kept rows are heads 1 and 3 of the original
        kept = torch.cat([ref.attn.proj.weight[:, 8:16], ref.attn.proj.weight[:, 24:32]], 1)
        assert torch.equal(blk.attn.proj.weight, kept)
    assert outputs(model, X).shape == outputs(original, X).shape


def test_embedding_width_pruned_with_the_heads():
    model = _vit()
    rep = st.prune(model, X, sparsity=0.5)
    assert rep.params_after < rep.params_before
    assert model.patch.out_features == 16 and all(b.attn.num_heads == 2 for b in model.blocks)
    assert outputs(model, X).shape == (4, 10) and torch.isfinite(outputs(model, X)).all()


@pytest.mark.parametrize("fused", [False, True])
def test_heads_computed_from_the_input_width_are_kept_and_the_rest_pruned(fused):
    """``D // h`` with D read from the input: pruning heads would give wrong heads, so the module's widths stay;
    the MLPs are pruned, and the call does not fail."""
    model = _vit(fused=fused, stored=False)
    original = copy.deepcopy(model)
    rep = st.prune(model, X, sparsity=0.5, ignore=["patch"])
    assert rep.params_after < rep.params_before
    assert not [g for g in rep.groups if g["kind"] == "heads"]
    for blk in model.blocks:
        assert blk.attn.num_heads == 4 and blk.attn.proj.in_features == 32
        assert blk.mlp[0].out_features == 32
    assert any("blocks.0.attn" in w for w in rep.warnings)
    assert outputs(model, X).shape == outputs(original, X).shape


class _Counted(nn.Module):
    """Keeps its head count in an attribute whose name does not say so (``self.n``)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.n, self.d = heads, dim // heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = (lin(x).view(B, T, self.n, self.d).transpose(1, 2) for lin in (self.q, self.k, self.v))
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, T, self.n * self.d))


def _counted_vit():
    model = _vit()
    for blk in model.blocks:
        blk.attn = _Counted(32, 4)
    return model.eval()


def test_num_heads_hint_names_the_head_count():
    plain = _counted_vit()
    rep = st.prune(plain, X, sparsity=0.5, ignore=["patch"])  # not known to be the head count: heads kept
    assert all(b.attn.n == 4 and b.attn.proj.in_features == 32 for b in plain.blocks)
    assert rep.params_after < rep.params_before
    hinted = _counted_vit()
    rep = st.prune(hinted, X, sparsity=0.5, ignore=["patch"], num_heads={"blocks.*.attn": 4})
    assert all(b.attn.n == 2 and b.attn.proj.in_features == 16 for b in hinted.blocks)
    assert [g["kept"] for g in rep.groups if g["kind"] == "heads"] == [2, 2]
    assert outputs(hinted, X).shape == (4, 10)


@pytest.mark.parametrize("bad", [0, -1, True, "4", {"nothing.*": 4}, {"blocks.*.attn": 0}])
def test_bad_num_heads_refused_before_anything_changes(bad):
    model = _vit()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InvalidArgumentError):
        st.prune(model, X, sparsity=0.5, num_heads=bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_module_that_hard_codes_a_width_is_kept():
    """Not attention at all: a block that reshapes to a fixed width.  Its widths stay; the rest is pruned."""

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)).reshape(-1, 16))

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), Fixed(), nn.ReLU(), nn.Linear(8, 32), nn.ReLU(),
                          nn.Linear(32, 2)).eval()
    rep = st.prune(model, torch.randn(3, 4), sparsity=0.5)
    assert model[2].a.out_features == 16 and model[4].out_features == 16
    assert rep.params_after < rep.params_before
