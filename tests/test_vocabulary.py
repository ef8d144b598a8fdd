"""One vocabulary: ``sparsity`` is the fraction removed and ``method`` names the component everywhere; the old
names still work for one release, with a DeprecationWarning, and giving both is refused."""
import numpy as np
import pytest
import torch
from torch import nn

import secateurs
from secateurs import data as D
from secateurs.schedules import GradualMagnitude


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_data_select_rate_and_strategy_are_deprecated_aliases():
    scores = np.random.default_rng(0).random(50)
    new = D.select(scores, sparsity=0.7, method="hard", seed=0)
    with pytest.warns(DeprecationWarning, match="rate= is deprecated"):
        old = D.select(scores, rate=0.7, strategy="hard", seed=0)
    np.testing.assert_array_equal(new, old)
    assert len(new) == 15
    with pytest.raises(secateurs.InvalidArgumentError, match="deprecated name of sparsity"):
        D.select(scores, rate=0.7, sparsity=0.7)


def test_gmp_final_sparsity_is_a_deprecated_alias():
    a = GradualMagnitude(_mlp(), sparsity=0.8, start_step=0, end_step=10, frequency=1)
    with pytest.warns(DeprecationWarning, match="final_sparsity= is deprecated"):
        b = GradualMagnitude(_mlp(), final_sparsity=0.8, start_step=0, end_step=10, frequency=1)
    assert a.sparsity_at(10) == b.sparsity_at(10) == pytest.approx(0.8)
    with pytest.raises(secateurs.InvalidArgumentError):
        GradualMagnitude(_mlp(), sparsity=0.8, final_sparsity=0.8, start_step=0, end_step=10, frequency=1)


def test_structured_prune_ratio_and_importance_are_deprecated_aliases():
    import secateurs.structured as st

    x = torch.randn(2, 8)
    a, b = _mlp(), _mlp()
    ra = st.prune(a, x, sparsity=0.5, method="l1")
    with pytest.warns(DeprecationWarning, match="ratio= is deprecated"):
        rb = st.prune(b, x, ratio=0.5, importance="l1")
    assert ra.params_after == rb.params_after < ra.params_before
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
