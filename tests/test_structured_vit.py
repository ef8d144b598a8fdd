"""Structured pruning of a ViT: whole attention heads (q, k, v rows and output-projection columns together), MLP
neurons, and the embedding width (patch embedding, class token, position table, LayerNorms, every block)."""
import torch

from secateurs.zoo import build_model
from structured_helpers import check_half, check_ratio_zero, outputs

X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _vit():
    torch.manual_seed(0)
    return build_model("vit").eval()


def test_heads_and_mlp_with_the_embedding_kept():
    model = _vit()
    check_ratio_zero(model, X)
    rep = check_half(model, X, ignore=["patch_embed"], atol=1e-5)
    heads = [g for g in rep.groups if g["kind"] == "heads"]
    assert len(heads) == len(model.blocks) and all(g["units"] == 4 and g["kept"] == 2 for g in heads)
    for blk in model.blocks:
        assert blk.attn.heads == 2
        assert blk.attn.qkv.out_features == 3 * 2 * 16 and blk.attn.proj.in_features == 32
        assert blk.mlp.fc1.out_features == blk.mlp.fc2.in_features == 64
        assert blk.attn.qkv.in_features == 64  # the residual stream was ignored


def test_embedding_width_too():
    model = _vit()
    check_half(model, X, equivalent=False)  # LayerNorm over fewer features: not the zeroed model
    assert model.cls_token.shape[-1] == model.pos_embed.shape[-1] == model.patch_embed.out_features == 32
    assert model.norm.normalized_shape == (32,) and model.head.in_features == 32
    assert torch.isfinite(outputs(model, X)).all()
