"""Every bad input raises the documented error and leaves the model bit-identical."""
import math

import pytest
import torch

import secateurs
from secateurs import errors
from conftest import convnet, mlp, modes, same, snapshot


def nan_model():
    m = mlp()
    with torch.no_grad():
        m[1].weight[0, 0] = math.nan
    return m


CASES = [
    (dict(sparsity=1.0), errors.InvalidArgumentError),
    (dict(sparsity=-0.1), errors.InvalidArgumentError),
    (dict(sparsity=float("nan")), errors.InvalidArgumentError),
    (dict(sparsity=None), errors.InvalidArgumentError),
    (dict(pattern="4:4"), errors.PatternError),
    (dict(pattern="5:4"), errors.PatternError),
    (dict(pattern="2:3"), errors.PatternError),  # 64 inputs not divisible by 3
    (dict(sparsity=0.9, pattern="2:4"), errors.PatternError),  # contradicts the implied 0.5
    (dict(sparsity=0.5, method="magnitud"), errors.UnknownNameError),
    (dict(sparsity=0.5, allocation="globl"), errors.UnknownNameError),
    (dict(sparsity=0.5, pattern="diagonal"), errors.UnknownNameError),
    (dict(sparsity=0.5, method="snip"), errors.MissingDataError),
    (dict(sparsity=0.5, targets=["nope.*"]), errors.NoTargetsError),
    (dict(sparsity=0.5, ignore="*"), errors.NoTargetsError),
    (dict(sparsity=0.99, min_keep=10_000), errors.UnreachableTargetError),
    (dict(sparsity=0.5, min_keep=-1), errors.InvalidArgumentError),
    (dict(sparsity=0.9, dense=["1", "3"]), errors.UnreachableTargetError),
]


@pytest.mark.parametrize("kwargs,error", CASES, ids=[str(c[0]) for c in CASES])
def test_bad_input_leaves_model_unchanged(kwargs, error):
    model = mlp()
    secateurs.prune(model, 0.3)  # also check that existing masks survive a failed call
    snap = snapshot(model)
    with pytest.raises(error) as exc:
        secateurs.prune(model, **kwargs)
    assert isinstance(exc.value, secateurs.PruningError)
    assert isinstance(exc.value, ValueError)
    assert str(exc.value)
    assert same(model, snap)


def test_did_you_mean():
    with pytest.raises(errors.UnknownNameError, match="Did you mean 'magnitude'"):
        secateurs.prune(mlp(), 0.5, method="magnitud")


def test_nan_weights():
    model = nan_model()
    snap = snapshot(model)
    with pytest.raises(errors.NonFiniteError):
        secateurs.prune(model, 0.5)
    assert all(  # NaN != NaN, so compare bit patterns
        torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in zip(model.state_dict().values(), snap[0].values())
    )
    assert not any(".parametrizations." in k for k in model.state_dict())


def test_nan_scores_roll_back_iterative(monkeypatch, batches):
    """A criterion that produces NaN in a later round of an iterative schedule rolls back every mask."""
    from secateurs.criteria.synflow import SynFlow

    calls = {"n": 0}
    real = SynFlow.scores

    def flaky(self, ctx):
        calls["n"] += 1
        out = real(self, ctx)
        if calls["n"] == 5:
            bad = out[0]().clone()
            bad[0] = math.nan
            out[0] = lambda: bad
        return out

    monkeypatch.setattr(SynFlow, "scores", flaky)
    model = convnet()
    model.input_shape = (1, 8, 8)
    snap = snapshot(model)
    with pytest.raises(errors.NonFiniteError):
        secateurs.prune(model, 0.9, method="synflow")
    assert calls["n"] == 5
    assert same(model, snap)


def test_bad_model_type():
    with pytest.raises(errors.InvalidArgumentError):
        secateurs.prune("not a model", 0.5)


def test_llm_method_without_calibration_is_missing_data():
    """The LLM front door raises the engine's MissingDataError (not a plain InvalidArgumentError), naming the
    component and the calibration it needs."""
    pytest.importorskip("transformers")
    from test_llm_blocks import make_model

    from secateurs import llm

    model = make_model("llama")
    snap = snapshot(model)
    with pytest.raises(errors.MissingDataError, match=r"criterion 'wanda' needs calibration data.*calibration="):
        llm.prune(model, None, method="wanda", progress=False)
    assert same(model, snap)


def test_structured_nan_importance_is_non_finite():
    import secateurs.structured as st

    model = convnet()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = math.nan
    snap = snapshot(model)
    with pytest.raises(errors.NonFiniteError, match="non-finite scores"):
        st.prune(model, torch.randn(2, 1, 8, 8), sparsity=0.5)
    assert all(torch.equal(a.view(torch.int32), b.view(torch.int32))
               for a, b in zip(model.state_dict().values(), snap[0].values()) if a.is_floating_point())
    assert snap[2] == modes(model) and model[0].out_channels == 8


@pytest.mark.parametrize("power", [0, -0.5, math.nan, math.inf, "half", True, None])
def test_bad_erk_power_scale(power):
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(errors.InvalidArgumentError, match="erk_power_scale must be"):
        secateurs.prune(model, 0.5, allocation="erk", erk_power_scale=power)
    assert same(model, snap)


def test_erk_power_scale_is_erks_option_only():
    with pytest.raises(errors.InvalidArgumentError, match="erk_power_scale"):
        secateurs.prune(mlp(), 0.5, allocation="er", erk_power_scale=0.5)
