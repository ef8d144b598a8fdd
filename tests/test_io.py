"""save -> load round-trips bit-exactly; masks are bit-packed; bad files are rejected before the model changes;
every output is written by the one atomic writer with the modes of a normal file / folder (umask respected)."""
import json
import os
import stat

import pytest
import torch
from safetensors import safe_open

import secateurs
from secateurs.core.masks import get_mask, masked_targets
from secateurs import io
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


# --------------------------------------------------------------------------- one atomic writer, normal file modes
@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    """Run the test under a process umask (restored after); yields the modes a normal file and folder get."""
    old = os.umask(request.param)
    try:
        yield 0o666 & ~request.param, 0o777 & ~request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _modes_under(folder):
    """Every file's and folder's mode under (and including) ``folder``."""
    return {p.relative_to(folder).as_posix(): _mode(p) for p in [folder, *folder.rglob("*")]}


def test_save_gets_a_normal_file_mode(tmp_path, umask):
    file_mode, _ = umask  # 0644 under umask 022, 0640 under 027 (mkstemp would give 0600)
    path = secateurs.save(mlp(), tmp_path / "m.safetensors")
    assert _mode(path) == file_mode
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_every_atomic_write_gets_normal_modes(tmp_path, umask):
    file_mode, dir_mode = umask
    assert _mode(io.atomic_write_text(tmp_path / "a.txt", "x")) == file_mode
    assert _mode(io.atomic_write_json(tmp_path / "sub" / "a.json", {"a": 1})) == file_mode
    assert _mode(tmp_path / "sub") == dir_mode
    assert _mode(io.save_safetensors_atomic(tmp_path / "t.safetensors", {"x": torch.zeros(3)})) == file_mode
    from secateurs.data.score import write_json_atomic

    assert _mode(write_json_atomic(tmp_path / "s.json", [1, 2])) == file_mode
    with io.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "plain.txt").write_text("x")
        io.atomic_write_text(tmp / "atomic.txt", "y")
    assert _modes_under(tmp_path / "d") == {".": dir_mode, "plain.txt": file_mode, "atomic.txt": file_mode}


def test_atomic_file_failure_leaves_the_old_file(tmp_path):
    path = io.atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), io.atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("half")
        raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_replaces_or_refuses(tmp_path):
    out = tmp_path / "d"
    with io.atomic_dir(out) as tmp:
        (tmp / "v1").write_text("1")
    with io.atomic_dir(out) as tmp:
        (tmp / "v2").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["v2"]
    with pytest.raises(secateurs.OutputExistsError), io.atomic_dir(out, overwrite=False) as tmp:
        (tmp / "v3").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["v2"] and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_check_output_files_and_folders(tmp_path):
    f = io.atomic_write_text(tmp_path / "f.json", "{}")
    with pytest.raises(secateurs.OutputExistsError, match="already exists"):
        io.check_output(f, directory=False)
    assert io.check_output(f, overwrite=True, directory=False) == f
    with pytest.raises(secateurs.OutputExistsError, match="is a directory"):
        io.check_output(tmp_path, overwrite=True, directory=False)
    with pytest.raises(secateurs.OutputExistsError, match="is not a directory"):
        io.check_output_dir(f, overwrite=True)
    assert io.check_output(tmp_path / "new", directory=False) == tmp_path / "new"


def test_llm_save_pruned_modes(tmp_path, umask):
    from test_llm_blocks import make_model

    from secateurs.llm import save_pruned

    file_mode, dir_mode = umask
    out = save_pruned(make_model("llama"), None, tmp_path / "out", {"method": "magnitude"})
    modes = _modes_under(out)
    assert modes.pop(".") == dir_mode and "secateurs.json" in modes and "model.safetensors" in modes
    assert set(modes.values()) == {file_mode}, modes


def test_structured_save_modes(tmp_path, umask):
    from secateurs import structured

    file_mode, dir_mode = umask
    out = structured.save(mlp(), tmp_path / "out")
    modes = _modes_under(out)
    assert modes.pop(".") == dir_mode and set(modes) == {"model.safetensors", "secateurs_structure.json"}
    assert set(modes.values()) == {file_mode}, modes
