"""Compensation after the cut (registry kind ``compensation``): a step that adjusts the kept weights for what the
removed units contributed, called by :func:`secateurs.structured.prune` right after the surgery and before the
pruned model is checked.  FLAP's bias compensation (An, Zhao, Yu, Tang & Wang 2024, "Fluctuation-based Adaptive
Structured Pruning for Large Language Models", eq. 7: the next layer's bias absorbs W[:, removed] · E[x_removed])
is the first method meant to plug in here; none ships yet.

A compensation is any callable ``compensate(model, cut)`` (``cut``: a :class:`~secateurs.structured.plan.Cut`,
with every removed slice's old values) or the name of one registered with ``@register("compensation", name)``
(a class whose instances are such callables, options as ``__init__`` keyword arguments)."""
from __future__ import annotations

from typing import Any, Callable

from ... import registry
from ...errors import InvalidArgumentError


def resolve(compensate: Any, options: dict[str, Any] | None = None) -> Callable[..., None] | None:
    """None, a callable as it is, or a registered ``compensation`` built with ``options``."""
    if compensate is None:
        return None
    if isinstance(compensate, str):
        return registry.build("compensation", compensate, options)
    if not callable(compensate):
        raise InvalidArgumentError(f"compensate must be a callable compensate(model, cut), the name of a "
                                   f"registered compensation ({registry.names('compensation')}) or None, got "
                                   f"{compensate!r}")
    return compensate
