"""The interface of a structured allocation: units to remove per dependency group, given the groups' scores."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ... import registry
from ...errors import InvalidArgumentError
from ..importance.base import Group


class StructuredAllocation:
    """Base class: :meth:`counts` returns, per scored group, how many of its units go for a ``ratio`` (the
    fraction of units removed), never more than ``max_ratio`` of a group where the allocation is free to choose.
    Options are ``__init__`` keyword arguments (typed, validated by the registry)."""

    def options(self) -> dict[str, Any]:
        return {}

    def counts(self, scored: Sequence[tuple[Group, torch.Tensor]], ratio: float, max_ratio: float,
               seed: int) -> list[int]:
        raise NotImplementedError


def build(allocation: Any, options: dict[str, Any] | None = None) -> StructuredAllocation:
    """A registered structured allocation by name (with ``options``), or an instance as it is."""
    if isinstance(allocation, StructuredAllocation):
        if options:
            raise InvalidArgumentError("allocation_options are for an allocation given by name; this one is an "
                                       "instance already")
        return allocation
    if not isinstance(allocation, str):
        raise InvalidArgumentError(f"allocation must be a name ({registry.names('structured_allocation')}) or a "
                                   f"StructuredAllocation, got {allocation!r}")
    return registry.build("structured_allocation", allocation, options)
