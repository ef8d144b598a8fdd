"""A small Vision Transformer (Dosovitskiy et al. 2021) for 8x8 digits: a stack of pre-norm transformer blocks.

Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, Gelly, Uszkoreit &
Houlsby (2021), "An image is worth 16x16 words: transformers for image recognition at scale", ICLR, section 3.1:
the image is cut into non-overlapping patches, each flattened and linearly projected (eq. 1); a learnable class
token is prepended and learned 1-D position embeddings are added; then ``depth`` pre-norm blocks of multi-head
self-attention and a two-layer GELU MLP, each with a residual connection (eqs. 2-3); a final LayerNorm of the class
token feeds a linear head (eq. 4).  Here 2x2 patches of the 8x8 image give 16 patches + 1 class token = 17 tokens
of width 64, and every block holds only plain :class:`~torch.nn.Linear` layers (``attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``), so activation-aware pruning (Wanda, SparseGPT) sees them like an LLM's, block by block:
``model.blocks[i](hidden)`` maps ``(N, 17, 64)`` to ``(N, 17, 64)``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..registry import register


def trunc_normal_init_(model: nn.Module, std: float = 0.02) -> nn.Module:
    """Truncated-normal (std 0.02, cut at 2 std) Linear weights and zero biases, as in the ViT reference code."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


class Attention(nn.Module):
    """Multi-head self-attention from two Linear layers: ``qkv`` (dim -> 3 dim) and the output ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, _ = x.shape  # widths come from the weights, so a model with pruned heads runs unchanged
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (n, heads, t, head_dim)
        return self.proj(out.transpose(1, 2).reshape(n, t, -1))


class MLP(nn.Module):
    """The transformer MLP: ``fc1`` (dim -> hidden), GELU, ``fc2`` (hidden -> dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (Dosovitskiy et al. 2021, eqs. 2-3): x + attn(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2021): linear patch embedding, class token, learned positions,
    ``depth`` pre-norm :class:`Block` s in ``blocks`` (an :class:`~torch.nn.ModuleList`), LayerNorm, linear head.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 8,
        patch_size: int = 2,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)
        trunc_normal_init_(self)

    def patchify(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, patches, C * p * p): non-overlapping p x p patches in row-major order, flattened."""
        n, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, (h // p) * (w // p), c * p * p)

    def embed(self, x: Tensor) -> Tensor:
        """Images -> the tokens the first block sees, (N, 1 + patches, dim): class token, patches, + positions."""
        tokens = self.patch_embed(self.patchify(x))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


@register("model", "vit")
def vit(num_classes: int = 10, **kw: float) -> nn.Module:
    """Small ViT (Dosovitskiy et al. 2021): 2x2 patches (17 tokens), 4 pre-norm blocks, width 64, 4 heads, MLP x2."""
    return ViT(num_classes=num_classes, **kw)
