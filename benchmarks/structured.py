"""Structured pruning against Torch-Pruning, the peer → ``benchmarks/results/structured.json``.

ResNet-20, VGG-11 and MobileNetV2 from the zoo, trained on digits: at 30/50/70% channel reduction, L2-magnitude
importance with the same (uniform) ratio in every dependency group, the final classifier keeping its outputs.
Runs per model and ratio, each on its own deep copy of the trained dense model:

* ``secateurs``: ``secateurs.structured.prune(model, x, ratio, method="l2", allocation="uniform")``;
* ``secateurs round_to=8``: the same with kept widths rounded to multiples of 8 (a CPU-friendly variant);
* ``secateurs @ peer MACs``: ``target_macs`` set to the peer's MACs, so accuracy is compared at equal MACs
  (the two libraries round a group's kept width differently, so at equal ratios their MACs differ slightly);
* ``torch-pruning``: ``tp.pruner.MetaPruner`` with ``GroupMagnitudeImportance(p=2)``, ``global_pruning=False``,
  the classifier in ``ignored_layers``.

Recorded: parameters and MACs (both counted by ``secateurs.structured.count_macs`` at batch 1, so the counter is the
same), test accuracy right after pruning and after a short fine-tuning (the zoo's trainer, the same recipe for
every run; the mean over three fine-tuning seeds, the only random step), and CPU latency at batch 1 and 64 on one
thread, the dense model, a second copy of it (a noise control: its speed-up should be 1.00) and every pruned model
timed interleaved, by two clocks:

* ``wall``: ``secateurs.structured.latency`` (each round runs each model once in turn; median wall time);
* ``cpu``: the same interleaving (in a random order every round) timed with the thread's CPU time
  (``time.thread_time_ns``; with one thread all of a forward's work runs on the calling thread).  On a machine with
  more runnable processes than cores, a forward that is preempted pays a whole scheduler slice of wall time, a
  cost that does not scale with the model, so wall-clock medians of a small model jump between modes (identical
  models measured 1.4x and 4.0x faster than the dense one in the same interleaved call); CPU time does not see
  preemption.  The summary uses CPU time; both are recorded.

Derived: MAC reduction (dense / pruned MACs), speed-up (dense / pruned latency) and their ratio (1.0: the latency
falls as much as the MACs).

Architectures: both libraries on the zoo ViT (random init) and on a tiny Hugging Face Llama (GQA: 4 query heads,
2 key/value heads), ratio 0.5, heads and MLP neurons only (the residual width kept); each attempt runs in a child
process with a time limit and records whether pruning succeeded, whether the pruned model still runs (on an input of
another shape than the example) and the error otherwise.  Torch-Pruning is driven the way its examples do it:
``num_heads`` per q/k/v projection, ``prune_num_heads=True``, ``prune_head_dims=False``, ``head_pruning_ratio``.

Deploy sweep (``deploy`` in the JSON; ``--deploy-only`` reruns just it and keeps the rest of the file): can the
speed-up reach the MAC reduction (the issue's goal: speed-up / MAC reduction >= 0.9)?  Per zoo model, the dense
model, a copy of it (noise control), secateurs at ratio 0.5 (``round_to`` None / 8 / 16) and 0.7 (None / 16), and a
"floor" model pruned at 0.95 (1-2 channels per layer: its latency is the fixed per-operator cost that no pruning
removes), all timed interleaved (CPU-time clock, 1 thread, medians) on every inference path, the same path for
dense and pruned: ``eager``; ``fused`` (``secateurs.structured.deploy.for_inference``: BatchNorm folded into the
conv); ``fused channels_last``; ``frozen`` (fused + ``torch.jit.freeze`` + ``optimize_for_inference``), at batch
1, 8, 64, 256, 512 on the 8x8 digits and at batch 1 and 64 on 32x32 inputs (the digits upsampled; the three CNNs
end in adaptive average pooling, so they run at any resolution; timing only, no accuracy there).  Latency does
not depend on the weights' values, so these models are not fine-tuned.  Recorded per row: latency, speed-up, MAC
reduction, their ratio, the floor's share of the dense latency, and ``overhead_bound``, the ratio the model could
reach if every MAC cost the same and only the floor's time were fixed; ``dense_fastest_path`` picks, per model,
resolution and batch, the path fastest for the dense model (what a deployment engineer would ship) and gives the
pruned models' ratios there; ``conv_throughput`` times a lone 3x3 convolution C -> C at batch 256: GMAC/s
against C, the other half of the answer.

Findings (``deploy`` of the JSON; ``torch.compile`` was tried too, CPU inductor with freezing: no better than
eager at batch 1, recompiles for every model copy, minutes of compile time, so not swept):

* the goal is not met on this CPU by any path, batch or resolution.  Best speed-up / MAC reduction at ratio 0.5
  (run of the JSON): VGG-11 0.84 (frozen, batch 512), MobileNetV2 0.87 with ``round_to=16`` (32x32, batch 64),
  ResNet-20 0.78 with ``round_to=16`` (frozen, 32x32, batch 64; MAC reduction then only 1.9x); on the path fastest
  for the dense model at 8x8: 0.26-0.43 at batch 1, 0.35-0.59 at 64, 0.39-0.84 at 512.  The noise control
  spans 0.74-1.13 (most cells within 0.05 of 1).
* two causes, both measured: (1) a fixed cost per operator (Python dispatch, oneDNN primitive set-up) that pruning
  cannot remove: the floor model takes 30-100% of the dense latency at batch 1 and 9-43% at batch 512, and
  ``overhead_bound`` (the ratio that cost alone allows) tracks the measured ratio closely (ResNet-20 at 0.5,
  batch 1: 0.29 measured, 0.31 bound); (2) per-MAC efficiency falls with width: a 3x3 conv at 8x8 runs at
  ~70-80 GMAC/s with 64 channels, ~40 with 16, ~20 with 8 and 6-10 with 4 (at 2x2: 57, 15, 5), so a model whose
  widths fall to 8 does a quarter of the MACs at half the speed.  ``round_to=16`` (one AVX-512 vector of float32)
  removes cause (2) at the price of a smaller MAC reduction; large batches and inputs shrink cause (1).

    python benchmarks/structured.py [--models resnet20 vgg11 mobilenetv2] [--ratios 0.3 0.5 0.7] [--quick]
                                    [--epochs 3] [--lr 0.05] [--ft-seeds 0 1 2] [--rounds 200]
                                    [--deploy-only] [--deploy-scale 1.0]

Needs ``pip install --no-deps torch-pruning==1.6.1`` (``--no-deps``: leave torch alone) and ``transformers``.
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import multiprocessing as mp
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.structured import count_macs, count_params, latency, prune  # noqa: E402
from secateurs.structured.deploy import for_inference  # noqa: E402
from secateurs.zoo import build_model, evaluate, fit, load_dataset, pretrained, recipe_for  # noqa: E402

OUT = Path(__file__).parent / "results" / "structured.json"
MODELS = ["resnet20", "vgg11", "mobilenetv2"]
RATIOS = [0.3, 0.5, 0.7]
OURS, OURS8, OURS_EQ, PEER = "secateurs", "secateurs round_to=8", "secateurs @ peer MACs", "torch-pruning"
RUNS = [OURS, OURS8, OURS_EQ, PEER]
CONTROL = "dense (copy: noise control)"
LATENCY_BATCHES = (1, 64)
CLOCKS = ("cpu", "wall")


# ------------------------------------------------------------------------------------------------ deploy sweep
DEPLOY_VARIANTS: dict[str, dict[str, Any]] = {  # name -> secateurs.structured.prune keywords (l2, uniform)
    "r0.5": {"ratio": 0.5}, "r0.5 round_to=8": {"ratio": 0.5, "round_to": 8},
    "r0.5 round_to=16": {"ratio": 0.5, "round_to": 16}, "r0.7": {"ratio": 0.7},
    "r0.7 round_to=16": {"ratio": 0.7, "round_to": 16},
}
FLOOR = "floor r0.95"  # 1-2 channels per layer: what is left is the fixed per-operator cost
DEPLOY_PATHS = ("eager", "fused", "fused channels_last", "frozen")
DEPLOY_BATCHES = (1, 8, 64, 256, 512)
DEPLOY_ROUNDS = {1: 60, 8: 40, 64: 20, 256: 10, 512: 6}
HIRES, HIRES_BATCHES = 32, (1, 64)


def _deployed(model: nn.Module, path: str, x: torch.Tensor) -> nn.Module:
    """``model`` (a copy) in inference form ``path``; the same function for dense and pruned models."""
    m = copy.deepcopy(model).eval()
    if path == "eager":
        return m
    return for_inference(m, x, channels_last=path == "fused channels_last", freeze=path == "frozen")


def _conv_throughput(rounds: int) -> list[dict[str, Any]]:
    """GMAC/s of one 3x3 convolution C -> C (bias, batch 256) against C: how per-MAC efficiency falls with width."""
    out = []
    for hw in (8, 2):
        for cl in (False, True):
            for c in (4, 8, 16, 32, 64, 128):
                conv = nn.Conv2d(c, c, 3, padding=1).eval()
                x = torch.randn(256, c, hw, hw)
                if cl:
                    conv = conv.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)
                t = latency([conv], x, rounds=rounds, warmup=2, threads=1, clock="thread")[0]
                out.append({"hw": hw, "channels_last": cl, "channels": c, "batch": 256, "seconds": t,
                            "gmacs_per_s": 256 * hw * hw * c * c * 9 / t / 1e9})
    return out


def deploy_sweep(names: list[str], scale: float = 1.0) -> dict[str, Any]:
    """Dense vs pruned latency on every inference path and batch size (see the module docstring, "deploy")."""
    data = load_dataset("digits")
    xs = data.train.tensors[0]
    t_start = time.time()
    rows: list[dict[str, Any]] = []
    for name in names:
        dense = pretrained(name, "digits", seed=0).eval()
        pruned: dict[str, nn.Module] = {}
        for v, kw in {**DEPLOY_VARIANTS, FLOOR: {"ratio": 0.95}}.items():
            pruned[v] = copy.deepcopy(dense)
            prune(pruned[v], xs[:64], importance="l2", allocation="uniform", **kw)
        pool = {"dense": dense, CONTROL: dense, **pruned}
        for res, batches in ((8, DEPLOY_BATCHES), (HIRES, HIRES_BATCHES)):
            def inp(b: int) -> torch.Tensor:
                x = xs[torch.arange(b) % len(xs)]
                return x if res == 8 else nn.functional.interpolate(x, size=(res, res), mode="bilinear")

            macs = {k: count_macs(m, inp(1)) for k, m in pool.items()}
            for path in DEPLOY_PATHS:
                for b in batches:
                    x = inp(b)
                    if path == "fused channels_last":
                        x = x.contiguous(memory_format=torch.channels_last)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ms = [_deployed(m, path, x) for m in pool.values()]
                    rounds = max(3, int(DEPLOY_ROUNDS.get(b, 20) * scale * (1 if res == 8 else 0.5)))
                    lat = dict(zip(pool, latency(ms, x, rounds=rounds, warmup=2, threads=1, clock="thread")))
                    d, floor = lat["dense"], lat[FLOOR]
                    for k in pool:
                        if k == "dense":
                            continue
                        red = macs["dense"] / macs[k]
                        sp = d / lat[k]
                        # best case if every MAC cost the same and only the floor's time were fixed
                        bound = d / (floor + (d - floor) / red) / red if k not in (CONTROL, FLOOR) else None
                        rows.append({"model": name, "resolution": res, "path": path, "batch": b, "variant": k,
                                     "rounds": rounds, "latency_s": lat[k], "dense_latency_s": d,
                                     "per_image_s": lat[k] / b, "macs": macs[k], "mac_reduction": red,
                                     "speedup": sp, "speedup_over_mac_reduction": sp / red,
                                     "floor_fraction_of_dense": floor / d, "overhead_bound": bound})
                    print(f"deploy {name} {res}px {path:20s} b={b:3d} dense {d / b * 1e6:7.1f} us/img, control "
                          f"{d / lat[CONTROL]:.2f}x, floor {floor / d:.2f} of dense; ÷MACs " + ", ".join(
                              f"{k} {d / lat[k] / (macs['dense'] / macs[k]):.2f}" for k in DEPLOY_VARIANTS),
                          file=sys.stderr)
    # what a deployment engineer would run: per model, resolution and batch, the path fastest for the dense model
    picks = []
    for name in names:
        for res in (8, HIRES):
            for b in sorted({r["batch"] for r in rows if r["model"] == name and r["resolution"] == res}):
                cand = [r for r in rows if (r["model"], r["resolution"], r["batch"]) == (name, res, b)]
                best = min(cand, key=lambda r: r["dense_latency_s"])["path"]
                for r in cand:
                    if r["path"] == best and r["variant"] in DEPLOY_VARIANTS:
                        picks.append({k: r[k] for k in ("model", "resolution", "batch", "path", "variant",
                                                        "mac_reduction", "speedup", "speedup_over_mac_reduction",
                                                        "overhead_bound")})
    return {"seconds": round(time.time() - t_start, 1), "paths": list(DEPLOY_PATHS),
            "batches": list(DEPLOY_BATCHES), "hires": {"resolution": HIRES, "batches": list(HIRES_BATCHES)},
            "variants": {**DEPLOY_VARIANTS, FLOOR: {"ratio": 0.95}}, "rounds": DEPLOY_ROUNDS, "rounds_scale": scale,
            "clock": "cpu (time.thread_time_ns), interleaved, random order, median", "threads": 1,
            "rows": rows, "dense_fastest_path": picks, "conv_throughput": _conv_throughput(max(3, int(10 * scale)))}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:500]


def classifier_of(model: nn.Module) -> nn.Linear:
    """The final Linear layer (the logits), which keeps its outputs."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def conv_widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


# ------------------------------------------------------------------------------------------------ the two pruners
def prune_ours(model: nn.Module, x: torch.Tensor, ratio: float, **kw: Any) -> dict[str, Any]:
    rep = prune(model, x, sparsity=ratio, method="l2", allocation="uniform", **kw)
    return {"ratio_used": rep.ratio, "groups": len(rep.groups)}


def prune_peer(model: nn.Module, x: torch.Tensor, ratio: float) -> dict[str, Any]:
    import torch_pruning as tp

    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, global_pruning=False, ignored_layers=[classifier_of(model)])
    pruner.step()
    return {}


# ------------------------------------------------------------------------------------------------ architectures
def _vit_case(library: str, variant: str = "") -> dict[str, Any]:
    """Zoo ViT (random init), heads + MLP neurons at 0.5; the patch embedding (residual width) kept."""
    torch.manual_seed(0)
    model = build_model("vit").eval()
    x, other = torch.randn(8, 1, 8, 8), torch.randn(3, 1, 8, 8)
    before = count_params(model)
    if library == OURS:
        prune(model, x, sparsity=0.5, method="l2", ignore=["patch_embed"])
    else:
        import torch_pruning as tp

        heads = {blk.attn.qkv: blk.attn.heads for blk in model.blocks}
        pruner = tp.pruner.MetaPruner(
            model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.5,
            global_pruning=False, ignored_layers=[model.head, model.patch_embed], num_heads=heads,
            prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=0.5)
        pruner.step()
        for blk in model.blocks:  # the zoo attention reshapes with .heads: the caller updates it (as TP's examples)
            blk.attn.heads = pruner.num_heads[blk.attn.qkv]
    with torch.no_grad():
        y = model(other)
    blk = model.blocks[0]
    return {"params_before": before, "params_after": count_params(model), "runs": tuple(y.shape) == (3, 10),
            "structure": {"heads": [b.attn.heads for b in model.blocks], "qkv_out": blk.attn.qkv.out_features,
                          "mlp_hidden": blk.mlp.fc1.out_features, "width": model.patch_embed.out_features}}


def _llama(seed: int = 0) -> nn.Module:
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                   num_key_value_heads=2, num_hidden_layers=2)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()


def _llama_result(model: nn.Module, before: int) -> dict[str, Any]:
    other = torch.randint(0, 100, (1, 9))
    with torch.no_grad():
        y = model(other).logits
    at, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    return {"params_before": before, "params_after": count_params(model),
            "runs": tuple(y.shape) == (1, 9, 100) and bool(torch.isfinite(y).all()),
            "structure": {"q_out": at.q_proj.out_features, "kv_out": at.k_proj.out_features,
                          "o_in": at.o_proj.in_features, "mlp_hidden": mlp.gate_proj.out_features,
                          "width": model.model.embed_tokens.embedding_dim}}


def _llama_case(library: str, variant: str = "") -> dict[str, Any]:
    """Tiny HF Llama, heads (GQA groups) + MLP neurons at 0.5; the embedding (residual width) kept."""
    model = _llama()
    ids = torch.randint(0, 100, (2, 16))
    before = count_params(model)
    if library == OURS:
        prune(model, ids, sparsity=0.5, method="l2", ignore=["model.embed_tokens"])
        return _llama_result(model, before)
    import torch_pruning as tp

    cfg = model.config
    heads = {}
    for layer in model.model.layers:
        a = layer.self_attn
        heads.update({a.q_proj: cfg.num_attention_heads, a.k_proj: cfg.num_key_value_heads,
                      a.v_proj: cfg.num_key_value_heads})
    kw: dict[str, Any] = {}
    ignored = [model.lm_head, model.model.embed_tokens]
    if variant == "output_transform":  # an HF model returns a ModelOutput: hand TP the logits
        kw["output_transform"] = lambda out: out.logits
    pruner = tp.pruner.MetaPruner(
        model, ids, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.5, global_pruning=False,
        ignored_layers=ignored, num_heads=heads, prune_num_heads=True, prune_head_dims=False,
        head_pruning_ratio=0.5, **kw)
    pruner.step()
    # the bookkeeping TP's LLM example does after pruning
    for layer in model.model.layers:
        a = layer.self_attn
        h, kv = a.q_proj.out_features // a.head_dim, a.k_proj.out_features // a.head_dim
        a.num_key_value_groups = h // kv
        cfg.num_attention_heads, cfg.num_key_value_heads = h, kv
    cfg.intermediate_size = model.model.layers[0].mlp.gate_proj.out_features
    return _llama_result(model, before)


CASES: dict[str, Callable[..., dict[str, Any]]] = {"vit": _vit_case, "llama": _llama_case}


def _child(conn: Any, arch: str, library: str, variant: str) -> None:
    torch.set_num_threads(1)
    try:
        out = {"ok": True, **CASES[arch](library, variant)}
    except BaseException as e:  # noqa: BLE001 - everything is a result here
        out = {"ok": False, "error": _error(e), "where": traceback.extract_tb(e.__traceback__)[-1].name}
    conn.send(out)
    conn.close()


def run_case(arch: str, library: str, variant: str, timeout: float) -> dict[str, Any]:
    """One architecture attempt in a spawned child process, killed after ``timeout`` seconds."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(send, arch, library, variant), daemon=True)
    p.start()
    send.close()
    out: dict[str, Any]
    if recv.poll(timeout):
        try:
            out = recv.recv()
        except EOFError:
            out = {"ok": False, "error": f"child process died (exit code {p.exitcode})"}
    else:
        out = {"ok": False, "error": f"timed out after {timeout:.0f} s (killed)", "timeout": True}
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
    out.setdefault("runs", False)
    return {"arch": arch, "library": library, "variant": variant or "default",
            "seconds": round(time.perf_counter() - t0, 2), **out}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--ratios", nargs="+", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 3; --quick: 1)")
    ap.add_argument("--lr", type=float, default=0.05, help="fine-tuning learning rate (cosine decay to 0)")
    ap.add_argument("--ft-seeds", nargs="+", type=int, default=None,
                    help="fine-tuning seeds, accuracy averaged over them (default 0 1 2; --quick: 0)")
    ap.add_argument("--rounds", type=int, default=None, help="latency rounds (default 200; --quick: 10)")
    ap.add_argument("--arch-timeout", type=float, default=None, help="seconds per architecture attempt")
    ap.add_argument("--no-arch", action="store_true", help="skip the ViT / Llama architecture attempts")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: ratio 0.5, 1 epoch, 1 fine-tuning seed, 10 latency rounds")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--deploy-only", action="store_true",
                    help="run only the deploy sweep and merge it into --out, keeping its other results")
    ap.add_argument("--deploy-scale", type=float, default=None,
                    help="multiplies the deploy sweep's rounds (default 1; --quick: 0.2)")
    args = ap.parse_args()
    deploy_scale = args.deploy_scale or (0.2 if args.quick else 1.0)
    if args.deploy_only:
        torch.set_num_threads(1)
        doc = json.loads(args.out.read_text()) if args.out.exists() else {"machine": machine_info()}
        doc["deploy"] = {"machine": machine_info(), "torch": torch.__version__,
                         **deploy_sweep(args.models, deploy_scale)}
        _write(doc, args.out)
        return
    ratios = args.ratios or ([0.5] if args.quick else RATIOS)
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else 3)
    rounds = args.rounds or (10 if args.quick else 200)
    ft_seeds = args.ft_seeds or ([0] if args.quick else [0, 1, 2])
    arch_timeout = args.arch_timeout or (20.0 if args.quick else 60.0)
    torch.set_num_threads(1)
    start = time.time()

    import torch_pruning as tp

    data = load_dataset("digits")
    x_train = data.train.tensors[0]
    example = x_train[:64]  # the example batch both libraries trace with
    x_test = data.test.tensors[0]
    inputs = {b: x_train[:b] for b in LATENCY_BATCHES}
    rows: list[dict[str, Any]] = []
    dense_rows: dict[str, Any] = {}
    finetune: dict[str, Any] = {}
    for name in args.models:
        dense = pretrained(name, "digits", seed=0)
        recipe = recipe_for(name)
        ft = {"epochs": epochs, "lr": args.lr, "optimizer": recipe["optimizer"], "momentum": recipe["momentum"],
              "weight_decay": recipe["weight_decay"], "batch_size": recipe["batch_size"], "seeds": ft_seeds,
              "num_threads": 1}
        finetune[name] = ft
        train_loader, test_loader = data.loaders(batch_size=ft["batch_size"], seed=0)
        d_params, d_macs = count_params(dense), count_macs(dense, inputs[1])
        dense_rows[name] = {"params": d_params, "macs": d_macs, "accuracy": evaluate(dense, test_loader)["accuracy"],
                            "conv_widths": conv_widths(dense)}
        print(f"{name}: dense {d_params} params, {d_macs} MACs, accuracy {dense_rows[name]['accuracy']:.4f}",
              file=sys.stderr)
        for ratio in ratios:
            models: dict[str, nn.Module] = {}
            results: dict[str, dict[str, Any]] = {}
            pruned_out: dict[str, tuple[list, torch.Tensor]] = {}  # before fine-tuning: shapes, test logits
            for run in (OURS, OURS8, PEER, OURS_EQ):  # the equal-MACs run needs the peer's MACs first
                m = copy.deepcopy(dense)
                res: dict[str, Any] = {"model": name, "ratio": ratio, "run": run}
                t0 = time.perf_counter()
                try:
                    if run == OURS:
                        res.update(prune_ours(m, example, ratio))
                    elif run == OURS8:
                        res.update(prune_ours(m, example, ratio, round_to=8))
                    elif run == PEER:
                        res.update(prune_peer(m, example, ratio))
                    else:
                        peer = results.get(PEER, {})
                        if not peer.get("ok"):
                            raise RuntimeError("the peer failed: no MACs to match")
                        res.update(prune_ours(m, example, 0.0, target_macs=peer["macs"] / d_macs))
                    res["prune_seconds"] = round(time.perf_counter() - t0, 3)
                    with torch.no_grad():
                        y = m.eval()(inputs[1])
                    if tuple(y.shape) != (1, data.num_classes):
                        raise RuntimeError(f"pruned model gives output of shape {tuple(y.shape)}")
                    res.update(ok=True, params=count_params(m), macs=count_macs(m, inputs[1]),
                               conv_widths=conv_widths(m), accuracy_pruned=evaluate(m, test_loader)["accuracy"])
                    res["mac_reduction"] = d_macs / res["macs"]
                    res["param_reduction"] = d_params / res["params"]
                    with torch.no_grad():
                        pruned_out[run] = ([tuple(p.shape) for p in m.parameters()], m.eval()(x_test))
                    t1, accs = time.perf_counter(), []
                    for seed in ft["seeds"]:  # fine-tuning is the only random step: one copy per seed
                        tuned = copy.deepcopy(m)
                        fit(tuned, train_loader, ft["epochs"], lr=ft["lr"], optimizer=ft["optimizer"],
                            weight_decay=ft["weight_decay"], momentum=ft["momentum"], seed=seed,
                            num_threads=ft["num_threads"])
                        accs.append(evaluate(tuned, test_loader)["accuracy"])
                    res["accuracy_finetuned_seeds"] = accs
                    res["accuracy_finetuned"] = statistics.mean(accs)
                    res["finetune_seconds"] = round(time.perf_counter() - t1, 2)
                    models[run] = tuned.eval()
                except Exception as e:  # noqa: BLE001 - a failure is a result
                    res.update(ok=False, error=_error(e))
                results[run] = res
            # the same model as the peer's? (same shapes and the same test logits before fine-tuning)
            for run in (OURS, OURS8, OURS_EQ):
                if run in pruned_out and PEER in pruned_out:
                    same_shapes = pruned_out[run][0] == pruned_out[PEER][0]
                    results[run]["same_widths_as_peer"] = same_shapes
                    results[run]["max_abs_logit_diff_vs_peer"] = (
                        (pruned_out[run][1] - pruned_out[PEER][1]).abs().max().item() if same_shapes else None)
            # latency: dense, a copy of it (noise control) and every pruned model, interleaved, at each batch size
            timed = [r for r in RUNS if r in models]
            pool = [dense, copy.deepcopy(dense), *(models[r] for r in timed)]
            lat = {clock: {} for clock in CLOCKS}
            for b in LATENCY_BATCHES:
                lat["wall"][b] = latency(pool, inputs[b], rounds=rounds, warmup=5, threads=1)
                lat["cpu"][b] = latency(pool, inputs[b], rounds=rounds, warmup=5, threads=1, clock="thread")

            def timing(i: int, mac_reduction: float) -> dict[str, Any]:
                t = {"latency_s": {c: {str(b): lat[c][b][i] for b in LATENCY_BATCHES} for c in CLOCKS},
                     "dense_latency_s": {c: {str(b): lat[c][b][0] for b in LATENCY_BATCHES} for c in CLOCKS},
                     "speedup": {c: {str(b): lat[c][b][0] / lat[c][b][i] for b in LATENCY_BATCHES} for c in CLOCKS}}
                t["speedup_over_mac_reduction"] = {c: {b: v / mac_reduction for b, v in t["speedup"][c].items()}
                                                   for c in CLOCKS}
                return t

            control = {"model": name, "ratio": ratio, "run": CONTROL, "ok": True, "params": d_params,
                       "macs": d_macs, "mac_reduction": 1.0, "accuracy_pruned": dense_rows[name]["accuracy"],
                       "accuracy_finetuned": None, **timing(1, 1.0)}
            rows.append(control)
            print(f"{name} {ratio:.0%} {CONTROL:24s} speed-up cpu bs1 {control['speedup']['cpu']['1']:.2f}x bs64 "
                  f"{control['speedup']['cpu']['64']:.2f}x, wall bs1 {control['speedup']['wall']['1']:.2f}x bs64 "
                  f"{control['speedup']['wall']['64']:.2f}x", file=sys.stderr)
            for run in RUNS:
                res = results[run]
                if run in models:
                    res.update(timing(timed.index(run) + 2, res["mac_reduction"]))
                    sp = res["speedup"]
                    print(f"{name} {ratio:.0%} {run:24s} params {res['params']:7d} MACs {res['macs']:8d} "
                          f"({res['mac_reduction']:.2f}x) speed-up cpu bs1 {sp['cpu']['1']:.2f}x bs64 "
                          f"{sp['cpu']['64']:.2f}x, wall bs1 {sp['wall']['1']:.2f}x bs64 {sp['wall']['64']:.2f}x; "
                          f"acc {res['accuracy_pruned']:.3f} -> {res['accuracy_finetuned']:.3f}", file=sys.stderr)
                else:
                    print(f"{name} {ratio:.0%} {run:24s} FAILED: {res['error']}", file=sys.stderr)
                rows.append(res)

    arch: list[dict[str, Any]] = []
    if not args.no_arch:
        attempts = [("vit", OURS, ""), ("vit", PEER, ""), ("llama", OURS, ""), ("llama", PEER, ""),
                    ("llama", PEER, "output_transform")]
        for a, lib, variant in attempts:
            r = run_case(a, lib, variant, arch_timeout)
            arch.append(r)
            print(f"arch {a} {lib} {r['variant']}: ok={r['ok']} runs={r['runs']} {r.get('error', '')}",
                  file=sys.stderr)
    handled = {lib: {m: all(r["ok"] for r in rows if r["model"] == m and r["run"] in runs)
                     for m in args.models} for lib, runs in ((OURS, (OURS, OURS8, OURS_EQ)), (PEER, (PEER,)))}
    for lib in (OURS, PEER):
        for a in ("vit", "llama"):
            tries = [r for r in arch if r["arch"] == a and r["library"] == lib]
            if tries:
                handled[lib][a] = any(r["ok"] and r["runs"] for r in tries)

    doc = {
        "machine": machine_info(),
        "versions": {"secateurs": _version("secateurs"), "torch_pruning": _version("torch-pruning"),
                     "torch_pruning_module_version": getattr(tp, "__version__", None),
                     "torch": torch.__version__, "transformers": _version("transformers")},
        "seconds": round(time.time() - start, 1),
        "quick": args.quick,
        "settings": {"ratios": ratios, "importance": "l2 (secateurs) / GroupMagnitudeImportance(p=2) (torch-pruning)",
                     "allocation": "uniform / global_pruning=False", "example_batch": len(example),
                     "macs_batch": 1, "latency": {"rounds": rounds, "warmup": 5, "threads": 1,
                                                  "batch_sizes": list(LATENCY_BATCHES), "statistic": "median",
                                                  "clocks": {"cpu": "time.thread_time_ns, interleaved, a random "
                                                                    "order every round",
                                                             "wall": "secateurs.structured.latency (perf_counter, "
                                                                     "interleaved, fixed order)"},
                                                  "summary_clock": "cpu"},
                     "finetune": finetune, "arch_timeout_s": arch_timeout},
        "runs_order": [CONTROL, *RUNS],
        "dense": dense_rows,
        "runs": rows,
        "architectures": arch,
        "handled": handled,
    }
    doc["deploy"] = {"machine": machine_info(), "torch": torch.__version__,
                     **deploy_sweep(args.models, deploy_scale)}
    doc["seconds"] = round(time.time() - start, 1)
    _write(doc, args.out)


def _write(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
