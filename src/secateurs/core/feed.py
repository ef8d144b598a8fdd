"""Calibration data as the engine sees it: batches, how to run the model on one, and a loss on one.

Every data-dependent part of the engine (gradient criteria, activation statistics, the sequential pipeline)
reads data through a :class:`Feed`, so the same criterion runs on an image classifier fed ``(inputs, labels)``
batches and on a language model fed rows of token ids.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@dataclass
class Feed:
    """``batches`` (re-iterable), ``forward(model, batch, device)`` and ``loss(model, batch, device, temperature)``
    (GraSP divides the logits by a temperature before the loss)."""

    batches: Iterable[Any]
    forward: Callable[[nn.Module, Any, torch.device], Any]
    loss: Callable[..., torch.Tensor]  # (model, batch, device, temperature=1.0): logits are divided by it

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches)

    def first_input_shape(self) -> tuple[int, ...] | None:
        """Shape of one example (without the batch dimension), from the first batch."""
        for batch in self.batches:
            return tuple(_inputs(batch).shape[1:])
        return None

    @classmethod
    def pairs(cls, data: Iterable[Any], loss_fn: Callable | None = None) -> "Feed":
        """``(inputs, targets)`` batches (or bare input tensors, for criteria that need no loss); the loss is
        ``loss_fn(model(inputs), targets)``, cross-entropy by default."""
        crit = loss_fn or nn.functional.cross_entropy

        def forward(model: nn.Module, batch: Any, device: torch.device) -> Any:
            return model(_inputs(batch).to(device))

        def loss(model: nn.Module, batch: Any, device: torch.device, temperature: float = 1.0) -> torch.Tensor:
            out = model(batch[0].to(device))
            return crit(out / temperature if temperature != 1.0 else out, batch[1].to(device))

        return cls(data, forward, loss)

    @classmethod
    def token_rows(cls, rows: torch.Tensor, batch_size: int = 1,
                   loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> "Feed":
        """Rows of token ids, ``batch_size`` at a time in order; the loss is the model's own language-modelling
        loss with ``labels = input_ids`` unless ``loss_fn(model, input_ids)`` is given."""
        chunks = [rows[i:i + batch_size] for i in range(0, rows.shape[0], batch_size)]

        def forward(model: nn.Module, batch: torch.Tensor, device: torch.device) -> Any:
            return model(input_ids=batch.to(device))

        def loss(model: nn.Module, batch: torch.Tensor, device: torch.device, temperature: float = 1.0) -> torch.Tensor:
            ids = batch.to(device)
            if loss_fn is not None:
                return loss_fn(model, ids)
            if temperature == 1.0:
                return model(input_ids=ids, labels=ids).loss
            logits = model(input_ids=ids).logits[:, :-1].float() / temperature  # next-token loss, as labels=ids
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

        return cls(chunks, forward, loss)
