"""Each criterion's scores against a direct computation of its paper's formula."""
import torch
from torch import nn

from secateurs.core.feed import Feed
from secateurs.core.targets import resolve_targets
from secateurs.criteria import ScoreContext
from secateurs.registry import get
from conftest import mlp


def scores(method, model, data=None, input_shape=None, seed=0):
    ctx = ScoreContext(model, resolve_targets(model), None if data is None else Feed.pairs(data), seed, input_shape)
    return [fn() for fn in get("criterion", method)().scores(ctx)]


def grads(model, data, scale=1.0):
    ws = [m.weight for m in model if isinstance(m, nn.Linear)]
    out = []
    for x, y in data:
        out.append(torch.autograd.grad(nn.functional.cross_entropy(model(x) / scale, y), ws))
    return ws, out


def test_snip_is_normalised_abs_g_times_w(batches):
    model = mlp()
    ws, gs = grads(model, batches)
    total = [sum(g[i] for g in gs) for i in range(len(ws))]
    ref = [(g * w).abs() for g, w in zip(total, ws)]
    norm = sum(r.sum() for r in ref)
    for s, r in zip(scores("snip", model, batches), ref):
        torch.testing.assert_close(s, r / norm)


def test_taylor_single_batch_is_abs_w_g(batches):
    model = mlp()
    ws, gs = grads(model, batches[:1])
    for s, g, w in zip(scores("taylor", model, batches[:1]), gs[0], ws):
        torch.testing.assert_close(s, (w * g).abs())


def test_grasp_is_w_times_hessian_gradient(batches):
    model = mlp()
    ws = [m.weight for m in model if isinstance(m, nn.Linear)]
    flat = torch.cat([w.detach().reshape(-1) for w in ws])

    def loss_of(v):  # total loss over batches as a function of the flattened weights
        chunks, i = [], 0
        for w in ws:
            chunks.append(v[i:i + w.numel()].reshape(w.shape))
            i += w.numel()
        params = dict(model.named_parameters())
        for (name, _), c in zip([(n, p) for n, p in params.items() if n.endswith("weight")], chunks):
            params[name] = c
        return sum(nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)) / 200, y)
                   for x, y in batches)

    g = torch.autograd.grad(loss_of(flat.requires_grad_(True)), flat)[0].detach()
    _, hg = torch.autograd.functional.hvp(loss_of, flat.detach(), g)
    ref = hg * flat.detach()
    ref = ref / ref.sum().abs()
    got = torch.cat([s.reshape(-1) for s in scores("grasp", model, batches)])
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-9)


def test_synflow_on_linear_chain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
    w1, w2 = (model[0].weight.detach().abs(), model[2].weight.detach().abs())
    # R = 1ᵀ |W2| |W1| 1  ->  dR/dW1 = (|W2|ᵀ 1) 1ᵀ,  dR/dW2 = 1 (|W1| 1)ᵀ
    d1 = (w2.T @ torch.ones(3))[:, None] * torch.ones(1, 5)
    d2 = torch.ones(3, 1) * (w1 @ torch.ones(5))[None, :]
    s1, s2 = scores("synflow", model, input_shape=(5,))
    torch.testing.assert_close(s1, d1 * w1)
    torch.testing.assert_close(s2, d2 * w2)


def test_synflow_leaves_model_untouched():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores("synflow", model, input_shape=(1, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_random_depends_on_its_seed_only_and_leaves_the_global_rng_alone():
    """Same seed, same scores and masks whatever the global RNG holds; another seed, other ones; and the global
    RNG is neither read nor advanced (a criterion that reseeded or drew from it would fail one of these)."""
    import secateurs
    from secateurs.core.masks import get_mask, masked_targets

    model = mlp()
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = scores("random", model, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)  # another global state: must not matter
    b = scores("random", model, seed=5)
    c = scores("random", model, seed=6)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, z) for x, z in zip(a, c))
    assert all(x.shape == t.weight.shape for x, t in zip(a, [m for m in model if isinstance(m, nn.Linear)]))

    def masks(seed, global_seed):
        net = mlp()
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        secateurs.prune(net, 0.7, method="random", seed=seed)
        assert torch.equal(torch.get_rng_state(), state)  # the call left the global RNG where it was
        return [get_mask(t) for t in masked_targets(net)]

    same, other_global, other_seed = masks(3, 10), masks(3, 11), masks(4, 10)
    assert all(torch.equal(x, y) for x, y in zip(same, other_global))
    assert not any(torch.equal(x, z) for x, z in zip(same, other_seed))
