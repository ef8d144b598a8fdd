"""The scikit-learn digits data set (8x8 handwritten digits, 1,797 examples, bundled: no download).

Alpaydin & Kaynak (1998), "Optical recognition of handwritten digits", UCI; shipped as
:func:`sklearn.datasets.load_digits`.  Pixels (0..16) are scaled to [0, 1], then standardised with the mean and
standard deviation of the *training* pixels.  The train/test split is fixed: stratified, 25 % test,
``random_state=0`` (1,347 train / 450 test).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..errors import InvalidArgumentError
from ..registry import register


@dataclass(frozen=True)
class ClassificationData:
    """A train/test pair of :class:`~torch.utils.data.TensorDataset` (images, int64 labels)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    mean: float = 0.0
    std: float = 1.0

    def loaders(
        self, batch_size: int = 64, seed: int = 0, eval_batch_size: int | None = None
    ) -> tuple[DataLoader, DataLoader]:
        """(train loader, shuffled by a generator seeded with ``seed``; test loader, in order)."""
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        gen = torch.Generator().manual_seed(seed)
        train = DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=gen)
        test = DataLoader(self.test, batch_size=eval_batch_size or max(batch_size, 256), shuffle=False)
        return train, test


@register("dataset", "digits")
def digits() -> ClassificationData:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), fixed stratified 75/25 split, standardised."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.as_tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.25, stratify=y.numpy(), random_state=0
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return ClassificationData(
        name="digits",
        train=TensorDataset(x[idx_train], y[idx_train]),
        test=TensorDataset(x[idx_test], y[idx_test]),
        num_classes=10,
        input_shape=(1, 8, 8),
        mean=float(mean),
        std=float(std),
    )


def calibration_batches(
    dataset: ClassificationData | TensorDataset,
    n_per_class: int = 10,
    seed: int = 0,
    batch_size: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Class-balanced calibration batches: ``n_per_class`` random training examples of every class.

    Data-dependent pruning-at-initialisation criteria use ``10 x #classes`` examples: SNIP (Lee et al. 2019)
    and GraSP (Wang et al. 2020) sample 10 per class.  The chosen examples are shuffled together (so every
    batch mixes classes) and cut into batches of ``batch_size`` (default: one batch holding all of them).
    Same ``seed``, same examples in the same order.
    """
    ds = dataset.train if isinstance(dataset, ClassificationData) else dataset
    x, y = ds.tensors[0], ds.tensors[1]
    if n_per_class < 1:
        raise InvalidArgumentError(f"n_per_class must be >= 1, got {n_per_class}")
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        if len(members) < n_per_class:
            raise InvalidArgumentError(
                f"class {c} has only {len(members)} training examples, fewer than n_per_class={n_per_class}; "
                "lower n_per_class"
            )
        picked.append(members[torch.randperm(len(members), generator=gen)[:n_per_class]])
    order = torch.cat(picked)
    order = order[torch.randperm(len(order), generator=gen)]
    size = batch_size or len(order)
    return [(x[chunk], y[chunk]) for chunk in order.split(size)]
