"""Block discovery and the block-0 capture of the sequential pipeline, on tiny random models of four families.

Also home of :func:`make_model`, the tiny-model factory the other ``test_llm_*`` files import.
"""
from __future__ import annotations

import pytest
import torch
import transformers as T
from torch import nn

from secateurs.errors import ModelStructureError
from secateurs.core.blocks import find_blocks, find_linears, is_transposed, set_weight_2d, weight_2d
from secateurs.core.feed import Feed
from secateurs.core.sequential import capture_inputs, run_block

VOCAB = 96
FAMILIES = ["llama", "opt", "gpt2", "bert"]


def make_config(family: str, layers: int = 2, hidden: int = 32, inter: int = 64) -> T.PretrainedConfig:
    if family == "llama":
        return T.LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if family == "opt":
        return T.OPTConfig(vocab_size=VOCAB, hidden_size=hidden, ffn_dim=inter, num_hidden_layers=layers,
                           num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=hidden,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return T.GPT2Config(vocab_size=VOCAB, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128,
                            bos_token_id=1, eos_token_id=2)
    if family == "bert":
        return T.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=inter, max_position_embeddings=128)
    raise ValueError(family)


def make_model(family: str = "llama", seed: int = 0, **kw) -> nn.Module:
    """A tiny random-weight model in eval mode (BERT as an encoder, the others as causal LMs)."""
    torch.manual_seed(seed)
    cfg = make_config(family, **kw)
    model = T.AutoModel.from_config(cfg) if family == "bert" else T.AutoModelForCausalLM.from_config(cfg)
    return model.eval()


def rows(n: int = 8, seqlen: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n, seqlen), generator=g)


EXPECTED = {
    "llama": ("model.layers", 7),
    "opt": ("model.decoder.layers", 6),
    "gpt2": ("transformer.h", 4),
    "bert": ("encoder.layer", 6),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_finds_blocks_and_linears(family):
    model = make_model(family)
    path, blocks = find_blocks(model)
    assert (path, len(find_linears(blocks[0]))) == EXPECTED[family]
    assert len(blocks) == 2
    inside = {id(p) for p in blocks.parameters()}
    assert id(model.get_input_embeddings().weight) not in inside  # embeddings / head are never in the blocks


def test_conv1d_weight_is_viewed_as_out_by_in():
    model = make_model("gpt2")
    layer = find_linears(find_blocks(model)[1][0])["mlp.c_fc"]
    assert is_transposed(layer)
    assert tuple(layer.weight.shape) == (32, 128) and tuple(weight_2d(layer).shape) == (128, 32)
    new = torch.zeros(128, 32)
    new[5, 7] = 3.0
    set_weight_2d(layer, new)
    assert layer.weight[7, 5] == 3.0 and layer.weight.sum() == 3.0


def test_explicit_blocks_path_and_errors():
    model = make_model("llama")
    assert find_blocks(model, "model.layers")[0] == "model.layers"
    with pytest.raises(ModelStructureError, match="no submodule 'layerz'"):
        find_blocks(model, "model.layerz")
    with pytest.raises(ModelStructureError, match="not a non-empty nn.ModuleList"):
        find_blocks(model, "model.embed_tokens")

    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    with pytest.raises(ModelStructureError, match=r"blocks='model.layers'"):
        find_blocks(NoBlocks())


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_inputs_reproduce_the_model(family):
    """Block 0's recorded hidden states + kwargs, run through the blocks, give the model's own hidden states."""
    model = make_model(family)
    path, blocks = find_blocks(model)
    ids = rows(4, 12)
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states
        inputs = capture_inputs(model, path, blocks, Feed.token_rows(ids, 2), torch.device("cpu"), torch.float32)
        assert len(inputs.hidden) == 2
        torch.testing.assert_close(torch.cat(inputs.hidden), ref[0])
        for i, block in enumerate(blocks[:-1]):
            inputs.hidden = [run_block(block, inputs, j) for j in range(len(inputs.hidden))]
            torch.testing.assert_close(torch.cat(inputs.hidden), ref[i + 1])
