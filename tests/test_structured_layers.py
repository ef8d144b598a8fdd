"""Layer pruning: whole residual blocks / transformer layers removed (ShortGPT's Block Influence, Gromov et al.'s
angular distance, random), with Hugging Face bookkeeping."""
import pytest
import torch

import secateurs.structured as st
from secateurs.errors import InvalidArgumentError
from secateurs.zoo import build_model
from structured_helpers import outputs

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_vit_block_influence_removes_the_least_changing_block():
    torch.manual_seed(0)
    model = build_model("vit").eval()
    blocks = list(model.blocks)
    # make block 2 an exact identity: its residual branches output zero, so BI = 0 and it must go first
    with torch.no_grad():
        blocks[2].attn.proj.weight.zero_(); blocks[2].attn.proj.bias.zero_()  # noqa: E702
        blocks[2].mlp.fc2.weight.zero_(); blocks[2].mlp.fc2.bias.zero_()  # noqa: E702
    before = outputs(model, X)
    rep = st.prune_layers(model, X, n=1, method="bi")
    assert rep.removed == [2] and rep.scores[2] == pytest.approx(0.0, abs=1e-6)
    assert len(model.blocks) == 3 and model.blocks[2] is blocks[3]
    torch.testing.assert_close(outputs(model, X), before)  # removing an identity block changes nothing
    assert rep.params_after < rep.params_before and rep.macs_after < rep.macs_before


def test_angular_removes_consecutive_blocks_and_random_is_seeded():
    torch.manual_seed(0)
    model = build_model("vit").eval()
    rep = st.prune_layers(model, X, n=2, method="angular")
    assert rep.removed[1] == rep.removed[0] + 1 and len(model.blocks) == 2
    def removed(seed, global_seed):
        net = build_model("vit")
        torch.manual_seed(global_seed)  # only `seed` may matter, and the global RNG is left where it was
        state = torch.get_rng_state()
        out = st.prune_layers(net, X, n=2, method="random", seed=seed).removed
        assert torch.equal(torch.get_rng_state(), state)
        return out

    assert removed(3, 10) == removed(3, 11)
    assert len({tuple(removed(s, 10)) for s in range(4)}) > 1  # the seed does choose


def test_resnet_stage_keeps_the_downsampling_block():
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    rep = st.prune_layers(model, X, n=2, blocks="layer2")
    assert rep.removable == [1, 2] and rep.removed == [1, 2]
    assert len(model.layer2) == 1 and outputs(model, X).shape == (4, 10)
    with pytest.raises(InvalidArgumentError, match="n must be"):
        st.prune_layers(model, X, n=1, blocks="layer2")  # one block left: it cannot go


def test_llama_layers_and_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                   num_key_value_heads=2, num_hidden_layers=4, max_position_embeddings=32)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    rep = st.prune_layers(model, {"input_ids": ids}, n=2)
    assert model.config.num_hidden_layers == 2 == len(model.model.layers)
    assert [l.self_attn.layer_idx for l in model.model.layers] == [0, 1]
    model.save_pretrained(tmp_path / "m")
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(outputs(plain, {"input_ids": ids}), outputs(model, {"input_ids": ids}))
    assert rep.layers_before == 4 and rep.layers_after == 2


def test_bad_layer_arguments():
    model = build_model("vit")
    with pytest.raises(InvalidArgumentError, match="n must be"):
        st.prune_layers(model, X, n=4)
    with pytest.raises(InvalidArgumentError, match="layer importance"):
        st.prune_layers(model, X, n=1, method="bogus")
    assert len(model.blocks) == 4


def test_cka_removes_the_block_whose_absence_changes_the_output_least():
    """Pons, Yamamoto, Costa & Jordao 2024: an identity block leaves the output unchanged (CKA 1, score 0) and goes
    first; linear CKA itself is invariant to isotropic scaling and orthogonal maps and 1 for identical inputs."""
    from secateurs.structured.layers import linear_cka

    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(a, a) == pytest.approx(1.0) and linear_cka(a, 3 * a @ q) == pytest.approx(1.0)
    assert linear_cka(a, torch.randn(50, 8, generator=g)) < 0.5
    torch.manual_seed(0)
    model = build_model("vit").eval()
    blocks = list(model.blocks)
    with torch.no_grad():
        blocks[1].attn.proj.weight.zero_(); blocks[1].attn.proj.bias.zero_()  # noqa: E702
        blocks[1].mlp.fc2.weight.zero_(); blocks[1].mlp.fc2.bias.zero_()  # noqa: E702
    before = outputs(model, X)
    rep = st.prune_layers(model, X, n=1, method="cka")
    assert rep.removed == [1] and rep.scores[1] == pytest.approx(0.0, abs=1e-6)
    assert all(s > 1e-4 for i, s in enumerate(rep.scores) if i != 1 and s is not None)
    torch.testing.assert_close(outputs(model, X), before)


def test_cka_on_resnet_stage_and_llama_layers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    rep = st.prune_layers(model, X, n=1, method="cka", blocks="layer3")
    assert rep.scores[0] is None and rep.removed[0] in (1, 2) and len(model.layer3) == 2
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                   num_key_value_heads=2, num_hidden_layers=4, max_position_embeddings=32)
    llama = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    rep = st.prune_layers(llama, {"input_ids": ids}, n=1, method="cka")
    assert all(s is not None and 0 <= s <= 1 for s in rep.scores)
    assert rep.removed == [min(range(4), key=lambda i: rep.scores[i])] and llama.config.num_hidden_layers == 3
