"""Perplexity (Wanda/SparseGPT protocol and sliding windows), embedding fidelity, token ids and local model loading."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

from secateurs.errors import CheckpointError, InvalidArgumentError  # noqa: E402
from secateurs.llm.evaluate import embedding_fidelity, heldout_sentences, perplexity, sentence_embeddings  # noqa: E402
from secateurs.llm.text import check_vocab, load_local_model, load_local_tokenizer, load_token_ids  # noqa: E402


def tiny_llama(vocab: int = 64, max_pos: int = 32, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=max_pos,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 64, (100,), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def minilm():
    from secateurs.zoo.shakespeare import minilm_dir

    path = minilm_dir()
    return load_local_model(path, kind="encoder"), load_local_tokenizer(path)


def hand_ppl(model, ids, seqlen):
    """Wanda's eval_ppl_wikitext with bs=1, written out: HF's own loss per window."""
    nsamples = ids.numel() // seqlen
    nlls = []
    with torch.no_grad():
        for i in range(nsamples):
            x = ids[i * seqlen:(i + 1) * seqlen].unsqueeze(0)
            nlls.append(model(input_ids=x, labels=x).loss.double() * seqlen)
    return math.exp(torch.stack(nlls).sum() / (nsamples * seqlen))


def hf_guide_ppl(model, ids, seqlen, stride):
    """The sliding-window loop of the Hugging Face perplexity guide."""
    n, nll_sum, n_tok, prev_end = ids.numel(), 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, n, stride):
            end = min(begin + seqlen, n)
            trg = end - prev_end
            x = ids[begin:end].unsqueeze(0)
            y = x.clone()
            y[:, :-trg] = -100
            valid = int((y[:, 1:] != -100).sum())
            nll_sum += float(model(input_ids=x, labels=y).loss) * valid
            n_tok += valid
            prev_end = end
            if end == n:
                break
    return math.exp(nll_sum / n_tok)


# ---------------------------------------------------------------------------------------------------- perplexity


def test_perplexity_matches_hand_computation(llama, ids):
    got = perplexity(llama, ids, seqlen=16)
    assert got == pytest.approx(hand_ppl(llama, ids, 16), rel=1e-5)
    # a random 64-token model is close to chance
    assert 20 < got < 200


def test_non_overlapping_windows_are_counted_and_the_tail_dropped(llama, ids):
    calls = []
    handle = llama.register_forward_hook(lambda m, a, kw, out: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        one = perplexity(llama, ids, seqlen=16)
        assert calls == [(1, 16)] * (100 // 16)
        calls.clear()
        batched = perplexity(llama, ids, seqlen=16, batch_size=4)
        assert calls == [(4, 16), (2, 16)]
    finally:
        handle.remove()
    assert batched == pytest.approx(one, rel=1e-5)
    assert perplexity(llama, ids[:96], seqlen=16) == pytest.approx(one, rel=1e-6)  # the 4-token tail is not scored


def test_default_seqlen_is_max_positions_capped_by_data(llama, ids):
    assert perplexity(llama, ids) == pytest.approx(hand_ppl(llama, ids, 32), rel=1e-5)
    assert perplexity(llama, ids[:20]) == pytest.approx(hand_ppl(llama, ids[:20], 20), rel=1e-5)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_stride_matches_the_hf_sliding_window_loop(llama, ids, stride):
    got = perplexity(llama, ids, seqlen=16, stride=stride, batch_size=3)
    assert got == pytest.approx(hf_guide_ppl(llama, ids, 16, stride), rel=1e-5)


def test_bos_token_is_fed_before_every_window_and_all_tokens_scored(llama, ids):
    """bos_token_id: every window is [BOS] + window and every window token is scored (Gemma's protocol)."""
    bos = 5
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(100 // 16):
            x = torch.cat([torch.tensor([bos]), ids[i * 16:(i + 1) * 16]])[None]
            logp = torch.log_softmax(llama(input_ids=x).logits[0, :-1].double(), -1)
            nll -= float(logp.gather(1, x[0, 1:, None]).sum())
            count += 16
    want = math.exp(nll / count)
    assert perplexity(llama, ids, seqlen=16, bos_token_id=bos) == pytest.approx(want, rel=1e-5)
    assert perplexity(llama, ids, seqlen=16, batch_size=4, bos_token_id=bos) == pytest.approx(want, rel=1e-5)
    assert perplexity(llama, ids, seqlen=16, bos_token_id=bos) != pytest.approx(perplexity(llama, ids, seqlen=16))
    # sliding windows with BOS score each token once: stride == seqlen is the non-overlapping protocol
    assert perplexity(llama, ids[:96], seqlen=16, stride=16, bos_token_id=bos) == pytest.approx(want, rel=1e-5)
    with pytest.raises(InvalidArgumentError, match="BOS"):
        perplexity(llama, ids, seqlen=32, bos_token_id=bos)  # 32 + BOS > max_position_embeddings
    with pytest.raises(InvalidArgumentError, match="out of range"):
        perplexity(llama, ids, seqlen=16, bos_token_id=64)
    with pytest.raises(InvalidArgumentError, match="bos_token_id"):
        perplexity(llama, ids, seqlen=16, bos_token_id=-1)


def test_draw_windows_with_bos_keeps_the_starts():
    from secateurs.llm.calibration import draw_windows

    stream = torch.arange(1000)
    plain = draw_windows(stream, 4, 8, seed=0)
    with_bos = draw_windows(stream, 4, 8, seed=0, bos_token_id=7777)
    assert with_bos.shape == plain.shape
    assert (with_bos[:, 0] == 7777).all()
    assert torch.equal(with_bos[:, 1:], plain[:, :-1])


def test_mode_is_restored_and_weights_untouched(ids):
    model = tiny_llama()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    perplexity(model, ids, seqlen=16)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_perplexity_errors(llama, ids):
    with pytest.raises(InvalidArgumentError, match="only 10 tokens"):
        perplexity(llama, ids[:10], seqlen=16)
    with pytest.raises(InvalidArgumentError, match="max_position_embeddings"):
        perplexity(llama, ids, seqlen=64)
    with pytest.raises(InvalidArgumentError, match="stride"):
        perplexity(llama, ids, seqlen=16, stride=17)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        perplexity(llama, torch.tensor([1, 2, 64, 3]), seqlen=4)
    with pytest.raises(InvalidArgumentError, match="tokenizer"):
        perplexity(llama, "To be, or not to be")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    with pytest.raises(InvalidArgumentError, match="language-model head"):
        perplexity(bert, ids, seqlen=16)


def test_texts_files_and_lists_give_the_same_ids(minilm, tmp_path):
    _, tok = minilm
    text = "To be, or not to be: that is the question.\n\nWhether 'tis nobler in the mind to suffer."
    ids = load_token_ids(text, tok)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert torch.equal(ids, torch.tensor(tok(text)["input_ids"]))
    path = tmp_path / "hamlet.txt"
    path.write_text(text, encoding="utf-8")
    assert torch.equal(load_token_ids(path, tok), ids)
    assert torch.equal(load_token_ids(str(path), tok), ids)
    assert torch.equal(load_token_ids(text.split("\n\n"), tok), ids)
    assert torch.equal(load_token_ids(ids.unsqueeze(0)), ids)
    model = tiny_llama(vocab=tok.vocab_size, max_pos=64)
    assert perplexity(model, path, tokenizer=tok) == pytest.approx(perplexity(model, ids), rel=1e-6)


def test_token_id_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="integer"):
        load_token_ids(torch.rand(5))
    with pytest.raises(InvalidArgumentError, match="1-D"):
        load_token_ids(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        load_token_ids(torch.tensor([1, -1]))
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_token_ids(tmp_path / "nope.txt", tokenizer=object())
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_token_ids(str(tmp_path / "nope.txt"), tokenizer=object())
    with pytest.raises(InvalidArgumentError, match="tokenizer"):
        load_token_ids(["a text"])
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        load_token_ids(3.5)


def test_vocab_mismatch_raises(minilm, llama):
    _, tok = minilm  # 30522 tokens; the tiny model has 64 rows
    with pytest.raises(InvalidArgumentError, match="30522 tokens"):
        check_vocab(llama, tok)
    with pytest.raises(InvalidArgumentError, match="30522 tokens"):
        perplexity(llama, "some text " * 10, tokenizer=tok, seqlen=8)
    check_vocab(tiny_llama(vocab=30528), tok)  # a padded embedding is fine


# ---------------------------------------------------------------------------------------------------- loading


def test_load_local_model_round_trip(tmp_path, llama):
    llama.save_pretrained(tmp_path / "m")
    model = load_local_model(tmp_path / "m")
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, llama.model.layers[0].mlp.up_proj.weight)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "b")
    assert type(load_local_model(tmp_path / "b")).__name__ == "BertModel"
    with pytest.raises(InvalidArgumentError, match="kind"):
        load_local_model(tmp_path / "m", kind="seq2seq")


def test_missing_and_corrupt_weights_raise_checkpoint_error(tmp_path, llama):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_local_model(tmp_path / "absent")
    llama.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()

    weights.unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_local_model(tmp_path / "m")

    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="cannot load"):
        load_local_model(tmp_path / "m")

    weights.write_bytes(b"\x00" * 64)  # garbage header
    with pytest.raises(CheckpointError, match="cannot load"):
        load_local_model(tmp_path / "m")

    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in llama.state_dict().items() if "up_proj" not in k}
    save_file(state, str(weights), metadata={"format": "pt"})  # a tensor is missing
    with pytest.raises(CheckpointError, match="up_proj"):
        load_local_model(tmp_path / "m")

    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_local_model(tmp_path / "m")
    with pytest.raises(CheckpointError):
        load_local_tokenizer(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------------- embeddings


def test_heldout_sentences_are_fixed_and_distinct():
    a, b = heldout_sentences(n=200, seed=0), heldout_sentences(n=200, seed=0)
    assert a == b and len(set(a)) == 200
    assert heldout_sentences(n=200, seed=1) != a
    assert all(6 <= len(s.split()) <= 40 and not s.startswith("[") for s in a)
    with pytest.raises(InvalidArgumentError, match="qualify"):
        heldout_sentences(n=10**6)


def test_minilm_embeddings_are_mean_pooled_and_padding_invariant(minilm):
    model, tok = minilm
    sentences = ["Is this a dagger which I see before me?", "Out, out, brief candle! Life's but a walking shadow."]
    alone = sentence_embeddings(model, sentences[:1], tok)
    batched = sentence_embeddings(model, sentences, tok)  # the first sentence is padded here
    assert alone.shape == (1, 384)
    assert torch.allclose(batched[:1], alone, atol=1e-5)
    assert torch.allclose(batched.norm(dim=1), torch.ones(2), atol=1e-5)
    enc = tok(sentences[:1], return_tensors="pt")
    with torch.no_grad():
        manual = model(**enc).last_hidden_state.mean(1)
    assert torch.allclose(alone, torch.nn.functional.normalize(manual, dim=1), atol=1e-5)


def test_embedding_fidelity_is_one_against_itself_and_drops_when_perturbed(minilm):
    model, tok = minilm
    sentences = heldout_sentences(n=64, seed=0)
    same = embedding_fidelity(model, model, sentences, tok, k=10)
    assert same["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert same["topk_overlap"] == 1.0

    noisy = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in noisy.modules():
            if isinstance(module, torch.nn.Linear):  # zero half of every weight matrix, at random
                module.weight.mul_((torch.rand(module.weight.shape, generator=g) > 0.5).float())
    worse = embedding_fidelity(noisy, model, sentences, tok, k=10)
    assert worse["mean_cosine"] < 0.95
    assert worse["topk_overlap"] < 0.9
    assert json.dumps(worse)  # plain floats
    with pytest.raises(InvalidArgumentError, match="more than 10"):
        embedding_fidelity(model, model, sentences[:10], tok, k=10)
