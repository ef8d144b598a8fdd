"""The ``secateurs.llm.prune`` entry point: every method × pattern × family, calibration handling, and every bad
input raising its documented error with the weights left bit-identical."""
from __future__ import annotations

import random

import pytest
import torch
from test_llm_blocks import VOCAB, make_model, rows

from secateurs.errors import (InvalidArgumentError, ModelStructureError, NonFiniteError, PatternError,
                              UnknownNameError)
from secateurs.llm import prune
from secateurs.core.blocks import find_blocks, find_linears, weight_2d
from secateurs.llm.calibration import draw_windows

METHODS = ["magnitude", "wanda", "sparsegpt", "gblm"]
PATTERNS = ["unstructured", "2:4", "4:8"]


def _nm_ok(w: torch.Tensor, n: int, m: int) -> bool:
    return bool(((w.reshape(w.shape[0], -1, m) != 0).sum(-1) <= n).all())


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_pattern_on_llama(method, pattern):
    model = make_model("llama")
    sparsity = 0.5 if pattern == "unstructured" else None
    report = prune(model, rows(8, 16), method=method, sparsity=sparsity, pattern=pattern, progress=False)
    assert report.overall_sparsity == pytest.approx(0.5, abs=1e-3)
    assert len(report.layers) == 14
    for layer in report.layers:
        w = weight_2d(find_linears(find_blocks(model)[1][layer.block])[layer.name.split(".", 3)[3]])
        assert layer.sparsity == pytest.approx(float((w == 0).float().mean()))
        if pattern != "unstructured":
            assert _nm_ok(w, *map(int, pattern.split(":")))
    assert "overall" in str(report) and report.to_dict()["layers"][0]["shape"]
    assert torch.isfinite(model(input_ids=rows(1, 8)).logits).all()


@pytest.mark.parametrize("family", ["opt", "gpt2", "bert"])
@pytest.mark.parametrize("method", METHODS)
def test_other_families(family, method):
    model = make_model(family)
    if method == "gblm" and family == "bert":
        with pytest.raises(InvalidArgumentError, match="no LM head"):
            prune(model, rows(4, 16), method=method, progress=False)
        return
    report = prune(model, rows(4, 16), method=method, sparsity=0.6, allocation="owl", owl_lambda=0.05,
                   progress=False)
    assert report.overall_sparsity == pytest.approx(0.6, abs=0.02)
    report = prune(model, rows(4, 16), method=method, sparsity=None, pattern="2:4", progress=False)
    path, blocks = find_blocks(model)
    assert len(report.layers) == sum(len(find_linears(b)) for b in blocks)
    for layer in report.layers:  # every group of 4 inputs keeps at most 2 (weights already zero may add zeros)
        w = weight_2d(find_linears(blocks[layer.block])[layer.name[len(path) + 1:].split(".", 1)[1]])
        assert _nm_ok(w, 2, 4) and layer.sparsity == pytest.approx(float((w == 0).float().mean()))


def test_deterministic_and_zero_sparsity_is_identity():
    a, b = make_model("llama"), make_model("llama")
    prune(a, rows(8, 16), method="sparsegpt", sparsity=0.5, progress=False)
    prune(b, rows(8, 16), method="sparsegpt", sparsity=0.5, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c, d = make_model("llama"), make_model("llama")
    prune(c, rows(4, 16), method="wanda", sparsity=0.0, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(c.state_dict().values(), d.state_dict().values()))


def test_bf16_model_is_pruned_in_float32_and_keeps_its_dtype():
    model = make_model("llama").to(torch.bfloat16)
    prune(model, rows(4, 16), method="sparsegpt", sparsity=0.5, progress=False)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    w = weight_2d(find_linears(find_blocks(model)[1][0])["mlp.down_proj"])
    assert float((w == 0).float().mean()) == pytest.approx(0.5)


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2", "bert"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_tensor_keeps_its_device_and_dtype(family, dtype):
    """fp16/bf16 checkpoints as users hold them: the blocks are computed in float32 on the CPU, and afterwards
    every parameter and buffer is back on its device in its dtype (no silent upcast of the whole model)."""
    model = make_model(family).to(dtype)
    before = {n: (t.device, t.dtype) for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    methods = ["wanda", "sparsegpt"] + (["gblm"] if family != "bert" else [])
    for method in methods:
        report = prune(model, rows(4, 16), method=method, sparsity=0.5, progress=False)
        after = {n: (t.device, t.dtype) for n, t in list(model.named_parameters()) + list(model.named_buffers())}
        assert after == before, method
        assert report.device == "cpu" and len(report.block_seconds) == 2
        assert report.dtype == str(dtype).replace("torch.", "")
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_calibration_windows_follow_wandas_recipe():
    ids = torch.arange(1000) % VOCAB
    got = draw_windows(ids, 5, 16, seed=3)
    random.seed(3)
    starts = [random.randint(0, 1000 - 16 - 1) for _ in range(5)]
    assert torch.equal(got, torch.stack([ids[s:s + 16] for s in starts]))
    model = make_model("llama")
    r1 = prune(model, ids, method="wanda", nsamples=5, seqlen=16, seed=3, progress=False)
    assert r1.calibration["nsamples"] == 5 and r1.calibration["drawn_windows"]
    r2 = prune(make_model("llama"), got, method="wanda", progress=False)  # 2-D: used as given
    assert r2.calibration["rows_sha256"] == r1.calibration["rows_sha256"] and not r2.calibration["drawn_windows"]


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


BAD = [
    (dict(sparsity=1.0), InvalidArgumentError, r"sparsity must be a number in \[0, 1\)"),
    (dict(sparsity=-0.1), InvalidArgumentError, "sparsity"),
    (dict(sparsity="half"), InvalidArgumentError, "sparsity"),
    (dict(sparsity=None), InvalidArgumentError, "None is only for N:M"),
    (dict(pattern="2:4", sparsity=0.7), InvalidArgumentError, "implies sparsity 0.5"),
    (dict(pattern="2:3", sparsity=None), PatternError, "not divisible by M=3"),
    (dict(pattern="2:4", allocation="erk"), PatternError, "allocation 'erk' cannot apply"),
    (dict(pattern="1:1"), PatternError, "0 < N < M"),
    (dict(method="wandaa"), UnknownNameError, "Did you mean 'wanda'"),
    (dict(allocation="owll"), UnknownNameError, "Did you mean 'owl'"),
    (dict(method="wanda", percdamp=0.1), InvalidArgumentError, "does not take option"),
    (dict(method="sparsegpt", percdamp=-1), InvalidArgumentError, "percdamp"),
    (dict(allocation="owl", owl_lambda=0.3, sparsity=0.5), InvalidArgumentError, "owl_lambda=0.3 is too large"),
    (dict(calibration=torch.arange(100) % VOCAB, nsamples=8, seqlen=16), InvalidArgumentError,
     r"has 100 tokens but nsamples × seqlen = 8 × 16 = 128"),
    (dict(calibration=rows(4, 16) + VOCAB), InvalidArgumentError, "outside the model's vocabulary of 96"),
    (dict(calibration=torch.zeros(4, 200, dtype=torch.long)), InvalidArgumentError, "exceeds the model's 128"),
    (dict(calibration=rows(4, 16), seqlen=8), InvalidArgumentError, "rows have 16 tokens but seqlen=8"),
    (dict(calibration=None), InvalidArgumentError, "needs calibration data"),
    (dict(calibration=torch.zeros(2, 2, 2, dtype=torch.long)), InvalidArgumentError, "1-D"),
    (dict(nsamples=0, calibration=torch.arange(100)), InvalidArgumentError, "nsamples"),
    (dict(blocks="model.nope"), ModelStructureError, "no submodule 'nope'"),
    (dict(batch_size=0), InvalidArgumentError, "batch_size"),
    (dict(device="cuda:0"), InvalidArgumentError, "no CUDA") if not torch.cuda.is_available() else
    (dict(device="nope"), InvalidArgumentError, "unknown device"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_raises_before_touching_weights(kwargs, error, match):
    model = make_model("llama")
    before = _snapshot(model)
    kwargs = {"calibration": rows(4, 16), "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        prune(model, **kwargs)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits (NaN == NaN there, and -0.0 != 0.0): for bit-identity checks."""
    return t.detach().contiguous().view(torch.int32 if t.element_size() == 4 else torch.int16)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_non_finite_weights_are_refused(method, value):
    """A NaN/Inf in the second block is found before the first block is pruned: NonFiniteError names the layer,
    every other tensor is bit-identical and the poisoned one still holds exactly the injected value."""
    model = make_model("llama")
    key = "model.layers.1.mlp.up_proj.weight"
    find_blocks(model)[1][1].mlp.up_proj.weight.data[0, 0] = value
    before = {k: _bits(v).clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteError, match="mlp.up_proj"):
        prune(model, rows(4, 16), method=method, progress=False)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in after.items():
        assert torch.equal(_bits(v), before[k]), f"{k} changed"
    poisoned = after[key]
    bad = ~torch.isfinite(poisoned)
    assert bad.sum() == 1 and bad[0, 0] and _bits(poisoned[0, 0]) == _bits(torch.tensor(value))
