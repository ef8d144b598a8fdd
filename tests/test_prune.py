"""The one-shot engine: exact sparsity, allocations, patterns, masks under training, composition, determinism."""

import pytest
import torch
from torch import nn

import secateurs
from secateurs.allocations.erdos_renyi import er_raw
from secateurs.core.masks import get_mask, masked_targets
from secateurs.core.targets import resolve_targets
from conftest import convnet, mlp

ALLOCATIONS = ["global", "uniform", "er", "erk"]


def kept_per_layer(model):
    return {t.name: (int(get_mask(t).sum()), t.numel) for t in masked_targets(model)}


@pytest.mark.parametrize("allocation", ALLOCATIONS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.98])
@pytest.mark.parametrize("make", [mlp, convnet])
def test_exact_sparsity(allocation, sparsity, make):
    model = make()
    report = secateurs.prune(model, sparsity, allocation=allocation)
    total = sum(n for _, n in kept_per_layer(model).values())
    kept = sum(k for k, _ in kept_per_layer(model).values())
    assert total - kept == round(sparsity * total)  # exact overall
    assert report.sparsity == pytest.approx(secateurs.sparsity(model), abs=1e-12)
    if allocation == "uniform":  # within one weight per layer
        for k, n in kept_per_layer(model).values():
            assert abs((n - k) - sparsity * n) <= 1


def test_global_prunes_smallest_everywhere():
    model = mlp()
    weights = torch.cat([m.weight.detach().abs().reshape(-1) for m in model if isinstance(m, nn.Linear)])
    secateurs.prune(model, 0.7)
    kept = torch.cat([m.weight.detach().abs().reshape(-1) for m in model if isinstance(m, nn.Linear)])
    threshold = weights.kthvalue(round(0.7 * weights.numel())).values
    assert bool((kept[kept != 0] >= threshold).all())
    assert int((kept != 0).sum()) == weights.numel() - round(0.7 * weights.numel())


@pytest.mark.parametrize("allocation", ["er", "erk"])
def test_er_erk_densities_follow_formula(allocation):
    model = convnet()
    secateurs.prune(model, 0.8, allocation=allocation)
    ts = resolve_targets(model)
    raw = {t.name: er_raw(tuple(t.shape), kernel=allocation == "erk") for t in ts}
    kept = {t.name: int(get_mask(t).sum()) for t in ts}
    numel = {t.name: t.numel for t in ts}
    free = [n for n in kept if kept[n] < numel[n]]
    eps = sum(kept[n] for n in free) / sum(raw[n] * numel[n] for n in free)
    for n in free:  # one epsilon for every non-dense layer, rounded to whole weights
        assert abs(kept[n] - eps * raw[n] * numel[n]) <= 1
    for n in kept:
        if kept[n] == numel[n]:  # dense only because eps*raw would reach 1
            assert eps * raw[n] >= 1 - 1e-6
    assert sum(numel.values()) - sum(kept.values()) == round(0.8 * sum(numel.values()))


@pytest.mark.parametrize("power", [0.5, 2.0])
def test_erk_power_scale(power):
    """jaxpruner's ``erk_power_scale``: density_l = ε · (sum(shape)/prod(shape))^p, the same exact total; p < 1 is
    nearer uniform than ERK, p > 1 further from it."""
    model = mlp()
    report = secateurs.prune(model, 0.8, allocation="erk", erk_power_scale=power)
    assert report.allocation_options == {"erk_power_scale": power}
    ts = resolve_targets(model)
    raw = {t.name: er_raw(tuple(t.shape), kernel=True, power=power) for t in ts}
    kept = {t.name: int(get_mask(t).sum()) for t in ts}
    numel = {t.name: t.numel for t in ts}
    free = [n for n in kept if kept[n] < numel[n]]
    eps = sum(kept[n] for n in free) / sum(raw[n] * numel[n] for n in free)
    for n in free:
        assert abs(kept[n] - eps * raw[n] * numel[n]) <= 1
    assert sum(numel.values()) - sum(kept.values()) == round(0.8 * sum(numel.values()))
    plain = mlp()
    secateurs.prune(plain, 0.8, allocation="erk")
    spread = {m: max(d.values()) - min(d.values()) for m, d in
              (("p", {n: kept[n] / numel[n] for n in kept}),
               ("erk", {t.name: int(get_mask(t).sum()) / t.numel for t in resolve_targets(plain)}))}
    assert (spread["p"] < spread["erk"]) if power < 1 else (spread["p"] > spread["erk"])


@pytest.mark.parametrize("nm", ["2:4", "1:4", "4:8", "3:8"])
def test_nm_groups_valid(nm):
    n, m = map(int, nm.split(":"))
    model = convnet()
    model[0] = nn.Conv2d(1, 8, 2, padding=1)  # 1*2*2 = 4 inputs, divisible by 4 and... not by 8
    ignore = ["0"] if m == 8 else None
    report = secateurs.prune(model, pattern=nm, ignore=ignore)
    assert report.sparsity == pytest.approx(1 - n / m)
    for t in masked_targets(model):
        groups = get_mask(t).reshape(t.shape[0], -1).reshape(t.shape[0], -1, m)
        assert bool((groups.sum(-1) == n).all())


def test_nm_keeps_largest_in_each_group():
    lin = nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -5, 3, 0.5, 9, 8, -7, 1], [0, 0, 0, 1, 2, -3, 1, 0.1]]))
    secateurs.prune(lin, pattern="2:4")
    assert get_mask(resolve_targets(lin)[0]).int().tolist() == [[0, 1, 1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 1, 0, 0]]  # ties: earlier column kept


def test_blocks_whole():
    lin = nn.Linear(16, 8, bias=False)
    torch.manual_seed(0)
    secateurs.prune(lin, 0.5, pattern="4x4")
    mask = get_mask(resolve_targets(lin)[0])
    tiles = mask.reshape(2, 4, 4, 4).permute(0, 2, 1, 3).reshape(8, 16)
    assert bool(((tiles.sum(1) == 0) | (tiles.sum(1) == 16)).all())
    assert int(mask.sum()) == 64
    assert secateurs.sparsity(lin) == 0.5  # (which blocks: test_block_score_is_sum)


def test_block_score_is_sum():
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():  # 1x2 blocks: |w| sums 3, 3.5 | 0.2, 10 -> the two smallest sums go
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.1, 0.1, -9.0, -1.0]]))
    secateurs.prune(lin, 0.5, pattern="1x2", allocation="global")
    assert get_mask(resolve_targets(lin)[0]).int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_masks_hold_during_training(opt, batches):
    model = convnet()
    secateurs.prune(model, 0.8)
    masks = {t.key: get_mask(t).clone() for t in masked_targets(model)}
    params = list(model.parameters())
    o = (torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4) if opt == "sgd"
         else torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1))
    for step in range(50):
        x, y = batches[step % len(batches)]
        o.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        o.step()
    for t in masked_targets(model):
        w = t.weight.detach()
        assert bool((w[~masks[t.key]] == 0).all())  # effective weights exactly zero
        assert bool((t.leaf.detach()[~masks[t.key]] == 0).all())  # and no update reached the originals
        assert bool((w[masks[t.key]] != 0).any())  # while kept weights trained
    assert secateurs.sparsity(model) == pytest.approx(0.8, abs=1 / 1384)


def test_min_keep_prevents_collapse():
    model = mlp()
    with torch.no_grad():  # make the middle layer tiny so global magnitude wants to remove it entirely
        model[3].weight.mul_(1e-3)
    secateurs.prune(mlp(), 0.999)  # sanity: it runs without floors
    collapsed = mlp()
    with torch.no_grad():
        collapsed[3].weight.mul_(1e-3)
    secateurs.prune(collapsed, 0.999)
    assert min(k for k, _ in kept_per_layer(collapsed).values()) == 0
    secateurs.prune(model, 0.999, min_keep=15)
    per = kept_per_layer(model)
    assert all(k >= 15 for k, _ in per.values())
    total = sum(n for _, n in per.values())
    assert total - sum(k for k, _ in per.values()) == round(0.999 * total)


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_min_keep_every_allocation(allocation):
    model = mlp()
    secateurs.prune(model, 0.999, allocation=allocation, min_keep=15)
    per = kept_per_layer(model)
    assert all(k >= 15 for k, _ in per.values())
    total = sum(n for _, n in per.values())
    assert total - sum(k for k, _ in per.values()) == round(0.999 * total)


def test_dense_layers_stay_dense():
    model = mlp()
    secateurs.prune(model, 0.9, allocation="erk", dense=["5"])
    per = kept_per_layer(model)
    assert per["5"][0] == per["5"][1]
    total = sum(n for _, n in per.values())
    assert total - sum(k for k, _ in per.values()) == round(0.9 * total)


@pytest.mark.parametrize("method", ["random", "snip", "grasp", "taylor", "synflow", "magnitude"])
def test_same_seed_same_masks(method, batches):
    masks = []
    for global_seed in (10, 11):  # the global RNG differs between the two runs: only `seed` may matter
        model = convnet()
        model.input_shape = (1, 8, 8)
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        secateurs.prune(model, 0.9, method=method, data=batches, seed=3)
        assert torch.equal(torch.get_rng_state(), state)  # neither drawn from nor reseeded
        masks.append([get_mask(t) for t in masked_targets(model)])
    assert all(torch.equal(a, b) for a, b in zip(*masks))
    if method == "random":
        other = convnet()
        torch.manual_seed(10)
        secateurs.prune(other, 0.9, method="random", seed=4)
        assert not all(torch.equal(a, get_mask(t)) for a, t in zip(masks[0], masked_targets(other)))


def test_pruning_further_composes():
    model = mlp()
    secateurs.prune(model, 0.5, method="random", seed=0)
    first = {t.key: get_mask(t).clone() for t in masked_targets(model)}
    secateurs.prune(model, 0.8, method="random", seed=1)
    assert secateurs.sparsity(model) == pytest.approx(0.8, abs=1e-4)
    for t in masked_targets(model):
        assert not bool((get_mask(t) & ~first[t.key]).any())  # nothing pruned comes back


def test_finalize_same_outputs():
    model = convnet().eval()
    secateurs.prune(model, 0.9)
    x = torch.randn(4, 1, 8, 8)
    before = model(x)
    secateurs.finalize(model)
    assert not masked_targets(model)
    assert all(".parametrizations." not in k for k in model.state_dict())
    assert torch.equal(model(x), before)
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1 / 1384)


def test_sparsity_of_dense_model_is_zero():
    assert secateurs.sparsity(mlp()) == 0.0


def test_sparsity_follows_the_pruned_targets():
    model = mlp()
    secateurs.prune(model, 0.8, targets=["1", "3"])
    assert secateurs.sparsity(model) == pytest.approx(0.8, abs=1e-4)  # the masked layers, not all Linears
    assert secateurs.sparsity(model, targets=["5"]) == 0.0
