"""Calibration rows for post-training pruning: a (nsamples, seqlen) tensor of token ids.

A 2-D tensor is used exactly as given, row by row in order, so that a run is comparable with other tools fed
the same rows.  Anything else (a 1-D id tensor, a text, a list of texts with ``tokenizer=``, a path to a text
file) is turned into one token stream by :func:`secateurs.llm.text.load_token_ids`, from which ``nsamples``
random windows of ``seqlen`` tokens are drawn with ``seed`` — Wanda/SparseGPT's ``get_wikitext2`` recipe
(``random.seed(seed)``; per sample ``i = random.randint(0, len - seqlen - 1)``; window ``ids[i:i+seqlen]``).
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError

__all__ = ["calibration_rows", "draw_windows", "default_seqlen", "model_max_positions"]


def model_max_positions(model: nn.Module) -> int | None:
    """The longest sequence the model's position embeddings support, from its config (None if unknown)."""
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        val = getattr(cfg, attr, None)
        if isinstance(val, int) and val > 0:
            return val
    return None


def default_seqlen(model: nn.Module) -> int:
    """Wanda's ``model.seqlen = config.max_position_embeddings``, capped at 2048 for CPU budgets."""
    return min(model_max_positions(model) or 2048, 2048)


def draw_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int, *,
                 bos_token_id: int | None = None) -> torch.Tensor:
    """``nsamples`` windows of ``seqlen`` tokens at random starts (``random.Random(seed)``, as Wanda's loaders).

    With ``bos_token_id`` every row is ``[BOS]`` followed by ``seqlen - 1`` tokens from the same starts, for models
    trained with a BOS at position 0 (Gemma; see :func:`~secateurs.llm.evaluate.perplexity`)."""
    rng = random.Random(seed)
    starts = [rng.randint(0, ids.numel() - seqlen - 1) for _ in range(nsamples)]
    if bos_token_id is None:
        return torch.stack([ids[s:s + seqlen] for s in starts])
    bos = ids.new_full((1,), bos_token_id)
    return torch.stack([torch.cat([bos, ids[s:s + seqlen - 1]]) for s in starts])


def _describe(calibration: Any) -> str:
    if isinstance(calibration, (str, Path)) and Path(calibration).exists():
        return str(calibration)
    if torch.is_tensor(calibration):
        return f"tensor{tuple(calibration.shape)}"
    if isinstance(calibration, (list, tuple)):
        return f"{len(calibration)} texts"
    return type(calibration).__name__


def _check_ids(ids: torch.Tensor, vocab: int | None) -> None:
    if ids.numel() and int(ids.min()) < 0:
        raise InvalidArgumentError(f"calibration holds negative token ids (min {int(ids.min())})")
    if vocab is not None and ids.numel() and int(ids.max()) >= vocab:
        raise InvalidArgumentError(
            f"calibration token id {int(ids.max())} is outside the model's vocabulary of {vocab} embeddings: "
            f"the tokenizer and the model do not match (tokenize with the model's own tokenizer)"
        )


def calibration_rows(calibration: Any, model: nn.Module, *, nsamples: int, seqlen: int | None, seed: int,
                     tokenizer: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Return the (rows, seqlen) LongTensor of calibration ids and a description for the report.

    Checks, before anything is touched: a 2-D tensor's width against ``seqlen``; that a drawn stream holds at
    least ``nsamples × seqlen`` tokens (saying how many there are); token ids inside the model's embedding
    table; ``seqlen`` within the model's position embeddings.  Raises InvalidArgumentError otherwise."""
    if calibration is None:
        raise InvalidArgumentError("this method/allocation needs calibration data: pass calibration=...")
    if tokenizer is not None:
        from .text import check_vocab

        check_vocab(model, tokenizer)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(emb, "num_embeddings", None)
    maxpos = model_max_positions(model)
    if not isinstance(nsamples, int) or isinstance(nsamples, bool) or nsamples < 1:
        raise InvalidArgumentError(f"nsamples must be a positive integer, got {nsamples!r}")
    if seqlen is not None and (not isinstance(seqlen, int) or isinstance(seqlen, bool) or seqlen < 2):
        raise InvalidArgumentError(f"seqlen must be an integer >= 2, got {seqlen!r}")
    if torch.is_tensor(calibration) and calibration.dim() == 2:
        rows = calibration.long()
        if rows.shape[0] < 1 or rows.shape[1] < 2:
            raise InvalidArgumentError(f"a 2-D calibration tensor needs at least one row of >= 2 tokens, got "
                                       f"{tuple(rows.shape)}")
        if seqlen is not None and rows.shape[1] != seqlen:
            raise InvalidArgumentError(f"calibration rows have {rows.shape[1]} tokens but seqlen={seqlen}; "
                                       f"a 2-D tensor is used as given: drop seqlen or reshape the tensor")
        source, drawn = f"tensor{tuple(rows.shape)}", False
    else:
        if torch.is_tensor(calibration) and calibration.dim() != 1:
            raise InvalidArgumentError(f"calibration tensor must be 1-D (a token stream) or 2-D (rows), got "
                                       f"shape {tuple(calibration.shape)}")
        seqlen = seqlen or default_seqlen(model)
        if torch.is_tensor(calibration):
            ids = calibration.long()
        else:
            from .text import load_token_ids  # tokenizes texts / files with the model's tokenizer

            ids = load_token_ids(calibration, tokenizer=tokenizer)
        need = nsamples * seqlen
        if ids.numel() < need or ids.numel() < seqlen + 1:
            raise InvalidArgumentError(
                f"calibration has {ids.numel()} tokens but nsamples × seqlen = {nsamples} × {seqlen} = "
                f"{max(need, seqlen + 1)} are needed; give more text or lower nsamples/seqlen"
            )
        _check_ids(ids, vocab)
        rows = draw_windows(ids, nsamples, seqlen, seed)
        source, drawn = _describe(calibration), True
    _check_ids(rows, vocab)
    if maxpos is not None and rows.shape[1] > maxpos:
        raise InvalidArgumentError(f"seqlen {rows.shape[1]} exceeds the model's {maxpos} positions; lower seqlen")
    digest = hashlib.sha256(rows.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    info = {"source": source, "nsamples": int(rows.shape[0]), "seqlen": int(rows.shape[1]),
            "drawn_windows": drawn, "seed": seed if drawn else None, "rows_sha256": digest}
    return rows, info
