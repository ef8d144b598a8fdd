"""secateurs' FLAP and ShortGPT against the authors' code, side by side on SmolLM2-135M →
``benchmarks/results/llm_structured_reference.json``.

References (cloned into the git-ignored ``.refs/`` and imported from there at run time, never copied)::

    git clone <mirror of CASIA-IVA-Lab/FLAP> .refs/FLAP          # lib/prune.py prune_flap, compress
    git clone <mirror of icip-cas/ShortGPT> .refs/ShortGPT       # shortgpt/metrics.py, shortgpt/shortgpt.py

**Model.**  FLAP's code handles multi-head attention only (q, k and v pruned with one mask), so both FLAP runs use
SmolLM2-135M with its 3 key/value heads repeated to 9 (``num_key_value_heads = num_attention_heads``): the same
function exactly (grouped-query attention *is* repeated keys/values; the logits are checked equal to 1e-4), 30
layers of 9 heads of 64 channels.  ShortGPT's code is architecture-free and runs on the stock model.

**Same inputs.**  Both implementations get the same calibration rows (``nsamples`` windows of ``seqlen`` tokens of
the Shakespeare calibration plays, ``draw_windows(seed=0)``) and are evaluated with the same perplexity function on
the same held-out windows.

**Calling glue, in this file only** (the reference code itself is executed unchanged except where listed):

* FLAP's ``lib/prune.py`` hard-codes LLaMA-7B's head width: ``reshape(..., 128)`` / ``repeat_interleave(128)`` and
  the head/channel parameter ratio ``512.0 / 3`` (= 4·128·d / 3·d).  Its source is read at import time with 128 →
  the model's head_dim (64) and ``512.0 / 3`` → ``4 * 64 / 3`` (the same ratio for 64-wide heads) and executed as
  the module; its ``.type(torch.half)`` of the mean inputs (an fp16 GPU model) keeps the rounding to fp16 and
  casts back to the model's float32.  Its loader is replaced by one that returns our rows (a stub ``datasets``
  module satisfies the import); its decoder-layer calls pass ``attention_mask``/``position_ids`` only and index
  ``[0]``, so for the duration of the call ``LlamaDecoderLayer.forward`` computes the rotary embeddings and returns
  a 1-tuple (transformers 5); ``o_proj``/``down_proj`` get zero biases first (the reference's own modeling file
  declares them, transformers' Llama does not when ``attention_bias``/``mlp_bias`` are off).
* ShortGPT's ``ShortGPT.eval_importance`` tokenizes prompts and moves them to ``cuda``; here its
  ``compute_bi`` (``metrics.block_influence``) and ``remove_layers`` run on the hidden states of our calibration
  rows (``output_hidden_states=True``, the same call its ``eval_importance`` makes), in batches of 8 rows (and
  secateurs' ShortGPT runs with ``batch_size=8``; FLAP's reference feeds one row at a time, as secateurs' default).

Run: ``.venv/bin/python benchmarks/llm_structured_reference.py`` (about 10 min on 2 cores).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
import types
from argparse import Namespace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine_info  # noqa: E402
from llm_common import shakespeare_setup  # noqa: E402

REFS = HERE.parent / ".refs"
RESULTS = HERE / "results" / "llm_structured_reference.json"


# ----------------------------------------------------------------------------------------------- the model
def to_multi_head(model):
    """The same Llama with every key/value head repeated ``n_rep`` times (grouped-query → multi-head attention):
    identical outputs, the layout FLAP's reference code assumes."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(model.config)
    heads, kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    rep = heads // kv
    state = model.state_dict()
    for k in list(state):
        if k.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            w = state[k]
            state[k] = w.reshape(kv, hd, -1).repeat_interleave(rep, dim=0).reshape(heads * hd, -1).contiguous()
    cfg.num_key_value_heads = heads
    mha = AutoModelForCausalLM.from_config(cfg)
    mha.load_state_dict(state)
    return mha.eval()


# --------------------------------------------------------------------------------------------------- glue
class _LayerCalls:
    """For the duration of a reference call: decoder layers compute rotary embeddings themselves and return a
    1-tuple, as the transformers-4.3x layers the references were written for."""

    def __init__(self, model):
        from transformers.models.llama import modeling_llama

        self.cls, self.rotary = modeling_llama.LlamaDecoderLayer, model.model.rotary_emb

    def __enter__(self):
        orig, rotary = self.cls.forward, self.rotary
        self.orig = orig

        def forward(layer, hidden_states, attention_mask=None, position_ids=None, **kw):
            if position_ids is None:
                position_ids = torch.arange(hidden_states.shape[1]).unsqueeze(0)
            if kw.get("position_embeddings") is None:
                kw["position_embeddings"] = rotary(hidden_states, position_ids)
            out = orig(layer, hidden_states, attention_mask=attention_mask, position_ids=position_ids, **kw)
            return out if isinstance(out, tuple) else (out,)

        self.cls.forward = forward
        return self

    def __exit__(self, *exc):
        self.cls.forward = self.orig


def _flap_module(head_dim: int):
    """FLAP's lib/prune.py with LLaMA-7B's hard-coded head width replaced by ``head_dim`` (see the docstring)."""
    lib = REFS / "FLAP" / "lib"
    sys.modules.setdefault("datasets", types.SimpleNamespace(load_dataset=None))
    pkg = types.ModuleType("flap_lib")
    pkg.__path__ = [str(lib)]
    sys.modules["flap_lib"] = pkg
    for name in ("layerwrapper", "data"):
        spec = importlib.util.spec_from_file_location(f"flap_lib.{name}", lib / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"flap_lib.{name}"] = mod
        spec.loader.exec_module(mod)
    src = (lib / "prune.py").read_text()
    patched = (src.replace("repeat_interleave(128)", f"repeat_interleave({head_dim})")
               .replace("reshape(len(layers), -1, 128)", f"reshape(len(layers), -1, {head_dim})")
               .replace("512.0 / 3", f"4 * {head_dim} / 3")
               .replace(".type(torch.half)", ".type(torch.half).float()"))
    for needle in ("repeat_interleave(128)", "reshape(len(layers), -1, 128)", "512.0 / 3"):
        if needle not in src:
            raise RuntimeError(f"FLAP's lib/prune.py no longer contains {needle!r}: re-read it before patching")
    mod = types.ModuleType("flap_lib.prune")
    mod.__package__ = "flap_lib"
    mod.__file__ = str(lib / "prune.py")
    exec(compile(patched, mod.__file__, "exec"), mod.__dict__)
    return mod


def reference_flap(model, tokenizer, rows: torch.Tensor, sparsity: float) -> None:
    flap = _flap_module(model.config.head_dim)
    flap.get_loaders = lambda name, nsamples, seed, seqlen, tokenizer: ([(r[None], r[None]) for r in rows], None)
    for layer in model.model.layers:  # the reference's modeling file declares these biases
        for lin in (layer.self_attn.o_proj, layer.mlp.down_proj):
            lin.bias = torch.nn.Parameter(torch.zeros(lin.out_features))
    model.seqlen = rows.shape[1]
    args = Namespace(nsamples=rows.shape[0], seed=0, metrics="WIFV", structure="AL-AM", pruning_ratio=sparsity,
                     remove_heads=-1, unstr=False)
    with _LayerCalls(model):
        flap.prune_flap(args, model, tokenizer, device=torch.device("cpu"))
    model.config.attention_bias = False  # o_proj's bias only; the forward uses the parameters as they are


def reference_shortgpt(model, rows: torch.Tensor, n_remove: int, batch: int = 8) -> list[int]:
    sys.path.insert(0, str(REFS / "ShortGPT" / "shortgpt"))
    import shortgpt as ref  # icip-cas/ShortGPT shortgpt/shortgpt.py (its `from metrics import *`)

    short = ref.ShortGPT.__new__(ref.ShortGPT)  # its __init__ loads a hub model to cuda in fp16
    short.model, short.layers, short.n_prune_layers = model, model.model.layers, n_remove
    short.importances = [0 for _ in short.layers]
    with torch.inference_mode():
        for i in range(0, rows.shape[0], batch):
            out = model(input_ids=rows[i:i + batch], output_hidden_states=True)
            short.compute_bi(out.hidden_states)
    removed = short.remove_layers()
    model.config.num_hidden_layers = len(model.model.layers)
    if hasattr(model.config, "layer_types") and model.config.layer_types:
        model.config.layer_types = [t for i, t in enumerate(model.config.layer_types) if i not in set(removed)]
    for i, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = i
    return sorted(removed)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.2,0.3,0.5")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--methods", default="flap,shortgpt")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not (REFS / "FLAP" / "lib" / "prune.py").exists() or not (REFS / "ShortGPT" / "shortgpt").exists():
        sys.exit("clone CASIA-IVA-Lab/FLAP and icip-cas/ShortGPT into .refs/FLAP and .refs/ShortGPT first")
    from secateurs.llm import perplexity, prune_structured
    from secateurs.llm.output import library_versions
    from secateurs.zoo import pretrained_llm

    torch.manual_seed(0)
    path = pretrained_llm("smollm2-135m", progress=False)
    base, tok, rows, held, _ = shakespeare_setup(path, "causal", args.nsamples, args.seqlen)
    held = held[: args.eval_windows * args.seqlen]
    t_start = time.perf_counter()

    def ppl(m) -> float:
        return perplexity(m, held, seqlen=args.seqlen, batch_size=4)

    mha = to_multi_head(base)
    with torch.no_grad():
        probe = rows[:2]
        gap = float((mha(probe).logits - base(probe).logits).abs().max())
    dense = {"params": _params(base), "params_multi_head": _params(mha), "perplexity": ppl(base),
             "perplexity_multi_head": ppl(mha), "multi_head_max_abs_logit_difference": gap}
    print(json.dumps(dense), file=sys.stderr, flush=True)
    runs = []
    for method in args.methods.split(","):
        for s in (float(x) for x in args.sparsities.split(",")):
            row: dict = {"method": method, "sparsity": s}
            if method == "flap":
                ours = copy.deepcopy(mha)
                t0 = time.perf_counter()
                rep = prune_structured(ours, rows, "flap", s, nsamples=args.nsamples, seqlen=args.seqlen,
                                       device="cpu")
                t_ours = time.perf_counter() - t0
                ref = copy.deepcopy(mha)
                t0 = time.perf_counter()
                reference_flap(ref, tok, rows, s)
                t_ref = time.perf_counter() - t0
                widths_ref = [[int(l.self_attn.q_proj.out_features) // mha.config.head_dim,
                               int(l.mlp.up_proj.out_features)] for l in ref.model.layers]
                widths_ours = [[w["heads"], w["intermediate"]] for w in rep.widths]
                row.update({"widths_secateurs": widths_ours, "widths_reference": widths_ref,
                            "same_widths": widths_ours == widths_ref})
            else:
                n = max(1, round(s * base.config.num_hidden_layers))
                ours = copy.deepcopy(base)
                t0 = time.perf_counter()
                rep = prune_structured(ours, rows, "shortgpt", None, remove_layers=n, nsamples=args.nsamples,
                                       seqlen=args.seqlen, device="cpu", batch_size=8)
                t_ours = time.perf_counter() - t0
                ref = copy.deepcopy(base)
                t0 = time.perf_counter()
                removed_ref = reference_shortgpt(ref, rows, n)
                t_ref = time.perf_counter() - t0
                row.update({"remove_layers": n, "removed_secateurs": sorted(rep.removed_layers),
                            "removed_reference": removed_ref,
                            "same_layers": sorted(rep.removed_layers) == removed_ref})
            p_ours, p_ref = ppl(ours), ppl(ref)
            row.update({"params_secateurs": _params(ours), "params_reference": _params(ref),
                        "perplexity_secateurs": p_ours, "perplexity_reference": p_ref,
                        "perplexity_rel_diff": p_ours / p_ref - 1, "seconds_secateurs": t_ours,
                        "seconds_reference": t_ref, "time_ratio": t_ours / t_ref})
            runs.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("widths")}), file=sys.stderr,
                  flush=True)
            del ours, ref
    commits = {}
    for name in ("FLAP", "ShortGPT"):
        import subprocess

        proc = subprocess.run(["git", "-C", str(REFS / name), "rev-parse", "HEAD"], capture_output=True, text=True)
        commits[name] = proc.stdout.strip()
    doc = {"benchmark": "llm_structured_reference", "model": "smollm2-135m (dequantized Q4_1 GGUF, float32)",
           "references": {"CASIA-IVA-Lab/FLAP": commits["FLAP"], "icip-cas/ShortGPT": commits["ShortGPT"]},
           "protocol": {"calibration": f"{args.nsamples} x {args.seqlen} tokens, Shakespeare calibration plays, "
                                       "draw_windows(seed=0)",
                        "heldout": f"first {args.eval_windows} windows of {args.seqlen} tokens of the held-out plays",
                        "flap": "WIFV, AL-AM, bias compensation, dense inputs (the reference's defaults); model "
                                "with key/value heads repeated to multi-head attention",
                        "shortgpt": "Block Influence, remove_layers = round(sparsity x layers)"},
           "dense": dense, "runs": runs, "seconds": round(time.perf_counter() - t_start, 1),
           "command": "python benchmarks/llm_structured_reference.py " + " ".join(sys.argv[1:]),
           "machine": machine_info(), "versions": library_versions()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
