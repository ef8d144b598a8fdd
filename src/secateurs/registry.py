"""One decorator-based registry for every kind of named component.

``@register("criterion", "magnitude")`` files a class or function under a kind; ``get("criterion", "magnitud")``
raises :class:`~secateurs.errors.UnknownNameError` with a did-you-mean.  Components are registered when their
module is imported; :func:`_load` imports the packages that hold each kind so lookups never depend on import order.
"""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable

from .errors import UnknownNameError

_REGISTRY: dict[str, dict[str, Any]] = {}
# kind -> package whose modules register components of that kind
_PACKAGES = {
    "criterion": "secateurs.criteria",
    "allocation": "secateurs.allocations",
    "pattern": "secateurs.patterns",
    "statistic": "secateurs.core.stats",
    "scope": "secateurs.core.scope",
    "model": "secateurs.zoo",
    "dataset": "secateurs.zoo",
    "solver": "secateurs.solvers",
    "importance": "secateurs.structured.importance",
    "schedule": "secateurs.schedules",
    "scorer": "secateurs.data",
    "selector": "secateurs.data",
}


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Class/function decorator that files the object under ``kind``/``name``."""

    def deco(obj: Any) -> Any:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not obj:
            raise RuntimeError(f"{kind} {name!r} registered twice")
        table[name] = obj
        obj.registry_name = name
        return obj

    return deco


def _load(kind: str) -> None:
    pkg = _PACKAGES.get(kind)
    if pkg:
        importlib.import_module(pkg)


def get(kind: str, name: str) -> Any:
    """Look up a registered component; unknown names raise UnknownNameError with a suggestion."""
    _load(kind)
    table = _REGISTRY.get(kind, {})
    if name not in table:
        raise UnknownNameError(kind, name, table)
    return table[name]


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY.get(kind, {}))


_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\beq)(?<!\bcf)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z`(])")


def describe(kind: str) -> dict[str, str]:
    """name -> first sentence of the component's docstring (for ``secateurs methods``)."""
    _load(kind)
    out = {}
    for name, obj in sorted(_REGISTRY.get(kind, {}).items()):
        para = " ".join((obj.__doc__ or "").strip().split("\n\n")[0].split())  # first paragraph, one line
        m = _SENTENCE_END.search(para)
        out[name] = para[:m.start() + 1] if m else para  # its first sentence ("et al." is not an end)
    return out


def build(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """Instantiate the registered class ``kind``/``name`` with keyword ``options``, refusing unknown ones.

    The one option validator of secateurs: every criterion, allocation and solver takes its options as keyword
    arguments of ``__init__`` (which checks their values)."""
    cls = get(kind, name)
    options = dict(options or {})
    unknown = [k for k in options if k not in accepted_options(cls)]
    if unknown:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"{kind} {name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted_options(cls)) or 'none'}"
        )
    return cls(**options)


def accepted_options(cls: Any) -> list[str]:
    """Keyword options of a registered class (the parameters of its ``__init__``)."""
    if not isinstance(cls, type) or cls.__init__ is object.__init__:
        return []
    params = inspect.signature(cls.__init__).parameters
    return [p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
