"""The one place secateurs changes a mode for a while and gives it back: train/eval, requires_grad, torch's thread
count; and where a model lives (:func:`model_device`).

``model.train(was)`` is not a restore: it sets *every* submodule to ``was``, so a training model with a frozen
(eval-mode) BatchNorm comes back with that BatchNorm training again, and its running statistics move on the next
forward.  These context managers record each submodule's (each parameter's) own flag and put exactly that back.

Bottom layer: imports only torch, so every package (engine, criteria, structured, llm, data, zoo) can use it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "model_device", "num_threads", "requires_grad"]


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


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the duration (None: leave it), then put the old count back."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"num_threads must be an int >= 1 or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
