"""Scope: the comparison group inside which a layer's scores are ranked (registry kind ``"scope"``).

The allocation decides how many groups a layer loses; the scope decides which ones compete:

* ``layer`` — one ranking over the whole layer (magnitude pruning, Han et al. 2015; SNIP, SynFlow...).
* ``row`` — each output row loses the same number (Wanda, Sun et al. 2023, Sec. 3: the lowest ``int(cols·s)``
  scores of every row, stable sort).  When the layer's count is not a multiple of the rows, the remaining
  removals go to the rows whose next-lowest score is smallest, so the layer's total stays exact.
* ``global`` — one ranking over every layer: that is ``allocation="global"`` with the ``layer`` scope, and
  :func:`secateurs.prune` accepts it under either name.

N:M patterns compare inside their groups of M (always within a row), so the scope does not apply to them.  A
scope works on the grid of pattern groups (weights, or blocks for block patterns): a "row" is a row of groups.
"""
from __future__ import annotations

import torch

from ..registry import register
from .select import Chunk, Threshold, keep_masks, kth_threshold

# A scope: (flat group scores callable, (rows, cols) group grid, groups to prune, optional threshold that an
# allocation already found for this very callable, seed) -> flat keep mask of the groups.


@register("scope", "layer")
def layer_scope(scores: Chunk, grid: tuple[int, int], k: int, hint: Threshold | None = None,
                seed: int = 0) -> torch.Tensor:
    """One ranking over the whole layer: remove its ``k`` lowest groups (ties in flat order)."""
    th = hint if hint is not None else kth_threshold([scores], [grid[0] * grid[1]], k, seed)
    return keep_masks([scores], th)[0]


@register("scope", "row")
def row_scope(scores: Chunk, grid: tuple[int, int], k: int, hint: Threshold | None = None,
              seed: int = 0) -> torch.Tensor:
    """Each row of the group grid loses ``k // rows`` groups (its lowest, stable order); the ``k % rows``
    remaining go to the rows whose next score is smallest."""
    rows, cols = grid
    scores = scores().reshape(rows, cols)
    base, rem = divmod(k, rows)
    keep = torch.ones(rows, cols, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return keep.reshape(-1)
    values, order = torch.sort(scores, dim=1, stable=True)
    keep.scatter_(1, order[:, :base], False)
    if rem:
        extra = torch.sort(values[:, base], stable=True).indices[:rem]
        keep[extra, order[extra, base]] = False
    return keep.reshape(-1)
