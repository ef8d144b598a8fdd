"""How one pruning call gathers its statistics and writes its masks: the engine's executors.

* ``one-pass`` — statistics of every target in one forward pass over the data (flat models, and any model
  without ``blocks=``); criteria with several rounds (SynFlow, iterative) re-score the masked model.
* ``block-by-block`` — the SparseGPT/Wanda pipeline (Frantar & Alistarh 2023, ``opt_sequential``; Sun et al.
  2023, ``prune_wanda``): capture block 0's inputs, collect one block's statistics, prune it, re-run it to feed
  the next (:mod:`secateurs.core.sequential`); an allocation that reads statistics (OWL) gets a dense pass first.
* ``streamed`` — block by block with the weights read from a checkpoint and written out again per block
  (:func:`secateurs.llm.prune_checkpoint`): memory independent of depth.

The engine (:mod:`secateurs.core.prune`) validates the call, plans and selects; an executor only decides the
order in which blocks are loaded, measured, pruned and released.  Each is registered (kind ``executor``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..allocations.base import LayerInfo
from ..criteria.base import ScoreContext
from ..registry import register
from .masks import get_mask, set_mask
from .modes import eval_mode
from .progress import progress_bar
from .sequential import sequential
from .stats import collect


class Executor:
    """Base: ``run(engine, ctx, backup)`` scores, plans and writes every target of ``engine``."""

    def run(self, e: Any, ctx: Any, backup: dict[int, torch.Tensor]) -> None:
        raise NotImplementedError


@register("executor", "one-pass")
class OnePass(Executor):
    """Statistics of every target in one forward pass over the data; several rounds re-score the masked model."""

    def run(self, e: Any, ctx: Any, backup: dict[int, torch.Tensor]) -> None:
        stats: list[dict] = [{} for _ in e.ts]
        if e.kinds:
            with collect(e.ts, e.kinds, e.device) as stats, eval_mode(e.model), torch.no_grad():
                for batch in e.feed:
                    e.feed.forward(e.model, batch, e.device)
            e.skipped = [i for i, st in enumerate(stats) if not st]
        ctx.stats = stats
        acts = [e._alloc_stats(st) for st in stats]
        rounds = e.crit.rounds if e.pat.fixed_density is None else 1
        keeps: list[torch.Tensor | None] = [None] * len(e.ts)
        for r in range(1, rounds + 1):
            round_sparsity = 1 - (1 - e.sparsity) ** (r / rounds)
            fns = e._live(e.crit.scores(ctx))
            infos = e._infos([e._group_chunk(i, fn) for i, fn in enumerate(fns)], acts)
            e.plans, hints = e._plan(infos, round_sparsity)
            if e.scope is None:
                break
            keeps = [e._keep(i, infos[i].scores, p, h) for i, (p, h) in enumerate(zip(e.plans, hints))]
            if r < rounds:  # later rounds score the masked model
                for i, k in enumerate(keeps):
                    prev = get_mask(e.ts[i])
                    set_mask(e.ts[i], e.ts[i].unview2d(k) if prev is None else
                             e.ts[i].unview2d(k) & prev, zero=False)
        # solver results for every layer first, then writes: a failure leaves every weight untouched
        results = [e._solve(i, keeps[i], stats[i], e.plans[i]) if i not in e.skipped else (None, None)
                   for i in range(len(e.ts))]
        for i, (new, keep) in enumerate(results):
            if i in e.skipped:
                continue
            e._backup(i, backup)
            e._write(i, keep, new)
        e._finish()



@register("executor", "block-by-block")
class BlockByBlock(Executor):
    """Block by block (SparseGPT/Wanda's sequential pipeline): each block is measured on the outputs of the
    blocks before it, already pruned."""

    def run(self, e: Any, ctx: Any, backup: dict[int, torch.Tensor]) -> None:
        per_block = [[i for i, b in enumerate(e.block_of) if b == k] for k in range(len(e.block_list))]
        static = None if e.crit.stats else e.crit.scores(ctx)  # weights/gradients: known up front
        # 1. plan: a dense statistics pass only when the allocation ranks stat-based scores or reads statistics
        plan_kinds = list(dict.fromkeys((e.crit.stats if e.alloc.needs_scores else ()) + e.alloc.stats))
        stored: list[Callable[[], torch.Tensor]] = [e._unplanned] * len(e.ts)
        acts: list[dict | None] = [None] * len(e.ts)
        if static is not None:
            stored = list(static)
        seen: set[int] = set()
        if plan_kinds:
            def record(k: int, block: nn.Module, stats: list[dict]) -> None:
                idx = per_block[k]
                for i, st in zip(idx, stats):
                    if not st:
                        continue
                    seen.add(i)
                    acts[i] = e._alloc_stats(st)  # what the allocation reads (OWL: the input norms)
                    if e.alloc.needs_scores and e.crit.stats:
                        sub = ScoreContext(e.model, [e.ts[i]], e.feed, e.seed, stats=[st])
                        s = e.crit.scores(sub)[0]().float().cpu()  # held on the CPU, 4 bytes per weight
                        stored[i] = lambda s=s: s
                live = [LayerInfo(e.ts[i].name, tuple(e.ts[i].shape), 0, e._unplanned, k, e.ts[i],
                                  acts[i]) for i in idx if i in seen and acts[i] is not None]
                if e.stream is not None and live:  # the weights go when the block does
                    e.alloc.observe(live)

            sequential(e.model, e.blocks_path, e.block_list, e.feed,
                       targets=[[e.ts[i] for i in idx] for idx in per_block], kinds=plan_kinds,
                       process=record, modifies=False, device=e.device, progress=e.progress,
                       description=f"{e.alloc_name} allocation pass", stream=e.stream)
            e.skipped = [i for i in range(len(e.ts)) if i not in seen]
        infos = e._infos([e._group_chunk(i, fn) for i, fn in enumerate(e._live(stored))], acts)
        e.plans, hints = e._plan(infos, e.sparsity)

        # 2. prune block by block on live statistics
        def process(k: int, block: nn.Module, stats: list[dict]) -> None:
            if e.stream is not None and e.stream.done(k):  # pruned by the interrupted run: read back
                for i in per_block[k]:
                    e.kept[i] = int(torch.count_nonzero(e.ts[i].leaf))
                return
            for i, st in zip(per_block[k], stats):
                if st:
                    prune_layer(i, st)
                elif i not in e.skipped:  # never called on the calibration data: left dense
                    e.skipped.append(i)

        def prune_layer(i: int, st: dict) -> None:
            plan = e.plans[i]
            keep = None
            if e.scope is not None:
                if static is not None:
                    chunk = infos[i].scores
                else:
                    sub = ScoreContext(e.model, [e.ts[i]], e.feed, e.seed, stats=[st])
                    chunk = e._group_chunk(i, e.crit.scores(sub)[0])
                keep = e._keep(i, chunk, plan, hints[i] if static is not None else None)
            new, keep = e._solve(i, keep, st, plan)
            e._backup(i, backup)
            e._write(i, keep, new)

        kinds = list(dict.fromkeys(e.crit.stats + (e.solver.stats if e.solver else ())))
        if kinds:
            e.block_seconds = sequential(
                e.model, e.blocks_path, e.block_list, e.feed,
                targets=[[e.ts[i] for i in idx] for idx in per_block], kinds=kinds, process=process,
                modifies=True, device=e.device, progress=e.progress, description=f"{e.method} pruning",
                stream=e.stream)
        elif e.stream is not None:  # weights alone decide: read, prune and write each block, no forward pass
            with torch.no_grad(), progress_bar(e.progress, len(e.block_list), f"{e.method} pruning") as adv:
                for k, block in enumerate(e.block_list):
                    t0 = time.perf_counter()
                    e.stream.load(k, block, True)
                    if e.stream.done(k):
                        process(k, block, [])
                    else:
                        for i in per_block[k]:
                            prune_layer(i, {})
                    e.stream.release(k, block, True)
                    e.block_seconds.append(time.perf_counter() - t0)
                    adv()
        else:  # only the allocation needed statistics (e.g. OWL with magnitude): no second forward pass
            with torch.no_grad():
                for i in range(len(e.ts)):
                    if i not in e.skipped:
                        prune_layer(i, {})
        e._finish()



@register("executor", "streamed")
class Streamed(BlockByBlock):
    """Block by block with the weights streamed from a checkpoint and written out per block (memory independent
    of depth): the engine's ``stream=`` reader/writer loads and releases each block."""
