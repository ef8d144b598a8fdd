"""What a structured prune buys: parameters, MACs (``torch.utils.flop_counter.FlopCounterMode``) and measured CPU
latency (median of repeated runs at a fixed thread count, several models timed interleaved so machine noise
affects them alike)."""
from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.modes import eval_mode, num_threads
from ..errors import InvalidArgumentError
from .trace import call


def count_params(model: nn.Module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Any) -> int:
    """Multiply-accumulates of one forward on ``inputs``: FlopCounterMode's FLOPs / 2 (it counts a MAC as 2)."""
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as fc:
        call(model, inputs)
    return int(fc.get_total_flops() // 2)


def latency(models: Sequence[nn.Module], inputs: Any, *, rounds: int = 30, warmup: int = 3,
            threads: int | None = 1, clock: str = "wall", seed: int = 0) -> list[float]:
    """Median seconds per forward of each model (in eval mode; each submodule's mode is restored afterwards),
    timed interleaved: every round runs each model once, in a fresh random order (so no model always follows the
    same one and inherits its caches).

    ``clock="wall"`` (``time.perf_counter``) or ``"thread"`` (``time.thread_time_ns``: the CPU time of the calling
    thread, which with ``threads=1`` holds all of a forward's work; unlike wall time it does not count the slices a
    busy machine preempts it for, so it is the clock to use when other jobs share the cores).
    """
    if clock not in ("wall", "thread"):
        raise InvalidArgumentError(f"clock must be 'wall' or 'thread', got {clock!r}")
    if clock == "thread" and threads != 1:
        raise InvalidArgumentError("clock='thread' measures the calling thread only: use it with threads=1")
    now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    rng = random.Random(seed)
    times: list[list[int]] = [[] for _ in models]
    with num_threads(threads), torch.inference_mode(), contextlib.ExitStack() as modes:
        for m in models:
            modes.enter_context(eval_mode(m))
            for _ in range(warmup):
                call(m, inputs)
        for _ in range(rounds):
            for i in rng.sample(range(len(models)), len(models)):
                t0 = now()
                call(models[i], inputs)
                times[i].append(now() - t0)
    return [statistics.median(t) / 1e9 for t in times]
