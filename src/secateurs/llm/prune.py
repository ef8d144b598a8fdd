"""``secateurs.llm.prune``: the front door for post-training pruning of a Hugging Face transformer.

It turns calibration text into token rows, finds the repeated blocks and their linear layers, and hands the rest
to the one engine (:func:`secateurs.prune`) with the block-by-block pipeline of SparseGPT (Frantar & Alistarh
2023) and Wanda (Sun et al. 2023): statistics per block on the pruned outputs of the blocks before it, zeros
baked into the weights.  Every criterion, scope, allocation, pattern and solver of the engine is available here,
with the LLM papers' defaults (uniform allocation; Wanda/GBLM per row; SparseGPT selecting while it updates).
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..core.blocks import find_blocks, find_linears
from ..core.feed import Feed
from ..core.modes import eval_mode
from ..core.prune import prune as engine_prune
from ..core.prune import check_sparsity, resolve_device
from ..core.report import LayerReport, PruneReport
from ..errors import InvalidArgumentError, MissingDataError
from ..patterns import parse
from ..registry import get
from .calibration import calibration_rows

__all__ = ["prune", "PruneReport", "LayerReport", "default_device"]


def default_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None means cuda when available, else cpu."""
    return resolve_device(device, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def check_arguments(method: str, allocation: str, sparsity: Any, pattern: str, batch_size: int = 1,
                    loss_fn: Any = None) -> type:
    """The cheap checks, before any calibration text is read or weight loaded; returns the criterion class."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if loss_fn is not None and not callable(loss_fn):
        raise InvalidArgumentError("loss_fn must be a callable(model, input_ids) -> scalar loss")
    crit_cls = get("criterion", method)
    get("allocation", allocation)
    check_sparsity(sparsity, parse(pattern))
    return crit_cls


def prune(model: nn.Module, calibration: Any = None, method: str = "wanda", sparsity: float | None = 0.5,
          pattern: str = "unstructured", allocation: str = "uniform", nsamples: int = 128, seqlen: int | None = None,
          device: str | torch.device | None = None, seed: int = 0, tokenizer: Any = None, progress: bool = True,
          *, blocks: str | None = None, batch_size: int = 1, scope: str | None = None, solver: str | None = None,
          loss_fn: Any = None, stream: Any = None, **options: Any) -> PruneReport:
    """Prune a transformer's block linear layers post-training and return a :class:`PruneReport`.

    ``method``: any criterion — ``magnitude``; ``wanda`` (Sun et al. 2023, eq. 1); ``sparsegpt`` (Frantar &
    Alistarh 2023, Alg. 1; options ``percdamp=0.01``, ``blocksize=128``); ``gblm`` (Das et al. 2023; option
    ``scale=100``); or snip/taylor/random/...  ``allocation``: ``uniform``, ``owl`` (Yin et al. 2023; options
    ``owl_lambda=0.08``, ``owl_m=5``, ``owl_ratios``), ``global``, ``erk``...  ``pattern``: ``"unstructured"``,
    ``"N:M"`` (``sparsity`` None or 1−N/M) or blocks.  ``scope``/``solver``: as :func:`secateurs.prune`.

    ``calibration``: a 2-D (rows, seqlen) LongTensor of token ids used exactly as given, in order; or a 1-D id
    tensor, a text, a list of texts (with ``tokenizer``) or a path to a text file, from which ``nsamples``
    windows of ``seqlen`` tokens (default: the model's positions, at most 2048) are drawn with ``seed``.
    ``blocks`` names the ModuleList of blocks when discovery fails (e.g. ``"model.layers"``); ``batch_size``
    calibration rows run through a block at a time (1, as the references: on 2 CPU cores batching 8 rows of 256
    tokens was no faster and raised the peak memory by a third, benchmarks/results/llm_reference.json).
    ``loss_fn(model, input_ids)``: the loss of gradient criteria (default: the model's language-modelling loss).
    ``stream``: used by :func:`secateurs.llm.prune_checkpoint` to read and write one block at a time.
    Only the current block lives on ``device`` (default cuda when available, else cpu; float32 on cpu).  Raises
    a :class:`~secateurs.errors.PruningError` subclass before any weight is touched when an argument is bad.
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch nn.Module (a transformers model), "
                                   f"got {type(model).__name__}")
    crit_cls = check_arguments(method, allocation, sparsity, pattern, batch_size, loss_fn)
    blocks_path, block_list = find_blocks(model, blocks)
    names = {f"{blocks_path}.{i}.{name}" for i, blk in enumerate(block_list) for name in find_linears(blk)}
    if crit_cls.needs_data and loss_fn is None and getattr(model, "get_output_embeddings", lambda: None)() is None:
        raise InvalidArgumentError(
            f"{method} needs gradients of a language-modelling loss, but {type(model).__name__} has no LM head; "
            f"load it with AutoModelForCausalLM / AutoModelForMaskedLM or pass loss_fn=callable(model, ids)")
    dev = default_device(device)
    rows, calib = None, None
    if calibration is not None:
        rows, calib = calibration_rows(calibration, model, nsamples=nsamples, seqlen=seqlen, seed=seed,
                                       tokenizer=tokenizer)
    feed = Feed.token_rows(rows, batch_size, loss_fn) if rows is not None else None
    cfg = getattr(model, "config", None)
    use_cache = getattr(cfg, "use_cache", None)
    try:
        if use_cache is not None:
            cfg.use_cache = False
        with eval_mode(model):
            report = engine_prune(model, sparsity, method=method, allocation=allocation, pattern=pattern, data=feed,
                                  targets=lambda name, _m: name in names, seed=seed, scope=scope, solver=solver,
                                  blocks=blocks_path, device=dev, progress=progress, bake=True, stream=stream,
                                  **options)
    except MissingDataError as exc:
        if feed is None:  # the engine names the component ("criterion 'wanda'"); say what an LLM gives it
            what = str(exc).partition(" needs data")[0] or f"method {method!r}"
            raise MissingDataError(f"{what} needs calibration data (token rows run through the model for its "
                                   f"statistics or gradients): pass calibration=<text, file or token ids>") from exc
        raise
    finally:
        if use_cache is not None:
            cfg.use_cache = use_cache
    report.calibration = calib
    if stream is None:  # a streamed model's weights are on disk: prune_checkpoint counts them as it writes
        params = list(model.parameters())
        report.model_sparsity = sum(int((p == 0).sum()) for p in params) / max(sum(p.numel() for p in params), 1)
    report.seconds = time.perf_counter() - t0
    return report
