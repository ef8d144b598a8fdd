"""Data pruning: score every training example, select a coreset at any pruning rate, train on it.

* :func:`score` -- one difficulty score per example (:class:`Scores`, aligned with the data set's order):
  ``random``, ``el2n`` and ``grand`` (Paul et al. 2021), ``forgetting`` (Toneva et al. 2019), ``aum`` (Pleiss et
  al. 2020), ``entropy`` (Coleman et al. 2020); the training-based ones share :mod:`secateurs.data.dynamics`;
  ``ssp`` (Sorscher et al. 2022) and ``dbp`` (Abbas et al. 2024) from embeddings (:func:`embed`, :mod:`.kmeans`).
* :func:`select` -- the indices to keep at a pruning ``rate``: ``hard``, ``easy``, ``random``, ``ccs`` (Zheng et
  al. 2023), each optionally class-balanced.
* :class:`InfoBatch` -- dynamic data pruning while training (Qin et al. 2024), with a random-skipping control.
* :func:`train_subset` -- train a zoo model on the kept examples, optionally distilling from a teacher trained on
  the full data (Hinton et al. 2015).

Scores and kept indices are written as JSON (atomically) by :meth:`Scores.save` and :func:`save_keep`, which the
``secateurs data`` commands read.
"""
from __future__ import annotations

# scorers and selectors register themselves on import (the registry imports this package for both kinds)
from . import aum, ccs, dbp, el2n, entropy, forgetting, grand, random, ssp  # noqa: F401
from .ccs import ccs_budgets, default_beta, stratify
from .dbp import dbp_budgets, dbp_select
from .dynamics import Run, collect
from .embeddings import embed, sentence_embeddings
from .infobatch import InfoBatch
from .score import Scores, check_scores, dataset_tensors, labels_of, load_scores, score, write_json_atomic
from .select import keep_count, load_keep, save_keep, select
from .train import distillation_loss, train_subset

__all__ = [
    "InfoBatch",
    "Run",
    "Scores",
    "dbp_budgets",
    "dbp_select",
    "embed",
    "sentence_embeddings",
    "ccs_budgets",
    "check_scores",
    "collect",
    "dataset_tensors",
    "default_beta",
    "distillation_loss",
    "keep_count",
    "labels_of",
    "load_keep",
    "load_scores",
    "save_keep",
    "score",
    "select",
    "stratify",
    "train_subset",
    "write_json_atomic",
]
