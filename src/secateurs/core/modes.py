"""The one place secateurs changes a model's modes for a while and gives them back: train/eval and requires_grad.

``model.train(was)`` is not a restore: it sets *every* submodule to ``was``, so a training model with a frozen
(eval-mode) BatchNorm comes back with that BatchNorm training again, and its running statistics move on the next
forward.  These context managers record each submodule's (each parameter's) own flag and put exactly that back.

Bottom layer: imports only torch, so every package (engine, criteria, structured, llm, data, zoo) can use it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn

__all__ = ["eval_mode", "requires_grad"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every submodule in eval mode for the duration (BatchNorm statistics must not move, dropout off); afterwards
    each submodule gets back its own previous ``training`` flag.  Modules removed from the model meanwhile (a
    pruned block) are restored too, harmlessly; modules added meanwhile keep the mode they were given."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def requires_grad(params: Iterable[nn.Parameter], flag: bool = True) -> Iterator[None]:
    """Set ``requires_grad`` of ``params`` to ``flag`` for the duration (e.g. gradients of frozen weights: an LLM
    loaded for inference) and give every parameter back its own previous flag afterwards."""
    params = list(params)
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(flag)
        yield
    finally:
        for p, was in zip(params, flags):
            p.requires_grad_(was)
