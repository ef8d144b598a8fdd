"""Speed and peak memory of global magnitude mask computation: secateurs vs torch.nn.utils.prune.

    python benchmarks/mask_speed.py [--layers 24] [--repeats 3] [--threads N]

Model: ``nn.Sequential`` of ``--layers`` ``Linear(2048, 2048, bias=False)`` (24 layers: 100.7M float32 weights,
403 MB), seeded.  Both libraries prune 90% of the weights by global magnitude:

* secateurs: ``secateurs.prune(model, 0.9)`` (method="magnitude", allocation="global");
* torch:     ``prune.global_unstructured([(m, "weight") ...], pruning_method=prune.L1Unstructured, amount=0.9)``.

Every measurement runs in a fresh subprocess, so the peak memory of one run is not hidden by another's freed
pages.  Inside it: one warm-up call of the same library on a tiny model (first-use costs such as lazy imports --
secateurs' option validation imports pydantic on its first call, ~0.1 s of CPU -- are not the mask computation),
then build the model, read the RSS, reset the kernel's high-water mark (``/proc/self/clear_refs``), and time the
pruning call while a background thread samples the RSS every ~5 ms.  Peak extra memory = peak RSS during the call
- RSS just before it, reported from the sampler, from ``VmHWM`` in ``/proc/self/status`` (the kernel's
high-water mark since the reset, which cannot miss a short spike) and from ``getrusage(RUSAGE_SELF).ru_maxrss``.
Runs of the two libraries are interleaved (alternating which goes first) to share the machine's noise.

The first repeat's masks are compared entry by entry: they may differ only among weights whose |w| equals the
threshold (tie order is unspecified in torch's topk; secateurs prunes ties in flat order).

Results: ``benchmarks/results/mask_speed.json`` (per-run times and peaks, medians, ratios, machine details).
``--threads N`` (``torch.set_num_threads(N)`` in both libraries' runs) or a non-default ``OMP_WAIT_POLICY`` in
the environment (inherited by both) write ``mask_speed_threads{N}.json`` / ``mask_speed_omp_{policy}.json``
instead.  On a shared, oversubscribed machine libgomp's default spin-waiting makes every parallel op cost
milliseconds, which slows many small ops (secateurs: a few per layer) far more than a few large ones (torch's
topk over the concatenation); each run records the load average, so compare ratios from one run only.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mask_speed.json"
DIM = 2048
SPARSITY = 0.9
SAMPLE_EVERY_S = 0.005
LIBS = ("secateurs", "torch")
TARGET_SPEEDUP = 30.0  # issue 15: >= 30x torch.nn.utils.prune in the same run
TARGET_MEMORY_RATIO = 0.05  # ... with <= 5% of its peak extra memory


def build_model(layers: int, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(DIM, DIM, bias=False) for _ in range(layers)]).float()


class PeakRSS:
    """Background thread sampling this process's RSS every ``every`` seconds; ``peak`` is the highest seen."""

    def __init__(self, every: float = SAMPLE_EVERY_S):
        import psutil

        self._proc, self._every = psutil.Process(), every
        self._stop = threading.Event()
        self.peak = self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self.samples += 1
            self._stop.wait(self._every)

    def __enter__(self) -> "PeakRSS":
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(lib: str, layers: int, seed: int, mask_path: str | None, threads: int | None) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able record."""
    import numpy as np
    import psutil
    import torch
    from _machine import proc_kib_field  # this script's folder is on sys.path

    if threads:
        torch.set_num_threads(threads)
    load = os.getloadavg()

    if lib == "secateurs":
        import secateurs
        from secateurs.core.masks import get_mask_module

        call = lambda model: secateurs.prune(model, SPARSITY)  # noqa: E731
    else:
        from torch.nn.utils import prune

        def call(model):
            params = [(m, "weight") for m in model]
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=SPARSITY)

    with torch.no_grad():  # warm-up on a tiny model: lazy imports and registries, not measured
        warm_t0 = time.perf_counter()
        call(build_model(0, seed).append(torch.nn.Linear(64, 64, bias=False)))
        warm_s = time.perf_counter() - warm_t0
    model = build_model(layers, seed)
    n = sum(m.weight.numel() for m in model)
    gc.collect()
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    parts_before = {k: proc_kib_field("/proc/self/status", k) for k in ("RssAnon", "RssFile")}
    maxrss_before = _maxrss_bytes()
    hwm_reset = _reset_hwm()
    with torch.no_grad(), PeakRSS() as peak:
        c0, t0 = time.process_time(), time.perf_counter()
        call(model)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    maxrss_after = _maxrss_bytes()
    hwm_after = proc_kib_field("/proc/self/status", "VmHWM")
    rss_after = proc.memory_info().rss
    parts_after = {k: proc_kib_field("/proc/self/status", k) for k in ("RssAnon", "RssFile")}

    if lib == "secateurs":
        masks = [get_mask_module(m).mask for m in model]
    else:
        masks = [m.weight_mask for m in model]
    mask_dtype = str(masks[0].dtype)
    mask_bytes = sum(m.numel() * m.element_size() for m in masks)
    pruned = sum(int(m.numel() - torch.count_nonzero(m)) for m in masks)
    zeros = sum(int(torch.count_nonzero(m.weight == 0)) for m in model)  # effective (masked) weight
    record = {
        "lib": lib,
        "time_s": elapsed,
        "cpu_s": cpu,  # this process, every thread (the RSS sampler's few ms included)
        "rss_before_bytes": rss_before,
        "peak_extra_bytes_psutil": peak.peak - rss_before,
        "psutil_samples": peak.samples,
        # VmHWM reset just before the call: the kernel's exact high-water mark of the call itself
        "peak_extra_bytes_vmhwm": max(0, hwm_after - rss_before) if hwm_reset and hwm_after is not None else None,
        # ru_maxrss is the whole process's high-water mark; it measures the call only if the call raised it
        "peak_extra_bytes_ru_maxrss": max(0, maxrss_after - rss_before),
        "ru_maxrss_raised_by_call": maxrss_after > maxrss_before,
        "rss_after_extra_bytes": rss_after - rss_before,
        # of which heap (anonymous) and mapped files (library code paged in by the call, not allocations)
        "rss_after_extra_bytes_by_kind": {k: parts_after[k] - parts_before[k] if parts_after[k] is not None
                                          and parts_before[k] is not None else None for k in parts_before},
        "params": n,
        "pruned": pruned,
        "sparsity": pruned / n,
        "exact_k": pruned == round(SPARSITY * n),
        "effective_zeros": zeros,
        "mask_dtype": mask_dtype,
        "mask_bytes": mask_bytes,
        "torch_num_threads": torch.get_num_threads(),
        "warmup_call_s": warm_s,
        "loadavg_1_5_15_before": list(load),
    }
    if mask_path:
        flat = torch.cat([m.reshape(-1).bool() for m in masks]).numpy()
        np.save(mask_path, np.packbits(flat))
    return record


def run_child(lib: str, layers: int, seed: int, mask_path: str | None, threads: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", lib, "--layers", str(layers), "--seed", str(seed)]
    if mask_path:
        cmd += ["--mask-out", mask_path]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_masks(layers: int, seed: int, paths: dict[str, str]) -> dict:
    """Differing keep-mask entries between the two libraries, and whether every one is a tie at the threshold."""
    import numpy as np
    import torch

    model = build_model(layers, seed)
    scores = torch.cat([m.weight.detach().abs().reshape(-1) for m in model]).numpy()
    n = scores.size
    keep = {lib: np.unpackbits(np.load(p))[:n].astype(bool) for lib, p in paths.items()}
    a, b = keep["secateurs"], keep["torch"]
    diff = a != b
    thresholds = {lib: float(scores[~k].max()) for lib, k in keep.items()}  # largest pruned score
    tie = thresholds["secateurs"]
    n_diff = int(diff.sum())
    return {
        "differing_entries": n_diff,
        "threshold_secateurs": thresholds["secateurs"],
        "threshold_torch": thresholds["torch"],
        "entries_tied_at_threshold": int((scores == tie).sum()),
        "all_differences_are_ties": bool(thresholds["secateurs"] == thresholds["torch"] and (scores[diff] == tie).all()),
        "same_up_to_ties": bool(n_diff == 0 or (thresholds["secateurs"] == thresholds["torch"] and (scores[diff] == tie).all())),
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=24, help="number of Linear(2048, 2048) layers (default 24)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per library (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both libraries (default: torch's)")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=LIBS, help=argparse.SUPPRESS)
    ap.add_argument("--mask-out", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.layers, args.seed, args.mask_out, args.threads)))
        return

    sys.path.insert(0, str(HERE))
    from _machine import machine_info

    runs: dict[str, list[dict]] = {lib: [] for lib in LIBS}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {lib: os.path.join(tmp, f"{lib}.npy") for lib in LIBS}
        for r in range(args.repeats):
            order = LIBS if r % 2 == 0 else LIBS[::-1]  # alternate who goes first
            for lib in order:
                rec = run_child(lib, args.layers, args.seed, paths[lib] if r == 0 else None, args.threads)
                rec["repeat"] = r
                runs[lib].append(rec)
                print(f"[{r}] {lib:9s} {rec['time_s']:8.3f} s (cpu {rec['cpu_s']:7.3f} s, load "
                      f"{rec['loadavg_1_5_15_before'][0]:4.1f})  peak extra {rec['peak_extra_bytes_psutil'] / 2**20:8.1f} MiB "
                      f"(ru_maxrss {rec['peak_extra_bytes_ru_maxrss'] / 2**20:8.1f} MiB)  sparsity {rec['sparsity']:.6f}",
                      flush=True)
        masks = compare_masks(args.layers, args.seed, paths)

    params = runs["torch"][0]["params"]
    model_bytes = params * 4
    med = {
        lib: {
            "time_s": _median(rs, "time_s"),
            "peak_extra_bytes_psutil": _median(rs, "peak_extra_bytes_psutil"),
            "peak_extra_bytes_ru_maxrss": _median(rs, "peak_extra_bytes_ru_maxrss"),
            "peak_extra_bytes_vmhwm": _median(rs, "peak_extra_bytes_vmhwm")
            if all(r["peak_extra_bytes_vmhwm"] is not None for r in rs) else None,
            "cpu_s": _median(rs, "cpu_s"),
        }
        for lib, rs in runs.items()
    }
    for m in med.values():
        m["peak_extra_over_model_size_psutil"] = m["peak_extra_bytes_psutil"] / model_bytes
        m["peak_extra_over_model_size_ru_maxrss"] = m["peak_extra_bytes_ru_maxrss"] / model_bytes
    ours, torch_ = med["secateurs"], med["torch"]
    ratios = {
        "speedup": torch_["time_s"] / ours["time_s"],
        "memory_ratio": ours["peak_extra_bytes_psutil"] / torch_["peak_extra_bytes_psutil"],
        "memory_ratio_ru_maxrss": ours["peak_extra_bytes_ru_maxrss"] / torch_["peak_extra_bytes_ru_maxrss"],
        "memory_ratio_vmhwm": ours["peak_extra_bytes_vmhwm"] / torch_["peak_extra_bytes_vmhwm"]
        if ours["peak_extra_bytes_vmhwm"] is not None and torch_["peak_extra_bytes_vmhwm"] else None,
        # CPU seconds of the call (all threads): less sensitive than wall time to other processes' load
        "cpu_ratio": torch_["cpu_s"] / ours["cpu_s"],
        "speedup_per_repeat": [t["time_s"] / s["time_s"] for s, t in zip(runs["secateurs"], runs["torch"])],
    }
    exact = all(r["exact_k"] for rs in runs.values() for r in rs)
    cores = os.cpu_count() or 1
    worst_load = max(r["loadavg_1_5_15_before"][0] for rs in runs.values() for r in rs)
    result = {
        "benchmark": "mask_speed",
        "command": f"python benchmarks/mask_speed.py --layers {args.layers} --repeats {args.repeats}"
        + (f" --threads {args.threads}" if args.threads else ""),
        "config": {"layers": args.layers, "shape": [DIM, DIM], "bias": False, "dtype": "float32",
                   "sparsity": SPARSITY, "method": "global magnitude", "seed": args.seed, "repeats": args.repeats,
                   "rss_sample_interval_s": SAMPLE_EVERY_S, "threads": args.threads or "torch default",
                   "calls": {"secateurs": "secateurs.prune(model, 0.9)",
                             "torch": "prune.global_unstructured([(m, 'weight') for m in linears], "
                                      "pruning_method=prune.L1Unstructured, amount=0.9)"}},
        "model": {"params": params, "size_bytes": model_bytes, "k_pruned": round(SPARSITY * params)},
        "machine": machine_info(),
        # other processes' load slows many short parallel ops (secateurs) far more than a few long ones (torch):
        # compare speed-ups from quiet runs only
        "quiet": {"max_loadavg_1_before_runs": worst_load, "cpus": cores, "quiet": worst_load < cores},
        "runs": runs,
        "median": med,
        "ratios": ratios,
        "exact_sparsity_both": exact,
        "masks": masks,
        "targets": {
            "speedup_min": TARGET_SPEEDUP,
            "memory_ratio_max": TARGET_MEMORY_RATIO,
            "met": ratios["speedup"] >= TARGET_SPEEDUP and ratios["memory_ratio"] <= TARGET_MEMORY_RATIO
            and ratios["memory_ratio_ru_maxrss"] <= TARGET_MEMORY_RATIO
            and (ratios["memory_ratio_vmhwm"] is None or ratios["memory_ratio_vmhwm"] <= TARGET_MEMORY_RATIO),
        },
    }
    tag = (f"_threads{args.threads}" if args.threads else "") + (
        f"_omp_{os.environ['OMP_WAIT_POLICY'].lower()}" if os.environ.get("OMP_WAIT_POLICY") else "")
    out = Path(args.out) if args.out else RESULTS.with_name(f"mask_speed{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model {params:,} params ({model_bytes / 1e6:.1f} MB)")
    print(f"median time: secateurs {ours['time_s']:.3f} s, torch {torch_['time_s']:.3f} s -> speedup {ratios['speedup']:.1f}x")
    print(f"median peak extra: secateurs {ours['peak_extra_bytes_psutil'] / 2**20:.1f} MiB, "
          f"torch {torch_['peak_extra_bytes_psutil'] / 2**20:.1f} MiB -> ratio {ratios['memory_ratio']:.3f} "
          f"(ru_maxrss {ratios['memory_ratio_ru_maxrss']:.3f}, VmHWM {ratios['memory_ratio_vmhwm'] or float('nan'):.3f})")
    print(f"median CPU time: secateurs {ours['cpu_s']:.3f} s, torch {torch_['cpu_s']:.3f} s -> {ratios['cpu_ratio']:.1f}x; "
          f"highest 1-min load average before a run: {worst_load:.1f} on {cores} CPUs")
    print(f"exact sparsity both: {exact}; differing mask entries: {masks['differing_entries']} "
          f"(all ties: {masks['same_up_to_ties']}); targets met: {result['targets']['met']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
