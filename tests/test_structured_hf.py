"""Structured pruning of Hugging Face models built from configs (no download): Llama (grouped-query heads, MLP
neurons) and BERT (heads, intermediate neurons); config bookkeeping; save and reload."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import secateurs.structured as st  # noqa: E402
from structured_helpers import check_half, check_ratio_zero, outputs  # noqa: E402

IDS = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))


def llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                   num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg).eval()


def bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                  num_hidden_layers=2, max_position_embeddings=64)
    return transformers.BertForSequenceClassification(cfg).eval()


def test_llama_kv_groups_and_mlp():
    model = llama()
    check_ratio_zero(model, {"input_ids": IDS}, ignore=["model.embed_tokens"])
    rep = check_half(model, {"input_ids": IDS}, ignore=["model.embed_tokens"], atol=1e-5)
    for layer in model.model.layers:
        a = layer.self_attn
        assert a.k_proj.out_features == a.v_proj.out_features == 16  # one kv head of 16 left
        assert a.q_proj.out_features == a.o_proj.in_features == 32  # its two query heads
        assert layer.mlp.gate_proj.out_features == layer.mlp.up_proj.out_features == layer.mlp.down_proj.in_features == 64
    assert [g["kind"] for g in rep.groups].count("heads") == 2
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == (2, 1, 16, 64)
    assert rep.config_expressible


def test_llama_save_reload_with_plain_transformers(tmp_path):
    model = llama()
    st.prune(model, {"input_ids": IDS}, sparsity=0.5, ignore=["model.embed_tokens"])
    st.save(model, tmp_path / "m")
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(outputs(plain, {"input_ids": IDS}), outputs(model, {"input_ids": IDS}))
    again = st.load_pretrained(tmp_path / "m")
    torch.testing.assert_close(outputs(again, {"input_ids": IDS}), outputs(model, {"input_ids": IDS}))


def test_llama_hidden_width_too():
    model = llama()
    check_half(model, {"input_ids": IDS}, equivalent=False)  # RMSNorm over fewer features
    assert model.model.embed_tokens.embedding_dim == model.lm_head.in_features == model.model.norm.weight.numel() == 32
    assert model.config.hidden_size == 32


def test_bert_heads_and_intermediate(tmp_path):
    model = bert()
    inputs = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}
    check_ratio_zero(model, inputs, ignore=["bert.embeddings.word_embeddings"])
    rep = check_half(model, inputs, ignore=["bert.embeddings.word_embeddings"], atol=1e-5)
    for layer in model.bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == 2 and layer.attention.self.all_head_size == 32
        assert layer.intermediate.dense.out_features == 64
    assert not rep.config_expressible  # BERT derives the head width from hidden / heads
    st.save(model, tmp_path / "b", report=rep)
    again = st.load_pretrained(tmp_path / "b")
    torch.testing.assert_close(outputs(again, inputs), outputs(model, inputs))


def test_gpt2_fused_attention_and_tied_embeddings(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    check_ratio_zero(model, {"input_ids": IDS}, ignore=["transformer.wte"])
    check_half(model, {"input_ids": IDS}, ignore=["transformer.wte"], atol=1e-5)
    for block in model.transformer.h:
        assert block.attn.num_heads == 2 and block.attn.c_attn.weight.shape == (64, 96)
        assert block.attn.c_proj.weight.shape == (32, 64) and block.mlp.c_fc.weight.shape == (64, 128)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    check_half(model, {"input_ids": IDS}, equivalent=False)  # the embedding width too: tied weights stay tied
    assert model.lm_head.weight is model.transformer.wte.weight and model.lm_head.weight.shape == (100, 32)
    st.save(model, tmp_path / "g")
    again = st.load_pretrained(tmp_path / "g")
    torch.testing.assert_close(outputs(again, {"input_ids": IDS}), outputs(model, {"input_ids": IDS}))


def test_llama_random_importance_never_touches_rotary_buffers():
    model = llama()
    rep = st.prune(model, {"input_ids": IDS}, sparsity=0.3, method="random", ignore=["model.embed_tokens"])
    assert all("rotary" not in m["param"] for g in rep.groups for m in g["members"])
    assert model.model.rotary_emb.inv_freq.numel() == 8 and outputs(model, {"input_ids": IDS}).shape[-1] == 100
