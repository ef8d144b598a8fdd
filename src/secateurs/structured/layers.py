"""Layer pruning: remove whole residual blocks / transformer layers.

A block can go when it maps its input to an output of the same shape (a residual block: without it the stream
passes through unchanged).  Scores, from the blocks' inputs and outputs on the example inputs or on ``data``:

* ``bi`` — Block Influence (Men et al. 2024, "ShortGPT", eq. 2): BI_l = 1 − E[cos(x_l, x_{l+1})]; the blocks that
  change their input least are removed, one by one by score.
* ``angular`` — Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers", eq. 7): the angular
  distance arccos(cos(x_l, x_{l+n})) / π between the input of block l and of block l+n; the ``n`` consecutive
  blocks with the smallest distance are removed together.
* ``cka`` — Pons, Yamamoto, Costa & Jordao 2024 ("Effective Layer Pruning Through Similarity Metric
  Perspective"): for each candidate block, the model is run with that block skipped and its output compared with the
  unpruned model's by linear CKA (Kornblith et al. 2019, eq. for the linear kernel); the blocks whose removal
  leaves the most similar representation go.  The score is 1 − CKA (low = removable).  One-shot ranking here; the
  paper's loop of removing one block and fine-tuning is ``prune_layers(..., n=1)`` called repeatedly.
* ``random`` — a seeded random choice, the baseline.

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
from ..errors import InvalidArgumentError, ModelStructureError, PruningError
from .count import count_macs, count_params
from .trace import _tensors, call

LAYER_SCORES = ("bi", "angular", "cka", "random")


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


def _hidden(x: Any) -> torch.Tensor | None:
    ts = _tensors(x if not hasattr(x, "to_tuple") else x.to_tuple())
    return ts[0] if ts else None


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the feature vectors (last dim for tokens, channels×space for images)."""
    if a.dim() >= 4:  # N, C, H, W: one vector per sample
        a, b = a.flatten(1), b.flatten(1)
    a, b = a.float().reshape(-1, a.shape[-1]), b.float().reshape(-1, b.shape[-1])
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8).mean()


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


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (rows): ||Yᶜᵀ Xᶜ||²_F / (||Xᶜᵀ Xᶜ||_F ||Yᶜᵀ Yᶜ||_F)
    with column-centred Xᶜ, Yᶜ (Kornblith et al. 2019); computed through n×n Gram matrices when n is smaller."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    x, y = x - x.mean(0), y - y.mean(0)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        num, dx, dy = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        num, dx, dy = (y.T @ x).norm() ** 2, (x.T @ x).norm(), (y.T @ y).norm()
    return float(num / (dx * dy)) if dx > 0 and dy > 0 else 0.0


def _skip_output(out: Any, inp: torch.Tensor) -> Any:
    """The block's output with its hidden state replaced by the block's input (the block skipped)."""
    if isinstance(out, torch.Tensor):
        return inp
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return (inp, *out[1:])
    raise ModelStructureError(f"cannot skip a block whose output is a {type(out).__name__}")


def _cka_scores(model: nn.Module, blocks: nn.Module, batches: list[Any], removable: list[int]) -> list[float | None]:
    """1 − linear CKA between the model's output and its output with block i skipped, per removable block."""
    with torch.no_grad():
        ref = [_hidden(call(model, x)) for x in batches]
    scores: list[float | None] = [None] * len(blocks)
    for i in removable:
        handle = blocks[i].register_forward_hook(lambda m, args, kwargs, out: _skip_output(out, _hidden((args, kwargs))),
                                                 with_kwargs=True)
        try:
            with torch.no_grad():
                outs = [_hidden(call(model, x)) for x in batches]
        finally:
            handle.remove()
        a = torch.cat([r.reshape(r.shape[0], -1) if r.dim() < 3 else r.reshape(-1, r.shape[-1]) for r in ref])
        b = torch.cat([o.reshape(o.shape[0], -1) if o.dim() < 3 else o.reshape(-1, o.shape[-1]) for o in outs])
        scores[i] = 1.0 - linear_cka(a, b)
    return scores


def prune_layers(model: nn.Module, example_inputs: Any, n: int = 1, importance: str = "bi", *,
                 blocks: str | None = None, data: Any = None, seed: int = 0) -> LayerReport:
    """Remove ``n`` blocks of the list ``blocks`` (found automatically when None) from ``model``, in place.

    ``data``: an iterable of model inputs (or ``(inputs, targets)`` batches) to score on; default the example
    inputs.  Returns a :class:`LayerReport`; on any error the model is unchanged.
    """
    t0 = time.perf_counter()
    if importance not in LAYER_SCORES:
        raise InvalidArgumentError(f"layer importance must be one of {LAYER_SCORES}, got {importance!r}")
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
        scores: list[float | None]
        if importance == "bi":
            scores = list(bi)
            order = sorted(removable, key=lambda i: (scores[i], i))
            removed = sorted(order[:n])
        elif importance == "cka":
            scores = _cka_scores(model, lst, batches, removable)
            removed = sorted(sorted(removable, key=lambda i: (scores[i], i))[:n])
        elif importance == "angular":
            scores = [None] * len(lst)
            best = None
            for i in range(len(lst) - n + 1):
                if not all(ok[i:i + n]):
                    continue
                d = sum(float(torch.arccos(_cos(s[i], s[i + n]).clamp(-1, 1)) / torch.pi) for s in states)
                scores[i] = d / len(states)
                if best is None or scores[i] < scores[best]:
                    best = i
            if best is None:
                raise ModelStructureError(f"no {n} consecutive blocks of {path!r} all keep their input's shape")
            removed = list(range(best, best + n))
        else:
            gen = torch.Generator().manual_seed(seed)
            perm = torch.randperm(len(removable), generator=gen).tolist()
            removed = sorted(removable[p] for p in perm[:n])
            scores = [None] * len(lst)
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
