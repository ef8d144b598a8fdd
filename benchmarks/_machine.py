"""Machine details recorded next to every benchmark result, so numbers can be compared only like with like."""
from __future__ import annotations

import datetime
import os
import platform
import sys


_THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_NUM_THREADS")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def proc_kib_field(path: str, key: str) -> int | None:
    """A ``Key:   N kB`` field of a /proc file (``/proc/meminfo``, ``/proc/self/status``) in bytes; None off Linux."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _mem_total_bytes() -> int | None:
    return proc_kib_field("/proc/meminfo", "MemTotal")


def machine_info() -> dict:
    """Torch version and threads, CPU model and count, memory, platform, Python, thread-pool environment
    variables, load average and the current date (UTC)."""
    import torch

    return {
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cpu_model": _cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_bytes": _mem_total_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        # thread-pool settings change CPU timings a lot on a shared machine (e.g. OpenMP spin-waiting)
        "threading_env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ},
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
