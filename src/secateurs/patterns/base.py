"""The Pattern interface shared by unstructured, N:M and block pruning."""
from __future__ import annotations

import torch


class Pattern:
    """How weights are grouped for removal, on the 2-D view (rows=outputs, cols=inputs x kernel).

    Allocation works in units of groups: ``group_scores`` reduces a score matrix to one score per group,
    ``expand`` turns a per-group keep mask back into a per-weight mask.  Patterns with a fixed density
    (N:M) select inside each group themselves through ``select`` and ignore the allocation.
    """

    name = "pattern"
    fixed_density: float | None = None

    def validate(self, layer: str, shape2d: tuple[int, int]) -> None:
        """Raise PatternError if the pattern cannot be applied to a weight of this 2-D shape."""

    def group_size(self, shape2d: tuple[int, int]) -> float:
        """Mean number of weights per group (exact except for ragged edge blocks)."""
        return 1.0

    def n_groups(self, shape2d: tuple[int, int]) -> int:
        return shape2d[0] * shape2d[1]

    def grid(self, shape2d: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the group grid; ``group_scores`` is its flattening (row scope ranks along cols)."""
        return shape2d

    def group_scores(self, scores2d: torch.Tensor) -> torch.Tensor:
        """One score per group, flattened."""
        return scores2d.reshape(-1)

    def expand(self, group_keep: torch.Tensor, shape2d: tuple[int, int]) -> torch.Tensor:
        """Per-weight boolean keep mask from the flat per-group keep mask."""
        return group_keep.reshape(shape2d)

    def select(self, scores2d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is selected by an allocation, not on its own")

    def __repr__(self) -> str:
        return self.name
