"""``secateurs.llm.prune_structured`` on tiny Llama (and Qwen2) models built from a config: exact widths and
parameter counts, FLAP against a from-scratch reading of its reference rule, the compensation bias, GQA groups
kept whole, layer removal by Block Influence / angular distance, saving (plain from_pretrained for uniform widths,
load_pruned for per-layer ones, identical logits), the CLI, and bad input refused before anything is touched."""
from __future__ import annotations

import json
import random

import pytest
import torch
import transformers as T
from test_llm_blocks import VOCAB, rows
from test_llm_output import make_tokenizer
from typer.testing import CliRunner

from secateurs.errors import InvalidArgumentError, PruningError
from secateurs.llm import load_pruned, prune_structured, save_pruned
from secateurs.llm.structured import WidthError

L, D, INTER, HEADS, KV = 4, 64, 128, 4, 2  # head_dim 16, two query heads per key/value head


def llama(heads: int = HEADS, kv: int = KV, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = T.LlamaConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=INTER, num_hidden_layers=L,
                        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=128, **kw)
    return T.AutoModelForCausalLM.from_config(cfg).eval()


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def logits(model, x):
    with torch.no_grad():
        return model(input_ids=x).logits


CALIB = rows(16, 32, seed=1)
TEST = rows(4, 32, seed=7)


def test_width_uniform_exact_widths_params_and_config():
    model = llama()
    before = sum(p.numel() for p in model.parameters())
    rep = model.report = prune_structured(model, CALIB, "width", 0.3)
    # one of the two KV groups goes (round(0.3*2)); the MLP gives the rest of 30% of a layer, rounded to 8
    layer = sum(p.numel() for p in llama().model.layers[0].parameters())
    group, neuron = 2 * 16 * D + 16 * D + 16 * D + D * 2 * 16, 3 * D
    kept = INTER - (0.3 * layer - group) / neuron
    n = int(round(kept / 8)) * 8
    assert [(w["heads"], w["kv_heads"], w["intermediate"]) for w in rep.widths] == [(2, 1, n)] * L
    assert rep.params_before == before and rep.params_after == before - L * (group + (INTER - n) * neuron)
    assert rep.params_after == sum(p.numel() for p in model.parameters())
    assert rep.sparsity == pytest.approx(0.3, abs=0.02) and rep.stock_config
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == (2, 1, 16, n)
    assert torch.isfinite(logits(model, TEST)).all()
    json.dumps(rep.to_dict())


def test_gqa_groups_stay_whole():
    dense = llama()
    model = llama()
    prune_structured(model, CALIB, "width", None, heads=2, intermediate=INTER)
    for a, b in zip(dense.model.layers, model.model.layers):
        k_old, k_new = a.self_attn.k_proj.weight.view(KV, 16, D), b.self_attn.k_proj.weight.view(1, 16, D)
        g = [i for i in range(KV) if torch.equal(k_old[i], k_new[0])]
        assert len(g) == 1
        g = g[0]
        q_old = a.self_attn.q_proj.weight.view(KV, 2 * 16, D)  # query heads 2g, 2g+1 share kv head g
        assert torch.equal(b.self_attn.q_proj.weight, q_old[g])
        assert torch.equal(b.self_attn.v_proj.weight, a.self_attn.v_proj.weight.view(KV, 16, D)[g])
        assert torch.equal(b.self_attn.o_proj.weight, a.self_attn.o_proj.weight[:, g * 32:(g + 1) * 32])


def _flap_reference(model, calib, sparsity):
    """FLAP's AL-AM rule written from the paper / reference (multi-head attention): WIFV on o_proj/down_proj inputs
    of the dense model, attention squared, per-layer standardisation, heads as the mean of their channels, global
    threshold on the cumulative parameter weight (head 4·hd·d, channel 3·d)."""
    xs = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: xs.setdefault(n, []).append(a[0].reshape(-1, a[0].shape[-1])))
             for n, m in model.named_modules() if n.endswith(("o_proj", "down_proj"))]
    with torch.no_grad():
        for r in calib:
            model(input_ids=r[None])
    for h in hooks:
        h.remove()
    std = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    att, mlp, means = [], [], []
    for i, lay in enumerate(model.model.layers):
        xo, xd = torch.cat(xs[f"model.layers.{i}.self_attn.o_proj"]), torch.cat(xs[f"model.layers.{i}.mlp.down_proj"])
        wo, wd = lay.self_attn.o_proj.weight, lay.mlp.down_proj.weight
        a = (xo.var(0, unbiased=False) * wo.pow(2).sum(0)) ** 2
        m = xd.var(0, unbiased=False) * wd.pow(2).sum(0)
        att.append(std(a).reshape(HEADS, -1).mean(1))
        mlp.append(std(m))
        means.append((xo.mean(0), xd.mean(0)))
    flat = torch.cat([torch.cat(att), torch.cat(mlp)])
    w = torch.cat([torch.full((L * HEADS,), 4 * 16 * D, dtype=torch.float64),
                   torch.full((L * INTER,), 3 * D, dtype=torch.float64)])
    order = torch.sort(flat, descending=True, stable=True).indices
    blocks = sum(p.numel() for p in model.model.layers.parameters())
    thr = flat[order[torch.argmin((torch.cumsum(w[order], 0) - (w.sum() - sparsity * blocks)).abs())]]
    return [(a > thr).nonzero().squeeze(1) for a in att], [(m > thr).nonzero().squeeze(1) for m in mlp], means


def test_flap_matches_the_reference_rule_and_compensates():
    dense = llama(kv=HEADS)
    model = llama(kv=HEADS)
    heads, neurons, means = _flap_reference(dense, CALIB, 0.3)
    rep = prune_structured(model, CALIB, "flap", 0.3, fluctuation="exact")
    assert [w["kv_heads"] for w in rep.widths] == [len(h) for h in heads]
    assert [w["intermediate"] for w in rep.widths] == [len(n) for n in neurons]
    assert rep.sparsity == pytest.approx(0.3, abs=0.01)
    for a, b, h, n, (mo, md) in zip(dense.model.layers, model.model.layers, heads, neurons, means):
        assert torch.equal(b.mlp.down_proj.weight, a.mlp.down_proj.weight[:, n])
        cols = torch.cat([torch.arange(16 * g, 16 * g + 16) for g in h]) if len(h) else torch.empty(0, dtype=torch.long)
        assert torch.equal(b.self_attn.o_proj.weight, a.self_attn.o_proj.weight[:, cols])
        drop = torch.ones(INTER, dtype=torch.bool)
        drop[n] = False
        assert torch.allclose(b.mlp.down_proj.bias, a.mlp.down_proj.weight[:, drop] @ md[drop], atol=1e-5)
    assert not rep.stock_config  # per-layer widths


def _bias_gpt(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """FLAP's BiasGPT.add_batch (lib/layerwrapper.py, WIFV branch) written out for one row per call, its in-place
    aliasing included (old_baseline_inp is the same tensor as baseline_inp)."""
    base, fluc, n = torch.zeros(rows[0].shape[-1]), None, 0
    for x in rows:
        inp = x.t()  # (dim, tokens)
        old = base
        base *= n / (n + 1)
        base += torch.mean(inp, dim=1) / (n + 1)
        if n == 0:
            fluc = 0
        else:
            fluc *= (n - 1) / n
            fluc += torch.sum((inp - base.unsqueeze(1)) * (inp - old.unsqueeze(1)), dim=1) / (n + 1)
        n += 1
    return base, fluc


def test_flap_fluctuation_is_the_references_streamed_estimate_whatever_the_batching():
    from secateurs.core.stats import FlapFluctuation

    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(12, 5, generator=g) * torch.arange(1, 6) + 3 for _ in range(7)]
    mean, fluc = _bias_gpt([r.clone() for r in rows])
    for batch in (1, 3, 7):
        st = FlapFluctuation(5, torch.device("cpu"))
        for i in range(0, len(rows), batch):
            chunk = torch.stack(rows[i:i + batch])
            st.add(chunk, chunk.shape[0])
        assert torch.allclose(st.mean, mean, atol=1e-5) and torch.allclose(st.value, fluc, rtol=1e-5)
    # not the pooled variance: the first row is left out and deviations are from the running mean
    pooled = torch.cat(rows).var(0, unbiased=False)
    assert not torch.allclose(fluc / fluc.sum(), pooled / pooled.sum(), rtol=1e-3)


def test_flap_default_fluctuation_is_the_references_and_exact_is_an_option():
    a, b = llama(kv=HEADS), llama(kv=HEADS)
    ra = prune_structured(a, CALIB, "flap", 0.3)
    rb = prune_structured(b, CALIB, "flap", 0.3, fluctuation="exact")
    assert ra.options["fluctuation"] == "reference" and rb.options["fluctuation"] == "exact"
    assert ra.sparsity == pytest.approx(0.3, abs=0.02) and rb.sparsity == pytest.approx(0.3, abs=0.02)


def test_flap_compensation_brings_the_output_closer_to_dense():
    # on the calibration tokens the bias is the mean of what the removed units contributed: the least-squares
    # constant for them (a random-init model's activations have near-zero means, so on other random tokens the
    # gain is within noise)
    ref = logits(llama(), CALIB)
    errs = {}
    for bias in (True, False):
        model = llama()
        prune_structured(model, CALIB, "flap", 0.4, bias=bias)
        errs[bias] = float((logits(model, CALIB) - ref).pow(2).mean())
    assert errs[True] < 0.85 * errs[False]


@pytest.mark.parametrize("kw", [{"dense_inputs": False}, {"structure": "UL-UM"}, {"metric": "WIFN"},
                                {"structure": "AL-MM", "remove_heads": 2}])
def test_flap_variants_run_and_are_deterministic(kw):
    a, b = llama(), llama()
    ra, rb = prune_structured(a, CALIB, "flap", 0.3, **kw), prune_structured(b, CALIB, "flap", 0.3, **kw)
    assert ra.widths == rb.widths and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                                              b.state_dict().values()))
    assert ra.params_after < ra.params_before and torch.isfinite(logits(a, TEST)).all()


@pytest.mark.parametrize("importance", ["wanda", "l2", "taylor", "flap", "magnitude"])
def test_width_importances(importance):
    model = llama()
    rep = prune_structured(model, CALIB, "width", 0.3, importance=importance)
    assert {(w["kv_heads"], w["intermediate"]) for w in rep.widths} == {(1, 104)}
    assert torch.isfinite(logits(model, TEST)).all()


def test_uniform_widths_with_biases_reload_with_plain_from_pretrained(tmp_path):
    model = llama()
    rep = prune_structured(model, CALIB, "width", 0.3, bias=True)
    assert rep.stock_config and model.config.attention_bias and model.config.mlp_bias
    assert float(model.model.layers[0].self_attn.q_proj.bias.detach().abs().sum()) == 0.0  # q/k/v biases are zeros
    assert float(model.model.layers[0].self_attn.o_proj.bias.detach().abs().sum()) > 0.0
    save_pruned(model, None, tmp_path / "out", rep)
    again = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(logits(again, TEST), logits(model, TEST))


def test_per_layer_widths_reload_with_load_pruned(tmp_path):
    model = llama()
    rep = prune_structured(model, CALIB, "width", None, heads=[4, 2, 2, 4], intermediate=[128, 64, 96, 32],
                           bias=True)
    assert [(w["heads"], w["intermediate"]) for w in rep.widths] == [(4, 128), (2, 64), (2, 96), (4, 32)]
    assert not rep.stock_config
    save_pruned(model, None, tmp_path / "out", rep)
    info = json.loads((tmp_path / "out" / "secateurs.json").read_text())
    assert info["structure"]["mlp"]["model.layers.1.mlp"] == 64
    again = load_pruned(tmp_path / "out")
    assert torch.equal(logits(again, TEST), logits(model, TEST))
    with pytest.raises(Exception):  # the stock config cannot describe it: plain loading refuses, never guesses
        T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")


def test_qwen2_cannot_hold_an_o_proj_bias_and_loads_with_load_pruned(tmp_path):
    torch.manual_seed(0)
    cfg = T.Qwen2Config(vocab_size=VOCAB, hidden_size=D, intermediate_size=INTER, num_hidden_layers=2,
                        num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=128)
    model = T.AutoModelForCausalLM.from_config(cfg).eval()
    rep = prune_structured(model, CALIB, "width", 0.3, bias=True)
    assert not rep.stock_config
    save_pruned(model, None, tmp_path / "out", rep)
    assert torch.equal(logits(load_pruned(tmp_path / "out"), TEST), logits(model, TEST))


def _block_influence(model, calib):
    bi = [0.0] * L
    ins = {}
    hs = []
    for i, b in enumerate(model.model.layers):
        hs.append(b.register_forward_pre_hook(lambda m, a, k, i=i: ins.__setitem__(i, k.get("hidden_states", a[0] if a else None)), with_kwargs=True))
        hs.append(b.register_forward_hook(lambda m, a, o, i=i: bi.__setitem__(i, bi[i] + float(
            1 - torch.nn.functional.cosine_similarity(ins[i].reshape(-1, D), (o[0] if isinstance(o, tuple) else o).reshape(-1, D), dim=-1).mean()))))
    with torch.no_grad():
        for r in calib:
            model(input_ids=r[None])
    for h in hs:
        h.remove()
    return bi


def test_shortgpt_removes_lowest_block_influence_and_reloads(tmp_path):
    dense = llama()
    bi = _block_influence(dense, CALIB)
    model = llama()
    rep = prune_structured(model, CALIB, "shortgpt", None, remove_layers=2)
    assert rep.removed_layers == sorted(sorted(range(L), key=lambda i: bi[i])[:2])
    assert rep.layers_after == 2 and model.config.num_hidden_layers == 2
    assert rep.details["scores"] == pytest.approx(bi, rel=1e-4)
    assert rep.sparsity == pytest.approx(0.5)
    save_pruned(model, None, tmp_path / "out", rep)
    again = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(logits(again, TEST), logits(model, TEST))
    rep = prune_structured(llama(), CALIB, "shortgpt", 0.25)  # sparsity: the nearest whole number of layers
    assert len(rep.removed_layers) == 1


def test_angular_removes_a_contiguous_run():
    model = llama()
    rep = prune_structured(model, CALIB, "angular", None, remove_layers=2)
    a, b = rep.removed_layers
    assert b == a + 1 and len(model.model.layers) == 2


@pytest.mark.parametrize("method,sparsity,kw,error", [
    ("width", None, {"heads": 3}, "multiple of the key/value group size 2"),
    ("width", 0.8, {}, "every attention head"),
    ("width", None, {"intermediate": [64, 64]}, "2 widths for a model of 4 layers"),
    ("flap", 0.3, {"structure": "AL-MM", "remove_heads": 8}, "every key/value group"),
    ("shortgpt", None, {"remove_layers": 4}, "every layer"),
    ("shortgpt", 0.99, {}, "every layer"),
    ("width", 1.0, {}, "sparsity must be"),
    ("flap", 0.3, {"structur": "AL-AM"}, "does not take"),
    ("nope", 0.3, {}, "llm_structured"),
])
def test_bad_input_raises_before_anything_is_touched(method, sparsity, kw, error):
    model = llama()
    before = state(model)
    with pytest.raises(PruningError, match=error):
        prune_structured(model, CALIB, method, sparsity, **kw)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_flap_every_head_of_a_layer_is_an_error_not_a_zero_width_layer():
    model = llama()
    before = state(model)
    with pytest.raises(WidthError, match="every attention head of layer"):
        prune_structured(model, CALIB, "flap", 0.9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_data_methods_need_calibration():
    with pytest.raises(InvalidArgumentError, match="calibration"):
        prune_structured(llama(), None, "flap", 0.3)
    rep = prune_structured(llama(), None, "width", 0.3, importance="l2")  # weights only: no data needed
    assert rep.params_after < rep.params_before


def test_cli_routes_structured_methods(tmp_path):
    from secateurs.cli.llm import app

    src = tmp_path / "llama"
    model = llama()
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(src)
    make_tokenizer().save_pretrained(src)
    rng = random.Random(0)
    text = tmp_path / "calib.txt"
    text.write_text(" ".join(f"w{rng.randrange(2, VOCAB)}" for _ in range(3000)))
    res = CliRunner().invoke(app, ["prune", "--model", str(src), "--method", "width", "--sparsity", "0.3",
                                   "--calibration", str(text), "--nsamples", "8", "--seqlen", "32",
                                   "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["stock_config"] and doc["params_after"] < doc["params_before"]
    assert T.AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.num_key_value_heads == 1
    res = CliRunner().invoke(app, ["prune", "--model", str(src), "--method", "shortgpt", "--option", "remove_layers=9",
                                   "--calibration", str(text), "--out", str(tmp_path / "bad"), "--json"])
    assert res.exit_code == 2 and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("method,kw", [("flap", {}), ("width", {"bias": True}), ("shortgpt", {})])
def test_bf16_model_stays_bf16_and_matches_the_fp32_widths(method, kw):
    """A bfloat16 model is pruned in bfloat16: every parameter (compensation biases included) keeps its dtype,
    the pruned model runs, and uniform widths are those of the float32 run."""
    ref = llama()
    rep32 = prune_structured(ref, CALIB, method, 0.3, **kw)
    model = llama().to(torch.bfloat16)
    rep = prune_structured(model, CALIB, method, 0.3, **kw)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.isfinite(logits(model, TEST).float()).all()
    if method != "flap":  # FLAP's adaptive search may split a near-tie differently in bf16
        assert rep.widths == rep32.widths
    assert rep.params_after == sum(p.numel() for p in model.parameters())
