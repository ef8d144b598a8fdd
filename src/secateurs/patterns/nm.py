"""N:M semi-structured sparsity (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks").

In every run of M consecutive weights along the input dimension of a row, exactly N are kept — the pattern
that NVIDIA's sparse tensor cores accelerate for 2:4.  A Conv weight is grouped along input-channel x kernel
(the flattened ``W.reshape(out, -1)`` view), whose width must be divisible by M.
"""
from __future__ import annotations

import torch

from ..errors import PatternError
from .base import Pattern


def nm_keep_mask(scores2d: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean keep mask that keeps the N highest scores of every M consecutive columns of each row.

    Ties are broken towards the lower column index (stable), so equal scores give deterministic masks.
    """
    rows, cols = scores2d.shape
    if cols % m:
        raise PatternError(f"N:M needs the input width ({cols}) to be divisible by M={m}")
    groups = scores2d.reshape(rows, cols // m, m)
    # stable descending sort: of equal scores, the earlier column is kept
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n], True)
    return keep.reshape(rows, cols)


class NM(Pattern):
    """Keep N of every M consecutive input weights in each row (2:4, 4:8, ...)."""

    def __init__(self, n: int, m: int):
        if not 0 < n < m:
            raise PatternError(f"N:M pattern needs 0 < N < M, got {n}:{m} (e.g. use '2:4')")
        self.n, self.m = n, m
        self.name = f"{n}:{m}"
        self.fixed_density = n / m

    def validate(self, layer: str, shape2d: tuple[int, int]) -> None:
        if shape2d[1] % self.m:
            raise PatternError(
                f"layer {layer!r}: input width {shape2d[1]} (inputs x kernel) is not divisible by M={self.m}; "
                f"exclude it with ignore=[{layer!r}] or choose another M"
            )

    def select(self, scores2d: torch.Tensor) -> torch.Tensor:
        return nm_keep_mask(scores2d, self.n, self.m)
