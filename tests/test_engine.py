"""The one engine: all pairs (pairwise coverage, tests/pairwise.py) of model x criterion x allocation x pattern x
solver, plus known-special triples, on an MLP, a CNN, a ViT-style block stack (block by block) and a tiny Llama
(through secateurs.llm) — exact sparsity, valid N:M groups and blocks, masked weights at zero, finite outputs; and
bad input leaves each model bit-identical."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import convnet, mlp, same, snapshot
from pairwise import all_pairs
from test_llm_blocks import make_model, rows
from torch import nn

import secateurs
from secateurs import llm
from secateurs.core.masks import get_mask, masked_targets
from secateurs.errors import PruningError

CRITERIA = ["magnitude", "random", "snip", "grasp", "synflow", "taylor", "wanda", "gblm", "sparsegpt"]
ALLOCATIONS = ["global", "uniform", "er", "erk", "owl"]
PATTERNS = ["unstructured", "2:4", "2x2"]
SOLVERS = [None, "sparsegpt"]


class Block(nn.Module):
    """A pre-norm transformer block with plain Linear layers (a ViT block)."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(4, 16)  # 2x2 patches of the 8x8 image: 16 tokens
        self.pos = nn.Parameter(torch.randn(1, 16, 16) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.unfold(x, 2, stride=2).transpose(1, 2)  # (N, 16, 4)
        h = self.embed(p) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return self.head(h.mean(1))


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(2)]


def _vit_targets(name, module):
    return name.startswith("blocks.") and isinstance(module, nn.Linear)


MODELS = {
    "mlp": lambda: (mlp(), {}),
    "cnn": lambda: (convnet(), {}),
    "vit": lambda: (TinyViT(), {"blocks": "blocks", "targets": _vit_targets}),
}


MODEL_NAMES = [*MODELS, "llama"]  # the tiny Llama goes through secateurs.llm, the others through secateurs.prune
FACTORS = {"model": MODEL_NAMES, "criterion": CRITERIA, "allocation": ALLOCATIONS, "pattern": PATTERNS,
           "solver": SOLVERS}


def _valid(model, crit, alloc, pat, solver):
    if pat == "2:4" and alloc not in ("uniform", "owl"):
        return False  # N:M fixes every layer's density (an error, tested below)
    if crit == "sparsegpt" and solver is None:
        return False  # its own solver is the default: the same run as solver="sparsegpt"
    if crit == "sparsegpt" and pat == "2x2":
        return False  # choosing its own mask, SparseGPT selects single weights or N:M, not blocks (tested below)
    if crit == "synflow" and model in ("vit", "llama"):
        return False  # synflow re-scores in 100 rounds, which the block-by-block pipeline refuses (tested below)
    return True


# Known-special triples that pairwise coverage alone would not guarantee: every solver with every pattern (N:M
# groups, ragged 2x2 edge blocks) on every model, and SparseGPT's own mask selection with each of its patterns per
# model.
MUST = [{"model": m, "pattern": p, "solver": s} for m in MODEL_NAMES for p in PATTERNS for s in SOLVERS] + \
       [{"model": m, "criterion": "sparsegpt", "pattern": p} for m in MODEL_NAMES for p in ("unstructured", "2:4")]
# All-pairs instead of the Cartesian product (~700 runs): every feasible pair of values of model x criterion x
# allocation x pattern x solver appears in some run (test_the_combinations_cover_every_pair checks it).
COMBOS = all_pairs(FACTORS, _valid, MUST)


def _id(combo):
    return "-".join(map(str, combo))


def test_the_combinations_cover_every_pair():
    """An independent check of the generator: every value, every feasible pair, every MUST tuple, all valid."""
    names = list(FACTORS)
    assert all(_valid(*c) for c in COMBOS) and len(set(COMBOS)) == len(COMBOS)
    for i, j in itertools.combinations(range(len(names)), 2):
        feasible = {(c[i], c[j]) for c in itertools.product(*FACTORS.values()) if _valid(*c)}
        assert feasible == {(c[i], c[j]) for c in COMBOS}, (names[i], names[j])
    for partial in MUST:
        assert any(all(c[names.index(k)] == v for k, v in partial.items()) for c in COMBOS), partial
    assert all_pairs(FACTORS, _valid, MUST) == COMBOS  # deterministic
    assert len(COMBOS) < 100


def _check(model, report, pattern, sparsity, selecting):
    targets = masked_targets(model) or []
    assert targets and len(report.layers) == len(targets)
    for layer in report.layers:
        assert 0 <= layer.sparsity <= 1
    if pattern == "2:4":
        for t in targets:  # every group of 4 consecutive inputs keeps exactly the planned N (OWL mixes N)
            keep = t.view2d(get_mask(t))
            per_group = keep.reshape(keep.shape[0], -1, 4).sum(-1)
            assert per_group.unique().numel() == 1 and 1 <= int(per_group.flatten()[0]) <= 4
        assert report.sparsity == pytest.approx(0.5, abs=0.13)  # OWL mixes 1:4..3:4 per layer
    elif selecting:  # SparseGPT chooses int(s*cells) per 128-column block: exact per block, not per layer
        assert report.sparsity == pytest.approx(sparsity, abs=0.01)
    elif pattern == "2x2":  # exact in whole blocks; ragged edge blocks (9 conv inputs) hold fewer weights
        assert report.sparsity == pytest.approx(sparsity, abs=0.02)
        for t in targets:  # every 2x2 tile is kept or pruned whole (an odd last row/column: repeated, same tile)
            keep = t.view2d(get_mask(t))
            keep = torch.cat([keep, keep[-1:]]) if keep.shape[0] % 2 else keep
            keep = torch.cat([keep, keep[:, -1:]], 1) if keep.shape[1] % 2 else keep
            per_tile = keep.reshape(keep.shape[0] // 2, 2, keep.shape[1] // 2, 2).sum((1, 3))
            assert bool(((per_tile == 0) | (per_tile == 4)).all()), t.name
    else:
        assert abs(report.sparsity - sparsity) <= 1 / report.numel + 1e-12
    for t in targets:  # masked weights are zero in the effective weight
        assert torch.all(t.weight.detach()[~get_mask(t)] == 0)


ENGINE_COMBOS = [c for c in COMBOS if c[0] != "llama"]
LLM_COMBOS = [c[1:] for c in COMBOS if c[0] == "llama"]


@pytest.mark.parametrize("model_name,crit,alloc,pattern,solver", ENGINE_COMBOS, ids=list(map(_id, ENGINE_COMBOS)))
def test_every_combination(model_name, crit, alloc, pattern, solver):
    model, kw = MODELS[model_name]()
    if pattern == "2:4" and model_name == "cnn":
        kw["ignore"] = ["0"]  # 1 input channel x 3x3 = 9 inputs: not divisible by 4
    data = _batches()
    sparsity = None if pattern == "2:4" else 0.6
    report = secateurs.prune(model, sparsity, method=crit, allocation=alloc, pattern=pattern, data=data,
                             solver=solver, seed=0, **kw)
    _check(model, report, pattern, 0.6, selecting=crit == "sparsegpt")
    with torch.no_grad():
        assert torch.isfinite(model(data[0][0])).all()


@pytest.mark.parametrize("crit,alloc,pattern,solver", LLM_COMBOS, ids=list(map(_id, LLM_COMBOS)))
def test_every_combination_on_a_tiny_llama(crit, alloc, pattern, solver):
    model = make_model("llama")
    ids = rows(4, 16)
    sparsity = None if pattern == "2:4" else 0.6
    report = llm.prune(model, ids, method=crit, sparsity=sparsity, pattern=pattern, allocation=alloc,
                       solver=solver, progress=False)
    weights = _block_weights(model)
    assert len(report.layers) == len(weights) == 14
    for layer, w in zip(report.layers, weights):
        assert layer.sparsity == pytest.approx(float((w == 0).float().mean()))
        if pattern == "2:4":
            zeros = (w == 0).reshape(w.shape[0], -1, 4).sum(-1)
            assert int(zeros.min()) >= 4 - int(layer.pattern.split(":")[0])
        elif pattern == "2x2":  # whole 2x2 tiles are zero or not (a kept tile may hold zeros of its own)
            tiles = (w != 0).reshape(w.shape[0] // 2, 2, w.shape[1] // 2, 2).any(3).any(1)
            assert float(1 - tiles.float().mean()) == pytest.approx(layer.sparsity, abs=0.02)
    if pattern == "unstructured" and crit != "sparsegpt" and solver is None:
        assert report.sparsity == pytest.approx(0.6, abs=1 / report.numel)
    else:  # solvers also zero the weights of inputs that never fire; SparseGPT rounds per 128-column block
        assert report.sparsity == pytest.approx(0.5 if pattern == "2:4" else 0.6, abs=0.13 if alloc == "owl" else 0.02)
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def _block_weights(model):
    from secateurs.core.blocks import find_blocks, find_linears, weight_2d

    return [weight_2d(l) for b in find_blocks(model)[1] for l in find_linears(b).values()]


BAD = [
    (dict(sparsity=1.5), "sparsity must be a number"),
    (dict(sparsity=0.5, method="wanda", percdamp=0.1), "does not take option 'percdamp'"),
    (dict(sparsity=0.5, method="wanda", data=None), "needs data"),
    (dict(pattern="2:4", allocation="erk"), "cannot apply"),
    (dict(pattern="2:3"), "not divisible by M=3"),
    (dict(sparsity=0.5, scope="rows"), "Did you mean 'row'"),
    (dict(sparsity=0.5, solver="obs"), "unknown solver"),
    (dict(sparsity=0.5, scope="global", allocation="erk"), "scope='global'"),
    (dict(sparsity=0.5, allocation="owl", owl_lambda=0.3), "too large"),
    (dict(sparsity=0.5, method="sparsegpt", pattern="2x2"), "sparsegpt selects unstructured or N:M"),
]


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("kwargs,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_leaves_the_model_unchanged(model_name, kwargs, match):
    model, kw = MODELS[model_name]()
    snap = snapshot(model)
    args = {"method": "magnitude", "data": _batches(), **kw, **kwargs}
    with pytest.raises(PruningError, match=match):
        secateurs.prune(model, **args)
    assert same(model, snap)


def test_block_pipeline_refuses_iterative_criteria_and_outside_targets():
    model = TinyViT()
    snap = snapshot(model)
    with pytest.raises(PruningError, match="rounds"):
        secateurs.prune(model, 0.5, method="synflow", allocation="owl", data=_batches(), blocks="blocks",
                        targets=_vit_targets)
    with pytest.raises(PruningError, match="outside the blocks"):
        secateurs.prune(model, 0.5, method="wanda", data=_batches(), blocks="blocks")
    assert same(model, snap)


def test_solver_failure_rolls_back_every_weight():
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(PruningError, match="not positive definite"):  # NaN-free but singular: percdamp tiny
        secateurs.prune(model, 0.5, data=[(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))],
                        solver="sparsegpt", percdamp=1e-30)
    assert same(model, snap)


def test_wanda_row_scope_equals_the_direct_formula_on_an_mlp():
    model, data = mlp(), _batches()
    x = torch.cat([b[0] for b in data]).flatten(1)
    w = model[1].weight.detach().clone()
    secateurs.prune(model, 0.5, method="wanda", data=data, targets=["1"])
    score = w.abs() * x.norm(dim=0)  # Sun et al. 2023 eq. 1, per output row
    expected = torch.zeros_like(w, dtype=torch.bool)
    expected.scatter_(1, torch.argsort(score, dim=1, stable=True)[:, :32], True)
    assert torch.equal(model[1].weight == 0, expected)


def test_sparsegpt_solver_after_magnitude_keeps_the_mask_and_lowers_the_error():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(64, 64, generator=g)  # strongly correlated inputs, 320 of them for 64 columns
    data = [((torch.randn(32, 64, generator=g) @ mix).reshape(32, 1, 8, 8), torch.zeros(32, dtype=torch.long))
            for _ in range(10)]
    x = torch.cat([b[0] for b in data]).flatten(1)
    plain, solved = mlp(), mlp()
    secateurs.prune(plain, 0.7, targets=["1"], allocation="uniform")
    secateurs.prune(solved, 0.7, targets=["1"], allocation="uniform", data=data, solver="sparsegpt")
    dense = mlp()[1](x)
    assert torch.equal(get_mask(masked_targets(plain)[0]), get_mask(masked_targets(solved)[0]))
    err_solved, err_plain = (solved[1](x) - dense).norm(), (plain[1](x) - dense).norm()
    assert err_solved < 0.97 * err_plain, (err_solved, err_plain)  # measured 816 vs 852 (per-row optimum 688)


def test_one_pass_and_block_by_block_agree_on_the_first_block():
    """The first block sees the same (dense) inputs either way, so its Wanda masks are identical."""
    a, b, data = TinyViT(), TinyViT(), _batches()
    secateurs.prune(a, 0.5, method="wanda", data=data, targets=_vit_targets)
    secateurs.prune(b, 0.5, method="wanda", data=data, targets=_vit_targets, blocks="blocks")
    for name in ("qkv", "proj", "fc1", "fc2"):
        assert torch.equal(getattr(a.blocks[0], name).weight == 0, getattr(b.blocks[0], name).weight == 0)


def test_fp16_activations_whose_sum_overflows_are_finite():
    """A sum of many finite fp16 values overflows 65504; the one finiteness check must not call that NaN/Inf."""
    from secateurs.core.finite import all_finite

    x = torch.full((4096, 64), 60.0, dtype=torch.float16)
    assert not torch.isfinite(x.sum(dtype=torch.float16)) and all_finite(x)
    assert not all_finite(torch.tensor([1.0, float("nan")], dtype=torch.float16))
