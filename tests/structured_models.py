"""Small models of the topologies the structured tests cover that the zoo does not ship."""
import torch
from torch import nn


class Basic(nn.Module):  # ResNet-18 style
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):  # ResNet-50 style: 1x1 reduce, 3x3, 1x1 expand (x4)
    def __init__(self, cin, mid, stride=1):
        super().__init__()
        cout = mid * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetStyle(nn.Module):
    def __init__(self, block="basic", classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        if block == "basic":
            blocks = [Basic(16, 16), Basic(16, 16), Basic(16, 32, 2), Basic(32, 32)]
            out = 32
        else:
            blocks = [Bottleneck(16, 8), Bottleneck(32, 8), Bottleneck(32, 16, 2), Bottleneck(64, 16)]
            out = 64
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(out, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)


class DenseNetStyle(nn.Module):
    """Stem, a dense block of three concatenating layers, a transition (BN-ReLU-1x1 conv-pool), a classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block = nn.Sequential(DenseLayer(16, 8), DenseLayer(24, 8), DenseLayer(32, 8))
        self.trans = nn.Sequential(nn.BatchNorm2d(40), nn.ReLU(), nn.Conv2d(40, 24, 1, bias=False), nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        x = torch.relu(self.norm(self.trans(self.block(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def randomize_bn(model, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters, so equivalence checks mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


class SplitAttention(nn.Module):
    """A user's own multi-head attention: q/k/v ``nn.Linear`` projections, heads split with ``view(B, T, h, D//h)``,
    ``q @ k^T``, softmax, ``@ v``, heads merged back, an output projection (``fused``: one ``Linear(D, 3D)`` then
    ``reshape(B, T, 3, h, D//h)``).  ``stored``: head count and head size are ints on the module (so pruned heads
    can be written back); otherwise ``D`` comes from the input's width, and the heads cannot change."""

    def __init__(self, dim, num_heads, fused=False, stored=True):
        super().__init__()
        self.num_heads, self.head_dim, self.fused, self.stored = num_heads, dim // num_heads, fused, stored
        if fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        h, hd = (self.num_heads, self.head_dim) if self.stored else (self.num_heads, D // self.num_heads)
        if self.fused:
            q, k, v = self.qkv(x).reshape(B, T, 3, h, hd).permute(2, 0, 3, 1, 4)
        else:
            q = self.q(x).view(B, T, h, hd).transpose(1, 2)
            k = self.k(x).view(B, T, h, hd).transpose(1, 2)
            v = self.v(x).view(B, T, h, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * hd ** -0.5
        out = (att.softmax(dim=-1) @ v).transpose(1, 2)
        return self.proj(out.reshape(B, T, h * hd if self.stored else D))


class CustomViT(nn.Module):
    """A ViT written by hand: patch embedding, class token, positions, pre-norm blocks of :class:`SplitAttention`
    and a GELU MLP, LayerNorm, head.  8x8 one-channel images in 2x2 patches: 16 + 1 tokens of width ``dim``."""

    def __init__(self, dim=32, heads=4, depth=2, classes=10, fused=False, stored=True):
        super().__init__()
        self.patch = nn.Linear(4, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            blk = nn.Module()
            blk.norm1, blk.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            blk.attn = SplitAttention(dim, heads, fused, stored)
            blk.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.blocks.append(blk)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, img):
        B = img.shape[0]
        x = img.reshape(B, 1, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, 16, 4)
        x = torch.cat([self.cls.expand(B, -1, -1), self.patch(x)], 1) + self.pos
        for blk in self.blocks:
            x = x + blk.attn(blk.norm1(x))
            x = x + blk.mlp(blk.norm2(x))
        return self.head(self.norm(x[:, 0]))
