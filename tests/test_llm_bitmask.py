"""Compressed sparse checkpoints: ``save_pruned(..., format="bitmask")`` and ``load_pruned`` — bit-exact reload,
the same logits as the dense checkpoint, the layouts chosen, the size, corrupt parts refused, the streamed CLI."""
from __future__ import annotations

import json

import pytest
import torch
import transformers as T
from test_llm_blocks import VOCAB, make_model, rows
from test_llm_output import make_tokenizer

from secateurs.errors import CheckpointError, InvalidArgumentError
from secateurs.io import pack_bits, unpack_bits
from secateurs.llm import compress_checkpoint, load_pruned, prune, save_pruned
from secateurs.llm.output import compress_tensor, decompress_tensor


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns (so -0.0 != 0.0 and NaN payloads compare exactly)."""
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", None)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bitmask_reload_is_bit_exact_with_the_dense_logits(tmp_path, pattern, sparsity, dtype):
    model = make_model("llama").to(dtype)
    report = prune(model, rows(4, 16), method="wanda", sparsity=sparsity, pattern=pattern, progress=False)
    dense = save_pruned(model, make_tokenizer(), tmp_path / "dense", report)
    packed = save_pruned(model, make_tokenizer(), tmp_path / "bitmask", report, format="bitmask")
    assert not (packed / "model.safetensors").exists() and (packed / "tokenizer.json").exists()
    info = json.loads((packed / "secateurs.json").read_text())
    weights = info["weights"]
    layouts = {k: e["layout"] for k, e in weights["tensors"].items()}
    want = "2:4" if pattern == "2:4" else "bitmask"
    assert {v for k, v in layouts.items() if k.endswith("proj.weight")} == {want}
    assert layouts["model.embed_tokens.weight"] == "dense" and layouts["model.norm.weight"] == "dense"
    ref = T.AutoModelForCausalLM.from_pretrained(dense, local_files_only=True).eval()
    loaded = load_pruned(packed)
    assert set(loaded.state_dict()) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype == (dtype if v.is_floating_point() and "inv_freq" not in k else v.dtype), k
        assert torch.equal(_bits(got) if got.is_floating_point() else got, _bits(v) if v.is_floating_point() else v), k
    x = rows(2, 12, seed=3)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, ref(x).logits)
    # the pruned tensors' bytes: half (or 0.3) of the values + one bit (or 2 bits per kept value) per element
    pruned = [e for e in weights["tensors"].values() if e["layout"] != "dense"]
    n = sum(torch.Size(e["shape"]).numel() for e in pruned)
    stored = sum(e["nnz"] if e["layout"] == "bitmask" else torch.Size(e["shape"]).numel() // 2 for e in pruned)
    assert stored / n == pytest.approx(sparsity and 1 - sparsity or 0.5, abs=0.01)
    assert weights["stored_bytes"] < weights["dense_bytes"]


def test_layouts_round_trip_every_bit_pattern():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 32, generator=g).to(torch.bfloat16)
    w[torch.rand(16, 32, generator=g) < 0.6] = 0
    w[0, 1] = -0.0  # a kept negative zero: stored, restored as -0.0
    w[0, 2] = float("nan")
    entry, parts = compress_tensor("w", w)
    assert entry["layout"] == "bitmask" and entry["nnz"] == int((_bits(w) != 0).sum())
    assert torch.equal(_bits(decompress_tensor("w", entry, parts)), _bits(w))
    # 2:4 with groups of fewer than two nonzeros (fillers are zeros)
    w24 = torch.randn(8, 64, generator=g).to(torch.float16)
    w24[:, 0::4] = 0
    w24[:, 2::4] = 0
    w24[3, 5] = 0  # one group with a single nonzero: a zero fills its second slot
    entry, parts = compress_tensor("v", w24)
    assert entry["layout"] == "2:4" and parts["v.__values__"].numel() == w24.numel() // 2
    assert torch.equal(decompress_tensor("v", entry, parts), w24)
    # a dense tensor stays dense, an fp32 one compresses too
    entry, _ = compress_tensor("d", torch.randn(8, 16, generator=g))
    assert entry["layout"] == "dense"
    f32 = torch.randn(8, 64, generator=g)
    f32[:, ::3] = 0
    f32[:, 1::3] = 0
    entry, parts = compress_tensor("f", f32)
    assert entry["layout"] == "bitmask" and torch.equal(decompress_tensor("f", entry, parts), f32)


def test_pack_bits_two_bit_values_round_trip():
    v = torch.randint(0, 4, (37,), generator=torch.Generator().manual_seed(1))
    packed = pack_bits(v, bits=2)
    assert packed.dtype == torch.uint8 and packed.numel() == 10
    assert int(packed[0]) == (int(v[0]) << 6) | (int(v[1]) << 4) | (int(v[2]) << 2) | int(v[3])  # first in the MSBs
    assert torch.equal(unpack_bits(packed, [37], bits=2), v.to(torch.uint8))
    m = torch.tensor([True, False, True, True, False, False, False, True, True])
    assert pack_bits(m).tolist() == [0b10110001, 0b10000000]


def test_corrupt_or_missing_parts_are_refused(tmp_path):
    model = make_model("llama").to(torch.float16)
    report = prune(model, None, method="magnitude", sparsity=0.5, progress=False)
    out = save_pruned(model, None, tmp_path / "m", report, format="bitmask")
    info_file = out / "secateurs.json"
    info = json.loads(info_file.read_text())
    name = next(k for k, e in info["weights"]["tensors"].items() if e["layout"] == "bitmask")
    info["weights"]["tensors"][name]["shape"] = [4, 4]
    info_file.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="bitmask"):
        load_pruned(out)
    info["weights"]["tensors"][name]["file"] = "../elsewhere.safetensors"
    info_file.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="missing"):
        load_pruned(out)
    with pytest.raises(InvalidArgumentError, match="format"):
        save_pruned(model, None, tmp_path / "x", report, format="sparse")
    assert not (tmp_path / "x").exists()


def test_compress_checkpoint_and_cli_format_bitmask(tmp_path):
    from typer.testing import CliRunner

    from secateurs.cli.app import app

    model = make_model("llama").to(torch.bfloat16)
    src = tmp_path / "src"
    model.save_pretrained(src)
    make_tokenizer().save_pretrained(src)
    (tmp_path / "calib.txt").write_text(" ".join(f"w{i % (VOCAB - 2) + 2}" for i in range(400)))
    result = CliRunner().invoke(app, ["llm", "prune", "--model", str(src), "--method", "magnitude", "--sparsity", "0.6",
                                      "--out", str(tmp_path / "out"), "--format", "bitmask", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "bitmask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "out", "src"]  # no temporary left
    info = json.loads((tmp_path / "out" / "secateurs.json").read_text())
    assert info["prune"]["method"] == "magnitude" and info["weights"]["format"] == "bitmask"
    assert not list((tmp_path / "out").glob("model*.safetensors"))
    loaded = load_pruned(tmp_path / "out")
    dense = tmp_path / "dense"
    result = CliRunner().invoke(app, ["llm", "prune", "--model", str(src), "--method", "magnitude", "--sparsity", "0.6",
                                      "--out", str(dense), "--json"])
    assert result.exit_code == 0, result.output
    ref = T.AutoModelForCausalLM.from_pretrained(dense, local_files_only=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    again = compress_checkpoint(dense, tmp_path / "again")
    assert json.loads((again / "secateurs.json").read_text())["prune"]["method"] == "magnitude"
    for k, v in load_pruned(again).state_dict().items():
        assert torch.equal(ref.state_dict()[k], v), k
