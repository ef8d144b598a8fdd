"""InfoBatch (Qin et al. 2024): skipped fraction, exact 1/(1-r) rescaling, annealing, zoo.fit and a plain loop."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from secateurs.data.infobatch import InfoBatch
from secateurs.errors import InvalidArgumentError


def toy(n=100):
    return TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.zeros(n, dtype=torch.long))


def run_epoch(ib, losses_of, batch_size=10):
    """One epoch of a plain loop: feed each batch's per-example losses (a function of the example) to update()."""
    seen, returned = [], []
    for x, _ in DataLoader(ib, batch_size=batch_size, sampler=ib.sampler):
        idx = x[:, 0].long()
        seen += idx.tolist()
        per = losses_of(idx).requires_grad_()
        returned.append((idx, per, ib.update(per)))
    return seen, returned


def test_first_epoch_full_then_skips_expected_fraction_and_rescales_exactly():
    n, r = 100, 0.5
    ib = InfoBatch(toy(n), num_epochs=8, ratio=r, seed=0)
    loss = lambda idx: (idx < 40).float() * 0.1 + (idx >= 40).float() * 1.0  # 40 well-learned (below the mean)
    seen, _ = run_epoch(ib, loss)
    assert sorted(seen) == list(range(n))  # equal initial scores: nothing pruned in epoch 0
    seen, returned = run_epoch(ib, loss)
    well = [i for i in seen if i < 40]
    assert len(well) == int((1 - r) * 40) == 20 and len(set(seen)) == len(seen) == 80
    assert set(range(40, 100)) <= set(seen)  # every not-well-learned example is kept
    for idx, per, out in returned:  # weighted mean: kept well-learned get exactly 1/(1-r)
        w = torch.where(idx < 40, torch.tensor(1 / (1 - r)), torch.tensor(1.0))
        assert torch.equal(out, (per * w).mean())
        out.backward()
        assert torch.allclose(per.grad, w / len(idx))
    assert ib.history[1]["skipped"] == 20 and ib.history[1]["well_learned"] == 40


def test_annealing_epochs_use_full_data_with_unit_weights():
    ib = InfoBatch(toy(50), num_epochs=8, ratio=0.7, anneal=0.25, seed=1)
    assert ib.prune_epochs == 6
    loss = lambda idx: idx.float() / 50
    sizes = []
    for _ in range(8):
        seen, returned = run_epoch(ib, loss)
        sizes.append(len(seen))
    assert sizes[0] == 50 and all(s < 50 for s in sizes[1:6]) and sizes[6:] == [50, 50]
    assert np.all(ib.weights == 1.0)  # reset in the full-data epochs
    assert ib.saved_fraction() == pytest.approx(sum(50 - s for s in sizes) / 400)


def test_random_control_skips_the_same_number_uniformly_and_follows_a_schedule():
    loss = lambda idx: (idx < 30).float() * 0.1 + 1.0 * (idx >= 30).float()
    ib = InfoBatch(toy(60), num_epochs=4, ratio=0.5, seed=0)
    rnd = InfoBatch(toy(60), num_epochs=4, ratio=0.5, seed=0, mode="random")
    skipped_outside = set()
    for _ in range(3):
        run_epoch(ib, loss)
        seen, _ = run_epoch(rnd, loss)
        skipped_outside |= {i for i in set(range(60)) - set(seen) if i >= 30}
    # without a schedule, random mode skips the count InfoBatch would skip, drawn from all examples
    assert rnd.skipped_per_epoch == ib.skipped_per_epoch == [0, 15, 15] and skipped_outside
    rnd2 = InfoBatch(toy(60), num_epochs=4, mode="random", skip_schedule=[0, 7, 12], seed=3)
    for e in range(3):
        seen, returned = run_epoch(rnd2, loss)
        assert len(seen) == 60 - [0, 7, 12][e]
        assert all(torch.equal(out, per.mean()) for _, per, out in returned)  # no rescaling


def test_deterministic_and_bad_input():
    loss = lambda idx: idx.float()
    a, b = InfoBatch(toy(), 4, seed=5), InfoBatch(toy(), 4, seed=5)
    assert [run_epoch(a, loss)[0] for _ in range(3)] == [run_epoch(b, loss)[0] for _ in range(3)]
    for kw in ({"ratio": 1.0}, {"ratio": -0.1}, {"anneal": 1.5}, {"mode": "nope"}, {"skip_schedule": [1]}):
        with pytest.raises(InvalidArgumentError):
            InfoBatch(toy(), 4, **kw)
    ib = InfoBatch(toy(), 4)
    with pytest.raises(InvalidArgumentError):
        ib.update(torch.ones(3))  # no batch handed out yet
    with pytest.raises(InvalidArgumentError):
        ib.update(torch.ones(3, 2), indices=[0, 1, 2])


def test_with_zoo_fit_trains_and_saves_passes(digits):
    from secateurs import zoo

    torch.manual_seed(0)
    model = zoo.build_model("lenet300")
    ib = InfoBatch(digits.train, num_epochs=4, ratio=0.5, seed=0)
    losses = zoo.fit(model, ib.loader(64), 4, lr=0.05, seed=0, num_threads=1, loss_fn=ib.loss)
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [h["pruning"] for h in ib.history] == [True, True, True, False]
    assert ib.history[0]["skipped"] == 0 and ib.history[1]["skipped"] > 0 and ib.history[3]["skipped"] == 0
    acc = zoo.evaluate(model, digits.loaders(64)[1])["accuracy"]
    assert acc > 0.85
    # the cosine schedule still reaches (almost) zero although pruned epochs are shorter
    opt_lr = []
    ib2 = InfoBatch(digits.train, num_epochs=3, ratio=0.5, anneal=0.0, seed=0)
    zoo.fit(zoo.build_model("lenet300"), ib2.loader(64), 3, lr=0.05, seed=0, num_threads=1, loss_fn=ib2.loss,
            on_step=lambda s, opt: opt_lr.append(opt.param_groups[0]["lr"]))
    assert len(opt_lr) < 3 * 22 and opt_lr[-1] < 0.05 * 0.01
