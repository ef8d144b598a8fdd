"""Scale of the ``ssp`` scorer: 1,000,000 synthetic 64-dimensional embeddings, wall time and peak memory.

    python benchmarks/data_scale.py [--n 1000000] [--dim 64] [--clusters 100] [--backend auto] [--threads 1]

The embeddings (float32, 256 MB at the default size) are a seeded mixture of ``--clusters`` Gaussian blobs, written
chunk by chunk into one preallocated array so that generating them makes no large temporary.  Then
``secateurs.data.score("ssp", embeddings)`` runs (k = the scorer's default, ``round(sqrt(n/2))`` = 707 at 1M) while a
background thread samples the RSS every ~5 ms; the peak extra memory is measured from the RSS just before the
embeddings are created, so it includes the embedding matrix itself (goal: peak < 2 × the matrix) — and also from
``getrusage`` (the kernel's high-water mark) relative to the same baseline.  Results:
``benchmarks/results/data_scale.json`` with ``_machine.machine_info()``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_bytes()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=100, help="Gaussian blobs of the synthetic data")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "data_scale.json"))
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    import secateurs.data.ssp  # noqa: F401  (registers the scorer until the package imports it)
    from secateurs.data import score
    from secateurs.data.kmeans import default_n_clusters

    rng = np.random.default_rng(0)
    centres = (rng.normal(size=(args.clusters, args.dim)) * 2).astype(np.float32)
    baseline = rss_bytes()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    x = np.empty((args.n, args.dim), dtype=np.float32)
    step = 65536
    for start in range(0, args.n, step):
        rows = min(step, args.n - start)
        which = rng.integers(0, args.clusters, size=rows)
        x[start:start + rows] = centres[which] + rng.standard_normal((rows, args.dim), dtype=np.float32)
    matrix = x.nbytes
    after_data = rss_bytes()

    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    scores = score("ssp", x, backend=args.backend, seed=0)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_sampled = sampler.peak - baseline
    peak_kernel = maxrss - baseline if maxrss > maxrss_before else None
    result = {
        "benchmark": "ssp scoring at scale",
        "n": args.n, "dim": args.dim, "synthetic_blobs": args.clusters,
        "n_clusters": int(scores.meta.get("n_clusters", default_n_clusters(args.n))),
        "backend": scores.meta.get("backend"), "metric": scores.meta.get("metric"),
        "wall_seconds": round(wall, 2),
        "embedding_matrix_bytes": matrix,
        "rss_after_embeddings_minus_baseline_bytes": after_data - baseline,
        "peak_rss_minus_baseline_bytes_sampled": peak_sampled,
        "peak_rss_minus_baseline_bytes_getrusage": peak_kernel,
        "peak_over_matrix_sampled": round(peak_sampled / matrix, 3),
        "peak_over_matrix_getrusage": None if peak_kernel is None else round(peak_kernel / matrix, 3),
        "goal": "peak < 2x the embedding matrix (the matrix itself included)",
        "goal_met": bool(max(peak_sampled, peak_kernel or 0) < 2 * matrix),
        "score_summary": {"min": float(np.min(scores)), "median": float(np.median(scores)),
                          "max": float(np.max(scores))},
        "command": " ".join(sys.argv),
        "machine": machine_info(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
