"""PruneSpec (the validated, serialisable plan of a prune call) and plan_masks (masks computed, model untouched)."""
import json

import pytest
import torch
from torch import nn

import secateurs
from secateurs import InvalidArgumentError, MaskPlan, PruneSpec, UnknownNameError, plan_masks
from secateurs.core.masks import get_mask, masked_targets
from secateurs.core.targets import resolve_targets


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def _data(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_spec_round_trips_through_json():
    spec = PruneSpec(0.6, "wanda", allocation="owl", targets=["0", "2"], min_keep=3, seed=5,
                     options={"owl_lambda": 0.1})
    back = PruneSpec.from_dict(json.loads(spec.to_json()))
    assert back == spec
    assert back.targets == ("0", "2") and back.options == {"owl_lambda": 0.1}


@pytest.mark.parametrize("kwargs,err", [
    ({"method": "magnitud"}, UnknownNameError),
    ({"allocation": "erkk"}, UnknownNameError),
    ({"options": {"owl_lambdaa": 0.1}}, InvalidArgumentError),
    ({"sparsity": 1.5}, InvalidArgumentError),
    ({"pattern": "2:4", "sparsity": 0.3}, secateurs.PatternError),
    ({"seed": "x"}, InvalidArgumentError),
    ({"targets": 3}, InvalidArgumentError),
])
def test_spec_validates_without_a_model(kwargs, err):
    base = {"sparsity": 0.5, "method": "magnitude"}
    base.update(kwargs)
    with pytest.raises(err):
        PruneSpec(**base)


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(InvalidArgumentError, match="ratio"):
        PruneSpec.from_dict({"ratio": 0.5})


def test_callable_targets_are_not_serialised():
    spec = PruneSpec(0.5, targets=lambda name, m: name == "0")
    with pytest.raises(InvalidArgumentError, match="callable"):
        spec.to_dict()


def test_prune_is_keyword_only_after_method():
    with pytest.raises(TypeError):
        secateurs.prune(_mlp(), 0.5, "magnitude", "global")  # allocation must be named


@pytest.mark.parametrize("spec", [
    PruneSpec(0.7, "magnitude", allocation="global"),
    PruneSpec(0.5, "wanda"),
    PruneSpec(None, "wanda", pattern="2:4"),
    PruneSpec(0.5, "sparsegpt"),
    PruneSpec(0.6, "snip", allocation="erk", min_keep=10),
    PruneSpec(0.5, "wanda", allocation="owl", options={"owl_lambda": 0.05}),
])
def test_plan_masks_leaves_the_model_untouched_and_equals_prune(spec):
    model = _mlp()
    before = _state(model)
    plan = plan_masks(model, spec, data=_data())
    assert isinstance(plan, MaskPlan)
    after = _state(model)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not masked_targets(model)
    assert abs(plan.report.sparsity - (spec.sparsity if spec.sparsity is not None else 0.5)) < 1e-3
    assert abs(plan.sparsity() - plan.report.sparsity) < 1e-9

    ref = _mlp()
    secateurs.run_spec(ref, spec, data=_data())
    by_key = {t.key: t for t in masked_targets(ref)}
    assert set(plan.masks) == set(by_key)
    for k, keep in plan.masks.items():
        assert torch.equal(keep, get_mask(by_key[k]))
    assert (spec.solver is None and spec.method != "sparsegpt") == (not plan.weights)

    applied = plan.apply(_mlp())
    for (k, v), (k2, v2) in zip(sorted(applied.state_dict().items()), sorted(ref.state_dict().items())):
        assert k == k2 and torch.equal(v, v2), k


def test_plan_composes_with_existing_masks():
    model = _mlp()
    secateurs.prune(model, 0.5, seed=0)
    masks_before = {t.key: get_mask(t).clone() for t in masked_targets(model)}
    state = _state(model)
    plan = plan_masks(model, PruneSpec(0.8))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for k, keep in plan.masks.items():
        assert not (keep & ~masks_before[k]).any()  # pruned stays pruned
    assert abs(plan.sparsity() - 0.8) < 1e-3


def test_apply_refuses_another_architecture_before_touching_it():
    plan = plan_masks(_mlp(), PruneSpec(0.5))
    other = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    state = _state(other)
    with pytest.raises(InvalidArgumentError, match="does not match"):
        plan.apply(other)
    assert all(torch.equal(state[k], v) for k, v in other.state_dict().items())
    assert not masked_targets(other)


def test_plan_masks_block_by_block_on_a_llama():
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randint(0, 64, (2, 16), generator=g), None) for _ in range(2)]
    spec = PruneSpec(0.5, "sparsegpt", blocks="model.layers", ignore=["lm_head"])
    before = _state(model)
    plan = plan_masks(model, spec, data=data, loss_fn=lambda out, y: out.logits.sum())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(plan.masks) == 14 and len(plan.weights) == 14
    names = {t.key for t in resolve_targets(model, None, ["lm_head"])}
    assert set(plan.masks) == names
