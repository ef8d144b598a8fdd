"""Which weights are pruned: module-name globs or a callable, defaulting to Linear and Conv1d/2d/3d weights."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import InvalidArgumentError, NoTargetsError

try:  # Hugging Face GPT-2 style "Conv1D": a linear layer whose weight is stored transposed, (in, out)
    from transformers.pytorch_utils import Conv1D as HFConv1D
except ImportError:  # pragma: no cover - transformers is an optional dependency
    HFConv1D = None  # type: ignore[assignment,misc]

LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear,) + ((HFConv1D,) if HFConv1D is not None else ())
DEFAULT_TYPES: tuple[type[nn.Module], ...] = LINEAR_TYPES + (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_transposed(module: nn.Module) -> bool:
    """True for GPT-2's ``Conv1D``, whose weight is stored as (in, out) instead of nn.Linear's (out, in)."""
    return HFConv1D is not None and isinstance(module, HFConv1D)


@dataclass(frozen=True)
class Target:
    """One prunable weight: ``getattr(module, param)`` seen through any mask."""

    name: str  # module name in the model, e.g. "features.0"
    module: nn.Module
    param: str = "weight"

    @property
    def key(self) -> str:
        return f"{self.name}.{self.param}" if self.name else self.param

    @property
    def weight(self) -> torch.Tensor:
        """The effective (masked) weight."""
        return getattr(self.module, self.param)

    @property
    def leaf(self) -> torch.nn.Parameter:
        """The trainable tensor behind the weight (the parametrization's original when masked)."""
        if parametrize.is_parametrized(self.module, self.param):
            return getattr(self.module.parametrizations, self.param).original
        return getattr(self.module, self.param)

    @property
    def shape(self) -> torch.Size:
        return self.leaf.shape

    @property
    def transposed(self) -> bool:
        """The weight is stored (in, out) (GPT-2 ``Conv1D``); its 2-D view is the transpose."""
        return self.param == "weight" and is_transposed(self.module)

    @property
    def shape2d(self) -> tuple[int, int]:
        """(outputs, inputs x kernel): the view every pattern, scope and statistic works on."""
        s = self.shape
        if self.transposed:
            return (s[1], s[0])
        return (s[0], s.numel() // s[0]) if len(s) > 1 else (1, s[0])

    def view2d(self, x: torch.Tensor) -> torch.Tensor:
        """A weight-shaped tensor as its (out, in) view (a view, not a copy)."""
        return x.t() if self.transposed else x.reshape(self.shape2d)

    def unview2d(self, x2d: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`view2d`: an (out, in) tensor back in the weight's own layout."""
        return x2d.t() if self.transposed else x2d.reshape(self.shape)

    @property
    def numel(self) -> int:
        return self.leaf.numel()


def _matcher(sel, what: str) -> Callable[[str, nn.Module], bool]:
    if callable(sel):
        return sel
    patterns = [sel] if isinstance(sel, str) else list(sel)
    if not all(isinstance(p, str) for p in patterns):
        raise InvalidArgumentError(f"{what} must be module-name globs (str or list of str) or a callable, got {sel!r}")
    return lambda name, _m: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def resolve_targets(model: nn.Module, targets=None, ignore=None) -> list[Target]:
    """Targets in module order.

    ``targets``: None (every Linear/Conv1d/2d/3d weight), module-name globs, or ``callable(name, module) -> bool``
    (which may select any module with a ``weight``).  ``ignore`` removes matches the same way.
    Raises NoTargetsError if nothing is left.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    want = _matcher(targets, "targets") if targets is not None else None
    skip = _matcher(ignore, "ignore") if ignore is not None else (lambda n, m: False)
    out = []
    for name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList) or name.endswith(".parametrizations") or ".parametrizations." in name:
            continue
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() < 1:
            continue
        chosen = isinstance(module, DEFAULT_TYPES) if want is None else want(name, module)
        if chosen and not skip(name, module):
            out.append(Target(name, module))
    if not out:
        raise NoTargetsError(
            f"no prunable weight matched targets={targets!r} ignore={ignore!r}; "
            f"module names look like {[n for n, _ in model.named_modules()][1:6]}"
        )
    return out


def select_names(targets: list[Target], sel, what: str) -> set[str]:
    """Names of the targets matched by ``sel`` (globs or callable); used for ``dense=`` layers."""
    if sel is None:
        return set()
    match = _matcher(sel, what)
    return {t.name for t in targets if match(t.name, t.module)}
