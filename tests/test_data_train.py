"""Training on a kept subset: the step budget, determinism, the distillation loss and its gradient, teachers,
bad keep indices."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import secateurs.data as D
from secateurs.errors import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("shared_cache")


def test_distillation_loss_closed_form_and_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, requires_grad=True)
    t = 3 * torch.randn(6, 4, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    assert torch.allclose(D.distillation_loss(z, y, t, 0.0, 4.0), F.cross_entropy(z, y))
    T, a = 3.0, 0.7
    loss = D.distillation_loss(z, y, t, a, T)
    pt, ps = torch.softmax(t / T, 1), torch.softmax(z / T, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(loss, (1 - a) * F.cross_entropy(z, y) + a * T * T * kl, atol=1e-6)
    (grad,) = torch.autograd.grad(loss, z)
    onehot = F.one_hot(y, 4).float()
    expected = ((1 - a) * (torch.softmax(z, 1) - onehot) + a * T * (ps - pt)) / len(y)  # Hinton et al., Eq. 2
    assert torch.allclose(grad, expected, atol=1e-6)


def test_subset_training_budget_and_determinism(digits):
    keep = D.select(D.score("random", digits), 0.9, "random", labels=digits.train.tensors[1])
    a = D.train_subset(digits, keep, model="lenet300", seed=1)
    # lenet300's recipe: 20 epochs x 22 steps on 1,347 examples; 135 kept -> 2 full batches of 64 per epoch
    assert a["kept"] == 135 and a["n_train"] == 1347 and a["epochs"] == 220 and a["steps"] == 440
    assert 0.7 < a["accuracy"] <= 1 and not a["distill"]
    b = D.train_subset(digits, keep, model="lenet300", seed=1)
    assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]
    full, model = D.train_subset("digits", None, model="lenet300", epochs=3, return_model=True)
    assert full["kept"] == 1347 and full["epochs"] == 3 and not model.training
    assert full["accuracy"] > 0.9


def test_distillation_from_cached_teacher(digits):
    keep = D.select(D.score("random", digits), 0.95, "random")
    plain = D.train_subset("digits", keep, model="lenet300", seed=0)
    kd = D.train_subset("digits", keep, model="lenet300", seed=0, distill=True, temperature=2.0)
    assert kd["teacher"] == "lenet300" and kd["teacher_accuracy"] > 0.95 and kd["temperature"] == 2.0
    assert kd["accuracy"] > plain["accuracy"] + 0.03  # soft labels recover much of what 95 % pruning loses
    same = D.train_subset("digits", keep, model="lenet300", seed=0, distill=True, soft_weight=0.0)
    assert same["accuracy"] == plain["accuracy"]  # weight 0: exactly the plain recipe


def test_bad_arguments(digits):
    with pytest.raises(InvalidArgumentError, match="outside the data set's 1347 examples"):
        D.train_subset(digits, [0, 1347])
    with pytest.raises(InvalidArgumentError, match="repeated"):
        D.train_subset(digits, [3, 3])
    with pytest.raises(InvalidArgumentError, match="empty"):
        D.train_subset(digits, [])
    with pytest.raises(InvalidArgumentError, match="boolean keep mask"):
        D.train_subset(digits, np.ones(5, dtype=bool))
    with pytest.raises(InvalidArgumentError, match="soft_weight"):
        D.train_subset(digits, [0, 1], distill=True, soft_weight=1.5)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        D.train_subset(digits, [0, 1], distill=True, temperature=0)
    with pytest.raises(InvalidArgumentError, match="distill=False"):
        D.train_subset(digits, [0, 1], teacher="lenet300")
    with pytest.raises(InvalidArgumentError, match="epochs"):
        D.train_subset(digits, [0, 1], epochs=0)
    with pytest.raises(InvalidArgumentError, match="lr must be"):
        D.train_subset(digits, [0, 1], lr=-1.0)
