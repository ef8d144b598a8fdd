"""Delta pruning on a real fine-tuning delta → ``results/deltas.json``.

Base: SmolLM2-135M (``secateurs.zoo.pretrained_llm("smollm2-135m")``, float32).  Fine-tuned: the same model trained
briefly (``--steps`` AdamW steps, 4 x 128-token windows, lr 1e-4) on Henry V and As You Like It
(``secateurs.zoo.plays``).  Held-out: the last 25% of each play's speeches (never trained on) for test perplexity
(Wanda/SparseGPT protocol, 128-token windows), a separate slice of the training part for choosing DAREx's q.

Rows (perplexity on the held-out text): base, fine-tuned, and ``secateurs.deltas.prune`` with
``dare`` / ``magnitude`` / ``darex`` (analytical per-layer q from 8 calibration windows of the training text, and
the paper's q_v: the q of a small grid with the best validation perplexity) at p = 0.5 / 0.9 / 0.99; and
mergekit's DARE (``mergekit.sparsify.sparsify(delta, density=1 - p, method=random, rescale_norm=l1)``, its
``dare_linear`` with ``rescale``; ``pip install --no-deps mergekit`` into the venv, benchmark only) on the same
tensors where it is installed (a note otherwise).  Peak memory: ``deltas.prune`` (dare, 0.9) in a fresh subprocess,
peak RSS (VmHWM) less the RSS before the call — which counts the memory-mapped pages of both checkpoints it reads
(reclaimable page cache) — and the peak anonymous memory (RssAnon, sampled every 2 ms: what the process itself
allocates), against the checkpoint size and its largest tensor.

    python benchmarks/deltas.py [--steps 30] [--quick]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "deltas.json"
PLAYS = ("henry_v_gut", "as_you_like_it_gut")
SEQ = 128

RSS = r"""
import json, resource, sys, time
import torch
from secateurs.deltas import prune
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import threading
before, anon0 = rss("VmRSS"), rss("RssAnon")
peak_anon, done = [anon0], [False]
def sample():  # the anonymous (heap) memory: VmHWM also counts the memory-mapped checkpoint pages it reads
    while not done[0]:
        peak_anon[0] = max(peak_anon[0], rss("RssAnon"))
        time.sleep(0.002)
th = threading.Thread(target=sample, daemon=True)
th.start()
t0 = time.perf_counter()
rep = prune(sys.argv[1], sys.argv[2], sys.argv[3], method="dare", sparsity=0.9)
done[0] = True
th.join()
print(json.dumps({"rss_before_bytes": before, "vm_hwm_bytes": rss("VmHWM"), "seconds": time.perf_counter() - t0,
                  "delta_density": rep.delta_density, "peak_anon_minus_before_bytes": peak_anon[0] - anon0}))
"""


def texts() -> tuple[str, str, str]:
    """(train, validation, test) text: per play, the first 65% / next 10% / last 25% of its speeches."""
    from secateurs.zoo.plays import play_speeches

    train, val, test = [], [], []
    for p in PLAYS:
        s = play_speeches(p, max_lines=100000)
        a, b = int(0.65 * len(s)), int(0.75 * len(s))
        train += s[:a]
        val += s[a:b]
        test += s[b:]
    return "\n".join(train), "\n".join(val), "\n".join(test)


def finetune(src: Path, dst: Path, text: str, steps: int, seed: int = 0) -> float:
    import torch
    import transformers as T

    tok = T.AutoTokenizer.from_pretrained(src)
    model = T.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    ids = torch.tensor(tok(text)["input_ids"])
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        start = torch.randint(0, ids.numel() - SEQ - 1, (4,), generator=g)
        x = torch.stack([ids[s:s + SEQ] for s in start.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--windows", type=int, default=24, help="held-out 128-token windows for perplexity")
    ap.add_argument("--quick", action="store_true", help="p = 0.9 only, 5 steps")
    args = ap.parse_args()
    import torch
    import transformers as T

    T.logging.disable_progress_bar()
    from _machine import machine_info
    from secateurs.deltas import prune
    from secateurs.llm import perplexity
    from secateurs.zoo import pretrained_llm

    torch.manual_seed(0)
    rates = (0.9,) if args.quick else (0.5, 0.9, 0.99)
    steps = 5 if args.quick else args.steps
    base = pretrained_llm("smollm2-135m", progress=False)
    train, val, test = texts()
    tok = T.AutoTokenizer.from_pretrained(base)
    test_ids = torch.tensor(tok(test)["input_ids"])[: args.windows * SEQ]
    val_ids = torch.tensor(tok(val)["input_ids"])[: 8 * SEQ]
    calib_ids = torch.tensor(tok(train)["input_ids"])

    def ppl(model_dir: Path, ids=test_ids) -> float:
        m = T.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
        return float(perplexity(m, ids.reshape(1, -1), seqlen=SEQ))

    rows: list[dict] = []

    def add(name: str, p: float | None, value: float, **extra) -> None:
        rows.append({"variant": name, "sparsity": p, "perplexity": value, **extra})
        print(json.dumps(rows[-1]), flush=True)

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        ft = td / "finetuned"
        secs = finetune(base, ft, train, steps)
        add("base", None, ppl(base))
        add("finetuned", None, ppl(ft), train_seconds=secs, steps=steps)

        def run(name: str, p: float, **kw) -> dict:
            out = td / f"{name}-{p}"
            t0 = time.perf_counter()
            rep = prune(base, ft, out, sparsity=p, **kw)
            row = {"seconds": round(time.perf_counter() - t0, 2), "delta_density": rep.delta_density}
            if kw.get("method") == "darex":
                qs = sorted({round(1 / t.scale, 4) for t in rep.tensors if t.scale})
                row["q"] = qs if len(qs) <= 4 else {"min": qs[0], "max": qs[-1], "n": len(qs)}
            value = ppl(out)
            shutil.rmtree(out)
            add(name, p, value, **row)
            return row

        for p in rates:
            run("dare", p, method="dare")
            run("magnitude", p, method="magnitude")
            run("darex-analytical", p, method="darex", calibration=calib_ids, nsamples=8, seqlen=SEQ)
            # the paper's q_v: the q of a small grid (multiples of 1 - p) with the best validation perplexity
            best = None
            for mult in (1.0, 1.5, 2.0, 3.0, 5.0):
                q = min(1.0, (1 - p) * mult)
                out = td / f"qv-{p}-{q}"
                prune(base, ft, out, method="darex", sparsity=p, q=q)
                v = ppl(out, val_ids)
                shutil.rmtree(out)
                if best is None or v < best[1]:
                    best = (q, v)
            run("darex-q_v", p, method="darex", q=best[0])
            rows[-1]["validation_perplexity"] = best[1]
        # mergekit's DARE on the same tensors
        try:
            from mergekit.sparsify import RescaleNorm, SparsificationMethod, sparsify
        except ImportError as e:
            rows.append({"variant": "mergekit-dare", "note": f"mergekit not installed ({e}); pip install --no-deps "
                                                             f"mergekit into the venv to compare"})
        else:
            from safetensors.torch import load_file

            b_sd = load_file(str(Path(base) / "model.safetensors"))
            f_sd = load_file(str(ft / "model.safetensors"))
            model = T.AutoModelForCausalLM.from_pretrained(ft, local_files_only=True, dtype=torch.float32).eval()
            for p in rates:
                torch.manual_seed(0)
                state = {k: b_sd[k] + sparsify(f_sd[k] - b_sd[k], density=1 - p, method=SparsificationMethod.random,
                                               rescale_norm=RescaleNorm.l1) for k in f_sd}
                model.load_state_dict(state, strict=False)
                model.tie_weights()
                add("mergekit-dare", p, float(perplexity(model, test_ids.reshape(1, -1), seqlen=SEQ)),
                    note="mergekit.sparsify random + l1 rescale (dare_linear, rescale=true)")
        # peak memory of the streamed prune, fresh process
        res = subprocess.run([sys.executable, "-c", RSS, str(base), str(ft), str(td / "rss")], capture_output=True,
                             text=True, check=True)
        mem = json.loads(res.stdout.strip().splitlines()[-1])
        from safetensors import safe_open

        with safe_open(str(ft / "model.safetensors"), "pt") as f:
            largest = max(f.get_slice(k).get_shape() and
                          torch.Size(f.get_slice(k).get_shape()).numel() * 4 for k in f.keys())
        memory = {**mem, "peak_minus_before_bytes": mem["vm_hwm_bytes"] - mem["rss_before_bytes"],
                  "checkpoint_bytes": (ft / "model.safetensors").stat().st_size, "largest_tensor_bytes": largest}
        print(json.dumps(memory), flush=True)
    doc = {"benchmark": "deltas", "base": "smollm2-135m (float32, dequantized from the Q4_1 GGUF)",
           "finetune": {"plays": PLAYS, "steps": steps, "batch": 4, "seqlen": SEQ, "lr": 1e-4, "optimizer": "AdamW"},
           "eval": {"windows": args.windows, "seqlen": SEQ, "text": "last 25% of each play's speeches"},
           "results": rows, "memory": memory, "machine": machine_info()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
