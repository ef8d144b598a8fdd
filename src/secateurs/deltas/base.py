"""The delta-pruning method interface and the per-tensor generator.

A method sees one tensor's fine-tuning delta ``Δ = θ_ft − θ_base`` (float32) and returns the pruned delta (kept
entries, rescaled or not, the rest zero).  Methods are registered under the kind ``"delta"``
(``@register("delta", "dare")``) with typed options, as every other component; :func:`secateurs.deltas.prune`
streams the checkpoints and calls them tensor by tensor.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch

CHUNK = 1 << 22  # elements drawn/combined at a time: bounds the temporaries, fixes the random stream's layout


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from ``seed`` + a stable hash of the tensor's name (SHA-256, not Python's salted
    ``hash``): the same seed gives the same masks on every machine and in every tensor order."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return torch.Generator().manual_seed((seed + h) % (2 ** 63))


class DeltaMethod:
    """Base class of a registered delta-pruning method."""

    def prepare(self, ctx: Any) -> None:
        """Called once before the tensors stream, with ``ctx.base_dir``, ``ctx.finetuned_dir``, ``ctx.sparsity``,
        ``ctx.names`` and ``ctx.read_delta(name)`` (nothing to do for most methods; DAREx-q's analytical q reads
        activations and deltas here)."""

    def sparsify(self, name: str, delta: torch.Tensor, sparsity: float, rescale: bool,
                 generator: torch.Generator) -> tuple[torch.Tensor, float]:
        """``(pruned delta, rescaling factor applied)`` for one tensor; ``delta`` is float32 and may be modified
        in place."""
        raise NotImplementedError


def random_keep_(delta: torch.Tensor, sparsity: float, generator: torch.Generator, scale: float) -> torch.Tensor:
    """DARE's drop in place: each entry is zeroed with probability ``sparsity`` (a Bernoulli draw per entry,
    ``u < p`` with ``u ~ U[0, 1)`` from ``generator``, chunk by chunk in flat order) and the kept ones multiplied
    by ``scale``."""
    flat = delta.view(-1)
    for start in range(0, flat.numel(), CHUNK):
        part = flat[start:start + CHUNK]
        u = torch.rand(part.numel(), generator=generator)
        part.masked_fill_(u < sparsity, 0.0)
        if scale != 1.0:
            part.mul_(scale)
    return delta
