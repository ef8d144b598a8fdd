"""Depth pruning: remove whole decoder layers, scored on one streamed dense pass.

* ``shortgpt`` — Block Influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant
  Than You Expect", eq. 2): ``BI_l = 1 − E_tokens[cos(x_l, x_{l+1})]`` between a layer's input and output hidden
  states; the ``n`` layers of lowest influence are removed.
* ``angular`` — Gromov, Tirumala, Shapourian, Glorioso & Roberts 2024 ("The Unreasonable Ineffectiveness of the
  Deeper Layers", eq. 7): the run of ``n`` consecutive layers whose first input and last output are closest in
  angle, ``arccos(cos(x_l, x_{l+n}))/π``, is removed (their "healing" fine-tune is :func:`secateurs.llm.recover`'s
  job, not this one's).

The scores are the registered ``layer_score`` components of the structured package (``bi``, ``angular``, ``cka``,
``random``; ``score=`` picks one), fed by the engine's block-by-block pass (hidden states measured as each block
runs on its inputs, so only one block need be on the device); the removal is
:func:`secateurs.structured.layers` ``prune_layers``' (block list, ``num_hidden_layers``, ``layer_types``,
``layer_idx`` kept consistent, model checked to run).  ``remove_layers=N`` or ``sparsity`` (the nearest whole
number of layers: ``round(sparsity · layers)`` for equal layers).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import torch

from ... import registry
from ...registry import option, register
from ...structured.layer_scores.base import LayerContext, cos, hidden
from ...structured.layers import _remove
from .base import StructuredContext, StructuredMethod, WidthError


@register("llm_structured", "shortgpt")
class ShortGPT(StructuredMethod):
    """ShortGPT (Men et al. 2024): remove the layers of lowest Block Influence, 1 − cos(input, output)."""

    default_score = "bi"

    def __init__(self,
                 remove_layers: Annotated[int | None, option("layers removed (instead of sparsity)", ge=1)] = None,
                 score: Annotated[Literal["bi", "angular", "cka", "random"] | None,
                                  option("layer score: bi (ShortGPT), angular (Gromov et al.), cka, random")] = None):
        self.remove_layers = remove_layers
        self.score = score or self.default_score

    @property
    def needs_data(self) -> bool:  # type: ignore[override]
        return self.score != "random"

    def count(self, ctx: StructuredContext) -> int:
        L = len(ctx.layouts)
        if self.remove_layers is not None:
            n = self.remove_layers
        elif ctx.sparsity is None:
            raise WidthError("layer removal needs sparsity= or remove_layers=")
        else:
            n = int(round(float(ctx.sparsity) * L))
            if n == 0 and ctx.sparsity > 0:
                raise WidthError(f"sparsity {ctx.sparsity} is less than half a layer (each of the {L} layers holds "
                                 f"{1 / L:.3f} of the blocks' parameters); raise it or pass remove_layers=1")
        if n >= L:
            raise WidthError(f"removing {n} layers would remove every layer ({L}); remove at most {L - 1}")
        return n

    def check(self, ctx: StructuredContext) -> None:
        self.count(ctx)

    def run(self, ctx: StructuredContext) -> dict[str, Any]:
        n = self.count(ctx)
        if n == 0:
            return {"removed_layers": []}
        L = len(ctx.blocks)
        influence: list[float | None] = [0.0] * L
        states: list[list[torch.Tensor]] = []
        keep_states = self.score == "angular"
        ins: list[torch.Tensor | None] = [None] * L
        calls = [0] * L
        handles = []
        if self.needs_data:
            for i, blk in enumerate(ctx.blocks):
                def pre(_m: Any, args: tuple, kwargs: dict, i: int = i) -> None:
                    ins[i] = hidden((args, kwargs))

                def post(_m: Any, args: tuple, kwargs: dict, out: Any, i: int = i) -> None:
                    x, y = ins[i], hidden(out)
                    influence[i] = float(influence[i]) + float(1 - cos(x, y))
                    if keep_states:
                        j = calls[i]
                        if j == len(states):
                            states.append([])
                        states[j].append(x.detach().float().cpu())
                        if i == L - 1:
                            states[j].append(y.detach().float().cpu())
                    calls[i] += 1

                handles.append(blk.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(blk.register_forward_hook(post, with_kwargs=True))
            try:
                ctx.walk(lambda lay: [], (), lambda *a: None, modifies=False, description=f"{self.score}: measure")
            finally:
                for h in handles:
                    h.remove()
        batches = list(ctx.feed) if ctx.feed is not None else []
        lctx = LayerContext(ctx.model, ctx.blocks, ctx.blocks_path, batches, states, influence, list(range(L)),
                            ctx.seed)
        removed, scores = registry.build("layer_score", self.score).select(lctx, n)
        example = ctx.rows[:1] if ctx.rows is not None else torch.zeros(1, 4, dtype=torch.long)
        dev = next(ctx.model.parameters()).device
        _remove(ctx.model, ctx.blocks_path, ctx.blocks, removed, example.to(dev))
        return {"removed_layers": removed, "scores": scores, "score": self.score}


@register("llm_structured", "angular")
class Angular(ShortGPT):
    """Gromov et al. 2024: remove the run of n consecutive layers with the smallest angular distance between the
    first one's input and the last one's output."""

    default_score = "angular"
