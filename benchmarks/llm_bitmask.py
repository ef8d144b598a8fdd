"""Compressed sparse checkpoints: size on disk and load time vs the dense checkpoint → ``results/llm_bitmask.json``.

SmolLM2-135M (``secateurs.zoo.pretrained_llm("smollm2-135m")``; the Shakespeare Llama trains for many minutes
first) in fp16 and bf16, its block linears pruned by magnitude at 50% and 70% unstructured and 2:4, saved with
``llm.save_pruned`` twice: dense (``format="dense"``, plain transformers) and ``format="bitmask"``.  For each:

* bytes of the weight files, dense vs bitmask, for the whole checkpoint and for the pruned tensors alone (SmolLM2's
  tied 49152 x 576 embedding is 21% of its parameters and stays dense: the whole-checkpoint ratio is
  ``0.21 + 0.79 x`` the pruned tensors' ratio);
* load time: ``AutoModelForCausalLM.from_pretrained(dense)`` vs ``secateurs.llm.load_pruned(bitmask)``, in this
  process after one warm-up load of each (files in the page cache), interleaved, ``--repeats`` times; median and
  min; plus one load of each in a fresh subprocess (``fresh_process_load_seconds``: lazy imports included);
* bit-exactness: every tensor and the logits of 2 x 32 tokens equal between the two reloaded models.

Goals (issue 17): a 50%-sparse fp16/bf16 model <= 0.6x the dense size (70%: <= 0.4x), bit-exact, loading within
1.5x of dense.

    python benchmarks/llm_bitmask.py [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "llm_bitmask.json"

LOAD = r"""
import sys, time, json
t0 = time.perf_counter()
import torch
kind, path = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
if kind == "dense":
    import transformers as T
    T.logging.disable_progress_bar()
    m = T.AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="auto")
else:
    import transformers as T
    T.logging.disable_progress_bar()
    from secateurs.llm import load_pruned
    m = load_pruned(path)
t2 = time.perf_counter()
print(json.dumps({"load_seconds": t2 - t1, "import_seconds": t1 - t0}))
"""


def _weight_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.glob("*.safetensors"))


def _load_time(kind: str, path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", LOAD, kind, str(path)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["load_seconds"]


# parameters outside the pruned block linears (embeddings, head, norms) / all parameters, of larger Llamas
DENSE_SHARE = {"llama-2-7b": (2 * 32000 * 4096 + 65 * 4096) / 6738415616,
               "llama-3-8b": (2 * 128256 * 4096 + 65 * 4096) / 8030261248}


def projections(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Whole-checkpoint size ratio of larger models from the measured ratio of the pruned tensors (the format's
    bytes per element do not depend on the model): ``dense share + (1 - dense share) x pruned-tensor ratio``."""
    return {m: {r["config"]: share + (1 - share) * r["pruned_tensors_ratio"] for r in rows}
            for m, share in DENSE_SHARE.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fp16 50%% only, 2 repeats")
    args = ap.parse_args()
    import torch
    import transformers as T

    T.logging.disable_progress_bar()
    from _machine import machine_info
    from secateurs.llm import load_pruned, prune, save_pruned
    from secateurs.zoo import pretrained_llm

    src = pretrained_llm("smollm2-135m", progress=False)
    configs = [(d, p, s) for d in ("float16", "bfloat16") for p, s in (("unstructured", 0.5), ("unstructured", 0.7),
                                                                        ("2:4", None))]
    if args.quick:
        configs, args.repeats = configs[:1], 2
    rows = []
    with tempfile.TemporaryDirectory(dir=HERE.parent / ".cache" if (HERE.parent / ".cache").is_dir() else None) as td:
        td = Path(td)
        for dtype, pattern, sparsity in configs:
            name = f"{dtype}-{pattern.replace(':', 'of')}-{sparsity}"
            model = T.AutoModelForCausalLM.from_pretrained(src, local_files_only=True, dtype=getattr(torch, dtype))
            report = prune(model, None, method="magnitude", sparsity=sparsity, pattern=pattern, progress=False)
            dense, packed = td / f"{name}-dense", td / f"{name}-bitmask"
            t0 = time.perf_counter()
            save_pruned(model, None, dense, report)
            t_dense_save = time.perf_counter() - t0
            t0 = time.perf_counter()
            save_pruned(model, None, packed, report, format="bitmask")
            t_bitmask_save = time.perf_counter() - t0
            del model
            weights = json.loads((packed / "secateurs.json").read_text())["weights"]
            pruned = [e for e in weights["tensors"].values() if e["layout"] != "dense"]
            es = torch.empty((), dtype=getattr(torch, dtype)).element_size()
            pruned_dense = sum(torch.Size(e["shape"]).numel() * es for e in pruned)
            pruned_stored = sum(
                (e["nnz"] * es + (torch.Size(e["shape"]).numel() + 7) // 8) if e["layout"] == "bitmask" else
                (torch.Size(e["shape"]).numel() // 2 * es + torch.Size(e["shape"]).numel() // 8) for e in pruned)
            # bit-exact: the two reloads, every tensor and the logits
            a = T.AutoModelForCausalLM.from_pretrained(dense, local_files_only=True, dtype="auto").eval()
            b = load_pruned(packed)
            sa, sb = a.state_dict(), b.state_dict()
            exact = set(sa) == set(sb) and all(
                sa[k].dtype == sb[k].dtype and torch.equal(sa[k].view(torch.int16) if sa[k].element_size() == 2
                                                           else sa[k], sb[k].view(torch.int16)
                                                           if sb[k].element_size() == 2 else sb[k]) for k in sa)
            x = torch.randint(0, 49152, (2, 32), generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                same_logits = torch.equal(a(x).logits, b(x).logits)
            del a, b, sa, sb
            for d in (dense, packed):  # both from the page cache
                for f in d.glob("*.safetensors"):
                    f.read_bytes()
            times: dict[str, list[float]] = {"dense": [], "bitmask": []}
            cold = {"dense": _load_time("dense", dense), "bitmask": _load_time("bitmask", packed)}
            loaders = {"dense": lambda: T.AutoModelForCausalLM.from_pretrained(dense, local_files_only=True,
                                                                                dtype="auto"),
                       "bitmask": lambda: load_pruned(packed)}
            for k, fn in loaders.items():  # warm-up: lazy imports, allocator
                fn()
            for _ in range(args.repeats):
                for k, fn in loaders.items():
                    t0 = time.perf_counter()
                    m = fn()
                    times[k].append(time.perf_counter() - t0)
                    del m
            dense_b, packed_b = _weight_bytes(dense), _weight_bytes(packed)
            row = {
                "config": name, "dtype": dtype, "pattern": pattern, "sparsity": sparsity or 0.5,
                "model_sparsity": report.model_sparsity if hasattr(report, "model_sparsity") else None,
                "dense_weight_bytes": dense_b, "bitmask_weight_bytes": packed_b, "size_ratio": packed_b / dense_b,
                "pruned_tensors": len(pruned), "pruned_tensors_dense_bytes": pruned_dense,
                "pruned_tensors_stored_bytes": pruned_stored, "pruned_tensors_ratio": pruned_stored / pruned_dense,
                "layouts": sorted({e["layout"] for e in weights["tensors"].values()}),
                "bit_exact_tensors": exact, "same_logits": same_logits,
                "load_seconds": {k: {"median": statistics.median(v), "min": min(v), "all": v} for k, v in times.items()},
                "load_ratio_median": statistics.median(times["bitmask"]) / statistics.median(times["dense"]),
                "load_ratio_min": min(times["bitmask"]) / min(times["dense"]),
                "fresh_process_load_seconds": cold,
                "save_seconds": {"dense": t_dense_save, "bitmask": t_bitmask_save},
            }
            print(json.dumps({k: row[k] for k in ("config", "size_ratio", "pruned_tensors_ratio", "bit_exact_tensors",
                                                  "same_logits", "load_ratio_median", "load_ratio_min")}), flush=True)
            rows.append(row)
            import shutil

            shutil.rmtree(dense)
            shutil.rmtree(packed)
    doc = {"benchmark": "llm_bitmask", "model": "smollm2-135m (dequantized from the Q4_1 GGUF, tied embeddings)",
           "method": "magnitude (block linears; embeddings, norms stay dense)", "repeats": args.repeats,
           "load_protocol": "in-process after one warm-up load each, interleaved dense/bitmask, files in the page "
                            "cache; dense = AutoModelForCausalLM.from_pretrained(dtype='auto') (safetensors are "
                            "memory-mapped), bitmask = load_pruned (reads and decompresses every tensor)",
           "goals": {"size_ratio_at_0.5": 0.6, "size_ratio_at_0.7": 0.4, "load_ratio": 1.5},
           "machine": machine_info(), "results": rows,
           "projected_size_ratio": projections(rows)}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
