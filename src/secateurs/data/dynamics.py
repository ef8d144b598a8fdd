"""Training dynamics: the one place that trains a model on a data set and records what the scorers need.

Every training-based scorer (EL2N, GraNd, forgetting, AUM, entropy) calls :func:`collect`, which trains one
model per seed with :func:`secateurs.zoo.fit` (its default recipe for the model) and records, for every example,
at every *presentation* (each time the example is in a training minibatch, from the logits of that very forward
pass, as the reference code does -- data_diet's ``update_forget_stats`` on the batch accuracies, asappresearch/aum's
``AUMCalculator.update`` on the training logits):

* forgetting events: correct -> incorrect transitions between consecutive presentations (Toneva et al. 2019), and
  whether the example was ever classified correctly;
* the logit margin ``z_y - max_{i != y} z_i`` summed over presentations (Pleiss et al. 2020, AUM).

Training stops at ``epochs`` of a run whose learning-rate schedule spans ``total_epochs`` (default: the same), so
"EL2N at epoch 20 of a 200-epoch run" (Paul et al. 2021) is ``epochs=20, total_epochs=200``: the checkpoint of a
full run, not a shorter run whose learning rate has already decayed to zero.  The trained model is returned for
the post-hoc scores (:func:`predict_logits`, :func:`grad_norms`).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.modes import eval_mode
from ..core.progress import progress_bar
from ..errors import InvalidArgumentError, MissingDataError
from .score import dataset_tensors

ModelSpec = Union[str, Callable[[], nn.Module], nn.Module]


@dataclass
class Run:
    """What one training run recorded (arrays indexed like the data set)."""

    seed: int
    epochs: int                 # epochs trained: the checkpoint the post-hoc scores are taken at
    total_epochs: int           # length of the learning-rate schedule
    model: nn.Module            # after ``epochs`` epochs, in eval mode
    forgetting: np.ndarray      # int64: correct -> incorrect transitions between consecutive presentations
    ever_correct: np.ndarray    # bool: classified correctly at least once when presented
    margin_sum: np.ndarray      # float64: sum over presentations of z_y - max_{i != y} z_i
    presentations: np.ndarray   # int64: how many times each example was in a training batch

    def aum(self) -> np.ndarray:
        """Area under the margin (Pleiss et al. 2020): the mean logit margin over presentations."""
        return self.margin_sum / np.maximum(self.presentations, 1)


class _IndexedLoader:
    """A shuffling minibatch loader over in-memory tensors that remembers the indices of the current batch.

    ``fit`` iterates it like a DataLoader and reseeds its ``generator`` with the run's seed; the forward hook of
    :func:`train_run` reads ``current`` to know which examples the logits belong to.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(0)
        self.current: Tensor | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator)
        for idx in order.split(self.batch_size):
            self.current = idx
            yield self.x[idx], self.y[idx]
        self.current = None


class _Stop(Exception):
    """Raised from ``fit``'s ``on_step`` hook to end a run at its checkpoint."""


def check_seeds(seeds: int | Sequence[int], seed: int = 0) -> list[int]:
    """``seeds`` as a list: an int ``k`` means the ``k`` seeds ``seed, seed + 1, ..., seed + k - 1``."""
    if isinstance(seeds, bool):
        raise InvalidArgumentError(f"seeds must be a positive integer or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise InvalidArgumentError(f"seeds must be >= 1 (the number of runs to average), got {seeds}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
        return [seed + i for i in range(seeds)]
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) for s in out) or len(set(out)) != len(out):
        raise InvalidArgumentError(f"seeds must be a positive integer or a list of distinct integers, got {seeds!r}")
    return out


def recipe(model: ModelSpec) -> dict[str, Any]:
    """The training recipe of ``model``: the zoo's default for a zoo name, the zoo's base recipe otherwise."""
    from ..zoo import recipe_for

    return recipe_for(model if isinstance(model, str) else "_custom")


def build(model: ModelSpec, num_classes: int, seed: int, input_shape: Sequence[int] | None = None) -> nn.Module:
    """A fresh model to train: a zoo name is built under ``torch.manual_seed(seed)`` (the same initialisation as
    :func:`secateurs.zoo.pretrained` with that seed) and sized for the data (``num_classes``; an MLP's input width
    when ``input_shape`` is one-dimensional, as :func:`secateurs.zoo.build_for`), a factory is called under the
    same seed, a module is copied."""
    from types import SimpleNamespace

    from ..zoo import build_for

    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if not (isinstance(model, str) or callable(model)):
        raise InvalidArgumentError(f"model must be a zoo model name, a factory returning an nn.Module, or an "
                                   f"nn.Module; got {type(model).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(model, str):
            spec = SimpleNamespace(num_classes=num_classes)
            if input_shape is not None:
                spec.input_shape = tuple(input_shape)
            built = build_for(model, spec)
        else:
            built = model()
    if not isinstance(built, nn.Module):
        raise InvalidArgumentError(f"the model factory returned {type(built).__name__}, not an nn.Module")
    return built


def num_classes_of(dataset: Any, y: Tensor) -> int:
    """The data set's class count when it declares one (ClassificationData, zoo name), else ``max(y) + 1``."""
    from ..zoo import ClassificationData, load_dataset

    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    declared = getattr(dataset, "num_classes", None) if isinstance(dataset, ClassificationData) else None
    return int(declared) if declared else int(y.max()) + 1


def train_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int,
    total_epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 0.05,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    on_step: Callable[[], None] | None = None,
) -> Run:
    """Train ``model`` (in place) on ``(x, y)`` for ``epochs`` epochs of a ``total_epochs``-epoch schedule with
    :func:`secateurs.zoo.fit`, recording forgetting events and logit margins at every presentation."""
    from ..zoo import fit

    total_epochs = epochs if total_epochs is None else total_epochs
    if not 0 <= epochs <= total_epochs:
        raise InvalidArgumentError(f"epochs must be in [0, total_epochs={total_epochs}], got {epochs}")
    n = len(x)
    if epochs > 0 and (y is None or len(y) != n):
        raise MissingDataError("training dynamics need one integer class label per example")
    prev_correct = torch.zeros(n, dtype=torch.bool)
    ever_correct = torch.zeros(n, dtype=torch.bool)
    forgetting = torch.zeros(n, dtype=torch.int64)
    margin_sum = torch.zeros(n, dtype=torch.float64)
    presentations = torch.zeros(n, dtype=torch.int64)
    loader = _IndexedLoader(x, y if y is not None else torch.zeros(n, dtype=torch.int64), batch_size)

    def record(module: nn.Module, args: Any, output: Any) -> None:
        idx = loader.current
        if not (module.training and torch.is_grad_enabled()) or idx is None or not isinstance(output, Tensor) \
                or output.ndim != 2 or output.shape[0] != len(idx):
            return
        logits = output.detach().to("cpu", torch.float64)
        target = y[idx]
        correct = logits.argmax(1) == target
        forgetting[idx] += (prev_correct[idx] & ~correct).long()
        prev_correct[idx] = correct
        ever_correct[idx] |= correct
        own = logits.gather(1, target[:, None]).squeeze(1)
        other = logits.scatter(1, target[:, None], -math.inf).max(1).values
        margin_sum[idx] += own - other
        presentations[idx] += 1

    stop_at = epochs * len(loader)

    def step_hook(step: int, opt: torch.optim.Optimizer) -> None:
        if on_step is not None:
            on_step()
        if step >= stop_at:
            raise _Stop

    if epochs > 0:
        handle = model.register_forward_hook(record)
        try:
            fit(model, loader, total_epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                momentum=momentum, seed=seed, num_threads=num_threads, on_step=step_hook)
        except _Stop:
            pass
        finally:
            handle.remove()
    model.eval()
    return Run(seed=seed, epochs=epochs, total_epochs=total_epochs, model=model,
               forgetting=forgetting.numpy(), ever_correct=ever_correct.numpy(), margin_sum=margin_sum.numpy(),
               presentations=presentations.numpy())


def collect(
    dataset: Any,
    *,
    model: ModelSpec = "lenet5",
    seeds: int | Sequence[int] = 1,
    seed: int = 0,
    epochs: int | None = None,
    total_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    progress: bool = False,
    what: str = "scoring",
) -> tuple[list[Run], Tensor, Tensor | None]:
    """Train one model per seed on ``dataset`` and record its dynamics: ``(runs, inputs, labels)``.

    ``epochs`` defaults to ``total_epochs``, which defaults to the recipe's epochs for ``model`` (see
    :func:`secateurs.zoo.recipe_for`); ``batch_size`` and ``lr`` default to the recipe's.  ``epochs=0`` trains
    nothing (scores at initialisation, or of a given trained module) and needs no labels.  Runs use one thread
    (the recipe's), so results do not depend on the machine's core count.
    """
    x, y = dataset_tensors(dataset)
    seed_list = check_seeds(seeds, seed)
    rec = recipe(model)
    total = rec["epochs"] if total_epochs is None else total_epochs
    epochs = total if epochs is None else epochs
    for name, value in (("epochs", epochs), ("total_epochs", total)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")
    if epochs > total:
        raise InvalidArgumentError(f"epochs ({epochs}) cannot exceed total_epochs ({total}), the schedule length")
    bs = rec["batch_size"] if batch_size is None else batch_size
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {bs!r}")
    learning_rate = rec["lr"] if lr is None else lr
    if epochs > 0 and y is None:
        raise MissingDataError(f"{what} trains a model on the data set, which needs integer class labels; the data "
                               "set has none")
    if y is not None and len(y) and int(y.min()) < 0:
        raise InvalidArgumentError("class labels must be non-negative integers")
    num_classes = num_classes_of(dataset, y) if y is not None else None
    if num_classes is None:
        if not isinstance(model, nn.Module):
            raise MissingDataError(f"{what} without labels needs a trained nn.Module as model= (and epochs=0)")
    elif num_classes < 2:
        raise InvalidArgumentError(f"{what} needs at least two classes, the labels hold {num_classes}")
    steps = len(seed_list) * epochs * math.ceil(len(x) / bs)
    runs = []
    with progress_bar(progress, max(steps, 1), what) as advance:
        for s in seed_list:
            net = build(model, num_classes or 0, s, tuple(x.shape[1:]))
            runs.append(train_run(net, x, y, epochs, total, seed=s, batch_size=bs, lr=learning_rate,
                                  optimizer=rec["optimizer"], momentum=rec["momentum"],
                                  weight_decay=rec["weight_decay"], num_threads=rec.get("num_threads"),
                                  on_step=advance))
        if steps == 0:
            advance()
    return runs, x, y


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Logits of ``model`` in eval mode for every row of ``x``, as float64 on the CPU (train mode restored)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model):
        out = [model(chunk.to(device)).to("cpu", torch.float64) for chunk in x.split(batch_size)]
    logits = torch.cat(out)
    if logits.ndim != 2:
        raise InvalidArgumentError(f"the model must return (N, classes) logits, got shape {tuple(logits.shape)}")
    return logits


def grad_norms(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 128) -> np.ndarray:
    """Per-example ``||grad_theta CE(f(x_i), y_i)||_2`` over all trainable parameters, in eval mode.

    Per-sample gradients with :mod:`torch.func` (``vmap(grad(...))``), as data_diet's ``get_grad_norm_fn`` does
    with ``jacrev`` of the per-example loss; models whose forward ``vmap`` cannot trace fall back to one backward
    pass per example.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    norms = []
    with eval_mode(model):
        try:
            for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
                g = per_sample(params, xb, yb)
                sq = sum(t.reshape(len(xb), -1).double().pow(2).sum(1) for t in g.values())
                norms.append(sq.sqrt())
        except (RuntimeError, NotImplementedError):  # an op vmap cannot batch: one example at a time
            norms = []
            plist = [p for p in model.parameters() if p.requires_grad]
            for xi, yi in zip(x, y):
                loss = F.cross_entropy(model(xi.unsqueeze(0)), yi.unsqueeze(0))
                gs = torch.autograd.grad(loss, plist, allow_unused=True)
                norms.append(torch.sqrt(sum(g.double().pow(2).sum() for g in gs if g is not None)).reshape(1))
    return torch.cat(norms).numpy()


def model_name(model: ModelSpec) -> str:
    """How ``model`` is recorded in a score's provenance."""
    if isinstance(model, str):
        return model
    if isinstance(model, nn.Module):
        return getattr(model, "zoo_name", None) or type(model).__name__
    return getattr(model, "__name__", type(model).__name__)


def run_meta(runs: Sequence[Run], model: ModelSpec) -> dict[str, Any]:
    """Provenance of scores computed from ``runs`` (stored in :attr:`Scores.meta`)."""
    return {"model": model_name(model), "seeds": [r.seed for r in runs], "epochs": runs[0].epochs,
            "total_epochs": runs[0].total_epochs}


def probabilities(run: Run, x: Tensor, y: Tensor | None = None) -> Tensor:
    """Softmax outputs of the run's model on ``x`` (float64); labels, when given, must fit its classes."""
    logits = predict_logits(run.model, x)
    if y is not None and len(y) and int(y.max()) >= logits.shape[1]:
        raise InvalidArgumentError(f"label {int(y.max())} is out of range for a model with {logits.shape[1]} outputs")
    return torch.softmax(logits, dim=1)
