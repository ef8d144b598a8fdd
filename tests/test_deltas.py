"""Delta pruning on a real delta: a tiny Llama "pre-trained" on one play, fine-tuned a few steps on another.

DARE (drop fraction, exact rescale, determinism, the fine-tuning kept), DAREx-q (given q, analytical q), the
magnitude baseline, TIES merging, bad input refused before anything is written, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import transformers as T
from safetensors.torch import load_file
from typer.testing import CliRunner

from secateurs.deltas import merge, prune, tensor_generator
from secateurs.deltas.darex import analytical_q, phi
from secateurs.errors import CheckpointError, InvalidArgumentError, UnknownNameError

SEQ = 48


def _ids(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode("utf-8", "ignore")), dtype=torch.long)


def _windows(ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, ids.numel() - SEQ - 1, (n,), generator=g)
    return torch.stack([ids[s:s + SEQ] for s in start.tolist()])


def _train(model: torch.nn.Module, ids: torch.Tensor, steps: int, lr: float, seed: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x = _windows(ids, 8, seed * 1000 + step)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _loss(model_dir, ids: torch.Tensor) -> float:
    model = T.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    x = _windows(ids, 16, 99)
    with torch.no_grad():
        return float(model(input_ids=x, labels=x).loss)


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """base (trained on Hamlet) and two fine-tunes (Henry V; As You Like It) of a byte-level tiny Llama."""
    from secateurs.zoo.plays import play_speeches

    root = tmp_path_factory.mktemp("deltas")
    texts = {k: " ".join(play_speeches(k, max_lines=400)) for k in ("hamlet_gut", "henry_v_gut", "as_you_like_it_gut")}
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        tie_word_embeddings=False)
    model = T.LlamaForCausalLM(cfg)
    _train(model, _ids(texts["hamlet_gut"]), 40, 3e-3, 0)
    model.save_pretrained(root / "base")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = {}
    for i, play in enumerate(("henry_v_gut", "as_you_like_it_gut")):
        model.load_state_dict(state)
        _train(model, _ids(texts[play]), 12, 1e-3, i + 1)
        model.save_pretrained(root / play)
        (root / play / "tokenizer_config.json").write_text("{}")
        dirs[play] = root / play
    return {"root": root, "base": root / "base", "ft": dirs["henry_v_gut"], "ft2": dirs["as_you_like_it_gut"],
            "text": _ids(texts["henry_v_gut"][-20000:])}


def _tensors(d):
    return load_file(str(d / "model.safetensors"))


def test_dare_drops_the_fraction_rescales_exactly_and_keeps_the_fine_tuning(bed, tmp_path):
    base, ft = _tensors(bed["base"]), _tensors(bed["ft"])
    report = prune(bed["base"], bed["ft"], tmp_path / "dare", method="dare", sparsity=0.9, seed=0)
    out = _tensors(tmp_path / "dare")
    assert set(out) == set(ft) and (tmp_path / "dare" / "tokenizer_config.json").exists()
    kept = total = changed = 0
    for k, f in ft.items():
        d, o = f - base[k], out[k] - base[k]
        dropped = out[k] == base[k]
        total += f.numel()
        changed += int((d != 0).sum())  # (bytes absent from the fine-tuning text have no delta)
        kept += int((~dropped).sum())
        # kept entries: base + delta / (1 - p) (float32 rounding of the sum), dropped ones: the base exactly
        torch.testing.assert_close(o[~dropped], d[~dropped] / 0.1, rtol=1e-4, atol=1e-6)
    assert kept / changed == pytest.approx(0.1, abs=0.01)
    assert report.delta_density == pytest.approx(kept / total, abs=1e-3)
    assert [t.scale for t in report.tensors] == pytest.approx([10.0] * len(report.tensors))
    info = json.loads((tmp_path / "dare" / "secateurs.json").read_text())
    assert info["delta"]["method"] == "dare" and info["delta"]["sparsity"] == 0.9
    # same seed, same bytes; another seed, other masks
    prune(bed["base"], bed["ft"], tmp_path / "again", method="dare", sparsity=0.9, seed=0)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "dare" / "model.safetensors").read_bytes()
    prune(bed["base"], bed["ft"], tmp_path / "seed1", method="dare", sparsity=0.9, seed=1)
    assert not torch.equal(_tensors(tmp_path / "seed1")["model.layers.0.mlp.up_proj.weight"],
                           out["model.layers.0.mlp.up_proj.weight"])
    # the generator depends on the name, not on the order of the tensors
    a = torch.rand(4, generator=tensor_generator(0, "x"))
    assert torch.equal(a, torch.rand(4, generator=tensor_generator(0, "x")))
    assert not torch.equal(a, torch.rand(4, generator=tensor_generator(0, "y")))


def test_dare_at_half_keeps_the_fine_tuned_quality(bed, tmp_path):
    base_loss, ft_loss = _loss(bed["base"], bed["text"]), _loss(bed["ft"], bed["text"])
    assert ft_loss < base_loss - 0.05  # a real delta: the fine-tune learnt the new play
    prune(bed["base"], bed["ft"], tmp_path / "d5", method="dare", sparsity=0.5)
    prune(bed["base"], bed["ft"], tmp_path / "m5", method="magnitude", sparsity=0.5)
    dare_loss, mag_loss = _loss(tmp_path / "d5", bed["text"]), _loss(tmp_path / "m5", bed["text"])
    assert dare_loss < base_loss and mag_loss < base_loss
    assert abs(dare_loss - ft_loss) < 0.5 * (base_loss - ft_loss)
    # no drop, rescaled by 1: the fine-tuned model itself
    prune(bed["base"], bed["ft"], tmp_path / "p0", method="dare", sparsity=0.0)
    for k, v in _tensors(bed["ft"]).items():
        torch.testing.assert_close(_tensors(tmp_path / "p0")[k], v, rtol=0, atol=1e-6)


def test_magnitude_keeps_the_largest_deltas_unscaled(bed, tmp_path):
    base, ft = _tensors(bed["base"]), _tensors(bed["ft"])
    report = prune(bed["base"], bed["ft"], tmp_path / "mag", method="magnitude", sparsity=0.8)
    out = _tensors(tmp_path / "mag")
    k = "model.layers.1.self_attn.q_proj.weight"
    d = (ft[k] - base[k]).abs().reshape(-1)
    keep = (out[k] != base[k]).reshape(-1)
    assert int(keep.sum()) == d.numel() - round(0.8 * d.numel())
    assert float(d[keep].min()) >= float(d[~keep].max())
    torch.testing.assert_close(out[k].reshape(-1)[keep], ft[k].reshape(-1)[keep], rtol=0, atol=1e-6)
    assert {t.scale for t in report.tensors} == {1.0}


def test_darex_q_rescales_by_one_over_q_given_or_analytical(bed, tmp_path):
    base, ft = _tensors(bed["base"]), _tensors(bed["ft"])
    prune(bed["base"], bed["ft"], tmp_path / "q", method="darex", sparsity=0.9, q=0.25)
    dare = prune(bed["base"], bed["ft"], tmp_path / "dare", method="dare", sparsity=0.9)
    k = "model.layers.0.mlp.down_proj.weight"
    out, ref = _tensors(tmp_path / "q")[k] - base[k], _tensors(tmp_path / "dare")[k] - base[k]
    assert torch.equal(out != 0, ref != 0)  # the same drop as DARE (same seed) ...
    torch.testing.assert_close(out, ref * 0.1 / 0.25, rtol=1e-4, atol=1e-6)  # ... rescaled by 1/q
    assert dare.tensors[0].scale == pytest.approx(10.0)
    ana = prune(bed["base"], bed["ft"], tmp_path / "ana", method="darex", sparsity=0.9, calibration=bed["text"],
                nsamples=4, seqlen=32)
    scales = {t.name: t.scale for t in ana.tensors}
    qs = [1 / s for n, s in scales.items() if n.endswith("proj.weight")]
    assert all(0.1 - 1e-9 <= q <= 0.999 for q in qs) and len(set(qs)) > 1  # one q per layer, in the scanned range
    for k, f in ft.items():
        d = _tensors(tmp_path / "ana")[k] - base[k]
        assert torch.equal(d != 0, (_tensors(tmp_path / "dare")[k] - base[k]) != 0), k


def test_analytical_q_follows_the_bound():
    assert phi(0.5) == 0.5 and phi(0.9) == pytest.approx(-0.8 / math.log(1 / 9))
    g = torch.Generator().manual_seed(0)
    c = torch.randn(64, 128, generator=g) * 0.01
    q = analytical_q(c, 0.9)
    assert q.shape == (64,) and bool(((q >= 0.1 - 1e-6) & (q <= 0.999)).all())
    # a row whose Σc is strongly negative lowers the bound most with a q near 1 - p... (the minimum moves with Σc)
    big = torch.full((2, 8), -5.0)
    big[1] = 5.0
    q2 = analytical_q(big, 0.9, stop_iter=1.0)
    assert float(q2[0]) != float(q2[1])


def test_merge_with_sign_election(bed, tmp_path):
    base, a, b = _tensors(bed["base"]), _tensors(bed["ft"]), _tensors(bed["ft2"])
    summary = merge(bed["base"], [bed["ft"], bed["ft2"]], tmp_path / "m", method="dare", sparsity=0.0)
    out = _tensors(tmp_path / "m")
    k = "model.layers.0.mlp.gate_proj.weight"
    da, db, dm = a[k] - base[k], b[k] - base[k], out[k] - base[k]
    same = (torch.sign(da) == torch.sign(db)) & (da != 0)
    torch.testing.assert_close(dm[same], ((da + db) / 2)[same], rtol=1e-4, atol=1e-6)  # agreeing: their mean
    elected = torch.sign(da + db)
    opp = ~same & (da != 0) & (db != 0)
    winner = torch.where(torch.sign(da) == elected, da, db)
    torch.testing.assert_close(dm[opp], winner[opp], rtol=1e-4, atol=1e-6)  # conflicting: the elected sign's
    assert summary["sign_conflicts"]["conflicts"] > 0
    assert T.AutoModelForCausalLM.from_pretrained(tmp_path / "m", local_files_only=True) is not None
    with pytest.raises(InvalidArgumentError, match="at least two"):
        merge(bed["base"], [bed["ft"]], tmp_path / "one")


def test_bad_input_is_refused_before_anything_is_written(bed, tmp_path):
    other = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=48,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=64, tie_word_embeddings=False))
    other.save_pretrained(tmp_path / "wide")
    tied = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=64, tie_word_embeddings=True))
    tied.save_pretrained(tmp_path / "tied")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="shapes differ.*mlp"):
        prune(bed["base"], tmp_path / "wide", tmp_path / "out")
    with pytest.raises(CheckpointError, match="different tensors.*lm_head"):
        prune(bed["base"], tmp_path / "tied", tmp_path / "out")
    with pytest.raises(CheckpointError, match="does not exist"):
        prune(bed["base"], tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(UnknownNameError, match="dare"):
        prune(bed["base"], bed["ft"], tmp_path / "out", method="drae")
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\)"):
        prune(bed["base"], bed["ft"], tmp_path / "out", sparsity=1.0)
    with pytest.raises(InvalidArgumentError, match="q="):
        prune(bed["base"], bed["ft"], tmp_path / "out", method="darex")
    with pytest.raises(InvalidArgumentError):
        prune(bed["base"], bed["ft"], tmp_path / "out", method="darex", q=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary


def test_cli_deltas_prune(bed, tmp_path):
    from secateurs.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["deltas", "prune", "--base", str(bed["base"]), "--finetuned", str(bed["ft"]),
                              "--method", "dare", "--sparsity", "0.9", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["delta_density"] == pytest.approx(0.08, abs=0.02) and (tmp_path / "o" / "config.json").exists()
    res = runner.invoke(app, ["deltas", "prune", "--base", str(bed["base"]), "--finetuned", str(bed["ft"]),
                              "--method", "darex", "-o", "q=0.2", "--out", str(tmp_path / "x"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["report"]["tensors"][0]["scale"] == pytest.approx(5.0)
    res = runner.invoke(app, ["deltas", "prune", "--base", str(bed["base"]), "--finetuned", str(tmp_path / "no"),
                              "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "y").exists()
    res = runner.invoke(app, ["deltas", "merge", "--base", str(bed["base"]), "--finetuned", str(bed["ft"]),
                              "--finetuned", str(bed["ft2"]), "--sparsity", "0.5", "--out", str(tmp_path / "m"),
                              "--json"])
    assert res.exit_code == 0, res.output and json.loads(res.stdout)["sign_election"] is True


def test_bf16_checkpoints_stay_bf16_and_dare_is_exact_on_the_kept_deltas(bed, tmp_path):
    """A bfloat16 base and fine-tune give a bfloat16 output; each kept delta is the bf16 delta rescaled by
    1/(1-p) (to bf16 rounding), each dropped one leaves the base value exactly."""
    from transformers import AutoModelForCausalLM

    from secateurs import deltas

    dirs = {}
    for name in ("base", "ft"):
        m = AutoModelForCausalLM.from_pretrained(bed[name]).to(torch.bfloat16)
        m.save_pretrained(tmp_path / name)
        dirs[name] = tmp_path / name
    (tmp_path / "ft" / "tokenizer_config.json").write_text("{}")
    deltas.prune(dirs["base"], dirs["ft"], tmp_path / "out", method="dare", sparsity=0.5, seed=0)
    base, ft, out = _tensors(dirs["base"]), _tensors(dirs["ft"]), _tensors(tmp_path / "out")
    assert {v.dtype for v in out.values()} == {torch.bfloat16}
    k = "model.layers.0.mlp.up_proj.weight"
    d_ft, d_out = (ft[k] - base[k]).float(), (out[k] - base[k]).float()
    dropped = (d_out == 0) & (d_ft != 0)
    assert 0.4 < dropped.float().mean() / (d_ft != 0).float().mean() < 0.6
    kept = ~dropped & (d_ft != 0)
    want = base[k].float() + 2 * d_ft  # the rescaled delta on the base, rounded to bf16 (an ulp is 2^-7 relative
    ulp = 2 ** -7 * torch.maximum(want.abs(), base[k].float().abs())  # of the larger of the two operands)
    assert ((out[k].float() - want).abs()[kept] <= ulp[kept]).all()


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux only)")
def test_prune_streams_without_keeping_the_checkpoint_resident(tmp_path, monkeypatch):
    """A float32 tensor from safe_open is a private map of the file: pruning into it in place would make its pages
    anonymous copies that stay resident until the file closes, so memory would grow with the checkpoint."""
    from safetensors.torch import save_file

    from secateurs.deltas.dare import DARE

    g = torch.Generator().manual_seed(0)
    names = [f"layer{i}.weight" for i in range(40)]
    base = {n: torch.randn(1024, 1024, generator=g) for n in names}  # 4 MiB each, 160 MiB in all
    for d, off in (("base", 0.0), ("ft", 1e-3)):
        (tmp_path / d).mkdir()
        save_file({n: t + off for n, t in base.items()}, str(tmp_path / d / "model.safetensors"))
        (tmp_path / d / "config.json").write_text("{}")
    del base
    start, peak = _rss_anon(), [0]
    orig = DARE.sparsify

    def spy(self, *a, **k):
        peak[0] = max(peak[0], _rss_anon() - start)
        return orig(self, *a, **k)

    monkeypatch.setattr(DARE, "sparsify", spy)
    prune(tmp_path / "base", tmp_path / "ft", tmp_path / "out", method="dare", sparsity=0.9)
    assert peak[0] < 48 * 2 ** 20, f"resident memory grew by {peak[0] / 2**20:.0f} MiB over a 160 MiB checkpoint"
