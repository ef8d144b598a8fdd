"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28x28 grey-scale images of clothing in 10 classes.

Read from the four IDX files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``, gzip-compressed or not) that the Debian package
``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist/`` (``apt-get install
dataset-fashion-mnist``; ``make`` installs it when it runs as root with apt-get), or from the directory named by the
environment variable ``SECATEURS_FASHION_MNIST``.  The split is the official one: 60,000 training and 10,000 test
images.  Pixels (0..255) are scaled to [0, 1], then standardised with the mean and standard deviation of the
*training* pixels, as :mod:`secateurs.zoo.digits` does.
"""
from __future__ import annotations

import functools

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import CheckpointError
from ..registry import register
from .digits import ClassificationData

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_ENV", "SUBSET_SIZE", "fashion_mnist", "fashion_mnist_10k",
           "fashion_mnist_dir", "subset_indices"]

FASHION_MNIST_ENV = "SECATEURS_FASHION_MNIST"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL = "install it with: apt-get update && apt-get install -y dataset-fashion-mnist (or `make`, as root)"
REINSTALL = "reinstall it with: apt-get install --reinstall dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
# split -> (images stem, labels stem, number of examples)
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000)}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049


class MissingDatasetError(CheckpointError):
    """A data set whose files are not installed (the message names the command that installs them)."""


def fashion_mnist_dir() -> Path:
    """The directory the IDX files are read from: ``$SECATEURS_FASHION_MNIST`` if set, else the Debian package's.

    Raises:
        MissingDatasetError: the directory does not exist (the message names the apt command).
    """
    env = os.environ.get(FASHION_MNIST_ENV)
    folder = Path(env).expanduser() if env else DEBIAN_DIR
    if not folder.is_dir():
        where = f"${FASHION_MNIST_ENV}={env!r} is not a directory" if env else f"{folder} does not exist"
        raise MissingDatasetError(f"Fashion-MNIST is not installed ({where}); {INSTALL}, or point "
                                  f"{FASHION_MNIST_ENV} at a directory holding the four IDX files")
    return folder


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} has no {stem}.gz (nor {stem}): the Fashion-MNIST directory is incomplete; "
                          f"{REINSTALL}")


def _read_idx(path: Path, magic: int, count: int) -> np.ndarray:
    """An IDX file as a uint8 array of shape ``(count, ...)`` (LeCun's MNIST format: big-endian header)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CheckpointError(f"{path} is unreadable or truncated ({exc}); {REINSTALL}") from exc
    ndim = 3 if magic == _IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise CheckpointError(f"{path} is not an IDX file (expected magic number {magic}); {REINSTALL}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if dims[0] != count or len(raw) - header != expected:
        raise CheckpointError(f"{path} holds {len(raw) - header} bytes for shape {dims}, expected {count} examples "
                              f"({expected} bytes): the file is truncated or not Fashion-MNIST; {REINSTALL}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@register("dataset", "fashion-mnist")
def fashion_mnist() -> ClassificationData:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test 28x28 images, 10 classes, standardised.

    ``.train`` / ``.test`` are TensorDatasets of ``(N, 1, 28, 28)`` float32 images and int64 labels, as for
    ``load_dataset("digits")``.  Raises :class:`MissingDatasetError` when the files are not installed and
    :class:`~secateurs.errors.CheckpointError` for a directory with a missing, truncated or foreign file.
    """
    folder = fashion_mnist_dir()
    paths = {split: (_find(folder, images), _find(folder, labels)) for split, (images, labels, _) in _FILES.items()}
    arrays = {}
    for split, (images, labels) in paths.items():
        count = _FILES[split][2]
        x = _read_idx(images, _IMAGES_MAGIC, count)
        y = _read_idx(labels, _LABELS_MAGIC, count)
        if int(y.max()) >= len(FASHION_MNIST_CLASSES):
            raise CheckpointError(f"{folder}: {split} labels go up to {int(y.max())}, expected 0..9")
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1).float().div_(255.0), torch.from_numpy(y.astype(np.int64)))
    x_train = arrays["train"][0]
    mean, std = x_train.mean(), x_train.std()
    return ClassificationData(
        name="fashion-mnist",
        train=TensorDataset((x_train - mean) / std, arrays["train"][1]),
        test=TensorDataset((arrays["test"][0] - mean) / std, arrays["test"][1]),
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=float(mean),
        std=float(std),
    )


SUBSET_SIZE, SUBSET_SEED = 10_000, 0


def subset_indices(n_train: int = 60_000) -> torch.Tensor:
    """The training examples of ``fashion-mnist-10k``: the first 10,000 of a seed-0 permutation, sorted."""
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(n_train, generator=gen)[:SUBSET_SIZE].sort().values


@register("dataset", "fashion-mnist-10k")
@functools.lru_cache(maxsize=1)
def fashion_mnist_10k() -> ClassificationData:
    """A fixed 10,000-example training subset of Fashion-MNIST (:func:`subset_indices`) with the full 10,000-image
    test split: the CPU-sized version the benchmarks and recipes train and fine-tune on (standardised with the full
    training set's mean and std, as ``fashion-mnist``)."""
    full = fashion_mnist()
    x, y = full.train.tensors
    idx = subset_indices(len(x))
    return ClassificationData(name="fashion-mnist-10k", train=TensorDataset(x[idx], y[idx]), test=full.test,
                              num_classes=full.num_classes, input_shape=full.input_shape, mean=full.mean,
                              std=full.std)
