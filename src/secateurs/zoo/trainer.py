"""A small, deterministic trainer: :func:`fit` and :func:`evaluate` for classification models.

Default recipe: SGD with momentum 0.9 (Sutskever et al. 2013) and a cosine learning-rate decay to zero,
stepped every batch (SGDR without restarts, Loshchilov & Hutter 2017: ``lr_t = lr * (1 + cos(pi t / T)) / 2``).
Only ``model.parameters()`` are used, so weights wrapped by :mod:`torch.nn.utils.parametrize` (pruning masks)
train through their ``original`` tensors like any other parameter.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..core.progress import progress_bar
from ..errors import InvalidArgumentError

OPTIMIZERS = ("sgd", "adam")


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (no-op for None)."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise InvalidArgumentError(f"num_threads must be >= 1 or None, got {num_threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    device = _device(model)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]), _threads(num_threads):
        torch.manual_seed(seed)
        gen = getattr(train_loader, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(seed)
        opt = _make_optimizer(params, optimizer, lr, weight_decay, momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        with progress_bar(progress, total, f"training {getattr(model, 'zoo_name', type(model).__name__)}", transient=True,
                          loss=float("nan")) as advance:
            for _ in range(epochs):
                total_loss, count = 0.0, 0
                for x, y in train_loader:
                    x, y = x.to(device), y.to(device)
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total_loss += loss.item() * len(y)
                    count += len(y)
                    advance(loss=loss.item())
                losses.append(total_loss / max(count, 1))
    return losses


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; afterwards restore each one's previous ``training`` flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``loader``, in eval mode without gradients.

    The model's previous train/eval mode (of every submodule) is restored afterwards.
    """
    device = _device(model)
    correct, total_loss, count = 0, 0.0, 0
    with _eval_mode(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
    if count == 0:
        raise InvalidArgumentError("evaluate() got an empty loader")
    return {"accuracy": correct / count, "loss": total_loss / count}
