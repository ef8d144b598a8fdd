"""RIA (Zhang et al. 2024, relative importance × activations): the score on a hand-checked layer, exact sparsity
and N:M on a small MLP with calibration batches, the block-by-block LLM front door, and bad options."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import mlp
from test_llm_blocks import make_model, rows
from torch import nn

import secateurs
from secateurs.core.blocks import find_blocks, find_linears, weight_2d
from secateurs.criteria.ria import RIA, ria_scores
from secateurs.errors import InvalidArgumentError
from secateurs.llm import prune as llm_prune


def test_scores_equal_the_formula_on_a_hand_checked_layer():
    W = torch.tensor([[1.0, -2.0, 3.0], [0.0, 4.0, -1.0]])
    scaler = torch.tensor([4.0, 1.0, 9.0])  # ||X_j||² → activation term (||X_j||₂)^0.5 = [√2, 1, √3]
    # |W|/column sums [1, 6, 4] + |W|/row sums [6, 5], by hand
    ri = torch.tensor([[1 / 1 + 1 / 6, 2 / 6 + 2 / 6, 3 / 4 + 3 / 6],
                       [0.0, 4 / 6 + 4 / 5, 1 / 4 + 1 / 5]])
    act = torch.tensor([math.sqrt(2), 1.0, math.sqrt(3)])
    expected = ri * act
    assert torch.allclose(ria_scores(W, scaler), expected, rtol=1e-6)
    assert torch.allclose(ria_scores(W, scaler, a=1.0), ri * act ** 2, rtol=1e-6)  # a = 1: times ||X_j||₂
    assert torch.allclose(ria_scores(W, scaler, a=0.0), ri, rtol=1e-6)  # a = 0: relative importance alone

    # through the engine: one calibration row x = [2, 1, 3] gives scaler_row = x² = [4, 1, 9]; the layer-wise
    # ranking (the reference's default) removes the 3 lowest: [1,0]=0, [0,1]=0.667, [1,2]=0.779
    layer = nn.Sequential(nn.Linear(3, 2, bias=False))
    layer[0].weight.data.copy_(W)
    data = [(torch.tensor([[2.0, 1.0, 3.0]]), torch.zeros(1, dtype=torch.long))]
    report = secateurs.prune(layer, 0.5, method="ria", data=data, bake=True)
    assert report.scope == "layer" and report.allocation == "uniform"
    assert torch.equal(layer[0].weight != 0, torch.tensor([[True, False, True], [False, True, False]]))


def test_all_zero_rows_and_columns_score_zero_not_nan():
    W = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    s = ria_scores(W, torch.ones(2))
    assert torch.isfinite(s).all() and s[0].eq(0).all() and s[1, 0] == 0 and s[1, 1] == pytest.approx(2.0)


def _inputs_of_linears(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """Every Linear's calibration inputs, concatenated (one row per sample)."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: seen.setdefault(n, []).append(a[0].detach()))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_ria_on_an_mlp_gives_exact_sparsity_and_the_expected_mask(pattern, batches):
    model = mlp()
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    xs = _inputs_of_linears(model, batches)  # one pass is exact: each layer sees dense inputs in one-pass mode
    sparsity = 0.5 if pattern == "unstructured" else None
    report = secateurs.prune(model, sparsity, method="ria", pattern=pattern, data=batches)
    assert report.overall_sparsity == pytest.approx(0.5, abs=0)
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        w = m.weight.detach()
        scores = ria_scores(dense[name], (xs[name] ** 2).mean(dim=0))  # scaler_row: mean over samples of x²
        tol = 1e-5 * float(scores.max())  # our own recomputation of the statistics: rounding only
        if pattern == "unstructured":
            assert int((w == 0).sum()) == w.numel() // 2  # exactly half of every layer, ranked layer-wide
            assert float(scores[w == 0].max()) <= float(scores[w != 0].min()) + tol
        else:
            kept = (w != 0).reshape(w.shape[0], -1, 4)
            assert bool((kept.sum(-1) == 2).all())  # exactly 2 of every 4 consecutive inputs
            g = scores.reshape(kept.shape)
            assert bool((g.masked_fill(kept, -math.inf).amax(-1) <= g.masked_fill(~kept, math.inf).amin(-1)
                         + tol).all())  # the pruned two of each group score below the kept two


def test_ria_through_llm_prune_on_a_tiny_llama():
    model = make_model("llama")
    report = llm_prune(model, rows(8, 16), method="ria", sparsity=0.5, progress=False)
    assert report.scope == "layer" and report.method_options == {"a": 0.5}
    assert report.overall_sparsity == pytest.approx(0.5, abs=1e-9)
    for layer in report.layers:
        assert layer.sparsity == pytest.approx(0.5, abs=1e-9)
    wanda = make_model("llama")
    llm_prune(wanda, rows(8, 16), method="wanda", sparsity=0.5, progress=False)
    a, b = find_linears(find_blocks(model)[1][0]), find_linears(find_blocks(wanda)[1][0])
    assert any(not torch.equal(weight_2d(a[n]) == 0, weight_2d(b[n]) == 0) for n in a)  # not Wanda's masks

    nm = make_model("llama")
    report = llm_prune(nm, rows(8, 16), method="ria", sparsity=None, pattern="2:4", progress=False)
    for blk in find_blocks(nm)[1]:
        for lin in find_linears(blk).values():
            w = weight_2d(lin)
            assert bool(((w != 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all())
    assert torch.isfinite(nm(input_ids=rows(1, 8)).logits).all()


@pytest.mark.parametrize("options,match", [
    (dict(a=-1.0), "exponent a"),
    (dict(a=float("nan")), "exponent a"),
    (dict(a="half"), "exponent a"),
    (dict(reallocation=True), "reallocation"),
    (dict(lsa=True), "does not take option"),
])
def test_bad_options_raise_before_any_weight_changes(options, match):
    model = make_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match=match):
        llm_prune(model, rows(4, 16), method="ria", sparsity=0.5, progress=False, **options)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_defaults_follow_the_reference():
    assert RIA.default_scope == "layer" and RIA.default_allocation == "uniform" and RIA().a == 0.5
