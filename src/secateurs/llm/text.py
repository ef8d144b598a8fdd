"""Inputs of the LLM tools: token ids from tensors, texts and files; local Hugging Face models with clear errors.

Shared by calibration (:mod:`secateurs.llm.prune`) and evaluation (:mod:`secateurs.llm.evaluate`), so that a text
file gives the same token ids whichever of them reads it.  Nothing here downloads: models and tokenizers are loaded
from local directories with ``local_files_only=True``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import CheckpointError, InvalidArgumentError

__all__ = [
    "check_ids_fit", "check_vocab", "load_local_model", "load_local_tokenizer", "load_token_ids", "model_vocab_size",
]

TokenData = torch.Tensor | str | os.PathLike | Sequence[str]

_TEXT_SUFFIXES = (".txt", ".text", ".md", ".raw", ".tokens")
# A str is taken as a path when it names an existing file; a short one-line str that looks like a file name but
# names nothing is an error rather than a 2-token text nobody meant to evaluate.
_MAX_PATH_CHARS = 4096


def _looks_like_path(s: str) -> bool:
    if len(s) > _MAX_PATH_CHARS or "\n" in s or not s.strip():
        return False
    return os.path.isfile(s) or (" " not in s and (s.lower().endswith(_TEXT_SUFFIXES) or os.sep in s))


def _read_text_file(path: Path) -> str:
    if not path.exists():
        raise InvalidArgumentError(f"text file {path} does not exist")
    if not path.is_file():
        raise InvalidArgumentError(f"{path} is not a file; expected a UTF-8 text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"{path} is not UTF-8 text ({exc}); convert it or pass token ids") from exc


def _tokenize(text: str, tokenizer: Any) -> torch.Tensor:
    # The reference evaluation calls the tokenizer on the whole joined text with its defaults (special tokens
    # included, e.g. LLaMA's BOS); verbose=False silences the "longer than model_max_length" warning, which does
    # not apply because the ids are cut into windows afterwards.
    ids = tokenizer(text, return_attention_mask=False, verbose=False)["input_ids"]
    return torch.as_tensor(ids, dtype=torch.long).reshape(-1)


def load_token_ids(data: TokenData, tokenizer: Any = None) -> torch.Tensor:
    """Turn ``data`` into a 1-D ``LongTensor`` of token ids.

    Args:
        data: a tensor of ids (1-D, or 2-D with a single row), a text, a list of texts (joined with ``"\\n\\n"``, as
            the SparseGPT/Wanda WikiText-2 loaders join documents), or the path (``str`` or ``Path``) of an existing
            UTF-8 text file.
        tokenizer: a Hugging Face tokenizer; required for texts and files, ignored for tensors.  Texts are encoded
            with the tokenizer's defaults (special tokens included), as the reference code does.

    Raises:
        InvalidArgumentError: empty data, a non-integer or multi-row tensor, negative ids, a text without a
            tokenizer, a path that does not exist, a file that is not UTF-8.
    """
    if isinstance(data, torch.Tensor):
        if data.is_floating_point() or data.is_complex() or data.dtype == torch.bool:
            raise InvalidArgumentError(f"token ids must be an integer tensor, got dtype {data.dtype}")
        if data.dim() == 2 and data.shape[0] == 1:
            data = data[0]
        if data.dim() != 1:
            raise InvalidArgumentError(
                f"token ids must be a 1-D tensor (or shaped (1, n)), got shape {tuple(data.shape)}; "
                "flatten it, or pass 2-D calibration rows to secateurs.llm.prune instead"
            )
        if data.numel() == 0:
            raise InvalidArgumentError("token id tensor is empty")
        if int(data.min()) < 0:
            raise InvalidArgumentError(f"token ids must be >= 0, found {int(data.min())}")
        return data.detach().to(device="cpu", dtype=torch.long)

    if isinstance(data, os.PathLike) or (isinstance(data, str) and _looks_like_path(data)):
        text, what = _read_text_file(Path(data)), f"text file {data}"
    elif isinstance(data, str):
        text, what = data, "a text"
    elif isinstance(data, Sequence) and data and all(isinstance(t, str) for t in data):
        text, what = "\n\n".join(data), f"a list of {len(data)} texts"
    else:
        raise InvalidArgumentError(
            f"cannot read token ids from {type(data).__name__}; expected a 1-D tensor of ids, a text, a non-empty "
            "list of texts, or the path of a text file"
        )
    if tokenizer is None:
        raise InvalidArgumentError(f"a tokenizer is needed to turn {what} into token ids; pass tokenizer=")
    if not text.strip():
        raise InvalidArgumentError(f"{what} is empty")
    return _tokenize(text, tokenizer)


def model_vocab_size(model: torch.nn.Module) -> int:
    """Rows of the model's input embedding (the largest token id it accepts, plus one)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None or not hasattr(emb, "num_embeddings"):
        raise InvalidArgumentError(f"{type(model).__name__} has no input embedding (get_input_embeddings())")
    return int(emb.num_embeddings)


def check_vocab(model: torch.nn.Module, tokenizer: Any) -> None:
    """Raise :class:`InvalidArgumentError` if the tokenizer can emit ids the model's embedding does not have.

    ``len(tokenizer)`` (base vocabulary plus added tokens) must not exceed the embedding rows.  Models often pad
    their embedding beyond the tokenizer (e.g. to a multiple of 64), which is fine; the reverse means the tokenizer
    belongs to another model.
    """
    rows = model_vocab_size(model)
    try:
        size = len(tokenizer)
    except TypeError:
        size = int(tokenizer.vocab_size)
    if size > rows:
        raise InvalidArgumentError(
            f"the tokenizer has {size} tokens but the model's embedding has only {rows} rows: they do not belong "
            "together; load the tokenizer saved with this model (same directory)"
        )


def check_ids_fit(ids: torch.Tensor, model: torch.nn.Module) -> None:
    """Raise :class:`InvalidArgumentError` if a token id is not a row of the model's embedding."""
    rows = model_vocab_size(model)
    top = int(ids.max())
    if top >= rows:
        raise InvalidArgumentError(
            f"token id {top} is out of range for the model's embedding of {rows} rows; the ids were made by a "
            "tokenizer of another model"
        )


_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"model directory {path} does not exist (secateurs never downloads: pass a local folder)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; expected a save_pretrained folder")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json; expected a Hugging Face save_pretrained folder")
    found = [name for name in _WEIGHT_FILES if (path / name).is_file()]
    if not found:
        raise CheckpointError(
            f"{path} has no weights (looked for {', '.join(_WEIGHT_FILES)}); the save was interrupted or the "
            "files were not copied"
        )
    if "model.safetensors.index.json" in found and "model.safetensors" not in found:
        try:
            shards = set(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path / 'model.safetensors.index.json'} is corrupt: {exc}") from exc
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise CheckpointError(f"{path} is missing weight shard(s) {', '.join(missing)}")


def _is_causal(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    if archs:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(config, "is_encoder_decoder", False)


def load_local_model(
    path: str | os.PathLike, kind: Literal["causal", "encoder", "auto"] = "auto"
) -> torch.nn.Module:
    """Load a Hugging Face model from a local directory, in float32, in eval mode; never download.

    Args:
        path: a ``save_pretrained`` directory (``config.json`` and safetensors or ``pytorch_model.bin`` weights).
        kind: ``"causal"`` (``AutoModelForCausalLM``), ``"encoder"`` (``AutoModel``: the bare encoder, as
            sentence-transformers uses BERT), or ``"auto"``: causal when ``config.architectures`` names a causal-LM
            head (``*ForCausalLM``/``*LMHeadModel``), else the bare model.

    Raises:
        CheckpointError: missing directory, missing ``config.json``, no weight file, a missing shard, unreadable or
            corrupt weights, or weights that lack tensors the model needs (which transformers would otherwise fill
            with random values).
        InvalidArgumentError: unknown ``kind``.
    """
    if kind not in ("causal", "encoder", "auto"):
        raise InvalidArgumentError(f"kind must be 'causal', 'encoder' or 'auto', got {kind!r}")
    path = Path(path)
    _check_model_dir(path)
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the config is a bad checkpoint
        raise CheckpointError(f"cannot read {path / 'config.json'}: {exc}") from exc
    causal = kind == "causal" or (kind == "auto" and _is_causal(config))
    cls = AutoModelForCausalLM if causal else AutoModel
    try:
        model, info = cls.from_pretrained(
            path, config=config, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except Exception as exc:  # noqa: BLE001 - safetensors/torch/transformers raise many types for a bad file
        raise CheckpointError(f"cannot load the weights in {path}: {type(exc).__name__}: {exc}") from exc
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"missing tensors {', '.join(sorted(missing)[:5])}{' …' if len(missing) > 5 else ''}")
        if mismatched:
            parts.append(f"tensors of the wrong shape {', '.join(str(m) for m in mismatched[:5])}")
        raise CheckpointError(
            f"the weights in {path} do not match its config ({'; '.join(parts)}); transformers would fill them "
            "with random values"
        )
    model.eval()
    return model


def load_local_tokenizer(path: str | os.PathLike) -> Any:
    """``AutoTokenizer.from_pretrained(path, local_files_only=True)`` with a :class:`CheckpointError` when it fails."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"tokenizer directory {path} does not exist (secateurs never downloads)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot load a tokenizer from {path}: {type(exc).__name__}: {exc}") from exc
