"""Quality of (pruned) language models: perplexity for causal LMs, embedding fidelity for sentence encoders.

* :func:`perplexity` follows the evaluation protocol of Wanda (Sun et al., 2023, ``lib/eval.py``
  ``eval_ppl_wikitext``) and SparseGPT (Frantar & Alistarh, 2023, ``opt.py`` ``opt_eval``): the token ids are cut into
  ``nsamples = numel // seqlen`` non-overlapping windows, each scored with labels = inputs, and
  ``ppl = exp(Σ_i nll_i · seqlen / (nsamples · seqlen))`` where ``nll_i`` is window i's mean loss over its
  ``seqlen − 1`` shifted tokens, so numbers are comparable with the papers' tables.  ``stride`` switches to the
  sliding-window perplexity of the Hugging Face guide ("Perplexity of fixed-length models").
* :func:`embedding_fidelity` compares a pruned sentence encoder with its dense original: mean cosine between the
  sentence embeddings of the same sentence, and the overlap of each sentence's top-k neighbours.  Embeddings are
  attention-mask-weighted mean pools, L2-normalised, as sentence-transformers computes them for all-MiniLM-L6-v2
  (Reimers & Gurevych, 2019).
"""
from __future__ import annotations

import contextlib
import random
import re

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..core.modes import eval_mode, model_device
from ..core.progress import progress_bar
from ..errors import InvalidArgumentError
from .text import TokenData, check_ids_fit, check_vocab, load_token_ids

__all__ = ["embedding_fidelity", "heldout_sentences", "perplexity", "sentence_embeddings"]


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """Eval mode, no_grad and (optionally) a device for the duration; training flag and device restored after."""
    home = model_device(model)
    target = torch.device(device) if device is not None else home
    if target != home:
        model.to(target)
    try:
        with eval_mode(model), torch.no_grad():
            yield target
    finally:
        if target != home:
            model.to(home)


def _windows(n: int, seqlen: int, stride: int | None, bos: bool = False) -> list[tuple[int, int, int]]:
    """(begin, end, scored) per window; ``scored`` = how many of the window's last targets count.  With ``bos`` a
    BOS token is put before every window, so its first token is predicted too (from the BOS alone)."""
    if stride is None:  # Wanda/SparseGPT: non-overlapping, the tail shorter than seqlen is dropped
        return [(i * seqlen, (i + 1) * seqlen, seqlen - (not bos)) for i in range(n // seqlen)]
    out, prev_end = [], 0
    for begin in range(0, n, stride):  # HF perplexity guide: score only the tokens not scored before
        end = min(begin + seqlen, n)
        scored = min(end - prev_end, end - begin - (not bos))
        if scored > 0:
            out.append((begin, end, scored))
        prev_end = end
        if end == n:
            break
    return out


def perplexity(
    model: torch.nn.Module,
    data: TokenData,
    tokenizer: Any = None,
    seqlen: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: bool = False,
    *,
    bos_token_id: int | None = None,
) -> float:
    """Perplexity of a causal LM on ``data``: exp of the mean next-token negative log-likelihood.

    Default (``stride=None``): the protocol of Wanda (Sun et al., 2023) and SparseGPT (Frantar & Alistarh, 2023).
    The ids are cut into ``nsamples = numel // seqlen`` non-overlapping windows (the tail is dropped); each window is
    scored independently with labels = inputs, its loss ``nll_i`` being the mean over its ``seqlen − 1`` shifted
    tokens, and ``ppl = exp(Σ_i nll_i·seqlen / (nsamples·seqlen))`` — the mean of the window losses.

    With ``stride`` (``1 <= stride <= seqlen``): sliding windows of ``seqlen`` tokens every ``stride`` tokens; the first
    window scores all its tokens, every later one only its last ``stride`` tokens (those not scored before), each with
    up to ``seqlen − stride`` tokens of context, and the perplexity is exp of the mean over all scored tokens
    (Hugging Face, "Perplexity of fixed-length models").  Smaller strides give lower, more context-rich values.

    Args:
        model: a causal LM (``*ForCausalLM``); evaluated in eval mode under ``no_grad``, its mode (and device, if
            ``device`` moved it) restored afterwards.
        data: token ids (1-D tensor), a text, a list of texts or a text file (see :func:`~secateurs.llm.text.load_token_ids`).
        tokenizer: needed for texts and files; its vocabulary must fit the model's embedding.
        seqlen: window length; default ``model.config.max_position_embeddings``, capped by the number of tokens.
        stride: ``None`` for non-overlapping windows, else the sliding-window step.
        batch_size: windows per forward pass (results do not depend on it beyond float rounding).
        device: where to run; default the model's device.
        progress: show a progress bar on stderr.
        bos_token_id: when given, every window is fed as ``[BOS] + window`` (``seqlen + 1`` positions) and all of
            its tokens are scored.  Gemma models need it: they are trained with a BOS at position 0, and without
            one Gemma-3-270M's loss on the same Shakespeare windows is about 3x higher (exp-loss 144 against 48
            on four 256-token windows).  ``None`` (default) is the Wanda/SparseGPT protocol, which Llama follows.

    Raises:
        InvalidArgumentError: bad ``seqlen``/``stride``/``batch_size``/``bos_token_id``, fewer tokens than ``seqlen``, ids the model's
            embedding does not have, a tokenizer whose vocabulary the model does not have, a model without an LM head.
    """
    ids = load_token_ids(data, tokenizer)
    if tokenizer is not None:
        check_vocab(model, tokenizer)
    check_ids_fit(ids, model)
    if getattr(model, "get_output_embeddings", lambda: None)() is None:
        raise InvalidArgumentError(
            f"{type(model).__name__} has no language-model head, so it has no perplexity; load it as a causal LM "
            "(AutoModelForCausalLM), or use embedding_fidelity for encoders"
        )
    n = ids.numel()
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if seqlen is None:
        seqlen = min(int(max_pos), n) if max_pos else n
    seqlen = _positive_int("seqlen", seqlen, 2)
    if max_pos and seqlen + (bos_token_id is not None) > max_pos:
        raise InvalidArgumentError(f"seqlen {seqlen}{' + BOS' if bos_token_id is not None else ''} exceeds the "
                                   f"model's max_position_embeddings {max_pos}")
    if bos_token_id is not None:
        if isinstance(bos_token_id, bool) or not isinstance(bos_token_id, int) or bos_token_id < 0:
            raise InvalidArgumentError(f"bos_token_id must be a token id (int >= 0), got {bos_token_id!r}")
        check_ids_fit(torch.tensor([bos_token_id]), model)
    if n < seqlen:
        raise InvalidArgumentError(
            f"only {n} tokens to evaluate, fewer than one window of seqlen={seqlen}; pass more text or a smaller seqlen"
        )
    if stride is not None:
        stride = _positive_int("stride", stride)
        if stride > seqlen:
            raise InvalidArgumentError(f"stride {stride} must be <= seqlen {seqlen}")
    batch_size = _positive_int("batch_size", batch_size)

    windows = _windows(n, seqlen, stride, bos_token_id is not None)
    nll_sum, count = torch.zeros((), dtype=torch.float64), 0
    with _evaluating(model, device) as dev, progress_bar(progress, len(windows), "perplexity", transient=True) as advance:
        i = 0
        while i < len(windows):
            length = windows[i][1] - windows[i][0]
            j = i + 1  # a batch holds consecutive windows of the same length
            while j < len(windows) and j - i < batch_size and windows[j][1] - windows[j][0] == length:
                j += 1
            batch = windows[i:j]
            inputs = torch.stack([ids[b:e] for b, e, _ in batch])
            if bos_token_id is not None:
                inputs = torch.cat([inputs.new_full((len(batch), 1), bos_token_id), inputs], 1)
            inputs = inputs.to(dev)
            logits = model(input_ids=inputs, use_cache=False).logits
            nll = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), inputs[:, 1:].reshape(-1), reduction="none"
            ).view(len(batch), inputs.shape[1] - 1)
            for row, (_, _, scored) in zip(nll, batch):
                nll_sum += row[-scored:].double().sum().cpu()
                count += scored
            advance(j - i)
            i = j
    return float(torch.exp(nll_sum / count))


# --------------------------------------------------------------------------------------------------------------
# sentence encoders


def sentence_embeddings(
    model: torch.nn.Module,
    sentences: Sequence[str],
    tokenizer: Any,
    batch_size: int = 32,
    max_length: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """L2-normalised mean-pooled sentence embeddings, shape ``(len(sentences), hidden)``, float32, on CPU.

    As sentence-transformers does for all-MiniLM-L6-v2 (Reimers & Gurevych, 2019): the last hidden states are
    averaged over the real tokens (``Σ_t m_t h_t / Σ_t m_t`` with the attention mask ``m``), then divided by their L2
    norm.  Sentences are truncated at ``max_length`` tokens (256, that model's ``max_seq_length``, capped by the
    model's ``max_position_embeddings``).
    """
    if not sentences or not all(isinstance(s, str) for s in sentences):
        raise InvalidArgumentError("sentences must be a non-empty list of str")
    batch_size = _positive_int("batch_size", batch_size)
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    max_length = min(_positive_int("max_length", max_length, 2), int(max_pos) if max_pos else max_length)
    if getattr(tokenizer, "pad_token", None) is None:
        raise InvalidArgumentError("the tokenizer has no pad token, so sentences cannot be batched; set tokenizer.pad_token")
    check_vocab(model, tokenizer)
    out = []
    with _evaluating(model, device) as dev:
        for start in range(0, len(sentences), batch_size):
            enc = tokenizer(
                list(sentences[start: start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            enc = {k: v.to(dev) for k, v in enc.items()}
            output = model(**enc)
            hidden = getattr(output, "last_hidden_state", None)
            if hidden is None:
                hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(F.normalize(pooled.float(), p=2, dim=1).cpu())
    return torch.cat(out)


def _topk_neighbours(emb: torch.Tensor, k: int) -> torch.Tensor:
    sim = emb @ emb.T
    sim.fill_diagonal_(float("-inf"))  # a sentence is not its own neighbour
    return sim.topk(k, dim=1).indices


def embedding_fidelity(
    model: torch.nn.Module,
    dense_model: torch.nn.Module,
    sentences: Sequence[str],
    tokenizer: Any,
    k: int = 10,
    batch_size: int = 32,
) -> dict[str, float]:
    """How closely a pruned sentence encoder reproduces its dense original's sentence embeddings.

    Both models embed ``sentences`` with :func:`sentence_embeddings` (mean pooling + L2 normalisation, Reimers &
    Gurevych 2019).  Returns

    * ``mean_cosine``: ``mean_s cos(e_pruned(s), e_dense(s))`` — 1.0 when the embeddings are unchanged;
    * ``topk_overlap``: ``mean_s |N_k^pruned(s) ∩ N_k^dense(s)| / k`` where ``N_k(s)`` are the ``k`` sentences most
      cosine-similar to ``s`` (``s`` itself excluded) — 1.0 when every neighbourhood, hence retrieval, is unchanged.

    Raises:
        InvalidArgumentError: ``k`` not in ``[1, len(sentences) − 1]``, empty sentences, a tokenizer without a pad
            token or whose vocabulary does not fit a model.
    """
    k = _positive_int("k", k)
    if len(sentences) <= k:
        raise InvalidArgumentError(f"top-{k} neighbours need more than {k} sentences, got {len(sentences)}")
    pruned = sentence_embeddings(model, sentences, tokenizer, batch_size=batch_size)
    dense = sentence_embeddings(dense_model, sentences, tokenizer, batch_size=batch_size)
    cosine = (pruned * dense).sum(1).mean()
    a, b = _topk_neighbours(pruned, k), _topk_neighbours(dense, k)
    overlap = (a.unsqueeze(2) == b.unsqueeze(1)).any(2).float().sum(1) / k
    return {"mean_cosine": float(cosine), "topk_overlap": float(overlap.mean())}


_SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,30}\.?$")
_DIRECTION = re.compile(r"^\s*(\[|(ACT|SCENE|Scene|Act)\b|(Enter|Exit|Exeunt|Re-enter)\b)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z'\"])")


def heldout_sentences(n: int = 512, seed: int = 0, min_words: int = 6, max_words: int = 40) -> list[str]:
    """``n`` distinct sentences from the held-out Shakespeare plays, drawn with ``seed`` (same seed, same list).

    Speeches are taken from :func:`~secateurs.zoo.shakespeare.shakespeare_texts("heldout")` without speaker names,
    stage directions and act/scene headings, their verse lines joined, and split into sentences at ``.``/``!``/``?``;
    sentences of ``min_words``–``max_words`` words are kept (about 4,000), deduplicated and sorted, then ``n`` are
    sampled.  Used with :func:`embedding_fidelity`; the encoder never saw these plays as calibration data.
    """
    from ..zoo.shakespeare import shakespeare_texts

    n = _positive_int("n", n)
    pool: set[str] = set()
    for play in shakespeare_texts("heldout"):
        for para in play.split("\n\n"):
            lines = [ln.strip() for ln in para.split("\n") if ln.strip()]
            if lines and _SPEAKER.match(lines[0]) and (lines[0].isupper() or len(lines[0].split()) <= 3):
                lines = lines[1:]  # "BANQUO." / "Ber." / "LYSANDER"
            lines = [ln for ln in lines if not _DIRECTION.match(ln)]
            speech = re.sub(r"\s+", " ", " ".join(lines)).replace("--", " ").strip()
            for sentence in _SENTENCE_END.split(speech):
                sentence = sentence.strip(" -")
                if min_words <= len(sentence.split()) <= max_words and not sentence.isupper():
                    pool.add(sentence)
    ordered = sorted(pool)
    if n > len(ordered):
        raise InvalidArgumentError(f"only {len(ordered)} held-out sentences qualify, fewer than n={n}")
    return random.Random(seed).sample(ordered, n)
