"""Structured pruning on the engine's axes: registered allocations (uniform, global with a normalizer) and layer
scores, the dry run ``structured.plan``, user surgery handlers, and the compensation hook after the cut."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import secateurs.structured as st
from secateurs import registry
from secateurs.errors import InvalidArgumentError
from secateurs.structured.allocations.global_ import normalize
from structured_helpers import outputs

X = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registered_components_are_listed():
    assert registry.names("structured_allocation") == ["global", "uniform"]
    assert registry.names("layer_score") == ["angular", "bi", "cka", "random"]
    assert "torch.nn.modules.linear.Linear" in registry.names("surgery")


def test_lamp_normalizer_is_score_over_the_sum_of_scores_at_least_as_large():
    s = torch.tensor([4.0, 1.0, 2.0, 2.0, 8.0])
    want = torch.tensor([4 / 12, 1 / 17, 2 / 16, 2 / 16, 1.0], dtype=torch.float64)  # Lee et al. 2021, eq. 2
    torch.testing.assert_close(normalize(s, "lamp"), want)
    torch.testing.assert_close(normalize(s, "max"), s.double() / 8)
    torch.testing.assert_close(normalize(s, "mean"), s.double() / 3.4)
    z = normalize(s, "standardize")
    assert abs(float(z.mean())) < 1e-12 and abs(float(z.std(unbiased=False)) - 1) < 1e-12


@pytest.mark.parametrize("normalizer", ["mean", "max", "standardize", "lamp"])
def test_global_allocation_with_each_normalizer(normalizer):
    model = _mlp()
    rep = st.prune(model, X, sparsity=0.5, allocation="global", allocation_options={"normalizer": normalizer})
    assert rep.options["normalizer"] == normalizer and rep.allocation == "global"
    assert sum(g["units"] - g["kept"] for g in rep.groups) == 24  # half of the 16 + 32 units, one ranking
    assert all(g["kept"] >= 1 for g in rep.groups) and outputs(model, X).shape == (6, 3)


def test_lamp_differs_from_mean_where_scales_differ():
    model = _mlp()
    with torch.no_grad():
        model[0].weight[:8] *= 0.01  # half of layer 0's neurons nearly dead
    kept = {}
    for norm in ("mean", "lamp"):
        p = st.plan(copy.deepcopy(model), X, 0.5, allocation="global", allocation_options={"normalizer": norm})
        kept[norm] = [g["kept"] for g in p.groups]
    assert kept["mean"] != kept["lamp"]


def test_bad_allocation_options_refused():
    with pytest.raises(InvalidArgumentError):
        st.prune(_mlp(), X, allocation="global", allocation_options={"normalizer": "median"})
    with pytest.raises(InvalidArgumentError):
        st.prune(_mlp(), X, allocation="globl")


def test_plan_is_a_dry_run_of_prune():
    model = _mlp()
    before = _state(model)
    p = st.plan(model, X, 0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].out_features == 16 and p.params_after < p.params_before
    by_name = {(r.name, r.dim): r.indices for r in p.removals}
    assert set(by_name) == {("0.weight", 0), ("0.bias", 0), ("2.weight", 1), ("2.weight", 0), ("2.bias", 0),
                            ("4.weight", 1)}
    assert len(by_name[("0.weight", 0)]) == 8 and by_name[("0.weight", 0)] == by_name[("2.weight", 1)]
    original = copy.deepcopy(model)
    rep = st.prune(model, X, sparsity=0.5)
    assert [g["removed"] for g in rep.groups] == [g["removed"] for g in p.groups]
    keep0 = [i for i in range(16) if i not in by_name[("0.weight", 0)]]
    assert torch.equal(model[0].weight, original[0].weight[keep0])
    assert p.to_dict()["removals"][0].keys() == {"module", "param", "dim", "indices"}


class Gated(nn.Module):
    """A user layer: a weight, a per-output gain, and its width stored as a plain int its forward uses."""

    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) * 0.3)
        self.gain = nn.Parameter(torch.rand(o) + 0.5)
        self.width = o

    def forward(self, x):
        return (F.linear(x, self.weight) * self.gain).reshape(*x.shape[:-1], self.width)


def _gated_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), Gated(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()


def test_user_surgery_handler():
    model = _gated_model()
    rep = st.prune(model, X, sparsity=0.5)  # no handler: the stale width breaks it, so its widths are kept
    assert model[2].weight.shape == (32, 16) and model[2].width == 32
    assert any("broke in 2" in w for w in rep.warnings)
    seen = []

    def handler(m, kept):
        seen.append({k: {d: i.tolist() for d, i in dims.items()} for k, dims in kept.items()})
        m.width = m.weight.shape[0]
    st.register_surgery(Gated, handler)
    try:
        model = _gated_model()
        original = copy.deepcopy(model)
        rep = st.prune(model, X, sparsity=0.5)
    finally:
        registry._REGISTRY["surgery"].pop(f"{Gated.__module__}.{Gated.__qualname__}")
    assert model[2].weight.shape == (16, 8) and model[2].width == 16 and model[2].gain.shape == (16,)
    assert not any("broke" in w for w in rep.warnings)
    kept_out = [i for i in range(32) if i not in next(g for g in rep.groups if g["units"] == 32)["removed"]]
    assert seen[-1]["weight"][0] == kept_out and seen[-1]["gain"][0] == kept_out and len(seen[-1]["weight"][1]) == 8
    assert torch.equal(model[2].gain, original[2].gain[kept_out])


def test_register_surgery_refuses_what_is_not_a_module_type():
    with pytest.raises(InvalidArgumentError):
        st.register_surgery(int, lambda m, kept: None)


def test_compensation_is_called_with_the_removed_channels():
    model = _mlp()
    original = copy.deepcopy(model)
    calls = []

    def compensate(m, cut):
        calls.append(cut)
        with torch.no_grad():  # a trivial compensation: the next layer's bias absorbs the removed columns' sum
            for r in cut.of("2.weight"):
                if r.dim == 1:
                    m[2].bias += r.values.sum(1)[[i for i in range(32) if i in kept2]]
    p = st.plan(copy.deepcopy(model), X, 0.5)
    removed0 = next(r.indices for r in p.removals if r.name == "0.weight" and r.dim == 0)
    removed2 = next(r.indices for r in p.removals if r.name == "2.weight" and r.dim == 0)
    kept2 = [i for i in range(32) if i not in removed2]
    rep = st.prune(model, X, sparsity=0.5, compensate=compensate)
    assert len(calls) == 1
    cut = calls[0]
    assert cut.model is model and model[0].out_features == 8  # called after the cut
    col = next(r for r in cut.of("2.weight") if r.dim == 1)
    assert col.indices == removed0 and torch.equal(col.values, original[2].weight[:, removed0])
    assert [g["removed"] for g in cut.groups] == [g["removed"] for g in rep.groups]
    want = original[2].bias[kept2] + original[2].weight[:, removed0].sum(1)[kept2]
    torch.testing.assert_close(model[2].bias, want)


def test_a_failing_compensation_leaves_the_model_as_it_was():
    model = _mlp()
    before = _state(model)

    def bad(m, cut):
        with torch.no_grad():
            m[4].bias += 1.0  # a kept parameter of a module the cut touched, edited in place
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        st.prune(model, X, sparsity=0.5, compensate=bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InvalidArgumentError):
        st.prune(model, X, sparsity=0.5, compensate=3)


def test_layer_scores_are_registered_components():
    from secateurs.structured.layer_scores import LayerScore
    from secateurs.registry import register

    @register("layer_score", "last_test_only")
    class Last(LayerScore):
        """Remove the last removable blocks."""

        def select(self, ctx, n):
            return sorted(ctx.removable[-n:]), [None] * len(ctx.blocks)
    try:
        torch.manual_seed(0)
        model = nn.Module()
        model.layers = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)])
        model.forward = lambda x: model.layers(x)
        last = model.layers[3]
        rep = st.prune_layers(model.eval(), X, n=1, method="last_test_only", blocks="layers")
        assert rep.removed == [3] and len(model.layers) == 3 and all(b is not last for b in model.layers)
    finally:
        registry._REGISTRY["layer_score"].pop("last_test_only")


def test_importance_and_criterion_names_do_not_collide():
    assert not set(registry.names("importance")) & set(registry.names("criterion"))
    assert {"group_taylor", "group_random"} <= set(registry.names("importance"))
    a, b = _mlp(), _mlp()
    ra = st.prune(a, X, sparsity=0.5, method="random", seed=3)  # the old name: the group importance still
    rb = st.prune(b, X, sparsity=0.5, method="group_random", seed=3)
    assert [g["removed"] for g in ra.groups] == [g["removed"] for g in rb.groups]
    assert ra.importance == "random"
