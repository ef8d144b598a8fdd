"""Selectors: from per-example scores to the indices of the examples to keep (one-shot coreset selection).

:func:`select` is the front door.  ``rate`` is the fraction *pruned*; exactly ``keep_count(n, rate)`` =
``round(n * (1 - rate))`` examples are kept, rounding halves up (``floor(n * (1 - rate) + 1/2)``).  Strategies
(registered with ``@register("selector", name)``):

* ``hard``: keep the most difficult examples (what EL2N, GraNd and forgetting were proposed for);
* ``easy``: keep the least difficult ones (better when data is scarce, Sorscher et al. 2022);
* ``random``: a uniformly random subset (the scores are ignored);
* ``ccs``: coverage-centric coreset selection (Zheng et al. 2023), in :mod:`secateurs.data.ccs`.

Class-balanced variants: ``class_balanced=True`` (any strategy) gives each class a quota proportional to its size
(largest-remainder rounding, so the quotas add up to the requested count exactly) and applies the strategy
inside every class.  Ties in difficulty are broken at random (with ``seed``), never by data-set order.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._compat import renamed
from ..errors import InvalidArgumentError
from ..registry import check_options, get, register
from ..schedules.base import check_fraction
from .score import Scores, check_labels, check_scores

KEEP_FORMAT = "secateurs.keep"


def keep_count(n: int, rate: float) -> int:
    """Examples kept when pruning the fraction ``rate`` of ``n``: ``floor(n * (1 - rate) + 1/2)`` (halves up).

    ``n * (1 - rate)`` is rounded to 9 decimals first, so float noise (0.1 * 30 = 3.0000000000000004) never moves
    the count.  A rate that would keep nothing raises InvalidArgumentError.
    """
    rate = check_fraction("rate", rate)
    kept = math.floor(round(n * (1.0 - rate), 9) + 0.5)
    if kept < 1:
        raise InvalidArgumentError(f"pruning {rate:.0%} of {n} example(s) keeps none; lower the rate")
    return kept


def ranked(difficulty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from hardest to easiest, ties in random order (drawn from ``rng``)."""
    tiebreak = rng.permutation(len(difficulty))
    return np.lexsort((tiebreak, -difficulty))


@register("selector", "hard")
def hard(difficulty: np.ndarray, keep: int, *, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Keep the ``keep`` most difficult examples (Paul et al. 2021; Toneva et al. 2019)."""
    return ranked(difficulty, rng)[:keep]


@register("selector", "easy")
def easy(difficulty: np.ndarray, keep: int, *, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Keep the ``keep`` least difficult examples (the better rule with little data, Sorscher et al. 2022)."""
    return ranked(difficulty, rng)[::-1][:keep]


@register("selector", "random")
def random_(difficulty: np.ndarray, keep: int, *, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Keep a uniformly random subset of ``keep`` examples; the scores are ignored."""
    return rng.permutation(len(difficulty))[:keep]


hard.prefers, easy.prefers, random_.prefers = "hard", "easy", "random"


def _as_difficulty(scores: Any, n: int | None, what: str) -> np.ndarray:
    """Scores (or a plain array: higher = harder) -> finite float64 array oriented so that higher is harder."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    arr = check_scores(scores, n, what)
    return -arr if isinstance(scores, Scores) and scores.harder == "low" else arr.copy()


def _quotas(labels: np.ndarray, keep: int) -> dict[int, int]:
    """Per-class counts proportional to class sizes, adding up to ``keep`` (largest remainder, ties to the
    larger class, then the smaller label)."""
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * keep / len(labels)
    base = np.floor(exact + 1e-9).astype(int)
    short = keep - int(base.sum())
    order = np.lexsort((classes, -sizes, -(exact - base)))
    base[order[:short]] += 1
    return {int(c): int(q) for c, q in zip(classes, base)}


def _prefer_order(members: np.ndarray, prefers: str, difficulty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``members`` from most to least wanted by a strategy that ``prefers`` hard, easy or random examples."""
    if prefers == "random":
        return rng.permutation(members)
    order = ranked(difficulty[members], rng)
    return members[order if prefers == "hard" else order[::-1]]


def _cover_classes(kept: np.ndarray, labels: np.ndarray, difficulty: np.ndarray, prefers: str,
                   rng: np.random.Generator, keep_every_class: bool) -> np.ndarray:
    """Warn about classes the selection empties; unless told otherwise, swap in one example of each.

    The added example is the one the strategy wants most in that class; to keep the count exact, the example it
    wants least leaves the class with the most kept examples.
    """
    classes = np.unique(labels)
    counts = {int(c): 0 for c in classes}
    for c in labels[kept]:
        counts[int(c)] += 1
    empty = [c for c, k in counts.items() if k == 0]
    if not empty:
        return kept
    if not keep_every_class:
        warnings.warn(f"the selection keeps no example of class(es) {empty}; they are absent from the subset",
                      RuntimeWarning, stacklevel=3)
        return kept
    if len(kept) < len(classes):
        raise InvalidArgumentError(f"keeping {len(kept)} example(s) cannot cover all {len(classes)} classes; lower "
                                   "the rate or pass keep_every_class=False to allow empty classes")
    warnings.warn(f"the selection would keep no example of class(es) {empty}; keeping one of each instead (pass "
                  "keep_every_class=False to allow empty classes)", RuntimeWarning, stacklevel=3)
    kept_set = set(kept.tolist())
    for c in empty:
        donor = max(counts, key=lambda k: (counts[k], -k))
        donor_kept = np.array(sorted(i for i in kept_set if labels[i] == donor))
        kept_set.discard(int(_prefer_order(donor_kept, prefers, difficulty, rng)[-1]))
        members = np.flatnonzero(labels == c)
        kept_set.add(int(_prefer_order(members, prefers, difficulty, rng)[0]))
        counts[donor] -= 1
        counts[c] = 1
    return np.array(sorted(kept_set), dtype=np.int64)


@renamed(rate="sparsity", strategy="method")
def select(
    scores: Any,
    sparsity: float = 0.9,
    method: str = "ccs",
    labels: Any = None,
    seed: int = 0,
    *,
    class_balanced: bool = False,
    keep_every_class: bool = True,
    **options: Any,
) -> np.ndarray:
    """Indices (ascending, int64) of the examples to keep after pruning the fraction ``sparsity`` of them.

    ``scores``: a :class:`~secateurs.data.Scores` (its ``harder`` says which end is difficult) or any 1-D array
    (read as higher = harder); NaN/inf raise NonFiniteError.  ``sparsity`` in [0, 1).  ``method`` (the selector): ``hard``,
    ``easy``, ``random`` or ``ccs`` (options such as ``beta=``, ``strata=``, ``cutoff_scores=`` go to it).
    ``labels`` (aligned with the scores) enable ``class_balanced`` quotas and the class check: a selection that
    would keep no example of some class warns and, unless ``keep_every_class=False``, keeps one example of each
    class (the count stays exact).  Same inputs and ``seed``, same indices.  ``rate=`` and ``strategy=`` are
    the deprecated names of ``sparsity=`` and ``method=``.
    """
    fn = get("selector", method)
    options = check_options("selector", method, options)  # names, types, ranges
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    difficulty = _as_difficulty(scores, None, "scores")
    n = len(difficulty)
    keep = keep_count(n, sparsity)
    lab = None if labels is None else check_labels(labels, n)
    if class_balanced and lab is None:
        raise InvalidArgumentError("class_balanced=True needs labels aligned with the scores")
    for name in getattr(fn, "meta_options", ()):  # e.g. DBP's clusters, recorded by its scorer
        if options.get(name) is None and name in (getattr(scores, "meta", None) or {}):
            options[name] = scores.meta[name]
    for name in getattr(fn, "per_example_options", ()):
        if options.get(name) is not None:
            options[name] = _as_difficulty(options[name], n, name)
    rng = np.random.default_rng(seed)
    if class_balanced:
        parts = []
        for c, quota in _quotas(lab, keep).items():
            members = np.flatnonzero(lab == c)
            if quota == 0:
                continue
            sub = {k: (v[members] if k in getattr(fn, "per_example_options", ()) and v is not None else v)
                   for k, v in options.items()}
            parts.append(members[fn(difficulty[members], quota, rng=rng, rate=sparsity, **sub)])
        kept = np.concatenate(parts)
    else:
        kept = np.asarray(fn(difficulty, keep, rng=rng, rate=sparsity, **options), dtype=np.int64)
    kept = np.unique(kept)
    if len(kept) != keep:  # a selector's contract; never expected
        raise RuntimeError(f"selector {method!r} kept {len(kept)} distinct examples instead of {keep}")
    if lab is not None:
        kept = _cover_classes(kept, lab, difficulty, getattr(fn, "prefers", "random"), rng, keep_every_class)
    return kept.astype(np.int64)


def save_keep(path: Any, indices: Any, n: int, **info: Any) -> Any:
    """Write kept indices (and ``n``, the data set's size, so a mismatched data set is caught) as JSON,
    atomically; ``info`` (rate, strategy, ...) is stored beside them."""
    from .score import write_json_atomic

    kept = np.asarray(indices, dtype=np.int64)
    doc = {"format": KEEP_FORMAT, "version": 1, "n": int(n), "kept": int(len(kept)), **info,
           "indices": [int(i) for i in kept]}
    return write_json_atomic(path, doc)


def load_keep(path: Any) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Read a file written by :func:`save_keep`: ``(indices, n, info)``."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgumentError(f"keep file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"keep file {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != KEEP_FORMAT or not isinstance(doc.get("indices"), list):
        raise InvalidArgumentError(f"{path} is not a secateurs keep file (written by `secateurs data select`)")
    info = {k: v for k, v in doc.items() if k not in ("format", "version", "indices", "n")}
    return np.asarray(doc["indices"], dtype=np.int64), int(doc["n"]), info
