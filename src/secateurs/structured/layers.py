"""Layer pruning: remove whole residual blocks / transformer layers.

A block can go when it maps its input to an output of the same shape (a residual block: without it the stream
passes through unchanged).  Which blocks go is a registered ``layer_score`` component, one file each under
:mod:`secateurs.structured.layer_scores`, from the blocks' inputs and outputs on the example inputs or on ``data``:

* ``bi`` — Block Influence (Men et al. 2024, "ShortGPT", eq. 2): BI_l = 1 − E[cos(x_l, x_{l+1})]; the blocks that
  change their input least are removed, one by one by score.
* ``angular`` — Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers", eq. 7): the angular
  distance arccos(cos(x_l, x_{l+n})) / π between the input of block l and of block l+n; the ``n`` consecutive
  blocks with the smallest distance are removed together.
* ``cka`` — Pons, Yamamoto, Costa & Jordao 2024 ("Effective Layer Pruning Through Similarity Metric
  Perspective"): 1 − linear CKA between the model's output with and without the block (low = removable).
* ``random`` — a seeded random choice, the baseline.

A new score subclasses :class:`~secateurs.structured.layer_scores.LayerScore` and registers itself with
``@register("layer_score", name)``.

The same call on an untrained model removes blocks before training, the setting of Jordao et al. 2023 ("When
Layers Play the Lottery, all Tickets Win at Initialization"), whose authors' later criterion is ``cka``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.blocks import _resolve, find_blocks
from ..core.feed import Feed
from ..core.modes import eval_mode
from .._compat import renamed
from ..errors import InvalidArgumentError, ModelStructureError, PruningError
from .count import count_macs, count_params
from .. import registry
from .layer_scores.base import LayerContext, cos as _cos, hidden as _hidden
from .layer_scores.cka import linear_cka  # noqa: F401  (public here since the layer scores were inline)
from .trace import call

LAYER_SCORES = ("bi", "angular", "cka", "random")  # the built-in ``layer_score`` components


@dataclass
class LayerReport:
    blocks_path: str
    removed: list[int]
    scores: list[float | None]  # per block (None: cannot be removed)
    importance: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    seconds: float = 0.0
    layers_before: int = 0
    layers_after: int = 0
    removable: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _run_blocks(model: nn.Module, blocks: nn.Module, batches: list[Any]) -> tuple[list[float], list[float], list]:
    """Per block: summed cosine of (input, output) over batches, and the per-block inputs' cosine to later ones."""
    n = len(blocks)
    ins: list[torch.Tensor | None] = [None] * n
    outs: list[torch.Tensor | None] = [None] * n
    shapes_ok = [True] * n
    handles = []
    for i, b in enumerate(blocks):
        def pre(m, args, kwargs, i=i):
            ins[i] = _hidden((args, kwargs))
        def post(m, args, kwargs, out, i=i):
            outs[i] = _hidden(out)
        handles.append(b.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(b.register_forward_hook(post, with_kwargs=True))
    bi = [0.0] * n
    states: list[list[torch.Tensor]] = []
    try:
        with torch.no_grad():
            for x in batches:
                call(model, x)
                for i in range(n):
                    if ins[i] is None or outs[i] is None or ins[i].shape != outs[i].shape:
                        shapes_ok[i] = False
                        continue
                    bi[i] += float(1 - _cos(ins[i], outs[i]))
                states.append([t for t in ins] + [outs[-1]])
    finally:
        for h in handles:
            h.remove()
    return [b if ok else None for b, ok in zip(bi, shapes_ok)], shapes_ok, states


@renamed(importance="method")
def prune_layers(model: nn.Module, example_inputs: Any, n: int = 1, method: str = "bi", *,
                 blocks: str | None = None, data: Any = None, seed: int = 0) -> LayerReport:
    """Remove ``n`` blocks of the list ``blocks`` (found automatically when None) from ``model``, in place.

    ``data``: an iterable of model inputs (or ``(inputs, targets)`` batches) to score on; default the example
    inputs.  Returns a :class:`LayerReport`; on any error the model is unchanged.
    """
    t0 = time.perf_counter()
    importance = method  # the layer score (``importance=`` is its deprecated name)
    if not isinstance(importance, str) or importance not in registry.names("layer_score"):
        raise InvalidArgumentError(f"layer importance must be one of {registry.names('layer_score')} (registered "
                                   f"layer_score components), got {importance!r}")
    score = registry.build("layer_score", importance)
    path, lst = find_blocks(model, blocks)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < len(lst):
        raise InvalidArgumentError(f"n must be an integer in [1, {len(lst) - 1}] (the model has {len(lst)} blocks "
                                   f"in {path!r}), got {n!r}")
    batches = [example_inputs] if data is None else [b[0] if isinstance(b, (tuple, list)) and len(b) == 2
                                                     and not isinstance(data, Feed) else b for b in data]
    with eval_mode(model):
        params_before, macs_before = count_params(model), count_macs(model, example_inputs)
        try:
            bi, ok, states = _run_blocks(model, lst, batches)
        except PruningError:
            raise
        except Exception as e:
            raise InvalidArgumentError(f"the model does not run on the inputs ({type(e).__name__}: {e})") from e
        removable = [i for i, good in enumerate(ok) if good]
        if len(removable) < n:
            raise ModelStructureError(f"only {len(removable)} blocks of {path!r} keep their input's shape (a block "
                                      f"that changes it cannot be skipped); asked to remove {n}")
        ctx = LayerContext(model, lst, path, batches, states, bi, removable, seed)
        removed, scores = score.select(ctx, n)
        _remove(model, path, lst, removed, example_inputs)
        rep = LayerReport(path, removed, scores, importance, params_before, count_params(model), macs_before,
                          count_macs(model, example_inputs), layers_before=len(lst),
                          layers_after=len(lst) - len(removed), removable=removable)
    _resolve(model, path).training = lst.training  # the new block list takes the mode of the one it replaced
    rep.seconds = time.perf_counter() - t0
    return rep


def _remove(model: nn.Module, path: str, lst: nn.Module, removed: list[int], inputs: Any) -> None:
    """Replace the block list by one without ``removed``; Hugging Face bookkeeping (num_hidden_layers, layer_idx,
    layer_types); verify the model still runs, else restore it."""
    parent_path, _, attr = path.rpartition(".")
    parent = _resolve(model, parent_path) if parent_path else model
    kept = [b for i, b in enumerate(lst) if i not in set(removed)]
    new = type(lst)(*kept) if isinstance(lst, nn.Sequential) else nn.ModuleList(kept)
    cfg = getattr(model, "config", None)
    saved_cfg = dict(vars(cfg)) if cfg is not None and hasattr(cfg, "to_dict") else None
    idx_attrs = [(m, m.layer_idx) for b in lst for m in b.modules() if isinstance(getattr(m, "layer_idx", None), int)]
    setattr(parent, attr, new)
    for j, b in enumerate(kept):
        for m in b.modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = j
    if saved_cfg is not None:
        if isinstance(getattr(cfg, "num_hidden_layers", None), int):
            cfg.num_hidden_layers = len(kept)
        if isinstance(getattr(cfg, "layer_types", None), list) and len(cfg.layer_types) == len(lst):
            cfg.layer_types = [t for i, t in enumerate(cfg.layer_types) if i not in set(removed)]
    try:
        with torch.no_grad():
            call(model, inputs)
    except Exception as e:
        setattr(parent, attr, lst)
        for m, i in idx_attrs:
            m.layer_idx = i
        if saved_cfg is not None:
            vars(cfg).clear()
            vars(cfg).update(saved_cfg)
        raise ModelStructureError(f"the model does not run without blocks {removed} of {path!r} "
                                  f"({type(e).__name__}: {e}); it was restored") from e
