"""Embeddings from any encoder, for the embedding-based data-pruning scorers (``ssp``, ``dbp``).

* A classifier (a zoo model or any ``nn.Module``): its **penultimate features**, i.e. the input of the classifier
  layer.  The classifier is found by one forward pass with hooks on every submodule: it is the innermost module whose
  output *is* the model's output tensor (``fc3`` of LeNet, ``fc`` of ResNet-20, ``head`` of the ViT); its input,
  flattened, is the embedding.  When no module produces the output (a functional op comes last), the last
  ``nn.Linear`` executed is used.  ``layer="name"`` takes the (flattened) output of that named module instead.
* Text: sentence embeddings from the shipped all-MiniLM-L6-v2 (Reimers & Gurevych 2019), computed as
  sentence-transformers does for that model (its ``modules.json``: Transformer → mean pooling over the attention
  mask → L2 normalisation; ``max_seq_length`` 256), with plain ``transformers.AutoModel``.
* Any callable ``batch -> (n, d) tensor``.

Every encoder runs over the data in batches, in eval mode and without gradients, writing into one preallocated
``(n, d)`` float32 array: memory is bounded by the embeddings, not the raw data.  Same encoder and data, same array.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..core.modes import eval_mode, model_device
from ..core.modes import num_threads as num_threads_ctx
from ..core.progress import progress_bar
from ..errors import InvalidArgumentError, MissingDataError, ModelStructureError
from .kmeans import as_embeddings

__all__ = ["MINILM", "classifier_layer", "embed", "resolve_embeddings", "sentence_embeddings"]

MINILM = "minilm"
MINILM_MAX_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2


def _inputs(batch: Any) -> Any:
    """The model input of a collated batch: ``x`` of ``(x, y)`` / ``(x,)``, or the batch itself."""
    if isinstance(batch, (tuple, list)) and batch and not isinstance(batch[0], str):
        return batch[0]
    return batch


def _flat(t: Any, where: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise ModelStructureError(f"{where} is not a tensor (got {type(t).__name__}); pass layer= another module")
    return t.detach().reshape(t.shape[0], -1).float()


def classifier_layer(model: nn.Module, example: Tensor) -> str:
    """Qualified name of ``model``'s classifier layer, found by one forward pass on ``example``.

    It is the innermost submodule whose output is the very tensor the model returns (forward hooks fire innermost
    first, so containers that pass the tensor through are skipped); failing that, the last ``nn.Linear`` executed.
    Raises ModelStructureError when neither exists.
    """
    outputs: list[tuple[str, Tensor]] = []  # kept alive so that no tensor id is reused during the pass
    last_linear: list[str] = []
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def fn(mod: nn.Module, args: tuple, out: Any) -> None:
            if isinstance(out, Tensor):
                outputs.append((name, out))
            if isinstance(mod, nn.Linear):
                last_linear.append(name)
        return fn

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    for name, t in outputs:  # hooks fire innermost first: the first match is the leaf layer
        if t is out:
            return name
    if last_linear:
        return last_linear[-1]
    raise ModelStructureError(
        f"could not find the classifier of {type(model).__name__}: no submodule returns the model's output and no "
        "nn.Linear runs; pass layer='<module name>' to embed that module's output"
    )


def _loader(data: Any, batch_size: int) -> DataLoader:
    if isinstance(data, (Tensor, np.ndarray)):
        data = torch.as_tensor(data)
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def _model_embeddings(
    model: nn.Module, data: Any, batch_size: int, layer: str | None, progress: bool
) -> np.ndarray:
    loader = _loader(data, batch_size)
    n = len(loader.dataset)
    device = model_device(model)
    modules = dict(model.named_modules())
    out: np.ndarray | None = None
    captured: list[Tensor] = []
    handle = None
    start = 0
    try:
        with torch.no_grad(), eval_mode(model), progress_bar(progress, len(loader), "embedding") as advance:
            for batch in loader:
                x = _inputs(batch).to(device)
                if handle is None:
                    name = layer if layer is not None else classifier_layer(model, x[:2])
                    if name not in modules or not name:
                        raise InvalidArgumentError(f"layer {name!r} is not a submodule of {type(model).__name__}; "
                                                   f"known: {', '.join(n for n in modules if n)[:400]}")
                    if layer is None:  # the classifier's input is the penultimate feature
                        handle = modules[name].register_forward_pre_hook(
                            lambda m, args: captured.append(_flat(args[0], f"the input of {name!r}")))
                    else:
                        handle = modules[name].register_forward_hook(
                            lambda m, args, o: captured.append(_flat(o, f"the output of {name!r}")))
                captured.clear()
                model(x)
                if not captured:
                    raise ModelStructureError(f"the hooked layer did not run on a batch of {type(model).__name__}")
                feats = captured[0].cpu().numpy()
                if out is None:
                    out = np.empty((n, feats.shape[1]), dtype=np.float32)
                out[start:start + len(feats)] = feats
                start += len(feats)
                advance()
    finally:
        if handle is not None:
            handle.remove()
    if out is None:
        raise InvalidArgumentError("cannot embed an empty data set")
    return out


def _callable_embeddings(fn: Callable[[Any], Any], data: Any, batch_size: int, progress: bool) -> np.ndarray:
    loader = _loader(data, batch_size)
    out: np.ndarray | None = None
    start = 0
    with torch.no_grad(), progress_bar(progress, len(loader), "embedding") as advance:
        for batch in loader:
            feats = _flat(fn(_inputs(batch)), "the encoder's output").cpu().numpy()
            if out is None:
                out = np.empty((len(loader.dataset), feats.shape[1]), dtype=np.float32)
            out[start:start + len(feats)] = feats
            start += len(feats)
            advance()
    if out is None:
        raise InvalidArgumentError("cannot embed an empty data set")
    return out


@functools.lru_cache(maxsize=2)
def _minilm(model_dir: str) -> tuple[Any, nn.Module]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).float().eval()
    return tokenizer, model


def sentence_embeddings(
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    model_dir: str | Path | None = None,
    max_length: int = MINILM_MAX_LENGTH,
    progress: bool = False,
    num_threads: int | None = None,
) -> np.ndarray:
    """Sentence embeddings ``(len(texts), 384)`` float32 of all-MiniLM-L6-v2, unit L2 norm.

    Reimers & Gurevych (2019), Sentence-BERT: token states of the last layer averaged over the attention mask
    (mean pooling, their Eq. for the MEAN strategy), then L2-normalised — the pipeline of the model's
    ``modules.json``.  Texts are truncated to ``max_length`` tokens (256, the model's ``max_seq_length``) and
    batched in order of length (less padding; the result is returned in the input order).

    ``model_dir`` defaults to :func:`secateurs.zoo.shakespeare.minilm_dir` (the shipped model; nothing is downloaded).
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InvalidArgumentError("texts must be a sequence of strings")
    if batch_size < 1 or max_length < 2:
        raise InvalidArgumentError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {max_length}")
    if model_dir is None:
        from ..zoo.shakespeare import minilm_dir

        model_dir = minilm_dir()
    tokenizer, model = _minilm(str(model_dir))
    n = len(texts)
    out = np.empty((n, model.config.hidden_size), dtype=np.float32)
    order = sorted(range(n), key=lambda i: len(texts[i]))
    steps = (n + batch_size - 1) // batch_size
    with torch.no_grad(), num_threads_ctx(num_threads), progress_bar(progress, steps, "MiniLM") as advance:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=enc.get("token_type_ids")).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = nn.functional.normalize(pooled, p=2, dim=1).numpy()
            advance()
    return out


def _texts_of(data: Any) -> list[str] | None:
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        return list(data)
    texts = getattr(data, "texts", None)
    if isinstance(texts, (list, tuple)) and len(texts) == len(data):
        return list(texts)
    return None


def embed(
    data: Any,
    encoder: nn.Module | Callable[[Any], Any] | str,
    *,
    batch_size: int = 256,
    layer: str | None = None,
    dataset_name: str = "digits",
    progress: bool = False,
    num_threads: int | None = None,
) -> np.ndarray:
    """Embed every example of ``data`` with ``encoder``; return an ``(len(data), d)`` float32 array, in data order.

    Args:
        data: a Dataset of ``(x, y)`` / ``(x,)`` items, a tensor/array of inputs, or (for MiniLM) a list of strings
            or an object with a ``texts`` attribute.
        encoder: an ``nn.Module`` (penultimate features, or ``layer``'s output), a zoo model name (the cached
            :func:`secateurs.zoo.pretrained` model trained on ``dataset_name``), ``"minilm"`` (sentence embeddings),
            or a callable ``batch -> (n, d)``.
        batch_size: examples per forward pass.
        layer: module name whose output to take instead of the classifier's input.
        num_threads: torch threads for the duration of the call (None: unchanged).
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(encoder, str) and encoder == MINILM:
        texts = _texts_of(data)
        if texts is None:
            raise MissingDataError("encoder='minilm' embeds text: pass a list of strings or a data set with .texts")
        return sentence_embeddings(texts, progress=progress, num_threads=num_threads)
    if isinstance(encoder, str):
        from ..zoo import pretrained

        encoder = pretrained(encoder, dataset=dataset_name)
    with num_threads_ctx(num_threads):
        if isinstance(encoder, nn.Module):
            return _model_embeddings(encoder, data, batch_size, layer, progress)
        if callable(encoder):
            if layer is not None:
                raise InvalidArgumentError("layer= applies to nn.Module encoders only")
            return _callable_embeddings(encoder, data, batch_size, progress)
    raise InvalidArgumentError(
        f"encoder must be an nn.Module, a zoo model name, 'minilm' or a callable, got {type(encoder).__name__}"
    )


def _dataset_vectors(dataset: Any) -> Any | None:
    """The examples themselves when they already are vectors: a 2-D array/tensor, or a TensorDataset whose first
    tensor is 2-D floating point (e.g. the MiniLM embeddings of :func:`secateurs.zoo.plays.shakespeare_plays`)."""
    if isinstance(dataset, np.ndarray) and dataset.ndim == 2:
        return dataset
    if isinstance(dataset, Tensor) and dataset.ndim == 2 and dataset.is_floating_point():
        return dataset
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, tuple) and tensors and isinstance(tensors[0], Tensor):
        x = tensors[0]
        if x.ndim == 2 and x.is_floating_point():
            return x
    return None


def resolve_embeddings(
    dataset: Dataset | Any,
    embeddings: Any = None,
    encoder: nn.Module | Callable[[Any], Any] | str | None = None,
    **embed_options: Any,
) -> np.ndarray:
    """The ``(n, d)`` float32 embeddings the embedding-based scorers work on.

    In order: ``embeddings`` given (checked to have one row per example of ``dataset`` when both are given);
    else ``encoder`` applied to ``dataset`` (:func:`embed`); else ``dataset`` itself when its examples already are
    vectors (a 2-D array/tensor or a TensorDataset of 2-D float inputs).  Anything else raises MissingDataError
    saying to pass ``embeddings=`` or ``encoder=``.
    """
    if embeddings is not None:
        arr = as_embeddings(embeddings)
        if dataset is not None and len(dataset) != arr.shape[0]:
            raise InvalidArgumentError(
                f"embeddings have {arr.shape[0]} rows but the data set has {len(dataset)} examples; they must align"
            )
        return arr
    if encoder is not None:
        return as_embeddings(embed(dataset, encoder, **embed_options))
    vectors = _dataset_vectors(dataset)
    if vectors is None:
        raise MissingDataError(
            "an embedding-based scorer needs vectors: pass embeddings=(n, d) array, or encoder= (an nn.Module, a zoo "
            "model name, 'minilm' or a callable), or a data set whose inputs already are 2-D float vectors"
        )
    return as_embeddings(vectors)

