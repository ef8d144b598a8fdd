"""``report.method_options`` lists every option the caller passed, whichever component took it (criterion,
allocation or solver), as that component reports it."""
from __future__ import annotations

import pytest

import secateurs
from conftest import mlp


def test_solver_and_allocation_options_are_reported(batches):
    report = secateurs.prune(mlp(), 0.5, method="sparsegpt", data=batches, percdamp=0.05)
    assert report.method_options["percdamp"] == 0.05 and report.solver_options["percdamp"] == 0.05
    report = secateurs.prune(mlp(), 0.5, allocation="erk", erk_power_scale=0.5)
    assert report.method_options == {"erk_power_scale": 0.5} == report.allocation_options


def test_llm_sparsegpt_percdamp_is_reported():
    pytest.importorskip("transformers")
    from test_llm_blocks import make_model, rows

    from secateurs import llm

    report = llm.prune(make_model("llama"), rows(4, 16), method="sparsegpt", percdamp=0.05, blocksize=16,
                       progress=False)
    assert report.method_options == {"percdamp": 0.05, "blocksize": 16}
    assert report.to_dict()["method_options"]["percdamp"] == 0.05
