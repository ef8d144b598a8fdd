"""Generic discovery of a model's repeated blocks and of the prunable linear layers inside them.

The sequential calibration pipeline (:mod:`secateurs.core.sequential`) walks these blocks.  Post-training LLM pruning (SparseGPT, Frantar & Alistarh 2023; Wanda, Sun et al. 2023) works block by block
on the decoder (or encoder) layers of a model.  The reference implementations hard-code one path per family
(``model.model.layers`` for Llama, ``model.model.decoder.layers`` for OPT); here the blocks are found
generically as the largest ``nn.ModuleList`` of identical-class modules that hold linear layers, which covers
Llama/Mistral/Qwen2 (``model.layers``), OPT (``model.decoder.layers``), GPT-2 (``transformer.h``) and BERT
(``encoder.layer``) without a per-family branch.  Embeddings and the LM head live outside the blocks and are
therefore never pruned.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelStructureError

from .targets import DEFAULT_TYPES
from .targets import LINEAR_TYPES as PRUNABLE
from .targets import is_transposed

__all__ = ["PRUNABLE", "find_blocks", "find_linears", "weight_2d", "set_weight_2d", "is_transposed"]


def weight_2d(layer: nn.Module) -> torch.Tensor:
    """The weight as an (out, in) matrix — a view for nn.Linear, the transpose view for Conv1D."""
    w = layer.weight.data
    return w.t() if is_transposed(layer) else w


def set_weight_2d(layer: nn.Module, w2d: torch.Tensor) -> None:
    """Write an (out, in) matrix back into the layer's weight in place (same Parameter, dtype and device)."""
    target = layer.weight.data
    target.copy_((w2d.t() if is_transposed(layer) else w2d).to(dtype=target.dtype, device=target.device))


def find_linears(block: nn.Module) -> dict[str, nn.Module]:
    """Every nn.Linear / Conv1D inside ``block``, by qualified name, in module order."""
    return {name: mod for name, mod in block.named_modules() if isinstance(mod, PRUNABLE) and name}


def _resolve(model: nn.Module, path: str) -> nn.Module:
    mod: nn.Module = model
    for part in path.split("."):
        if not part:
            continue
        if part.isdigit() and isinstance(mod, (nn.ModuleList, nn.Sequential)):
            idx = int(part)
            if idx >= len(mod):
                raise ModelStructureError(f"blocks={path!r}: index {idx} is out of range (len {len(mod)})")
            mod = mod[idx]
        elif hasattr(mod, part) and isinstance(getattr(mod, part), nn.Module):
            mod = getattr(mod, part)
        else:
            children = ", ".join(n for n, _ in mod.named_children()) or "none"
            raise ModelStructureError(
                f"blocks={path!r}: {type(mod).__name__} has no submodule {part!r} (its children: {children})"
            )
    return mod


def _candidates(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        kinds = {type(m) for m in mod}
        if len(kinds) == 1 and find_linears(mod[0]):
            out.append((name, mod))
    return out


def _n_params(mod: nn.Module) -> int:
    return sum(p.numel() for p in mod.parameters())


def find_blocks(model: nn.Module, path: str | None = None) -> tuple[str, nn.ModuleList]:
    """Return ``(attribute path, ModuleList)`` of the model's repeated transformer blocks.

    Without ``path`` the largest (by parameter count, then by length) ``nn.ModuleList`` whose members all have
    the same class and hold at least one nn.Linear/Conv1D is chosen.  ``path`` names it explicitly, e.g.
    ``"model.layers"`` or ``"transformer.h"``; it must resolve to an ``nn.ModuleList`` (or ``nn.Sequential``).
    Raises :class:`~secateurs.errors.ModelStructureError` with the candidates and the fix when none is found.
    """
    if path is not None:
        mod = _resolve(model, path)
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)) or len(mod) == 0:
            raise ModelStructureError(
                f"blocks={path!r} is a {type(mod).__name__}, not a non-empty nn.ModuleList of transformer blocks"
            )
        if not any(isinstance(m, DEFAULT_TYPES) for b in mod for m in b.modules()):
            raise ModelStructureError(f"blocks={path!r} holds no Linear/Conv layer to prune")
        return path, mod  # type: ignore[return-value]
    cands = _candidates(model)
    if not cands:
        lists = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
        seen = ", ".join(repr(n) for n in lists[:8]) or "none"
        raise ModelStructureError(
            f"could not find the repeated blocks of {type(model).__name__}: no nn.ModuleList of identical blocks "
            f"containing nn.Linear/Conv1D layers (ModuleLists seen: {seen}). Name them with the attribute path, "
            f"e.g. prune(..., blocks='model.layers') or --blocks model.layers"
        )
    name, mod = max(cands, key=lambda c: (_n_params(c[1]), len(c[1])))
    return name, mod
