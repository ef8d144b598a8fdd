"""The interface of a layer score: which ``n`` blocks of a list of blocks to remove, from the blocks' inputs and
outputs on calibration batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class LayerContext:
    """What :func:`~secateurs.structured.prune_layers` measured before asking a score.

    ``inputs[b][i]``: the hidden state entering block ``i`` on batch ``b`` (``inputs[b][len(blocks)]``: the last
    block's output); ``influence[i]``: Σ over batches of 1 − cos(input, output) of block ``i`` (None where the block
    changes its input's shape); ``removable``: the blocks that keep their input's shape (only those can go)."""

    model: nn.Module
    blocks: nn.Module
    path: str
    batches: list[Any]
    inputs: list[list[torch.Tensor]]
    influence: list[float | None]
    removable: list[int]
    seed: int = 0


class LayerScore:
    """Base class: :meth:`select` returns the ``n`` blocks to remove and a score per block (None: not scored)."""

    def select(self, ctx: LayerContext, n: int) -> tuple[list[int], list[float | None]]:
        raise NotImplementedError


def lowest(scores: list[float | None], candidates: list[int], n: int) -> list[int]:
    """The ``n`` candidates of lowest score (ties: the earlier block), in block order."""
    return sorted(sorted(candidates, key=lambda i: (scores[i], i))[:n])


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the feature vectors (last dim for tokens, channels×space for images)."""
    if a.dim() >= 4:  # N, C, H, W: one vector per sample
        a, b = a.flatten(1), b.flatten(1)
    a, b = a.float().reshape(-1, a.shape[-1]), b.float().reshape(-1, b.shape[-1])
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8).mean()


def hidden(x: Any) -> torch.Tensor | None:
    """The hidden state in a block's inputs or outputs: their first tensor."""
    from ..trace import _tensors

    ts = _tensors(x if not hasattr(x, "to_tuple") else x.to_tuple())
    return ts[0] if ts else None
