"""Train a model on a kept subset of the training data and measure it on the full test set, optionally with
knowledge distillation from a teacher trained on the full data (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network"; for data pruning: Ben-Baruch et al. 2024, "Distilling the Knowledge in Data
Pruning", who find the soft labels recover much of the accuracy lost at high pruning rates).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ..errors import InvalidArgumentError
from ..schedules.base import check_fraction
from .dynamics import build, model_name, predict_logits, recipe

SOFT_WEIGHT = 0.5
# T = 1: with the zoo recipe's learning rate, LeNet-5 students diverge at T >= 2 on small subsets (measured on
# digits: 95 % pruned, T = 2 -> 12 % test accuracy; 90 % pruned, T = 4 and weight 0.9 -> 10 %), since for large T the
# soft term's gradient approaches (z_s - z_t) / classes, unbounded in the teacher's logits.  T = 1 was stable and
# helped in every case measured; raise it with a smaller learning rate.
TEMPERATURE = 1.0


def check_keep(keep: Any, n: int) -> np.ndarray:
    """Kept indices as a sorted int64 array: a list/array of distinct indices in [0, n) or a boolean mask of
    length n.  Indices beyond the data set (a keep file made for another data set) raise InvalidArgumentError."""
    arr = keep.detach().cpu().numpy() if isinstance(keep, Tensor) else np.asarray(keep)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidArgumentError(f"a boolean keep mask must have one entry per example ({n}), got {arr.shape}")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise InvalidArgumentError("keep must be a 1-D list of integer example indices or a boolean mask")
    if arr.size == 0:
        raise InvalidArgumentError("keep is empty: a subset needs at least one example")
    if arr.min() < 0 or arr.max() >= n:
        raise InvalidArgumentError(f"keep holds index {int(arr.max() if arr.max() >= n else arr.min())}, outside the "
                                   f"data set's {n} examples; was it selected from scores of another data set?")
    if len(np.unique(arr)) != len(arr):
        raise InvalidArgumentError("keep holds repeated indices")
    return np.sort(arr).astype(np.int64)


def _teacher(teacher: Any, data: Any, data_name: str | None, student: Any, teacher_seed: int,
             progress: bool) -> nn.Module:
    """The distillation teacher: a given module as is; a zoo name trained on the full training set with its
    default recipe -- through :func:`secateurs.zoo.pretrained` (cached) when the data set is a registered name."""
    from ..zoo import fit, pretrained

    if isinstance(teacher, nn.Module):
        return teacher.eval()
    spec = student if teacher is None else teacher
    if isinstance(spec, str) and data_name is not None:
        return pretrained(spec, data_name, seed=teacher_seed, progress=progress).eval()
    rec = recipe(spec)
    net = build(spec, data.num_classes, teacher_seed, data.input_shape)
    loader, _ = data.loaders(rec["batch_size"], teacher_seed)
    fit(net, loader, rec["epochs"], lr=rec["lr"], optimizer=rec["optimizer"], momentum=rec["momentum"],
        weight_decay=rec["weight_decay"], seed=teacher_seed, progress=progress, num_threads=rec["num_threads"])
    return net.eval()


def distillation_loss(student_logits: Tensor, labels: Tensor, teacher_logits: Tensor, soft_weight: float,
                      temperature: float) -> Tensor:
    """Hinton et al. (2015), Sec. 2: ``(1 - a) CE(z_s, y) + a T^2 KL(softmax(z_t / T) || softmax(z_s / T))``.

    The KL term is the paper's soft-target cross-entropy minus the teacher's entropy (a constant), so its gradient
    is the paper's; ``T^2`` keeps the soft gradients' scale independent of ``T`` (Sec. 2)."""
    hard = F.cross_entropy(student_logits, labels)
    if soft_weight == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1), reduction="batchmean", log_target=True)
    return (1 - soft_weight) * hard + soft_weight * temperature ** 2 * soft


def train_subset(
    data: Any = "digits",
    keep: Sequence[int] | np.ndarray | Tensor | None = None,
    model: str | Callable[[], nn.Module] = "lenet5",
    epochs: int | None = None,
    seed: int = 0,
    distill: bool = False,
    teacher: str | nn.Module | None = None,
    soft_weight: float = SOFT_WEIGHT,
    temperature: float = TEMPERATURE,
    teacher_seed: int = 0,
    batch_size: int | None = None,
    lr: float | None = None,
    progress: bool = False,
    return_model: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """Train ``model`` from scratch on the examples ``keep`` of ``data``'s training split; report test accuracy.

    ``data``: a zoo data set name or a :class:`~secateurs.zoo.ClassificationData`.  ``keep``: indices into the
    training split (or a boolean mask; ``None`` = all of it).  ``model``: a zoo name (initialised like
    :func:`secateurs.zoo.pretrained` with ``seed``) or a factory.  The zoo recipe of the model is used (optimizer,
    learning rate, batch size); ``epochs`` defaults to as many as give the *same number of optimizer steps* as the
    full-data recipe (the CCS protocol: a fixed iteration budget whatever the pruning rate, so a small subset is
    not also under-trained), rounded to whole epochs.  Every step sees a full batch (the recipe's size, or the whole
    subset when smaller): the last partial batch of each epoch is dropped, and reshuffling uses every example.
    ``batch_size`` and ``lr`` override the recipe's (LeNet-5's 0.05 can diverge on small, skewed subsets such as
    the hardest 10 % of digits by EL2N; 0.01 trains there).

    ``distill=True``: knowledge distillation (Hinton et al. 2015) from ``teacher`` (default: the same architecture
    trained on the full training set with its recipe, seed ``teacher_seed``, cached via
    :func:`secateurs.zoo.pretrained`), loss ``(1 - soft_weight) CE + soft_weight T^2 KL`` with
    ``T = temperature`` (defaults 0.5 and 1: chosen for stability with the zoo recipes, see :data:`TEMPERATURE`;
    Hinton et al. use higher temperatures with smaller learning rates).

    Returns a dict: ``accuracy``, ``loss`` (test), ``kept``, ``n_train``, ``fraction_kept``, ``epochs``, ``steps``,
    ``train_seconds``, ``model``, ``seed``, ``distill`` (+ ``teacher_accuracy``, ``soft_weight``, ``temperature``);
    with ``return_model=True``, ``(metrics, trained model)``.
    """
    from ..zoo import ClassificationData, evaluate, fit, load_dataset

    data_name = data if isinstance(data, str) else None
    if isinstance(data, str):
        data = load_dataset(data)
    if not isinstance(data, ClassificationData):
        raise InvalidArgumentError(f"data must be a zoo data set name or a ClassificationData, got "
                                   f"{type(data).__name__}")
    x_all, y_all = data.train.tensors[0], data.train.tensors[1]
    n = len(x_all)
    idx = np.arange(n) if keep is None else check_keep(keep, n)
    if distill:
        soft_weight = check_fraction("soft_weight", soft_weight, upper_open=False)
        if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                and math.isfinite(temperature) and temperature > 0):
            raise InvalidArgumentError(f"temperature must be a number > 0, got {temperature!r}")
    elif teacher is not None:
        raise InvalidArgumentError("a teacher was given but distill=False; pass distill=True to use it")
    rec = dict(recipe(model))
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        rec["batch_size"] = batch_size
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise InvalidArgumentError(f"lr must be a number > 0, got {lr!r}")
        rec["lr"] = float(lr)
    bs = min(rec["batch_size"], len(idx))
    # full batches only (the last partial one is dropped; each epoch reshuffles, so every example is used): the
    # recipe's learning rate on a tail batch of a few examples diverges on small subsets (LeNet-5, 5 % of digits)
    steps_per_epoch = len(idx) // bs
    if epochs is None:
        full_steps = rec["epochs"] * math.ceil(n / rec["batch_size"])  # as fit trains the full data
        epochs = max(1, round(full_steps / steps_per_epoch))
    elif isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"epochs must be an integer >= 1, got {epochs!r}")

    sel = torch.as_tensor(idx)
    x, y = x_all[sel], y_all[sel]
    net = build(model, data.num_classes, seed, data.input_shape)
    _, test_loader = data.loaders(bs, seed)
    out: dict[str, Any] = {"model": model_name(model), "seed": seed, "kept": int(len(idx)), "n_train": n,
                           "fraction_kept": len(idx) / n, "epochs": epochs, "steps": epochs * steps_per_epoch,
                           "batch_size": bs, "distill": bool(distill)}
    start = time.perf_counter()
    targets = y
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    if distill:
        teach = _teacher(teacher, data, data_name, model, teacher_seed, progress)
        t_logits = predict_logits(teach, x).float()
        out.update(teacher=model_name(teacher if teacher is not None else model), soft_weight=soft_weight,
                   temperature=float(temperature), teacher_accuracy=evaluate(teach, test_loader)["accuracy"])
        # the label travels beside the teacher's logits in one target row, for fit's loss_fn(logits, targets)
        targets = torch.cat([y[:, None].float(), t_logits], dim=1)

        def kd_loss(logits: Tensor, target: Tensor) -> Tensor:
            return distillation_loss(logits, target[:, 0].long(), target[:, 1:], soft_weight, float(temperature))

        loss_fn = kd_loss
        start = time.perf_counter()
    loader = DataLoader(TensorDataset(x, targets), batch_size=bs, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    fit(net, loader, epochs, lr=rec["lr"], optimizer=rec["optimizer"], momentum=rec["momentum"],
        weight_decay=rec["weight_decay"], seed=seed, progress=progress, num_threads=rec["num_threads"],
        loss_fn=loss_fn)
    out["train_seconds"] = time.perf_counter() - start
    out.update(evaluate(net, test_loader))
    net.eval()
    return (out, net) if return_model else out
