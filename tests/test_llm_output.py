"""``save_pruned``: a directory plain transformers loads, secateurs.json, atomic writes, refusal to overwrite."""
from __future__ import annotations

import json

import pytest
import torch
import transformers as T
from test_llm_blocks import VOCAB, make_model, rows

from secateurs.errors import OutputExistsError
from secateurs.llm import prune, save_pruned
from secateurs.core.blocks import find_blocks, find_linears, weight_2d


def make_tokenizer() -> T.PreTrainedTokenizerFast:
    """A word-level tokenizer whose ids fit the tiny models' vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return T.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_round_trip_with_plain_transformers(tmp_path, family):
    model = make_model(family)
    report = prune(model, rows(4, 16), method="sparsegpt", pattern="2:4", sparsity=None, progress=False)
    out = save_pruned(model, make_tokenizer(), tmp_path / "pruned", report, perplexities={"dense": 10.0,
                                                                                          "pruned": 12.5})
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    auto = T.AutoModel if family == "bert" else T.AutoModelForCausalLM
    loaded = auto.from_pretrained(out, local_files_only=True).eval()
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    w = weight_2d(next(iter(find_linears(find_blocks(loaded)[1][0]).values())))
    assert float((w == 0).float().mean()) == pytest.approx(0.5)
    info = json.loads((out / "secateurs.json").read_text())
    assert info["prune"]["method"] == "sparsegpt" and info["prune"]["pattern"] == "2:4"
    assert info["perplexities"] == {"dense": 10.0, "pruned": 12.5}
    assert info["prune"]["calibration"]["nsamples"] == 4 and info["versions"]["torch"]
    assert len(info["prune"]["layers"]) == len(report.layers)
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]  # no temporary directory left behind
    assert T.AutoTokenizer.from_pretrained(out, local_files_only=True)("w5 w7")["input_ids"] == [5, 7]


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    model = make_model("llama")
    report = prune(model, None, method="magnitude", progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        save_pruned(model, None, out, report)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    save_pruned(model, None, out, report, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "secateurs.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_interrupted_save_leaves_nothing(tmp_path):
    class Broken:
        def save_pretrained(self, path):
            (path / "half.json").write_text("{")
            raise KeyboardInterrupt

    model = make_model("llama")
    report = prune(model, None, method="magnitude", progress=False)
    with pytest.raises(KeyboardInterrupt):
        save_pruned(model, Broken(), tmp_path / "out", report)
    assert list(tmp_path.iterdir()) == []
