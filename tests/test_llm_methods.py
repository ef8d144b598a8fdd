"""Method correctness on hand-checkable cases: Wanda and GBLM masks against a direct computation of their scores,
SparseGPT against a direct unblocked OBS computation and against magnitude/Wanda reconstruction error, OWL's
layer ratios."""
from __future__ import annotations

import copy

import pytest
import torch
from test_llm_blocks import make_model, rows

from secateurs.allocations.owl import outlier_ratio, owl_nm, owl_sparsities
from secateurs.core.blocks import find_blocks, find_linears, weight_2d
from secateurs.core.feed import Feed
from secateurs.core.plan import LayerPlan
from secateurs.core.scope import row_scope
from secateurs.core.select import prune_lowest
from secateurs.core.stats import Hessian, ScalerRow, collect
from secateurs.core.targets import Target as Weight
from secateurs.criteria.gblm import gradient_norms
from secateurs.criteria.wanda import wanda_scores
from secateurs.llm import prune
from secateurs.solvers.sparsegpt import sparsegpt_prune as _sparsegpt


def Target(sparsity, n=None, m=None):  # noqa: N802  (a layer's plan, as the allocation makes it)
    return LayerPlan(0, sparsity, n, m)


def sparsegpt_prune(w, h, target, blocksize):
    return _sparsegpt(w, h, target, blocksize=blocksize)[0]


def prune_lowest_in_group(score, sparsity):
    return prune_lowest(score, int(score.numel() * sparsity))


def prune_lowest_per_row(score, sparsity):
    rows_, cols = score.shape
    return ~row_scope(lambda: score.reshape(-1), (rows_, cols), int(cols * sparsity) * rows_).reshape(rows_, cols)


def block_weights(model):
    """The block linears of an LLM as engine targets, and their (block, name) keys."""
    path, blocks = find_blocks(model)
    out = {}
    for i, blk in enumerate(blocks):
        for name, layer in find_linears(blk).items():
            out[(i, name)] = Weight(f"{path}.{i}.{name}", layer)
    return out


def _block_inputs(model, block_index: int, ids) -> dict[str, torch.Tensor]:
    """Every linear input of one block when the model runs on ``ids``, as (tokens, in) matrices."""
    block = find_blocks(model)[1][block_index]
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [layer.register_forward_pre_hook(lambda m, a, n=name: seen.setdefault(n, []).append(a[0].detach()))
             for name, layer in find_linears(block).items()]
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    return {n: torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]) for n, xs in seen.items()}


def _direct_row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = int(score.shape[1] * sparsity)
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, torch.argsort(score, dim=1, stable=True)[:, :k], True)
    return mask


def _expected_masks(dense, pruned, ids, extra=None, sparsity=0.5):
    """Masks of each block computed directly: block i's inputs come from blocks < i already pruned, block i dense."""
    expected = {}
    nblocks = len(find_blocks(dense)[1])
    for i in range(nblocks):
        probe = copy.deepcopy(dense)
        pblocks, qblocks = find_blocks(probe)[1], find_blocks(pruned)[1]
        for j in range(i):
            pblocks[j].load_state_dict(qblocks[j].state_dict())
        xs = _block_inputs(probe, i, ids)
        for name, layer in find_linears(find_blocks(dense)[1][i]).items():
            w = weight_2d(layer)
            score = w.abs() * xs[name].norm(dim=0).reshape(1, -1)  # Sun et al. 2023 eq. 1
            if extra is not None:
                score = score / (ids.shape[0] ** 0.5) + w.abs() * extra[i][name]
            expected[(i, name)] = _direct_row_mask(score, sparsity)
    return expected


def test_wanda_mask_on_a_single_layer_equals_direct_score():
    torch.manual_seed(0)
    w, x = torch.randn(24, 40), torch.randn(3, 50, 40) * torch.rand(40) * 4
    stats = ScalerRow(40, torch.device("cpu"))
    stats.add(x, nseq=3)
    pruned = prune_lowest_per_row(wanda_scores(w, stats.value), 0.6)
    expected = _direct_row_mask(w.abs() * x.reshape(-1, 40).norm(dim=0), 0.6)
    assert torch.equal(pruned, expected)
    assert pruned.sum(1).tolist() == [int(40 * 0.6)] * 24


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_wanda_masks_in_a_model_follow_the_sequential_order(family):
    dense = make_model(family)
    ids = rows(6, 16)
    pruned = copy.deepcopy(dense)
    prune(pruned, ids, method="wanda", sparsity=0.5, progress=False, batch_size=4)
    expected = _expected_masks(dense, pruned, ids)
    for (i, name), mask in expected.items():
        got = weight_2d(find_linears(find_blocks(pruned)[1][i])[name]) == 0
        assert torch.equal(got, mask), (i, name)


def test_gblm_masks_equal_direct_gradient_score():
    dense = make_model("llama")
    ids = rows(4, 16)
    grads = {}  # G = sqrt(sum_n (100 dL_n/dW)^2), by plain autograd, one row at a time
    for r in range(ids.shape[0]):
        model = copy.deepcopy(dense)
        loss = model(input_ids=ids[r:r + 1], labels=ids[r:r + 1]).loss
        loss.backward()
        for i, block in enumerate(find_blocks(model)[1]):
            for name, layer in find_linears(block).items():
                g = (100 * layer.weight.grad) ** 2
                grads.setdefault(i, {}).setdefault(name, torch.zeros_like(g))
                grads[i][name] += g
    grads = {i: {n: g.sqrt() for n, g in d.items()} for i, d in grads.items()}
    weights = block_weights(dense)
    ours = gradient_norms(dense, list(weights.values()), Feed.token_rows(ids))
    for i in grads:
        for n in grads[i]:
            torch.testing.assert_close(ours[weights[(i, n)].key], grads[i][n], rtol=1e-4, atol=1e-6)
    pruned = copy.deepcopy(dense)
    prune(pruned, ids, method="gblm", sparsity=0.5, progress=False)
    expected = _expected_masks(dense, pruned, ids, extra=grads)
    mismatch = sum(int((weight_2d(find_linears(find_blocks(pruned)[1][i])[n]) == 0).ne(m).sum())
                   for (i, n), m in expected.items())
    assert mismatch == 0


def test_magnitude_uses_one_threshold_per_layer():
    model = make_model("llama")
    dense = copy.deepcopy(model)
    prune(model, None, method="magnitude", sparsity=0.7, progress=False)
    for (i, name), layer in [((0, n), l) for n, l in find_linears(find_blocks(dense)[1][0]).items()]:
        w = weight_2d(layer)
        got = weight_2d(find_linears(find_blocks(model)[1][i])[name]) == 0
        assert abs(int(got.sum()) - w.numel() * 0.7) < 1  # rounded so that the model's total is exact
        assert torch.equal(got, prune_lowest(w.abs(), int(got.sum())))


# ----------------------------------------------------------------------------------------------- SparseGPT
def _damped(h: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    h = h.clone().double()
    return h + percdamp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)


def direct_obs(w: torch.Tensor, h: torch.Tensor, target: Target) -> torch.Tensor:
    """Unblocked OBS, column by column, with explicit inverses of the remaining sub-Hessian (no Cholesky)."""
    W, H = w.clone().double(), _damped(h)
    cols = W.shape[1]
    d = torch.stack([torch.linalg.inv(H[i:, i:])[0, 0] for i in range(cols)])  # [H_F^-1]_qq
    mask = torch.zeros_like(W, dtype=torch.bool)
    if not target.is_nm:  # one group: every weight of the (single) block, saliency w^2 / [H_F^-1]_qq
        score = (W ** 2 / d).flatten()
        mask.view(-1)[torch.argsort(score, stable=True)[: int(score.numel() * target.sparsity)]] = True
    for i in range(cols):
        if target.is_nm and i % target.m == 0:
            score = W[:, i:i + target.m] ** 2 / d[i:i + target.m]
            drop = torch.argsort(score, dim=1, stable=True)[:, : target.m - target.n]
            mask[:, i:i + target.m].scatter_(1, drop, True)
        hinv = torch.linalg.inv(H[i:, i:])
        q = torch.where(mask[:, i], torch.zeros_like(W[:, i]), W[:, i])
        W[:, i:] -= ((W[:, i] - q) / hinv[0, 0]).unsqueeze(1) * hinv[0].unsqueeze(0)
        W[:, i] = q
    return W.float()


def _layer_data(rows_=12, cols=32, tokens=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows_, cols, generator=g)
    mix = torch.randn(cols, cols, generator=g) / cols ** 0.5 + torch.eye(cols)  # correlated inputs
    x = torch.randn(tokens, cols, generator=g) @ mix * (1 + 4 * torch.rand(cols, generator=g))
    stats = Hessian(cols, torch.device("cpu"))
    stats.add(x.reshape(4, -1, cols), nseq=4)
    return w, x, stats.value


@pytest.mark.parametrize("target", [Target(0.5), Target(0.7), Target(0.5, 2, 4), Target(0.5, 4, 8)],
                         ids=["50%", "70%", "2:4", "4:8"])
def test_sparsegpt_matches_unblocked_obs(target):
    w, _, h = _layer_data()
    ours = sparsegpt_prune(w, h.clone(), target, blocksize=64)  # blocksize >= width: one block
    ref = direct_obs(w, h, target)
    assert torch.equal(ours == 0, ref == 0)
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-4)


def test_sparsegpt_lazy_blocks_equal_one_block_for_nm():
    w, _, h = _layer_data(cols=64)
    t = Target(0.5, 2, 4)  # N:M masks do not depend on the block size, so the lazy updates must agree
    torch.testing.assert_close(sparsegpt_prune(w, h.clone(), t, blocksize=16),
                               sparsegpt_prune(w, h.clone(), t, blocksize=128), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", [Target(0.5), Target(0.7), Target(0.5, 2, 4)], ids=["50%", "70%", "2:4"])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(target):
    w, x, h = _layer_data(rows_=32, cols=64, tokens=512)
    err = {}
    for name in ("sparsegpt", "magnitude", "wanda"):
        score = w.abs() if name == "magnitude" else w.abs() * x.norm(dim=0)
        if name == "sparsegpt":
            new = sparsegpt_prune(w, h.clone(), target, blocksize=128)
        elif target.is_nm:
            new = torch.where(~_nm_keep(score, target), torch.zeros_like(w), w)
        else:
            group = prune_lowest_in_group if name == "magnitude" else prune_lowest_per_row
            new = torch.where(group(score, target.sparsity), torch.zeros_like(w), w)
        assert abs(float((new == 0).float().mean()) - target.sparsity) < 1 / 64
        err[name] = float(torch.linalg.norm(x @ w.t() - x @ new.t()))
    assert err["sparsegpt"] <= err["magnitude"] and err["sparsegpt"] <= err["wanda"], err


def _nm_keep(score, target):
    from secateurs.patterns import nm_keep_mask

    return nm_keep_mask(score, target.n, target.m)


def test_sparsegpt_dead_inputs_are_zeroed():
    w, _, h = _layer_data()
    h[:, 3] = 0
    h[3, :] = 0
    out = sparsegpt_prune(w, h, Target(0.25), blocksize=128)
    assert (out[:, 3] == 0).all()


# ----------------------------------------------------------------------------------------------------- OWL
def test_owl_ratios_average_to_target_and_span_two_lambda():
    ratios = [1.0, 3.0, 2.5, 7.0, 4.0, 0.5]
    s, lam = 0.7, 0.08
    sp = owl_sparsities(ratios, s, lam)
    assert sum(sp) / len(sp) == pytest.approx(s)
    assert max(sp) - min(sp) == pytest.approx(2 * lam)
    assert all(s - 2 * lam <= v <= s + 2 * lam for v in sp)
    assert sp.index(min(sp)) == ratios.index(max(ratios))  # more outliers -> less pruning
    sym = owl_sparsities([0.0, 1.0, 2.0, 3.0, 4.0], s, lam)  # symmetric spread: inside [s-λ, s+λ]
    assert all(s - lam - 1e-12 <= v <= s + lam + 1e-12 for v in sym) and min(sym) == pytest.approx(s - lam)
    assert owl_sparsities([2.0, 2.0, 2.0], 0.5, lam) == [0.5, 0.5, 0.5]
    assert owl_sparsities([0.0, 10.0], 0.05, 0.08)[1] == 0.01  # floored like the reference


def test_owl_nm_keeps_mixed_n_and_outlier_ratio():
    assert owl_nm([0.0, 5.0, 10.0], 2, 4, 0.08) == [2, 2, 2]
    assert owl_nm([0.0, 5.0, 10.0], 2, 4, 2.0) == [1, 2, 3]
    six = owl_nm([2.0, 1.5, 1.4, 1.0, 0.0, 1.9], 2, 4, 2.0)  # plain rounding would average 2.17 kept
    assert sum(six) == 12 and six[0] == 3 and six[4] == 1
    scores = torch.tensor([1.0] * 98 + [100.0, 200.0])
    assert outlier_ratio(scores, 5) == pytest.approx(2.0)


def test_owl_in_a_model_reports_block_targets():
    model = make_model("llama", layers=4)
    report = prune(model, rows(8, 16), method="wanda", sparsity=0.6, allocation="owl", owl_lambda=0.05,
                   owl_m=2, progress=False)
    t = report.block_targets
    assert sum(t) / len(t) == pytest.approx(0.6, abs=1e-4) and max(t) - min(t) == pytest.approx(0.1, abs=1e-3)
    assert len(report.allocation_options["outlier_ratios"]) == 4
    for layer in report.layers:  # each layer at its block's ratio, rounded so that the total is exact
        assert layer.target == pytest.approx(t[layer.block], abs=1 / layer.numel)


def test_layers_fed_the_same_input_share_one_hessian():
    model = make_model("llama")
    ids = rows(4, 16)
    xs = _block_inputs(model, 0, ids)
    weights = {n: w for (i, n), w in block_weights(model).items() if i == 0}
    with collect(list(weights.values()), ("hessian", "scaler_row"), torch.device("cpu")) as got, torch.no_grad():
        for half in (ids[:2], ids[2:]):
            model(input_ids=half)
    stats = dict(zip(weights, got))
    assert stats["self_attn.q_proj"] is stats["self_attn.k_proj"] is stats["self_attn.v_proj"]
    assert stats["mlp.gate_proj"] is stats["mlp.up_proj"] and stats["mlp.down_proj"] is not stats["mlp.up_proj"]
    for name in ("self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):
        x = xs[name]
        torch.testing.assert_close(stats[name]["hessian"].value, 2 / 4 * x.t() @ x, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats[name]["scaler_row"].value, (x ** 2).sum(0) / 4, rtol=1e-4, atol=1e-6)


def test_reused_gradients_and_outlier_ratios_give_the_same_model():
    from secateurs.errors import InvalidArgumentError

    ids = rows(4, 16)
    a, b = make_model("llama"), make_model("llama")
    ra = prune(a, ids, method="gblm", sparsity=0.6, allocation="owl", progress=False)
    grads = gradient_norms(b, list(block_weights(b).values()), Feed.token_rows(ids))
    rb = prune(b, ids, method="gblm", sparsity=0.6, allocation="owl", gradients=grads,
               owl_ratios=ra.allocation_options["outlier_ratios"], progress=False)
    assert rb.method_options["gradients"] == "given" and rb.block_targets == ra.block_targets
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(InvalidArgumentError, match="owl_ratios has 1 values for 2 groups"):
        prune(make_model("llama"), None, method="magnitude", allocation="owl", owl_ratios=[1.0], progress=False)
    with pytest.raises(InvalidArgumentError, match="do not match"):
        prune(make_model("llama", hidden=64), ids, method="gblm", gradients=grads, progress=False)
