"""``secateurs.llm.recover`` (PERP) on a tiny Llama pruned 50% Wanda, 2:4 and structurally: the loss on the training
text drops, pruned weights stay exactly zero (N:M groups still valid), only the chosen parameters change, every
requires_grad and training flag comes back, LoRA is merged (MaskLoRA) without reviving a pruned weight, runs are
deterministic, distillation works, and bad input raises before a weight is touched."""
from __future__ import annotations

import builtins
import copy
import json

import pytest
import torch
from test_llm_blocks import VOCAB, make_model, rows
from test_llm_output import make_tokenizer
from typer.testing import CliRunner

import secateurs
import secateurs.structured as st
from secateurs.core.blocks import find_blocks, find_linears, weight_2d
from secateurs.core.masks import get_mask, masked_targets
from secateurs.core.modes import num_threads
from secateurs.errors import InvalidArgumentError, PruningError, UnknownNameError
from secateurs.llm import load_pruned, prune
from secateurs.llm.recover import RecoverReport, _lora_targets, _mask_lora, lr_factor, recover

pytest.importorskip("peft")

SEQ = 16
# a learnable stream: one random phrase of 47 tokens repeated, so that pruning costs loss and recovery wins it back
IDS = torch.randint(3, VOCAB, (47,), generator=torch.Generator().manual_seed(0)).repeat(15)
EVAL = IDS[:8 * SEQ].reshape(8, SEQ)


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):  # tiny tensors: one thread is ~10x faster than two on a busy machine
        yield


def lm_loss(model, ids=EVAL) -> float:
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


_TRAINED: dict[str, torch.Tensor] = {}


def trained():
    """The tiny Llama fitted briefly to the stream (a random one has nothing for pruning to destroy and recovery to
    restore); trained once, copied per test."""
    if not _TRAINED:
        fit = make_model("llama")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            opt = torch.optim.Adam(fit.parameters(), lr=1e-2)
            for step in range(60):
                batch = IDS[(step * 37) % 400:][:8 * SEQ].reshape(8, SEQ)
                opt.zero_grad()
                fit(input_ids=batch, labels=batch).loss.backward()
                opt.step()
        _TRAINED.update(snapshot(fit))
    model = make_model("llama")
    model.load_state_dict(_TRAINED)
    return model.eval()


def pruned(kind: str):
    model = trained()
    if kind == "wanda":
        prune(model, rows(8, SEQ), method="wanda", sparsity=0.5, progress=False)
    elif kind == "2:4":
        prune(model, rows(8, SEQ), method="sparsegpt", sparsity=None, pattern="2:4", progress=False)
    elif kind == "structured":
        st.prune(model, {"input_ids": rows(2, SEQ)}, sparsity=0.5, ignore=["model.embed_tokens"])
    return model


def linears(model):
    return {f"{i}.{n}": weight_2d(m) for i, b in enumerate(find_blocks(model)[1]) for n, m in find_linears(b).items()}


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(model, before) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def nm_ok(w, n=2, m=4) -> bool:
    return bool(((w.reshape(w.shape[0], -1, m) != 0).sum(-1) <= n).all())


NORMS = {"model.norm.weight"} | {f"model.layers.{i}.{n}.weight" for i in range(2)
                                 for n in ("input_layernorm", "post_attention_layernorm")}


def test_norms_only_on_wanda_50():
    model = pruned("wanda")
    zeros = {k: w == 0 for k, w in linears(model).items()}
    before, loss0 = snapshot(model), lm_loss(model)
    rep = recover(model, IDS, 30, train="biases,norms", lr=2e-2, seqlen=SEQ, progress=False)
    assert isinstance(rep, RecoverReport) and rep.train == ["biases", "norms"]
    assert any("no bias parameters" in n and "PERP adds none" in n for n in rep.notes)
    assert changed(model, before) == NORMS  # only the norms moved
    assert rep.trained_parameters == 5 * 32 and rep.adapter_parameters == 0
    assert all(torch.equal(w == 0, zeros[k]) for k, w in linears(model).items())
    assert lm_loss(model) < 0.9 * loss0 and rep.loss_last < rep.loss_first
    assert len(rep.losses) == 30 and json.loads(json.dumps(rep.to_dict()))["method"] == "perp"


def test_flags_and_modes_restored():
    model = pruned("wanda")
    model.train()
    model.model.layers[0].eval()  # a mixed state comes back exactly
    model.model.embed_tokens.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    types = {n: type(m) for n, m in model.named_modules()}
    recover(model, IDS, 3, train="norms,lora,head", seqlen=SEQ, progress=False)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: type(m) for n, m in model.named_modules()} == types  # no peft wrapper left
    assert "peft_config" not in model.__dict__ and not any("lora" in k for k in model.state_dict())
    assert all(p.grad is None for p in model.parameters())


def test_lora_on_2_4_keeps_the_pattern_and_merges():
    model = pruned("2:4")
    zeros = {k: w == 0 for k, w in linears(model).items()}
    before, loss0 = snapshot(model), lm_loss(model)
    rep = recover(model, IDS, 30, train="lora", lr=1e-2, seqlen=SEQ, lora_r=4, lora_alpha=8, progress=False)
    after = linears(model)
    assert all(nm_ok(w) and torch.equal(w == 0, zeros[k]) for k, w in after.items())  # no pruned weight revived
    moved = changed(model, before)
    assert moved == {f"model.layers.{k.split('.', 1)[0]}.{k.split('.', 1)[1]}.weight" for k in after}
    assert rep.lora["layers"] == rep.lora["masked_layers"] == 14 and rep.lora["variant"] == "MaskLoRA"
    assert rep.adapter_parameters == rep.trained_parameters == sum(4 * sum(w.shape) for w in after.values())
    assert lm_loss(model) < 0.9 * loss0


@pytest.mark.parametrize("kind", ["wanda", "structured"])  # masked update / factorised x·Aᵀ·Bᵀ (no mask)
def test_mask_lora_merge_equals_the_trained_function(kind):
    """With non-zero adapters, the wrapped model (W + s·M⊙BA) and the merged one give the same logits, and the
    merged weights are zero exactly where they were."""
    model = pruned(kind)
    zeros = {k: w == 0 for k, w in linears(model).items()}
    g = torch.Generator().manual_seed(3)
    with _mask_lora(model, _lora_targets(model, None), r=4, alpha=8.0) as wrappers:
        with torch.no_grad():
            for w in wrappers:
                w.lora_layer.lora_B["default"].weight.copy_(
                    torch.randn(w.lora_layer.lora_B["default"].weight.shape, generator=g))
        wrapped = model(input_ids=EVAL).logits.detach()
    merged = model(input_ids=EVAL).logits.detach()
    torch.testing.assert_close(merged, wrapped, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(w == 0, zeros[k]) for k, w in linears(model).items())


def test_structured_model_lora_biases_norms():
    model = pruned("structured")
    shapes = {k: tuple(w.shape) for k, w in linears(model).items()}
    assert shapes["0.mlp.down_proj"] == (32, 32)  # physically smaller
    loss0 = lm_loss(model)
    rep = recover(model, IDS, 30, train="biases,norms,lora", lr=1e-2, seqlen=SEQ, lora_r=4, progress=False)
    assert {k: tuple(w.shape) for k, w in linears(model).items()} == shapes
    assert rep.lora["masked_layers"] == 0  # dense weights: M is all ones
    assert lm_loss(model) < 0.9 * loss0


def test_biases_train_where_the_model_has_them():
    model = pruned("wanda")
    layer = model.model.layers[0].self_attn.o_proj  # a compensation bias, as FLAP adds
    layer.bias = torch.nn.Parameter(torch.zeros(layer.out_features))
    before = snapshot(model)
    rep = recover(model, IDS, 5, train="biases", lr=1e-2, seqlen=SEQ, progress=False)
    assert changed(model, before) == {"model.layers.0.self_attn.o_proj.bias"} and not rep.notes
    assert rep.trained_parameters == 32


def test_attached_masks_are_held():
    model = make_model("llama")
    secateurs.prune(model, 0.5, method="magnitude", targets=lambda n, m: n.startswith("model.layers"))
    masks = {t.key: get_mask(t).clone() for t in masked_targets(model)}
    recover(model, IDS, 5, train="lora,norms", lr=1e-2, seqlen=SEQ, lora_r=2, progress=False)
    assert {t.key for t in masked_targets(model)} == set(masks)  # masks still attached, unchanged
    for t in masked_targets(model):
        assert torch.equal(get_mask(t), masks[t.key])
        assert not bool((t.weight[~masks[t.key]] != 0).any())
        assert not bool((t.module.parametrizations.weight.original[~masks[t.key]] != 0).any())


def test_head_training_holds_its_zeros():
    model = pruned("wanda")
    with torch.no_grad():
        model.lm_head.weight[:, ::3] = 0
    zero = model.lm_head.weight == 0
    before = snapshot(model)
    rep = recover(model, IDS, 5, train="head", lr=1e-2, seqlen=SEQ, weight_decay=0.1, progress=False)
    assert changed(model, before) == {"lm_head.weight"} and rep.trained_parameters == VOCAB * 32
    assert torch.equal(model.lm_head.weight == 0, zero)


def test_deterministic_with_seed():
    a, b, c = (pruned("wanda") for _ in range(3))
    ra = recover(a, IDS, 6, train="norms,lora", seqlen=SEQ, seed=1, lora_r=2, progress=False)
    rb = recover(b, IDS, 6, train="norms,lora", seqlen=SEQ, seed=1, lora_r=2, progress=False)
    recover(c, IDS, 6, train="norms,lora", seqlen=SEQ, seed=2, lora_r=2, progress=False)
    assert ra.losses == rb.losses
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_logit_distillation_and_self_data():
    dense = trained()
    teacher_before = snapshot(dense)
    model = copy.deepcopy(dense)
    prune(model, rows(8, SEQ), method="wanda", sparsity=0.5, progress=False)
    rep = recover(model, IDS, 20, train="norms,lora", lr=1e-2, seqlen=SEQ, lora_r=4, teacher=dense,
                  distill="logits", temperature=2.0, progress=False)
    assert rep.distill == "logits" and rep.temperature == 2.0 and rep.loss_last < rep.loss_first
    model2 = copy.deepcopy(dense)
    prune(model2, rows(8, SEQ), method="wanda", sparsity=0.5, progress=False)
    rep2 = recover(model2, IDS, 10, train="norms", lr=1e-2, seqlen=SEQ, teacher=dense, distill="self-data",
                   prompt_len=6, progress=False)
    assert rep2.data["prompt_len"] == 6 and rep2.loss_last < rep2.loss_first
    assert not changed(dense, teacher_before) and not dense.training
    assert all(not p.grad for p in dense.parameters())


def test_schedule():
    assert [lr_factor(s, 10, 0.2, "linear") for s in (0, 1, 2, 9)] == pytest.approx([0.5, 1.0, 1.0, 0.125])
    assert lr_factor(2, 10, 0.2, "cosine") == pytest.approx(1.0) and lr_factor(9, 10, 0.0, "constant") == 1.0
    assert lr_factor(9, 10, 0.0, "cosine") == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(0.9 * torch.pi))))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"train": "bias"}, UnknownNameError, "Did you mean 'biases'"),
    ({"train": "biases"}, InvalidArgumentError, "selects no parameter.*no bias parameters"),
    ({"steps": 0}, InvalidArgumentError, "steps"),
    ({"lr": -1.0}, InvalidArgumentError, "lr"),
    ({"seqlen": 500}, InvalidArgumentError, "positions"),
    ({"text": IDS[:10]}, InvalidArgumentError, "need at least"),
    ({"text": torch.tensor([1, 2, VOCAB + 5] * 20)}, InvalidArgumentError, "out of range"),
    ({"text": "w1 w2 w3"}, InvalidArgumentError, "tokenizer"),
    ({"distill": "logits"}, InvalidArgumentError, "teacher"),
    ({"distill": "kd"}, UnknownNameError, "distillation"),
    ({"teacher": "x"}, InvalidArgumentError, "distill=None"),
    ({"schedule": "step"}, UnknownNameError, "schedule"),
    ({"distill": "self-data", "teacher": make_model("llama"), "prompt_len": SEQ}, InvalidArgumentError, "prompt_len"),
])
def test_bad_input_touches_nothing(kwargs, error, match):
    model = pruned("wanda")
    before = snapshot(model)
    args = {"text": IDS, "steps": 2, "seqlen": SEQ, "progress": False, **kwargs}
    with pytest.raises(error, match=match) as exc:
        recover(model, **args)
    assert isinstance(exc.value, PruningError) and not changed(model, before)


def test_teacher_of_another_vocabulary():
    model = pruned("wanda")
    other = make_model("llama")
    other.resize_token_embeddings(VOCAB + 8)
    with pytest.raises(InvalidArgumentError, match="vocabulary"):
        recover(model, IDS, 2, seqlen=SEQ, teacher=other, distill="logits", progress=False)


def test_lora_without_peft_names_the_install(monkeypatch):
    real = builtins.__import__

    def no_peft(name, *a, **k):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    model = pruned("wanda")
    before = snapshot(model)
    with pytest.raises(InvalidArgumentError, match="pip install peft"):
        recover(model, IDS, 2, train="norms,lora", seqlen=SEQ, progress=False)
    assert not changed(model, before)


def test_cli_recover(tmp_path):
    from secateurs.cli.llm import app

    src = tmp_path / "pruned"
    model = pruned("2:4")
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(src)
    make_tokenizer().save_pretrained(src)
    (src / "secateurs.json").write_text(json.dumps({"prune": {"method": "sparsegpt", "pattern": "2:4"}}))
    text = tmp_path / "train.txt"
    text.write_text(" ".join(f"w{int(i) % (VOCAB - 2) + 2}" for i in IDS))
    out = tmp_path / "recovered"
    res = CliRunner().invoke(app, ["recover", "--model", str(src), "--text", str(text), "--steps", "4", "--out",
                                   str(out), "--train", "norms,lora", "--seqlen", str(SEQ), "--lora-r", "2",
                                   "--eval-text", str(text), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc["perplexity"]) == {"before", "after"} and doc["report"]["steps"] == 4
    info = json.loads((out / "secateurs.json").read_text())
    assert info["prune"]["pattern"] == "2:4" and info["recover"]["train"] == ["norms", "lora"]
    import transformers

    again = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert all(nm_ok(w) for w in linears(again).values())
    packed = tmp_path / "packed"  # a bitmask checkpoint in, another out (read through llm.load_pruned)
    res = CliRunner().invoke(app, ["recover", "--model", str(out), "--text", str(text), "--steps", "2", "--out",
                                   str(packed), "--seqlen", str(SEQ), "--format", "bitmask", "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["recover", "--model", str(packed), "--text", str(text), "--steps", "2", "--out",
                                   str(tmp_path / "again"), "--seqlen", str(SEQ), "--json"])
    assert res.exit_code == 0, res.output
    assert all(nm_ok(w) for w in linears(load_pruned(tmp_path / "again")).values())
    res = CliRunner().invoke(app, ["recover", "--model", str(src), "--text", str(text), "--steps", "4", "--out",
                                   str(out)])
    assert res.exit_code == 2 and "exists" in " ".join(res.stderr.split())
    res = CliRunner().invoke(app, ["recover", "--model", str(src), "--text", str(text), "--steps", "4", "--out",
                                   str(tmp_path / "x"), "--distill", "logits"])
    assert res.exit_code == 2 and not (tmp_path / "x").exists()


def test_bf16_model_recovers_in_bf16_with_masks_held():
    """A bfloat16 pruned model trains its norms and MaskLoRA in bfloat16: dtypes kept, no pruned weight revived,
    the loss goes down.  (A kept weight may round to exactly 0 when the bf16 merge adds its update — measured: 5 of
    the tiny model's weights — so the check is that the zeros only grow.)"""
    model = pruned("wanda").to(torch.bfloat16)
    zeros = {k: w == 0 for k, w in linears(model).items()}
    loss0 = lm_loss(model)
    rep = recover(model, IDS, 20, train="norms,lora", lr=2e-2, seqlen=SEQ, progress=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any((zeros[k] & (w != 0)).any() for k, w in linears(model).items())
    assert lm_loss(model) < loss0 and rep.loss_last < rep.loss_first
