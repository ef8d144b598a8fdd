"""What a structured prune buys: parameters, MACs (``torch.utils.flop_counter.FlopCounterMode``) and measured CPU
latency (median of repeated runs at a fixed thread count, several models timed interleaved so machine noise
affects them alike)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .trace import call


def count_params(model: nn.Module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Any) -> int:
    """Multiply-accumulates of one forward on ``inputs``: FlopCounterMode's FLOPs / 2 (it counts a MAC as 2)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            call(model, inputs)
    finally:
        model.train(was)
    return int(fc.get_total_flops() // 2)


def latency(models: Sequence[nn.Module], inputs: Any, *, rounds: int = 30, warmup: int = 3,
            threads: int | None = 1) -> list[float]:
    """Median seconds per forward of each model, timed interleaved: every round runs each model once in turn."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[list[float]] = [[] for _ in models]
    try:
        with torch.inference_mode():
            for m in models:
                m.eval()
                for _ in range(warmup):
                    call(m, inputs)
            for _ in range(rounds):
                for i, m in enumerate(models):
                    t0 = time.perf_counter()
                    call(m, inputs)
                    times[i].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return [statistics.median(t) for t in times]
