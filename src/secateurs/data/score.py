"""Per-example difficulty scores: the :class:`Scores` array, :func:`score` (registry lookup + checks), and I/O.

A scorer is a function registered with ``@register("scorer", name)`` that takes ``(dataset, **options)`` and
returns a :class:`Scores`: one float per example, in the data set's order, with ``harder`` saying which end is
the difficult one (EL2N, GraNd, forgetting, entropy: ``"high"``; AUM: ``"low"``).  Selectors read ``harder``
so that "keep the hardest" means the same thing for every score.

Shared helpers used by every scorer and selector live here: :func:`dataset_tensors` (any data set -> stacked
inputs and labels), :func:`check_labels`, :func:`write_json_atomic`.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..errors import InvalidArgumentError, MissingDataError, NonFiniteError
from ..io import atomic_write_json
from ..registry import check_options, get

HARDER = ("high", "low")
SCORES_FORMAT = "secateurs.scores"


class Scores(np.ndarray):
    """A float64 array of one difficulty score per example, with ``harder`` ("high" or "low") and ``meta``.

    ``harder="high"``: a larger value means a more difficult example (EL2N, forgetting); ``"low"``: a smaller
    value does (AUM).  :meth:`difficulty` returns the values oriented so that higher is always harder.
    ``meta`` is a free dict of provenance (method, options, seeds) that :meth:`save` writes to JSON.
    Slicing and arithmetic keep ``harder``; reductions return plain floats.
    """

    harder: str
    meta: dict[str, Any]

    def __new__(cls, values: Any, harder: str = "high", meta: dict[str, Any] | None = None) -> Scores:
        if harder not in HARDER:
            raise InvalidArgumentError(f"harder must be one of {HARDER}, got {harder!r}")
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InvalidArgumentError(f"scores must be one-dimensional (one per example), got shape {arr.shape}")
        obj = arr.view(cls)
        obj.harder = harder
        obj.meta = dict(meta or {})
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.harder = getattr(obj, "harder", "high")
        self.meta = getattr(obj, "meta", {})

    def __array_wrap__(self, arr: np.ndarray, context: Any = None, return_scalar: bool = False) -> Any:
        if return_scalar or arr.ndim == 0:  # reductions (mean, max, ...) give plain numbers
            return np.asarray(arr)[()]
        return super().__array_wrap__(arr, context, return_scalar)

    def difficulty(self) -> np.ndarray:
        """Plain float64 array where higher means harder (the values, negated when ``harder == "low"``)."""
        values = np.asarray(self, dtype=np.float64)
        return values.copy() if self.harder == "high" else -values

    def to_dict(self, labels: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": SCORES_FORMAT, "version": 1, "harder": self.harder, "n": int(len(self)),
                               "meta": self.meta, "scores": [float(v) for v in np.asarray(self)]}
        if labels is not None:
            doc["labels"] = [int(v) for v in np.asarray(labels)]
        return doc

    def save(self, path: str | os.PathLike, labels: Sequence[int] | np.ndarray | None = None) -> Path:
        """Write the scores (and the labels, when given: ``select`` reads them) as JSON, atomically."""
        check_scores(self)
        if labels is not None and len(labels) != len(self):
            raise InvalidArgumentError(f"{len(labels)} labels for {len(self)} scores: they must be aligned")
        return write_json_atomic(path, self.to_dict(labels))


def load_scores(path: str | os.PathLike) -> tuple[Scores, np.ndarray | None]:
    """Read a file written by :meth:`Scores.save`: ``(scores, labels or None)``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgumentError(f"scores file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"scores file {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != SCORES_FORMAT or not isinstance(doc.get("scores"), list):
        raise InvalidArgumentError(f"{path} is not a secateurs scores file (written by `secateurs data score`)")
    # JSON has no NaN; Python's json writes/reads it as the bare word NaN, which check_scores then refuses
    scores = Scores([math.nan if v is None else v for v in doc["scores"]], doc.get("harder", "high"),
                    doc.get("meta"))
    labels = doc.get("labels")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(scores):
            raise InvalidArgumentError(f"{path}: {len(labels)} labels for {len(scores)} scores")
    return scores, labels


def write_json_atomic(path: str | os.PathLike, doc: Any) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically (:func:`secateurs.io.atomic_write_json`): a reader never
    sees half a file and a crash leaves the old one in place."""
    return atomic_write_json(path, doc, allow_nan=False)


def check_scores(scores: Any, n: int | None = None, what: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D float64 array; NaN/inf raise NonFiniteError, a wrong length InvalidArgumentError."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{what} must be one-dimensional (one per example), got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise InvalidArgumentError(f"{what} has {len(arr)} entries but the data set has {n} examples; "
                                   "scores must be aligned with the data set's order")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise NonFiniteError(f"{what} has {int(bad.sum())} non-finite value(s) (NaN or inf), e.g. at index "
                             f"{first}; a scorer must give every example a finite score")
    return arr


def check_labels(labels: Any, n: int | None = None) -> np.ndarray:
    """Class labels as a 1-D int64 array of non-negative integers (aligned with ``n`` examples when given)."""
    arr = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"labels must be one-dimensional (one class per example), got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise InvalidArgumentError(f"{len(arr)} labels for {n} scores/examples: they must be aligned")
    if arr.size and (arr.dtype.kind not in "iub" or arr.min() < 0):
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min() >= 0:
            arr = arr.astype(np.int64)
        else:
            raise InvalidArgumentError("labels must be non-negative integer class indices")
    return arr.astype(np.int64)


def dataset_tensors(dataset: Any) -> tuple[Tensor, Tensor | None]:
    """Stack any data set into ``(inputs, labels or None)``.

    Accepts a zoo data set name (its training split), a :class:`~secateurs.zoo.ClassificationData` (its
    ``train``), a :class:`~torch.utils.data.TensorDataset` (first tensor inputs, second labels if present), a
    plain tensor of inputs (unlabeled), or any map-style data set of ``(x, y)`` / ``(x,)`` / ``x`` items.
    Labels are returned only when they are integer class indices.
    """
    from ..zoo import ClassificationData, load_dataset

    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    if isinstance(dataset, ClassificationData):
        dataset = dataset.train
    if isinstance(dataset, Tensor):
        return dataset, None
    if isinstance(dataset, TensorDataset):
        x = dataset.tensors[0]
        y = dataset.tensors[1] if len(dataset.tensors) > 1 else None
    elif isinstance(dataset, Dataset) or hasattr(dataset, "__getitem__"):
        n = len(dataset)
        if n == 0:
            raise InvalidArgumentError("the data set is empty")
        items = [dataset[i] for i in range(n)]
        first = items[0]
        if isinstance(first, (tuple, list)):
            x = torch.stack([torch.as_tensor(it[0]) for it in items])
            y = torch.as_tensor([int(it[1]) for it in items]) if len(first) > 1 else None
        else:
            x, y = torch.stack([torch.as_tensor(it) for it in items]), None
    else:
        raise InvalidArgumentError(f"cannot read examples from {type(dataset).__name__}: pass a torch Dataset of "
                                   "(x, y) pairs, a TensorDataset, a tensor of inputs or a zoo data set name")
    if len(x) == 0:
        raise InvalidArgumentError("the data set is empty")
    if y is not None:
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
            y = None  # regression targets / soft labels / masks: not class labels
        else:
            y = y.long()
    return x, y


def score(method: str, dataset: Any, **options: Any) -> Scores:
    """Score every example of ``dataset`` with the registered scorer ``method`` (one float per example).

    ``method``: ``random``, ``el2n``, ``grand``, ``forgetting``, ``aum``, ``entropy`` (and the embedding
    scorers registered by their modules).  ``dataset``: anything :func:`dataset_tensors` reads.  ``options`` go
    to the scorer (e.g. ``model="lenet5", seeds=5, epochs=6, seed=0``); unknown ones raise
    InvalidArgumentError.  A label-based scorer on unlabeled data raises MissingDataError.  The result is
    checked: one finite score per example (NaN or inf raise NonFiniteError), with ``harder`` set.
    """
    fn = get("scorer", method)
    options = check_options("scorer", method, options)  # names, types, ranges
    if getattr(fn, "needs_labels", False):
        _, y = dataset_tensors(dataset)
        if y is None:
            raise MissingDataError(f"scorer {method!r} needs class labels, but the data set has none (items must be "
                                   "(x, y) pairs with integer y); use a label-free scorer such as 'random', "
                                   "'entropy' with a trained model (epochs=0), or an embedding scorer")
    result = fn(dataset, **options)
    if not isinstance(result, Scores):
        raise TypeError(f"scorer {method!r} returned {type(result).__name__}, not secateurs.data.Scores")
    check_scores(result, dataset_length(dataset), f"scores of {method!r}")
    result.meta.setdefault("method", method)
    return result


def dataset_length(dataset: Any) -> int:
    """Number of examples of anything :func:`dataset_tensors` reads, without stacking a generic data set."""
    from ..zoo import ClassificationData, load_dataset

    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    if isinstance(dataset, ClassificationData):
        dataset = dataset.train
    return len(dataset)


def labels_of(dataset: Any) -> np.ndarray | None:
    """The integer class labels of ``dataset`` (as :func:`dataset_tensors` reads them), or None."""
    _, y = dataset_tensors(dataset)
    return None if y is None else y.numpy().astype(np.int64)
