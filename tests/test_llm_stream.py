"""``secateurs.llm.prune_checkpoint``: a checkpoint streamed block by block from its shards gives exactly the
model ``secateurs.llm.prune`` gives in memory; fp16 stays fp16; an interrupted run resumes to the same result;
bad checkpoints and changed arguments are refused with nothing that looks complete in the output."""
from __future__ import annotations

import json
import os
import stat

import pytest
import torch
import transformers as T
from safetensors.torch import load_file, save_file
from test_llm_blocks import make_model, rows

from secateurs.errors import CheckpointError, InvalidArgumentError, NonFiniteError, OutputExistsError
from secateurs.llm import prune, prune_checkpoint
from secateurs.llm.stream import BlockStream

ROWS = rows(8, 16)


def _save(tmp_path, family="llama", dtype=torch.float32, layers=3):
    model = make_model(family, layers=layers).to(dtype)
    src = tmp_path / f"src-{family}-{dtype}".replace("torch.", "")
    model.save_pretrained(src, max_shard_size="60KB")  # several shards and an index
    return src


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("method,pattern,allocation", [("wanda", "unstructured", "uniform"),
                                                       ("sparsegpt", "2:4", "uniform"),
                                                       ("magnitude", "4:8", "uniform"),
                                                       ("wanda", "unstructured", "owl")])
def test_streamed_equals_in_memory(tmp_path, family, method, pattern, allocation):
    src = _save(tmp_path, family)
    assert (src / "model.safetensors.index.json").is_file()
    kw = dict(method=method, pattern=pattern, sparsity=None if ":" in pattern else 0.5, progress=False,
              allocation=allocation)
    ref = T.AutoModelForCausalLM.from_pretrained(src).eval()
    r1 = prune(ref, ROWS, **kw)
    r2 = prune_checkpoint(src, tmp_path / "out", ROWS, **kw)
    got = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert _same(ref, got)
    assert [l.kept for l in r1.layers] == [l.kept for l in r2.layers]
    assert r1.block_targets == r2.block_targets
    assert json.loads((tmp_path / "out" / "secateurs.json").read_text())["streamed"] is True
    assert not list(tmp_path.glob(".out.partial"))


def test_fp16_checkpoint_stays_fp16(tmp_path):
    src = _save(tmp_path, dtype=torch.float16)
    prune_checkpoint(src, tmp_path / "out", ROWS, method="wanda", sparsity=0.5, progress=False)
    tensors = {}
    for f in (tmp_path / "out").glob("*.safetensors"):
        tensors.update(load_file(str(f)))
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    w = tensors["model.layers.1.mlp.down_proj.weight"]
    assert (w == 0).float().mean() == pytest.approx(0.5)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    src = _save(tmp_path, layers=4)
    kw = dict(method="sparsegpt", sparsity=0.6, progress=False)
    prune_checkpoint(src, tmp_path / "whole", ROWS, **kw)
    real = BlockStream.release

    def crash_at_2(self, i, block, modifies):
        if modifies and i == 2:
            raise KeyboardInterrupt("power cut")
        return real(self, i, block, modifies)

    monkeypatch.setattr(BlockStream, "release", crash_at_2)
    with pytest.raises(KeyboardInterrupt):
        prune_checkpoint(src, tmp_path / "out", ROWS, **kw)
    monkeypatch.setattr(BlockStream, "release", real)
    assert not (tmp_path / "out").exists()
    partial = tmp_path / ".out.partial"
    assert json.loads((partial / "secateurs-stream-state.json").read_text())["done"] == 2
    with pytest.raises(OutputExistsError, match="resume"):
        prune_checkpoint(src, tmp_path / "out", ROWS, **kw)
    with pytest.raises(InvalidArgumentError, match="other arguments"):
        prune_checkpoint(src, tmp_path / "out", ROWS, method="sparsegpt", sparsity=0.7, progress=False, resume=True)
    prune_checkpoint(src, tmp_path / "out", ROWS, resume=True, **kw)
    a = T.AutoModelForCausalLM.from_pretrained(tmp_path / "whole")
    b = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert _same(a, b) and not partial.exists()


def test_bad_checkpoints(tmp_path):
    src = _save(tmp_path)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    (src / shard).rename(src / "gone")
    with pytest.raises(CheckpointError, match="missing"):
        prune_checkpoint(src, tmp_path / "o1", ROWS, progress=False)
    (src / "gone").rename(src / shard)
    # a tensor whose shape disagrees with the config
    name = next(k for k, v in index["weight_map"].items() if v == shard and k.endswith("q_proj.weight"))
    state = load_file(str(src / shard))
    good = state[name]
    state[name] = torch.zeros(good.shape[0] + 1, good.shape[1])
    save_file(state, str(src / shard), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="shape"):
        prune_checkpoint(src, tmp_path / "o2", ROWS, progress=False)
    state[name] = good.clone()
    state[name][0, 0] = float("inf")  # an fp32 checkpoint that really holds Inf
    save_file(state, str(src / shard), metadata={"format": "pt"})
    with pytest.raises(NonFiniteError, match="Inf"):
        prune_checkpoint(src, tmp_path / "o3", ROWS, progress=False)
    for o in ("o1", "o2", "o3"):
        assert not (tmp_path / o).exists()
    with pytest.raises(InvalidArgumentError, match="global"):
        prune_checkpoint(_save(tmp_path / "x"), tmp_path / "o4", ROWS, allocation="global", progress=False)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_streamed_output_has_normal_modes(tmp_path, monkeypatch, umask):
    """Shards, index, config and secateurs.json get 0o666 & ~umask, the folder 0o777 & ~umask — also the shards
    of an interrupted run (written by BlockStream.release) — whatever the source's modes."""
    src = _save(tmp_path)
    (src / "tokenizer.json").write_text("{}")
    (src / "tokenizer.json").chmod(0o600)  # a private source file is copied with the output's mode
    real = BlockStream.release
    seen = {}

    def spy(self, i, block, modifies):
        real(self, i, block, modifies)
        if modifies:
            seen[i] = stat.S_IMODE(os.stat(self.shard(i)).st_mode)

    monkeypatch.setattr(BlockStream, "release", spy)
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        prune_checkpoint(src, out, ROWS, method="wanda", sparsity=0.5, progress=False)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in [out, *out.iterdir()]}
    assert modes.pop("out") == 0o777 & ~umask
    assert {"tokenizer.json", "secateurs.json", "config.json", "rest.safetensors",
            "block-00000.safetensors", "model.safetensors.index.json"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes
    assert set(seen.values()) == {0o666 & ~umask} and len(seen) == 3


def test_released_blocks_are_not_referenced(tmp_path, monkeypatch):
    """Memory independent of depth, structurally: once block i is written and released, none of its tensors (as
    read from the shards, or as written) is referenced while the later blocks run — nothing per block is kept."""
    import weakref

    src = _save(tmp_path, dtype=torch.float16, layers=4)
    load, release = BlockStream.load, BlockStream.release
    refs: dict[int, list] = {}
    alive_at_load: dict[int, list[int]] = {}

    def live(upto: int) -> list[int]:
        return [k for k in range(upto) if any(r() is not None for r in refs[k])]

    def spy_load(self, i, block, modifies):
        alive_at_load[i] = live(i)
        load(self, i, block, modifies)
        refs.setdefault(i, []).extend(weakref.ref(t) for t in block.state_dict().values())

    def spy_release(self, i, block, modifies):
        refs[i].extend(weakref.ref(t) for t in block.state_dict().values())
        release(self, i, block, modifies)

    monkeypatch.setattr(BlockStream, "load", spy_load)
    monkeypatch.setattr(BlockStream, "release", spy_release)
    prune_checkpoint(src, tmp_path / "out", ROWS, method="sparsegpt", sparsity=0.5, progress=False)
    assert set(alive_at_load) == {0, 1, 2, 3} and all(len(refs[k]) > 0 for k in refs)
    assert alive_at_load == {0: [], 1: [], 2: [], 3: []}
