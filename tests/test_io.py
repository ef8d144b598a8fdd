"""save -> load round-trips bit-exactly; masks are bit-packed; bad files are rejected before the model changes."""
import json

import pytest
import torch
from safetensors import safe_open

import secateurs
from secateurs.core.masks import get_mask, masked_targets
from secateurs.io import pack_bits, unpack_bits
from conftest import convnet, mlp, same, snapshot


def test_round_trip_bit_exact(tmp_path):
    model = convnet()
    secateurs.prune(model, 0.9, method="random", seed=1)
    path = secateurs.save(model, tmp_path / "m.safetensors", {"method": "random", "sparsity": 0.9})
    fresh = convnet(seed=5)
    secateurs.load(path, fresh)
    a, b = model.state_dict(), fresh.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(get_mask(s), get_mask(t)) for s, t in zip(masked_targets(model), masked_targets(fresh)))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model.eval()(x), fresh.eval()(x))


def test_masks_are_bit_packed_with_metadata(tmp_path):
    model = mlp()
    secateurs.prune(model, pattern="2:4")
    path = secateurs.save(model, tmp_path / "m.safetensors", {"pattern": "2:4"})
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["secateurs"])
        packed = f.get_tensor("1.weight.__mask__")
    assert packed.dtype == torch.uint8 and packed.numel() == 300 * 64 // 8
    assert meta["pattern"] == "2:4" and meta["version"] == secateurs.__version__
    assert meta["masks"]["1.weight"] == [300, 64]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_pack_unpack(n):
    m = torch.rand(n) > 0.5
    assert torch.equal(unpack_bits(pack_bits(m), [n]), m)


def test_load_into_pruned_model(tmp_path):
    src = mlp()
    secateurs.prune(src, 0.5)
    path = secateurs.save(src, tmp_path / "m.safetensors")
    dst = mlp(seed=2)
    secateurs.prune(dst, 0.9, method="random")
    secateurs.load(path, dst)
    assert secateurs.sparsity(dst) == pytest.approx(0.5, abs=1e-4)
    assert all(torch.equal(get_mask(s), get_mask(t)) for s, t in zip(masked_targets(src), masked_targets(dst)))


def test_dense_model_round_trip(tmp_path):
    src = mlp()
    path = secateurs.save(src, tmp_path / "dense.safetensors")
    dst = mlp(seed=3)
    secateurs.load(path, dst)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_bad_files_leave_model_unchanged(tmp_path):
    model = mlp(seed=4)
    snap = snapshot(model)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    for path in (tmp_path / "missing.safetensors", corrupt):
        with pytest.raises(secateurs.CheckpointError):
            secateurs.load(path, model)
    other = convnet()
    secateurs.prune(other, 0.5)
    wrong = secateurs.save(other, tmp_path / "other.safetensors")
    with pytest.raises(secateurs.CheckpointError, match="does not match"):
        secateurs.load(wrong, model)
    assert same(model, snap)


def test_save_is_atomic(tmp_path, monkeypatch):
    model = mlp()
    path = secateurs.save(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    import secateurs.io as io

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    secateurs.prune(model, 0.5)
    with pytest.raises(OSError):
        secateurs.save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
