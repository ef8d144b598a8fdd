"""DSnoT (Zhang et al. 2024, training-free prune-and-grow): the input statistics it needs, one hand-checked row,
per-row sparsity kept exactly while the mask changes and the reconstruction error falls on a layer with
correlated inputs, N:M, the LLM front door on a tiny Llama with every base, and bad options."""
from __future__ import annotations

import pytest
import torch
from test_llm_blocks import make_model, rows
from torch import nn

import secateurs
from secateurs.core.blocks import find_blocks, find_linears, weight_2d
from secateurs.errors import InvalidArgumentError, PatternError, UnknownNameError
from secateurs.llm import prune as llm_prune
from secateurs.registry import get
from secateurs.solvers.dsnot import dsnot_mask, skipped

# ------------------------------------------------------------------------------------------------ statistics


def test_sum_row_and_var_row_follow_the_reference_definitions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + torch.tensor([0.0, 1.0, -2.0, 5.0])
    s, v = get("statistic", "sum_row")(4, torch.device("cpu")), get("statistic", "var_row")(4, torch.device("cpu"))
    for part in (x[:1], x[1:]):  # two calls of 1 and 2 sequences, as (tokens, columns) rows
        s.add(part.reshape(-1, 4), part.shape[0])
        v.add(part.reshape(-1, 4), part.shape[0])
    assert torch.allclose(s.value, x.sum(dim=1).mean(dim=0), atol=1e-5)  # per-sequence token sum, mean over seqs
    assert torch.allclose(v.value, x.var(dim=1, unbiased=False).mean(dim=0), atol=1e-5)  # within each sequence

    flat = x.reshape(15, 4)  # one-token samples (a flat model's rows): pooled over every row, any batching
    s, v = get("statistic", "sum_row")(4, torch.device("cpu")), get("statistic", "var_row")(4, torch.device("cpu"))
    for part in (flat[:4], flat[4:11], flat[11:]):
        s.add(part, part.shape[0])
        v.add(part, part.shape[0])
    assert torch.allclose(s.value, flat.mean(dim=0), atol=1e-5)
    assert torch.allclose(v.value, flat.var(dim=0, unbiased=False), atol=1e-5)


# -------------------------------------------------------------------------------------------- the algorithm


def test_one_row_by_hand():
    W = torch.tensor([[4.0, -3.0, 2.0, 1.5, 1.0, -0.5]])
    keep = torch.tensor([[True, True, True, False, False, False]])  # the 3 largest |W|
    ones = torch.ones(6)
    # M = W (sum_row = 1, var = 1); err = 1.5 + 1 - 0.5 = 2 > 0.
    # cycle 1: grow the largest pruned M (index 3, 1.5); prune from the start of the kept order — negatives of M
    #          by ascending score: index 1 (-3); err = 2 - 3 - 1.5 = -2.5.
    # cycle 2: err < 0: grow the most negative pruned M (index 5, -0.5); prune from the end — positives in
    #          descending score order, so the lowest-scoring positive last: index 2 (2); err = -2.5 + 2 + 0.5 = 0.
    # cycle 3: |err| <= 0.1: stop.
    new = dsnot_mask(W, keep, ones, ones, W.abs())
    assert new.tolist() == [[True, False, False, True, False, True]]
    # with the same-sign rule (the reference's N:M rule, --without_same_sign off) cycle 1 would flip the sign: no swap
    assert torch.equal(dsnot_mask(W, keep, ones, ones, W.abs(), without_same_sign=False), keep)
    assert torch.equal(dsnot_mask(W, keep, ones, ones, W.abs(), update_threshold=2.0), keep)  # |err| = 2 <= 2
    assert torch.equal(dsnot_mask(W, keep, ones, ones, W.abs(), max_cycle_time=0), keep)


def _correlated_layer(din: int = 128, dout: int = 32, n: int = 2048):
    """A linear layer fed correlated inputs with non-zero means (as LLM hidden states), plus its batches."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(din, din, generator=g) / din ** 0.5
    mu = torch.randn(din, generator=g)
    z = torch.randn(n, din, generator=g)
    x = 0.5 * z @ A + z[:, :1] + mu  # a shared factor correlates every input
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(din, dout, bias=False))
    batches = [(x[i:i + 256], torch.zeros(256, dtype=torch.long)) for i in range(0, n, 256)]
    return model, x, batches


def _prune_copy(model, batches, **kwargs):
    m = nn.Sequential(nn.Linear(model[0].in_features, model[0].out_features, bias=False))
    m[0].weight.data.copy_(model[0].weight.data)
    secateurs.prune(m, data=batches, bake=True, **kwargs)
    return m[0].weight.detach()


@pytest.mark.parametrize("base", ["wanda", "magnitude", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_same_per_row_sparsity_a_changed_mask_and_a_lower_reconstruction_error(base, pattern):
    model, x, batches = _correlated_layer()
    w0 = model[0].weight.detach()
    sparsity = 0.5 if pattern == "unstructured" else None
    scope = {"scope": "row"} if base != "wanda" else {}  # DSnoT's starting mask: the base score, per row
    start = _prune_copy(model, batches, sparsity=sparsity, pattern=pattern, method=base, solver=None, **scope) \
        if base != "sparsegpt" else None
    ours = _prune_copy(model, batches, sparsity=sparsity, pattern=pattern, method="dsnot", base=base)
    if start is None:  # SparseGPT's own method also updates weights: its starting mask is the per-row saliency
        start = _prune_copy(model, batches, sparsity=sparsity, pattern=pattern, method="dsnot", base=base,
                            max_cycle_time=0)
    assert torch.equal((ours != 0).sum(dim=1), (start != 0).sum(dim=1))  # every row keeps its count
    assert not torch.equal(ours != 0, start != 0)  # and the mask moved
    assert bool(((ours == 0) | (ours == w0)).all())  # kept weights are untouched
    if pattern == "2:4":
        assert bool(((ours != 0).reshape(32, -1, 4).sum(-1) == 2).all())

    def error(w):
        return float(((x @ w0.t() - x @ w.t()) ** 2).sum())

    assert error(ours) < 0.9 * error(start)  # measured: 0.61-0.77 unstructured, 0.81-0.87 2:4


def test_solver_composes_with_any_criterion_and_equals_the_method():
    model, _, batches = _correlated_layer()
    via_method = _prune_copy(model, batches, sparsity=0.6, method="dsnot")
    via_solver = _prune_copy(model, batches, sparsity=0.6, method="wanda", solver="dsnot")
    assert torch.equal(via_method, via_solver)
    layer_wise = _prune_copy(model, batches, sparsity=0.6, method="magnitude", solver="dsnot")  # layer scope
    start = _prune_copy(model, batches, sparsity=0.6, method="magnitude")
    assert torch.equal((layer_wise != 0).sum(dim=1), (start != 0).sum(dim=1))
    assert not torch.equal(layer_wise != 0, start != 0)


def test_feed_forward_layers_are_skipped_by_default_as_the_reference():
    assert skipped("model.layers.0.mlp.down_proj", "mlp", None)
    assert skipped("model.decoder.layers.3.fc1", "mlp", None)  # OPT
    assert not skipped("model.layers.0.self_attn.q_proj", "mlp", None)
    assert not skipped("transformer.h.0.attn.c_proj", "mlp", None)  # GPT-2's attention output
    assert skipped("model.layers.0.self_attn.q_proj", "self_attn", None)
    assert skipped("model.layers.0.self_attn.q_proj", None, "q_proj")
    assert not skipped("0", "mlp", None) and not skipped("model.layers.0.mlp.up_proj", None, None)


# --------------------------------------------------------------------------------------------- LLM front door


def _masks(model) -> dict[str, torch.Tensor]:
    return {f"{i}.{n}": weight_2d(l) != 0 for i, b in enumerate(find_blocks(model)[1])
            for n, l in find_linears(b).items()}


@pytest.mark.parametrize("base", ["wanda", "sparsegpt", "magnitude"])
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_dsnot_through_llm_prune_on_a_tiny_llama(base, pattern):
    sparsity = 0.5 if pattern == "unstructured" else None
    model = make_model("llama")
    report = llm_prune(model, rows(8, 16), method="dsnot", base=base, sparsity=sparsity, pattern=pattern,
                       progress=False)
    assert report.solver == "dsnot" and report.method_options["base"] == base
    assert report.solver_options["max_cycle_time"] == 50 and report.solver_options["update_threshold"] == 0.1
    masks = _masks(model)
    for name, keep in masks.items():
        assert bool((keep.sum(dim=1) == keep.shape[1] // 2).all()), name  # half of every row
        if pattern == "2:4":
            assert bool((keep.reshape(keep.shape[0], -1, 4).sum(-1) == 2).all()), name
    if base == "wanda":
        start = make_model("llama")
        llm_prune(start, rows(8, 16), method="wanda", sparsity=sparsity, pattern=pattern, progress=False)
        wanda = _masks(start)
        # block 0 (same dense inputs for both): feed-forward layers keep the initial mask, attention is refined
        ffn = [n for n in masks if n.startswith("0.mlp.")]
        attention = [n for n in masks if n.startswith("0.self_attn.")]
        assert len(ffn) == 3 and all(torch.equal(masks[n], wanda[n]) for n in ffn)
        assert any(not torch.equal(masks[n], wanda[n]) for n in attention)
    assert torch.isfinite(model(input_ids=rows(1, 8)).logits).all()


@pytest.mark.parametrize("options,error,match", [
    (dict(max_cycle_time=-1), InvalidArgumentError, "max_cycle_time"),
    (dict(update_threshold=-0.1), InvalidArgumentError, "update_threshold"),
    (dict(pow_of_var_regrowing="one"), InvalidArgumentError, "pow_of_var_regrowing"),
    (dict(skip_layer="ffn"), InvalidArgumentError, "skip_layer"),
    (dict(without_same_sign="yes"), InvalidArgumentError, "without_same_sign"),
    (dict(base="wandaa"), UnknownNameError, "Did you mean 'wanda'"),
    (dict(base="dsnot"), InvalidArgumentError, "itself"),
    (dict(base="wanda", base_options={"percdamp": 0.1}), InvalidArgumentError, "does not take option"),
    (dict(base_options=[1]), InvalidArgumentError, "base_options"),
    (dict(pattern="4x4"), PatternError, "unstructured and N:M"),
    (dict(method="sparsegpt", solver="dsnot"), InvalidArgumentError, "pass a scope"),
    (dict(pow_of_var_pruning=1), InvalidArgumentError, "does not take option"),
])
def test_bad_options_raise_before_any_weight_changes(options, error, match):
    model = make_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {"method": "dsnot", "sparsity": 0.5, **options}
    with pytest.raises(error, match=match):
        llm_prune(model, rows(4, 16), progress=False, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
