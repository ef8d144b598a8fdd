"""Random scores: the baseline every data-pruning method must beat (uniformly random selection)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import register
from .score import Scores, dataset_length


@register("scorer", "random")
def random(dataset: Any, seed: int = 0) -> Scores:
    """Independent uniform scores in [0, 1) from ``numpy.random.default_rng(seed)``: any selector on them keeps a
    uniformly random subset (``hard`` and ``easy`` included).  Needs no labels."""
    n = dataset_length(dataset)
    return Scores(np.random.default_rng(seed).random(n), "high", {"method": "random", "seed": seed})


random.needs_labels = False
