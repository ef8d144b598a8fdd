"""Deprecated argument names, mapped to the one vocabulary (a primitive: imports nothing of secateurs but errors).

Everywhere in secateurs ``sparsity`` is the fraction removed (weights, units, examples) and ``method`` names the
component.  Older names (``ratio``, ``rate``, ``final_sparsity``, ``importance``, ``strategy``) still work for
one release through :func:`renamed`, with a :class:`DeprecationWarning`.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

from .errors import InvalidArgumentError

REMOVED_IN = "0.3"


def renamed(**old_to_new: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: accept each ``old=`` keyword as ``new=`` (DeprecationWarning); both at once is refused."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InvalidArgumentError(f"{old}= is the deprecated name of {new}=; pass only {new}=")
                    warnings.warn(f"{fn.__qualname__}: {old}= is deprecated, use {new}= (the old name goes in "
                                  f"{REMOVED_IN})", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.renamed_arguments = dict(old_to_new)  # type: ignore[attr-defined]
        return wrapper

    return deco
