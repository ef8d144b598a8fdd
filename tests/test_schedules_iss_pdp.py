"""ISS-P (iterative soft shrinkage) and PDP (parameter-free differentiable pruning) schedules."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import secateurs
from secateurs import registry
from secateurs.core.masks import get_mask, masked_targets
from secateurs.errors import InvalidArgumentError, PatternError
from secateurs.schedules.iss import IterativeSoftShrinkage
from secateurs.schedules.pdp import PDP, SoftMask, get_soft_mask
from secateurs.zoo import build_model, evaluate, fit, load_dataset

torch.set_num_threads(1)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 4))


def sgd_steps(model: nn.Module, pruner, steps: int, opt: torch.optim.Optimizer | None = None, seed: int = 0):
    """A few SGD steps on random data, calling ``pruner.step()`` after each optimizer step."""
    g = torch.Generator().manual_seed(seed)
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.attach_optimizer(opt)
    for _ in range(steps):
        x, y = torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step()
    return opt


def nonzeros(model: nn.Module) -> list[int]:
    return [int(torch.count_nonzero(m.weight)) for m in model if isinstance(m, nn.Linear)]


def nm_exact(w: torch.Tensor, n: int, m: int) -> bool:
    groups = (w.reshape(w.shape[0], -1) != 0).reshape(w.shape[0], -1, m).sum(-1)
    return bool((groups == n).all())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").loaders(64, seed=0)


# ---------------------------------------------------------------------------------------------------- ISS-P
def test_iss_registered_and_from_budget():
    assert registry.get("schedule", "iss") is IterativeSoftShrinkage
    model = mlp()
    p = IterativeSoftShrinkage.from_budget(model, sparsity=0.75, total_steps=40, seed=0)
    assert (p.end_step, p.shrink, p.frequency, p.allocation) == (20, 0.95, 1, "erk")
    assert p.sparsity_at(0) == 0.0 and p.sparsity_at(1) == 0.75 == p.sparsity_at(100)


def test_iss_shrinks_not_zeroes_by_the_factor():
    model = mlp()
    p = IterativeSoftShrinkage(model, 0.5, end_step=10, shrink=0.8)
    lin = [m for m in model if isinstance(m, nn.Linear)]
    for step in range(1, 4):
        before = [m.weight.detach().clone() for m in lin]
        p.step()  # no optimizer step in between: only the shrinking changes the weights
        for w0, m in zip(before, lin):
            w1 = m.weight.detach()
            k = w0.numel() // 2  # uniform: half of every layer
            low = torch.zeros(w0.numel(), dtype=torch.bool)
            low[w0.abs().reshape(-1).sort(stable=True).indices[:k]] = True
            low = low.reshape(w0.shape)
            torch.testing.assert_close(w1[low], w0[low] * 0.8, rtol=0, atol=0)
            torch.testing.assert_close(w1[~low], w0[~low], rtol=0, atol=0)
            assert torch.count_nonzero(w1) == torch.count_nonzero(w0)  # shrunk, never zeroed
        rec = p.history[-1]
        assert rec["step"] == step and rec["phase"] == "soft"
        assert rec["shrunk"] == sum(m.weight.numel() // 2 for m in lin)
    assert not masked_targets(model)  # no hard mask during the soft stage


def test_iss_never_leaves_subnormal_floats():
    """Shrinking a weight near the smallest normal float gives exactly 0, not a subnormal that slows CPU math."""
    model = mlp()
    lin = model[0]
    with torch.no_grad():
        lin.weight[0, 0] = 1.4e-38  # shrunk by 0.8 it would be subnormal (fp32 normals start at 1.18e-38)
        lin.weight[0, 1] = 1e-30
    p = IterativeSoftShrinkage(model, 0.5, end_step=10, shrink=0.8)
    p.step()
    w = lin.weight.detach()
    assert w[0, 0] == 0 and w[0, 1] == pytest.approx(0.8e-30)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((w != 0) & (w.abs() < tiny)).any()


def test_iss_recovers_weights_that_grow_back():
    """A shrunk weight that training pushes up re-enters the kept set (the structure is re-learned)."""
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    p = IterativeSoftShrinkage(lin, 0.5, end_step=10, shrink=0.5)
    p.step()
    torch.testing.assert_close(lin.weight.detach(), torch.tensor([[0.5, 1.0, 3.0, 4.0]]))
    with torch.no_grad():
        lin.weight[0, 0] = 5.0  # "the gradient" makes the first weight important
    p.step()
    torch.testing.assert_close(lin.weight.detach(), torch.tensor([[5.0, 0.5, 1.5, 4.0]]))


def test_iss_hard_at_end_step_exact_and_masks_hold():
    model = mlp()
    p = IterativeSoftShrinkage(model, 0.75, end_step=15, allocation="uniform")
    opt = sgd_steps(model, p, 15)
    assert p.hard and p.history[-1]["phase"] == "hard" and p.history[-1]["step"] == 15
    sizes = [m.weight.numel() for m in model if isinstance(m, nn.Linear)]
    assert nonzeros(model) == [n - round(0.75 * n) for n in sizes]
    assert secateurs.sparsity(model) == pytest.approx(0.75, abs=1 / sum(sizes))
    masks = [get_mask(t).clone() for t in masked_targets(model)]
    sgd_steps(model, p, 10, opt=opt, seed=1)  # fine-tuning stage: the mask is frozen
    assert [get_mask(t).equal(m) for t, m in zip(masked_targets(model), masks)] == [True] * 3
    assert nonzeros(model) == [n - round(0.75 * n) for n in sizes]
    p.finish()  # already hard: nothing changes
    assert nonzeros(model) == [n - round(0.75 * n) for n in sizes]


def test_iss_hard_mask_is_the_last_soft_selection():
    model = mlp()
    p = IterativeSoftShrinkage(model, 0.6, end_step=100, allocation="global")
    sgd_steps(model, p, 5)
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    p.step()  # one more soft step without training: shrinks exactly the set the hard prune will remove
    shrunk = [m.weight.detach() != w for m, w in zip([m for m in model if isinstance(m, nn.Linear)], before)]
    p.finish()
    for t, s in zip(masked_targets(model), shrunk):
        assert torch.equal(~get_mask(t), s)
    assert secateurs.sparsity(model) == pytest.approx(0.6, abs=1e-3)


def test_iss_nm_ends_exactly_2_4():
    model = mlp()
    p = IterativeSoftShrinkage(model, None, end_step=8, pattern="2:4")
    sgd_steps(model, p, 6)
    for m in model:
        if isinstance(m, nn.Linear):  # soft stage: two of every four shrunk, none zero
            assert torch.count_nonzero(m.weight) == m.weight.numel()
    p.finish()
    for m in model:
        if isinstance(m, nn.Linear):
            assert nm_exact(m.weight.detach(), 2, 4)


def test_iss_trains_on_digits(digits):
    train, test = digits
    torch.manual_seed(0)
    model = build_model("lenet300")
    total = 8 * len(train)
    p = IterativeSoftShrinkage.from_budget(model, sparsity=0.9, total_steps=total, seed=0)

    def on_step(step, opt):
        if p.optimizer is None:
            p.attach_optimizer(opt)
        p.step()

    fit(model, train, 8, lr=0.05, on_step=on_step, num_threads=1)
    p.finish()
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1e-4)
    assert evaluate(model, test)["accuracy"] > 0.85


@pytest.mark.parametrize("kw, match", [
    ({"shrink": 0.0}, "shrink"), ({"shrink": 1.0}, "shrink"), ({"shrink": 1.5}, "shrink"),
    ({"shrink": float("nan")}, "shrink"), ({"shrink": True}, "shrink"),
    ({"end_step": 0}, "end_step"), ({"start_step": 5, "end_step": 5}, "end_step"),
    ({"frequency": 0}, "frequency"), ({"sparsity": 1.0}, "sparsity"), ({"sparsity": -0.1}, "sparsity"),
    ({"allocation": "owl"}, "statistics"), ({"allocation": "nope"}, "unknown allocation"),
])
def test_iss_bad_input(kw, match):
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    args = {"sparsity": 0.5, "end_step": 10, **kw}
    with pytest.raises(InvalidArgumentError, match=match):
        IterativeSoftShrinkage(model, **args)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not masked_targets(model)


def test_iss_nm_needs_uniform_and_matching_sparsity():
    with pytest.raises(PatternError):
        IterativeSoftShrinkage(mlp(), 0.9, end_step=10, pattern="2:4")
    with pytest.raises(PatternError):
        IterativeSoftShrinkage(mlp(), None, end_step=10, pattern="2:4", allocation="global")


# ---------------------------------------------------------------------------------------------------- PDP
def test_pdp_soft_mask_matches_the_paper_formula():
    """m(w) = e^{w²/τ} / (e^{w²/τ} + e^{t²/τ}), t halfway between the largest pruned and smallest kept |w|."""
    lin = nn.Linear(4, 2, bias=False)
    w = [[0.10, -0.20, 0.30, 0.40], [-0.05, 0.50, -0.35, 0.25]]
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w))
    tau = 0.01
    p = PDP(lin, 0.5, temperature=tau, allocation="uniform")
    # 4 of 8 pruned: |w| sorted 0.05 0.10 0.20 0.25 | 0.30 0.35 0.40 0.50 -> t = (0.25 + 0.30) / 2
    t = 0.275
    expect = [[math.exp(x * x / tau) / (math.exp(x * x / tau) + math.exp(t * t / tau)) for x in row] for row in w]
    torch.testing.assert_close(p.soft_masks()[0], torch.tensor(expect))
    torch.testing.assert_close(lin.weight, torch.tensor(w) * torch.tensor(expect))
    assert get_soft_mask(p.targets[0]).threshold(lin.parametrizations.weight.original).item() == pytest.approx(t)


def test_pdp_nm_soft_mask_is_per_group():
    lin = nn.Linear(8, 1, bias=False)
    w = [0.1, 0.4, -0.3, 0.2, 0.9, -0.8, 0.05, 0.7]
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w]))
    tau = 0.02
    p = PDP(lin, None, temperature=tau, pattern="2:4")
    thresholds = [(0.3 + 0.2) / 2] * 4 + [(0.8 + 0.7) / 2] * 4  # 2nd and 3rd largest |w| of each group
    expect = [1 / (1 + math.exp(-(x * x - t * t) / tau)) for x, t in zip(w, thresholds)]
    torch.testing.assert_close(p.soft_masks()[0], torch.tensor([expect]))


def test_pdp_mask_has_gradients_with_the_boosting_term():
    lin = nn.Linear(4, 1, bias=False)
    w = torch.tensor([[0.10, -0.20, 0.30, 0.40]])
    with torch.no_grad():
        lin.weight.copy_(w)
    tau = 0.05
    PDP(lin, 0.5, temperature=tau)
    lin.weight.sum().backward()
    g = lin.parametrizations.weight.original.grad
    t = 0.25
    m = torch.sigmoid((w * w - t * t) / tau)
    # d(m(w)·w)/dw = m + w · m(1 − m) · 2w/τ (t held constant)
    torch.testing.assert_close(g, m + w * m * (1 - m) * 2 * w / tau)
    assert (g != 0).all()  # every weight, pruned side included, gets a gradient


def test_pdp_ramp_and_exact_hard_mask():
    model = mlp()
    p = PDP(model, 0.8, start_step=4, ramp_steps=8, frequency=2, temperature=1e-3)
    assert [p.ramp_factor(s) for s in (0, 3, 4, 5, 6, 11, 12, 100)] == [0, 0, 0.25, 0.25, 0.5, 1, 1, 1]
    assert p.sparsity_at(6) == pytest.approx(0.4)
    sm = [get_soft_mask(t) for t in p.targets]
    assert not any(s.active for s in sm) and p.counts is None
    opt = sgd_steps(model, p, 4)
    assert p.counts is not None and sum(p.counts) == round(0.8 * sum(t.numel for t in p.targets))
    assert [s.prune_count for s in sm] == [round(0.25 * c) for c in p.counts]
    sgd_steps(model, p, 8, opt=opt, seed=1)
    assert [s.prune_count for s in sm] == p.counts
    soft = [m.detach().clone() for m in p.soft_masks()]
    raw = [t.leaf.detach().clone() for t in p.targets]
    p.finish()
    assert not any(get_soft_mask(t) for t in p.targets)  # the parametrization is gone
    for t, m, w, c in zip(p.targets, soft, raw, p.counts):
        keep = get_mask(t)
        assert int(torch.count_nonzero(~keep)) == c  # exact per-layer budget
        assert torch.equal(keep, m >= 0.5)  # the hard mask is the soft mask rounded
        torch.testing.assert_close(t.weight, w * keep)  # kept weights are the raw trained weights
    assert secateurs.sparsity(model) == pytest.approx(0.8, abs=1 / sum(t.numel for t in p.targets))
    assert p.history[-1]["phase"] == "hard"


def test_pdp_end_step_then_masks_hold_with_adamw():
    model = mlp()
    p = PDP(model, 0.7, ramp_steps=4, end_step=6)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # created after the pruner, as the protocol says
    sgd_steps(model, p, 6, opt=opt)
    assert p.hard and p.history[-1] == {"step": 6, "phase": "hard", "target_sparsity": 0.7,
                                        "sparsity": p.sparsity()}
    nz = nonzeros(model)
    sgd_steps(model, p, 5, opt=opt, seed=2)
    assert nonzeros(model) == nz
    assert secateurs.sparsity(model) == pytest.approx(0.7, abs=1 / sum(t.numel for t in p.targets))


def test_pdp_nm_ramp_and_exact_2_4():
    model = mlp()
    p = PDP(model, None, pattern="2:4", ramp_steps=4, frequency=2)
    assert [p.kept_per_group(s) for s in (0, 1, 2, 3, 4, 9)] == [3, 3, 2, 2, 2, 2]
    assert p.sparsity_at(0) == 0.25
    sgd_steps(model, p, 5)
    assert all(get_soft_mask(t).keep_n == 2 for t in p.targets)
    p.finish()
    for m in model:
        if isinstance(m, nn.Linear):
            assert nm_exact(m.weight.detach(), 2, 4)


def test_pdp_remove_soft_masks_restores_the_model():
    model = mlp()
    x = torch.randn(5, 16)
    ref = model(x)
    p = PDP(model, 0.5)
    assert not torch.allclose(model(x), ref)
    p.remove_soft_masks()
    torch.testing.assert_close(model(x), ref)
    assert not any(hasattr(m, "parametrizations") for m in model)


def test_pdp_on_a_pre_pruned_model_keeps_old_masks():
    model = mlp()
    secateurs.prune(model, 0.3)
    old = [get_mask(t).clone() for t in masked_targets(model)]
    p = PDP(model, 0.6, allocation="uniform")
    p.finish()
    for t, o in zip(masked_targets(model), old):
        assert not (get_mask(t) & ~o).any()  # nothing pruned before comes back
    assert secateurs.sparsity(model) == pytest.approx(0.6, abs=0.01)


def test_pdp_trains_on_digits(digits):
    train, test = digits
    torch.manual_seed(0)
    model = build_model("lenet300")
    epochs = 8
    p = PDP.from_budget(model, sparsity=0.9, total_steps=epochs * len(train), seed=0)

    def on_step(step, opt):
        if p.optimizer is None:
            p.attach_optimizer(opt)
        p.step()

    fit(model, train, epochs, lr=0.05, on_step=on_step, num_threads=1)
    p.finish()
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1e-4)
    assert evaluate(model, test)["accuracy"] > 0.85


@pytest.mark.parametrize("kw, err, match", [
    ({"temperature": 0}, InvalidArgumentError, "temperature"),
    ({"temperature": -1e-3}, InvalidArgumentError, "temperature"),
    ({"temperature": float("inf")}, InvalidArgumentError, "temperature"),
    ({"sparsity": 1.0}, InvalidArgumentError, "sparsity"),
    ({"frequency": 0}, InvalidArgumentError, "frequency"),
    ({"ramp_steps": -1}, InvalidArgumentError, "ramp_steps"),
    ({"start_step": 3, "ramp_steps": 5, "end_step": 6}, InvalidArgumentError, "ramp"),
    ({"pattern": "4x4"}, PatternError, "not supported"),
    ({"pattern": "2:4", "sparsity": 0.9}, PatternError, "implies"),
    ({"allocation": "owl"}, InvalidArgumentError, "statistics"),
])
def test_pdp_bad_input(kw, err, match):
    model = mlp()
    args = {"sparsity": 0.5, **kw}
    with pytest.raises(err, match=match):
        PDP(model, **args)
    assert not any(hasattr(m, "parametrizations") for m in model)  # nothing attached


def test_pdp_registered_and_from_budget():
    assert registry.get("schedule", "pdp") is PDP
    p = PDP.from_budget(mlp(), sparsity=0.9, total_steps=1000)
    assert (p.start_step, p.frequency, p.temperature, p.allocation) == (160, 10, 1e-4, "global")
    assert p.start_step + p.ramp_steps <= 1000 and p.ramp_factor(1000) == 1.0
    assert isinstance(get_soft_mask(p.targets[0]), SoftMask)


def test_pdp_and_iss_nm_on_a_transposed_gpt2_conv1d():
    """GPT-2's Conv1D stores its weight (in, out): N:M groups run along the inputs, i.e. down the columns."""
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    for cls, kw in ((PDP, {"temperature": 1e-3}), (IterativeSoftShrinkage, {"end_step": 3})):
        torch.manual_seed(0)
        model = nn.Sequential(Conv1D(6, 8), nn.ReLU(), Conv1D(4, 6))  # weights (8, 6) and (6, 4)
        p = cls(model, None, pattern="2:4", targets=["0"], **kw)
        x = torch.randn(3, 8)
        model(x).sum().backward()
        p.finish()
        w = model[0].weight.detach()
        assert nm_exact(w.t(), 2, 4)  # the (out, in) view keeps 2 of every 4 inputs
        assert torch.count_nonzero(model[2].weight) == model[2].weight.numel()  # not targeted


@pytest.mark.parametrize("cls, kw", [(PDP, {}), (IterativeSoftShrinkage, {"end_step": 4})])
def test_min_keep_floor_and_unreachable(cls, kw):
    model = mlp()  # layers of 512, 256 and 32 weights
    p = cls(model, 0.9, allocation="global", min_keep=20, **kw)
    sgd_steps(model, p, 4)
    p.finish()
    assert min(nonzeros(model)) >= 20
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1e-3)
    fresh = mlp(1)
    with pytest.raises(secateurs.errors.UnreachableTargetError):
        cls(fresh, 0.95, allocation="global", min_keep=100, **kw)  # 3 x 100 kept > 5% of the 800
    assert not any(hasattr(m, "parametrizations") for m in fresh)
    with pytest.raises(InvalidArgumentError, match="min_keep"):
        cls(fresh, 0.5, min_keep=-1, **kw)
