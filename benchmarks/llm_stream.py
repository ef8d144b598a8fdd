"""Peak memory of streaming a checkpoint block by block → ``benchmarks/results/llm_stream.json``.

Two Llama checkpoints built from one config that differ only in depth (24 and 48 blocks of hidden 1024,
intermediate 2816; random fp16 weights, sharded safetensors) are pruned with :func:`secateurs.llm.prune_checkpoint`
(Wanda, 50%), each in a fresh subprocess whose peak RSS (``resource.getrusage(...).ru_maxrss``, checked against
``VmHWM``) is read after the run, next to the RSS after every block, the checkpoint's size on disk and the seconds
per block.  The checkpoints are built in subprocesses too and this process imports no torch before the workers
have run: Linux hands a child the peak RSS of the process it was spawned from (``ru_maxrss`` is kept across
``exec``), so a parent that had built a model would inflate every worker's reading.  The
goal (README: memory independent of depth): the 48-block prune peaks at most 1.1x the 24-block one — the peak is
one block + embeddings/head + calibration activations, whatever the depth — and far below the checkpoint size.

Before/after in one run, on one machine under one load (the two alternate): every prune runs as the library is
(``current``) and with :func:`secateurs.llm.stream.release_heap` disabled (``no_heap_trim``: the code before the
fix of the depth-dependent growth, glibc heap fragmentation); ``--baseline REF`` adds the library as it is in git
revision ``REF`` (its ``src/`` extracted with ``git archive``, first on ``PYTHONPATH``).  ``--load`` adds the
in-memory ``secateurs.llm.prune`` of the same checkpoints for contrast.

    python benchmarks/llm_stream.py [--baseline REV] [--layers 24 48] [--methods wanda sparsegpt] [--load]

About 8 minutes on 2 busy cores with the default 4 calibration rows of 64 tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "llm_stream.json"


def build(path: Path, layers: int, hidden: int, intermediate: int, vocab: int) -> int:
    """A random fp16 Llama checkpoint (sharded safetensors) in ``path``; its size on disk in bytes."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                        num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                        max_position_embeddings=512, tie_word_embeddings=False)
    model = T.LlamaForCausalLM(cfg).to(torch.float16)
    model.save_pretrained(path, max_shard_size="50MB")
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def worker(args) -> None:
    import torch

    import secateurs
    from llm_common import vm_bytes
    from secateurs.llm import prune, prune_checkpoint
    from secateurs.llm.stream import BlockStream

    torch.set_num_threads(1)
    rows = torch.randint(0, args.vocab, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0))
    after_block: list[int] = []  # RSS (MiB) after each pruned block was written and freed
    release = BlockStream.release

    def spy(self, i, block, modifies):
        release(self, i, block, modifies)
        if modifies:
            after_block.append(vm_bytes("VmRSS") >> 20)

    BlockStream.release = spy
    if args.no_heap_trim:
        import secateurs.llm.stream as stream

        stream.release_heap = lambda: None
    t0 = time.perf_counter()
    if args.mode == "stream":
        rep = prune_checkpoint(args.src, args.dst, rows, method=args.method, sparsity=0.5, progress=False)
    else:
        import transformers as T

        model = T.AutoModelForCausalLM.from_pretrained(args.src, dtype=torch.float16)
        rep = prune(model, rows, method=args.method, sparsity=0.5, progress=False)
    secs = time.perf_counter() - t0
    Path(args.result).write_text(json.dumps({
        "library": str(Path(secateurs.__file__).parent), "peak_rss_bytes": _peak_rss_bytes(),
        "vm_hwm_bytes": vm_bytes("VmHWM"), "rss_mib_after_block": after_block, "seconds": secs,
        "seconds_per_block": secs / len(rep.block_seconds),
        "block_seconds_median": sorted(rep.block_seconds)[len(rep.block_seconds) // 2], "sparsity": rep.sparsity}))


def extract_src(ref: str, into: Path) -> Path:
    """``src/`` of git revision ``ref`` of this repository, extracted under ``into``; the folder to import from."""
    repo = HERE.parent
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, "src"], stdout=f, check=True)
    with tarfile.open(archive) as t:
        t.extractall(into, filter="data")
    return into / "src"


def _ratios(runs: list[dict]) -> dict[str, float]:
    """Peak RSS of the deepest streamed prune over the shallowest one, per method."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        peaks = {r["layers"]: r["peak_rss_bytes"] for r in runs if r["method"] == method and r["mode"] == "stream"}
        if len(peaks) >= 2:
            out[method] = round(peaks[max(peaks)] / peaks[min(peaks)], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--build", type=int, default=None, help="worker: build the checkpoint of this depth in --src")
    ap.add_argument("--mode", default="stream", choices=["stream", "load"])
    ap.add_argument("--src"), ap.add_argument("--dst"), ap.add_argument("--result")
    ap.add_argument("--method", default="wanda")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--layers", nargs="+", type=int, default=[24, 48])
    ap.add_argument("--methods", nargs="+", default=["wanda"])
    ap.add_argument("--nsamples", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=64)
    ap.add_argument("--baseline", default=None, help="git revision to measure too, e.g. the commit before a fix")
    ap.add_argument("--no-heap-trim", action="store_true", help="worker: disable release_heap (before the fix)")
    ap.add_argument("--load", action="store_true", help="also time/measure the in-memory prune")
    args = ap.parse_args()
    if args.build is not None:
        size = build(Path(args.src), args.build, args.hidden, args.intermediate, args.vocab)
        Path(args.result).write_text(json.dumps({"checkpoint_bytes": size}))
        return
    if args.worker:
        worker(args)
        return

    start = time.time()
    codes: dict[str, tuple[str | None, list[str]]] = {"no_heap_trim": (None, ["--no-heap-trim"]),
                                                      "current": (None, [])}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.baseline:
            (tmp / "baseline").mkdir()
            codes = {"baseline": (str(extract_src(args.baseline, tmp / "baseline")), []), **codes}
        runs: dict[str, list[dict]] = {c: [] for c in codes}
        for layers in args.layers:
            src = tmp / f"llama-{layers}"
            res = tmp / f"build-{layers}.json"
            subprocess.run([sys.executable, __file__, "--build", str(layers), "--src", str(src), "--result", str(res),
                            "--hidden", str(args.hidden), "--intermediate", str(args.intermediate), "--vocab",
                            str(args.vocab)], check=True, stderr=subprocess.DEVNULL)
            size = json.loads(res.read_text())["checkpoint_bytes"]
            for method in args.methods:
                for mode in ["stream"] + (["load"] if args.load else []):
                    for code, (path, extra) in codes.items():  # before/after alternate: both see the same load
                        res = tmp / f"r-{layers}-{method}-{mode}-{code}.json"
                        env = dict(os.environ)
                        if path is not None:
                            env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
                        subprocess.run([sys.executable, __file__, "--worker", "--mode", mode, "--src", str(src),
                                        "--dst", str(tmp / f"out-{layers}-{method}-{mode}-{code}"), "--result",
                                        str(res), "--method", method, "--vocab", str(args.vocab), "--nsamples",
                                        str(args.nsamples), "--seqlen", str(args.seqlen), *extra], check=True,
                                       env=env)
                        row = {"layers": layers, "method": method, "mode": mode, "code": code,
                               "checkpoint_bytes": size, **json.loads(res.read_text())}
                        row["peak_over_checkpoint"] = row["peak_rss_bytes"] / size
                        runs[code].append(row)
                        print(json.dumps({k: v for k, v in row.items() if k != "rss_mib_after_block"}),
                              file=sys.stderr)
    from _machine import machine_info  # imports torch: only now

    doc = {"benchmark": "llm_stream", "machine": machine_info(), "settings": {
        "hidden": args.hidden, "intermediate": args.intermediate, "vocab": args.vocab, "dtype": "float16",
        "nsamples": args.nsamples, "seqlen": args.seqlen, "sparsity": 0.5, "layers": args.layers},
        "runs": runs["current"], "peak_ratio_deep_over_shallow": _ratios(runs["current"]),
        "goal_ratio": 1.1, "seconds": round(time.time() - start, 1),
        "command": "python benchmarks/llm_stream.py" + (f" --baseline {args.baseline}" if args.baseline else "")
                   + (" --load" if args.load else "")}
    doc["before"] = {code: {"what": "release_heap disabled (glibc heap not trimmed after each block)"
                                    if code == "no_heap_trim" else f"the library at git revision {args.baseline}",
                            "runs": runs[code], "peak_ratio_deep_over_shallow": _ratios(runs[code])}
                     for code in codes if code != "current"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = OUT.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1))
    tmp_out.replace(OUT)
    print(json.dumps({"current": doc["peak_ratio_deep_over_shallow"],
                      **{k: v["peak_ratio_deep_over_shallow"] for k, v in doc["before"].items()}}))


if __name__ == "__main__":
    main()
