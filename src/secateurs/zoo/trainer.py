"""A small, deterministic trainer: :func:`fit` and :func:`evaluate` for classification models.

Default recipe: SGD with momentum 0.9 (Sutskever et al. 2013) and a cosine learning-rate decay to zero,
stepped every batch (SGDR without restarts, Loshchilov & Hutter 2017: ``lr_t = lr * (1 + cos(pi t / T)) / 2``).
Only ``model.parameters()`` are used, so weights wrapped by :mod:`torch.nn.utils.parametrize` (pruning masks)
train through their ``original`` tensors like any other parameter.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..core.modes import eval_mode, model_device
from ..core.modes import num_threads as num_threads_ctx
from ..core.progress import progress_bar
from ..errors import InvalidArgumentError

OPTIMIZERS = ("sgd", "adam")


def _make_optimizer(
    params: Iterable[Tensor], optimizer: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False)
    if optimizer == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)  # = Adam when weight_decay == 0
    raise InvalidArgumentError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    epochs: int,
    lr: float = 0.05,
    optimizer: str = "sgd",
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    seed: int = 0,
    progress: bool = False,
    num_threads: int | None = None,
    on_step: Callable[[int, torch.optim.Optimizer], None] | None = None,
    start_step: int = 0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> list[float]:
    """Train ``model`` with cross-entropy for ``epochs`` epochs; return the mean training loss of each epoch.

    ``optimizer="sgd"``: SGD with ``momentum`` and L2 ``weight_decay``; ``"adam"``: Adam (Kingma & Ba 2015) with
    decoupled weight decay (AdamW, Loshchilov & Hutter 2019).  The learning rate follows a per-batch cosine
    decay from ``lr`` to 0 (Loshchilov & Hutter 2017).  Deterministic given ``seed``: the global RNG is seeded
    inside a forked RNG state (the caller's RNG is left untouched) and the loader's own generator, if any, is
    reseeded, so the same model, loader and seed give the same weights.  The model is left in train mode.

    ``num_threads`` sets :func:`torch.set_num_threads` for the duration of the call (restored afterwards; the
    setting is process-wide).  For the tiny zoo models one thread is often the fastest, far faster on a busy
    machine, and it makes results independent of the machine's core count.

    ``on_step(step, optimizer)`` runs after every optimizer step (``step`` counts from ``start_step + 1``; the
    gradients are still there): training-time pruners hook in here (``lambda s, opt: pruner.step()``).
    ``start_step`` resumes a run of ``epochs`` epochs part-way (lottery-ticket late rewinding): the learning-rate
    schedule starts at that step and only the remaining ``epochs * len(loader) - start_step`` steps are taken.

    ``loss_fn(logits, targets) -> scalar`` replaces the mean cross-entropy (e.g. ``InfoBatch.loss``, which records
    per-example losses and rescales them).  ``len(train_loader)`` is read again at the start of every epoch: a loader
    whose epochs are shorter than the first (dynamic data pruning, :class:`secateurs.data.InfoBatch`) has its
    learning rate set from the epoch's progress, ``t = (epoch + i / len) * steps_per_epoch``, so the cosine still
    ends at 0 (InfoBatch's advice: adjust a step-based schedule's steps per epoch every epoch).  Loaders of fixed
    length are unaffected.
    """
    if epochs < 0:
        raise InvalidArgumentError(f"epochs must be >= 0, got {epochs}")
    if lr <= 0:
        raise InvalidArgumentError(f"lr must be > 0, got {lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidArgumentError("model has no trainable parameters")
    steps_per_epoch = len(train_loader)
    total = max(1, epochs * steps_per_epoch)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= epochs * steps_per_epoch:
        raise InvalidArgumentError(f"start_step must be an integer in [0, {epochs * steps_per_epoch}] (the run's "
                                   f"steps), got {start_step!r}")
    device = model_device(model)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]), num_threads_ctx(num_threads):
        torch.manual_seed(seed)
        gen = getattr(train_loader, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(seed)
        opt = _make_optimizer(params, optimizer, lr, weight_decay, momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        for group in opt.param_groups:  # the cosine value at start_step (closed form: no warning, no replay)
            group["lr"] = group["initial_lr"] * 0.5 * (1 + math.cos(math.pi * start_step / total))
        sched.last_epoch = start_step
        criterion = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
        model.train()
        step = start_step
        with progress_bar(progress, total - start_step, f"training {getattr(model, 'zoo_name', type(model).__name__)}",
                          transient=True, loss=float("nan")) as advance:
            for epoch in range(epochs):
                total_loss, count = 0.0, 0
                if (epoch + 1) * steps_per_epoch <= start_step:  # resumed past this epoch: still run its
                    _exhaust_indices(train_loader)  # shuffle, so later epochs see the original run's order
                    continue
                epoch_steps = len(train_loader)  # may vary per epoch (InfoBatch)
                varying = epoch_steps != steps_per_epoch
                for i, (x, y) in enumerate(
                        itertools.islice(train_loader, max(0, start_step - epoch * steps_per_epoch), None)):
                    x, y = x.to(device), y.to(device)
                    if varying:  # closed-form cosine at the epoch's progress
                        t = (epoch + i / max(epoch_steps, 1)) * steps_per_epoch
                        for group in opt.param_groups:
                            group["lr"] = group["initial_lr"] * 0.5 * (1 + math.cos(math.pi * t / total))
                    opt.zero_grad(set_to_none=True)
                    loss = criterion(model(x), y)
                    loss.backward()
                    opt.step()
                    if not varying:
                        sched.step()
                    step += 1
                    if on_step is not None:
                        on_step(step, opt)
                    total_loss += loss.item() * len(y)
                    count += len(y)
                    advance(loss=loss.item())
                if varying:  # hand the recursive scheduler the state a full-length epoch would have left
                    sched.last_epoch = (epoch + 1) * steps_per_epoch
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * 0.5 * (1 + math.cos(math.pi * sched.last_epoch / total))
                losses.append(total_loss / max(count, 1))
    return losses


def _exhaust_indices(loader: Iterable) -> None:
    """Run one epoch of ``loader``'s sampling without loading data (a stopped iterator leaves a shuffling
    sampler's random state elsewhere than a finished one, so a skipped epoch must be run to its end)."""
    it = iter(loader)
    for _ in getattr(it, "_sampler_iter", it):
        pass


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``loader``, in eval mode without gradients.

    The model's previous train/eval mode (of every submodule) is restored afterwards.
    """
    device = model_device(model)
    correct, total_loss, count = 0, 0.0, 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
    if count == 0:
        raise InvalidArgumentError("evaluate() got an empty loader")
    return {"accuracy": correct / count, "loss": total_loss / count}
