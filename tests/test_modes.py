"""Every entry point gives a model back with each submodule's own train/eval flag and each parameter's own
requires_grad: a training model with a frozen (eval-mode) BatchNorm and a frozen parameter keeps both frozen.

``model.train(was)`` — the old restore — set every submodule to ``was`` and unfroze the BatchNorm."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import secateurs
import secateurs.structured as st
from conftest import convnet, modes, same, snapshot
from secateurs.core.modes import eval_mode, requires_grad
from secateurs.zoo import build_model

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def frozen_convnet() -> nn.Module:
    """Training, except BatchNorm 1 (frozen in eval mode) and the first conv's bias (requires_grad False)."""
    model = convnet().train()
    model[1].eval()
    model[0].bias.requires_grad_(False)
    return model


def _frozen_as_before(model: nn.Module, before: tuple[dict, dict]) -> None:
    assert modes(model) == before
    assert not model[1].training and model[4].training and not model[0].bias.requires_grad


def test_eval_mode_restores_each_submodule_and_requires_grad_each_parameter():
    model = frozen_convnet()
    before = modes(model)
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert modes(model) == before
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert modes(model) == before
    params = list(model.parameters())
    with requires_grad(params):
        assert all(p.requires_grad for p in params)
    with requires_grad(params, False):
        assert not any(p.requires_grad for p in params)
    assert modes(model) == before


def test_same_oracle_sees_mode_and_requires_grad_changes():
    model = frozen_convnet()
    snap = snapshot(model)
    assert same(model, snap)
    model.train()  # the BatchNorm wakes up: nothing else changed
    assert not same(model, snap)
    model[1].eval()
    assert same(model, snap)
    model[0].bias.requires_grad_(True)
    assert not same(model, snap)


def test_structured_prune_keeps_frozen_batchnorm_and_parameter():
    model = frozen_convnet()
    before = modes(model)
    st.prune(model, X, sparsity=0.5)
    assert model[0].out_channels == 4  # pruned for real
    _frozen_as_before(model, before)


def test_structured_prune_failure_keeps_modes():
    model = frozen_convnet()
    snap = snapshot(model)
    with pytest.raises(secateurs.PruningError):
        st.prune(model, torch.randn(2, 3, 8, 8))  # wrong input channels: traced, fails, restored
    assert same(model, snap)


def test_count_macs_and_latency_keep_modes():
    model = frozen_convnet()
    snap = snapshot(model)
    assert st.count_macs(model, X) > 0
    assert same(model, snap)
    st.latency([model], X, rounds=2, warmup=1)
    assert same(model, snap)


def test_prune_layers_keeps_modes():
    torch.manual_seed(0)
    model = build_model("resnet20").train()
    model.layer1[0].bn1.eval()
    model.conv1.weight.requires_grad_(False)
    before = modes(model)
    st.prune_layers(model, X, n=1, blocks="layer2")
    assert len(model.layer2) == 2
    flags, grads = modes(model)
    assert not model.layer1[0].bn1.training and not model.conv1.weight.requires_grad
    assert flags == {n: f for n, f in before[0].items() if n in flags}  # every surviving module (and layer2)
    assert grads == {n: g for n, g in before[1].items() if n in grads}


def test_engine_prune_keeps_modes(batches):
    model = frozen_convnet()
    model[3].weight.requires_grad_(False)  # a frozen target: SNIP still gets its gradient, the flag stays
    before = [(m, m.training) for m in model.modules()], [(p, p.requires_grad) for p in model.parameters()]
    secateurs.prune(model, 0.5, method="snip", data=batches)  # adds mask parametrizations (new modules)
    assert [(m, m.training) for m, _ in before[0]] == before[0]
    assert [(p, p.requires_grad) for p, _ in before[1]] == before[1]
    assert not model[3].parametrizations.weight.original.requires_grad


@pytest.mark.parametrize("method", ["wanda", "gblm"])
def test_llm_prune_and_perplexity_keep_modes(method):
    pytest.importorskip("transformers")
    from test_llm_blocks import make_model, rows

    from secateurs import llm

    model = make_model("llama").train()
    block = model.model.layers[0]
    block.mlp.eval()
    block.mlp.up_proj.weight.requires_grad_(False)  # a frozen target of the pruning
    model.model.embed_tokens.weight.requires_grad_(False)
    before = modes(model)
    llm.prune(model, rows(4, 16), method=method, sparsity=0.5, progress=False)
    assert float((block.mlp.up_proj.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert modes(model) == before
    assert llm.perplexity(model, rows(1, 32)[0], seqlen=16, progress=False) > 0
    assert modes(model) == before
