"""Shared checks for the structured-pruning topology tests (one test file per topology)."""
from __future__ import annotations

import copy

import torch
from torch import nn

import secateurs.structured as st
from secateurs.structured.trace import call


def outputs(model: nn.Module, x) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = call(model, x)
    out = out.to_tuple()[0] if hasattr(out, "to_tuple") else out
    return out[0] if isinstance(out, (tuple, list)) else out


def zeroed(original: nn.Module, report: st.StructuredReport) -> nn.Module:
    """A copy of the unpruned model with every element of every removed unit set to zero (the weights,
    biases, BatchNorm statistics of the removed channels/heads, in every member layer)."""
    z = copy.deepcopy(original)
    params = dict(z.named_parameters(remove_duplicate=False))
    params.update(dict(z.named_buffers(remove_duplicate=False)))
    with torch.no_grad():
        for g in report.groups:
            for unit in g["removed"]:
                for m in g["members"]:
                    t = params[m["param"]]
                    start = m["offset"] + unit * m["inner"]
                    t.narrow(m["dim"], start, m["inner"]).zero_()
    return z


def check_ratio_zero(model: nn.Module, x, **kw) -> None:
    """Pruning at ratio 0 changes nothing: identical outputs, parameters and widths."""
    before = outputs(model, x)
    n = st.count_params(model)
    rep = st.prune(model, x, sparsity=0.0, **kw)
    assert rep.params_after == rep.params_before == n
    assert rep.widths == {}
    assert torch.equal(outputs(model, x), before)


def check_half(model: nn.Module, x, *, equivalent: bool = True, atol: float = 1e-5, **kw) -> st.StructuredReport:
    """Ratio 0.5: a smaller model that runs, fewer MACs, and (where it holds) the outputs of the original with
    the removed units zeroed."""
    original = copy.deepcopy(model)
    rep = st.prune(model, x, sparsity=0.5, **kw)
    assert rep.params_after < rep.params_before
    assert rep.macs_after < rep.macs_before
    assert rep.groups and any(g["removed"] for g in rep.groups)
    assert st.count_params(model) == rep.params_after
    for g in rep.groups:
        assert g["kept"] == g["units"] - len(g["removed"]) >= 1
    out = outputs(model, x)
    assert out.shape == outputs(original, x).shape
    if equivalent:
        ref = outputs(zeroed(original, rep), x)
        torch.testing.assert_close(out, ref, atol=atol, rtol=1e-4)
    return rep
