"""BatchNorm folding and the inference form: outputs equal to eval mode, only foldable pairs folded."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.structured import prune
from secateurs.structured.deploy import FusedPair, for_inference, fuse_bn
from secateurs.zoo import build_model


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _x(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _bns(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "mobilenetv2"])
def test_fuse_bn_zoo_cnn_keeps_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = _trained_like(build_model(name))
    fused = copy.deepcopy(model)
    pairs = fuse_bn(fused, _x(2))
    assert len(pairs) == _bns(model) and _bns(fused) == 0  # every BatchNorm of these CNNs follows a conv
    assert all(isinstance(p, FusedPair) for p in pairs)
    x = _x()
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-5, rtol=0)
    # the folded layers carry the shift as a bias
    assert all(fused.get_submodule(p.layer).bias is not None for p in pairs)


def test_fuse_bn_after_structured_prune() -> None:
    torch.manual_seed(0)
    model = _trained_like(build_model("resnet20"))
    prune(model, _x(8), sparsity=0.5, method="l2")
    fused = copy.deepcopy(model)
    fuse_bn(fused, _x(2))
    with torch.no_grad():
        assert torch.allclose(fused(_x()), model(_x()), atol=1e-5, rtol=0)


class _Branchy(nn.Module):
    """conv1 → bn1 foldable; conv2's output is also read by the skip, so bn2 must stay; a Linear → BatchNorm1d
    pair; a BatchNorm without affine parameters after conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4, affine=False)
        self.fc, self.bnf = nn.Linear(4, 6), nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = torch.relu(self.bn2(y) + y)  # y read twice: folding bn2 would change the skip
        x = self.bn3(self.conv3(x))
        return self.bnf(self.fc(x.mean((2, 3))))


def test_fuse_bn_folds_only_sole_consumers() -> None:
    torch.manual_seed(0)
    model = _trained_like(_Branchy())
    fused = copy.deepcopy(model)
    pairs = fuse_bn(fused, _x(2))
    assert {(p.layer, p.batchnorm) for p in pairs} == {("conv1", "bn1"), ("conv3", "bn3"), ("fc", "bnf")}
    assert isinstance(fused.bn2, nn.BatchNorm2d) and isinstance(fused.bn1, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(fused(_x()), model(_x()), atol=1e-5, rtol=0)


def test_fuse_bn_skips_a_conv_whose_output_is_returned() -> None:
    class TwoOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.conv(x)
            return y, self.bn(y)

    model = _trained_like(TwoOut())
    assert fuse_bn(model, _x(2)) == []
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_fuse_bn_rejects_training_mode_and_bad_inputs_untouched() -> None:
    torch.manual_seed(0)
    model = _trained_like(build_model("vgg11")).train()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InvalidArgumentError, match="eval"):
        fuse_bn(model, _x(2))
    model.eval()
    with pytest.raises(InvalidArgumentError, match="example_inputs"):
        fuse_bn(model, torch.randn(2, 3, 8, 8))  # the model takes 1 channel
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _bns(model) == 8


@pytest.mark.parametrize("channels_last,freeze", [(False, False), (True, False), (False, True)])
def test_for_inference_keeps_outputs(channels_last: bool, freeze: bool) -> None:
    torch.manual_seed(0)
    model = _trained_like(build_model("mobilenetv2"))
    ref = copy.deepcopy(model)
    out = for_inference(model, _x(2), channels_last=channels_last, freeze=freeze)
    x = _x()
    xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with torch.no_grad():
        assert torch.allclose(out(xi), ref(x), atol=1e-5, rtol=0)
        assert torch.allclose(out(_x(5, seed=3)), ref(_x(5, seed=3)), atol=1e-5, rtol=0)  # another batch size
    assert isinstance(out, torch.jit.ScriptModule) == freeze
    if not freeze:
        assert out is model and _bns(out) == 0
