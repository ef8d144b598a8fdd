"""Structured post-training pruning of LLMs that makes them really smaller: ``secateurs.llm.prune_structured``.

Methods are registered components of kind ``llm_structured``, one file each:

* ``flap`` (:mod:`.flap`) — FLAP (An et al. 2024): fluctuation metric, adaptive global search over heads and MLP
  channels, bias compensation;
* ``width`` (:mod:`.width`) — heads (whole key/value groups) and MLP neurons by any structured importance, uniform
  or per-layer widths;
* ``shortgpt`` / ``angular`` (:mod:`.shortgpt`) — whole layers by Block Influence (Men et al. 2024) or angular
  distance (Gromov et al. 2024).

Every method streams the engine's block-by-block pipeline (:func:`secateurs.core.sequential.sequential`: block 0's
inputs captured, statistics of :mod:`secateurs.core.stats` collected as each block runs, the block pruned and re-run
to feed the next), cuts with the structured package's surgery, and writes the new widths into the Hugging Face
config.  Saved with :func:`secateurs.llm.save_pruned`: uniform widths and removed layers give a stock config that
plain ``AutoModelForCausalLM.from_pretrained`` loads (with ``attention_bias``/``mlp_bias`` set where compensation
added biases: Llama's flags add a bias to q/k/v and gate/up too, stored as zeros); per-layer widths, and families
whose config cannot hold an ``o_proj``/``down_proj`` bias (Qwen2, Mistral, Gemma-3: no such flag), are rebuilt by
:func:`secateurs.llm.load_pruned` from the widths recorded in ``secateurs.json``.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ... import registry
from ...core.blocks import find_blocks
from ...core.feed import Feed
from ...core.modes import eval_mode
from ...errors import InvalidArgumentError
from ...structured.count import count_params
from ..calibration import calibration_rows
from .base import (StructuredContext, StructuredMethod, StructuredReport, WidthError, apply_structure, block_layouts,
                   finish_model, stock_loadable, structure_record, widths_of)
from . import flap, shortgpt, width  # noqa: F401  (registration)

__all__ = ["prune_structured", "StructuredReport", "StructuredMethod", "WidthError", "structure_record",
           "apply_structure", "stock_loadable", "METHODS"]

METHODS = ("flap", "width", "shortgpt", "angular")


def _check_sparsity(sparsity: Any) -> float | None:
    if sparsity is None:
        return None
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise InvalidArgumentError(f"sparsity must be a fraction of the blocks' parameters in [0, 1), got "
                                   f"{sparsity!r}")
    return float(sparsity)


def prune_structured(model: nn.Module, calibration: Any = None, method: str = "flap", sparsity: float | None = 0.2,
                     *, tokenizer: Any = None, nsamples: int = 128, seqlen: int | None = None,
                     device: str | torch.device | None = None, seed: int = 0, **options: Any) -> StructuredReport:
    """Remove attention heads, MLP neurons or whole layers of a Hugging Face decoder (Llama family), in place.

    ``method``: ``"flap"`` (An et al. 2024; options ``metric="WIFV"``, ``structure="AL-AM"``, ``bias=True``,
    ``dense_inputs=True``, ``remove_heads``), ``"width"`` (options ``importance="wanda"|"flap"|"l2"|"taylor"|...``,
    ``heads``, ``intermediate``, ``multiple=8``, ``attention=True``, ``bias=False``), ``"shortgpt"`` (Men et al.
    2024; ``remove_layers``, ``score="bi"``) or ``"angular"`` (Gromov et al. 2024).  ``sparsity``: the fraction of
    the blocks' parameters removed.  ``calibration`` as :func:`secateurs.llm.prune` (token rows, text, a file...),
    ``nsamples`` windows of ``seqlen`` tokens drawn with ``seed``.  Other options: ``progress`` (False),
    ``blocks`` (the block list's path when discovery fails), ``batch_size`` (1).  Only the current block lives on
    ``device`` (default cuda when available, else cpu).

    Returns a :class:`StructuredReport` (parameters before/after, per-layer widths, removed layers, seconds;
    ``to_dict()`` is JSON-safe).  Bad arguments and impossible widths (every head or neuron of a layer, a head
    count that is not a whole number of key/value groups, every layer) raise a
    :class:`~secateurs.errors.PruningError` subclass before any weight is touched.
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch nn.Module (a transformers model), got {type(model).__name__}")
    progress = bool(options.pop("progress", False))
    blocks = options.pop("blocks", None)
    batch_size = options.pop("batch_size", 1)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(method, str):
        raise InvalidArgumentError(f"method must be a name, one of {registry.names('llm_structured')}")
    algo: StructuredMethod = registry.build("llm_structured", method, options)
    sparsity = _check_sparsity(sparsity)
    from ..prune import default_device

    dev = default_device(device)
    path, block_list = find_blocks(model, blocks)
    layouts = block_layouts(block_list)
    ctx = StructuredContext(model, path, block_list, layouts, None, sparsity, dev, seed, progress)
    algo.check(ctx)  # widths and counts, before any data is read
    calib = None
    if calibration is not None:
        ctx.rows, calib = calibration_rows(calibration, model, nsamples=nsamples, seqlen=seqlen, seed=seed,
                                           tokenizer=tokenizer)
        ctx.feed = Feed.token_rows(ctx.rows, batch_size)
    elif algo.needs_data:
        ctx.need_feed(f"method {method!r}")
    params_before, block_before = count_params(model), ctx.block_params()
    layers_before = len(block_list)
    with eval_mode(model):  # the block passes run without a KV cache (core.sequential.capture_inputs)
        details = algo.run(ctx)
    _, block_list = find_blocks(model, path)
    layouts = block_layouts(block_list)
    stock = finish_model(model, layouts)
    report = StructuredReport(
        method=method, target_sparsity=sparsity, params_before=params_before, params_after=count_params(model),
        block_params_before=block_before, block_params_after=sum(p.numel() for p in block_list.parameters()),
        layers_before=layers_before, layers_after=len(block_list), widths=widths_of(layouts),
        removed_layers=list(details.get("removed_layers", [])), options=algo.options(), details=details,
        stock_config=stock, block_seconds=list(ctx.block_seconds), device=str(dev), calibration=calib)
    report.seconds = time.perf_counter() - t0
    return report
