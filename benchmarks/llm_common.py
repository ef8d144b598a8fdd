"""Helpers shared by the ``llm_*`` benchmarks: peak-memory probes and the Shakespeare data set-up."""
from __future__ import annotations

from typing import Any

import torch


def vm_bytes(key: str) -> int:
    """A ``/proc/self/status`` memory field in bytes: ``"VmRSS"`` (now) or ``"VmHWM"`` (peak since reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Return freed heap memory to the OS, then reset the process's peak RSS (VmHWM), so that the next
    readings of VmRSS / VmHWM measure only what follows."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


#: Models the side-by-side benchmarks (``llm_reference.py``, ``llm_alps.py``) can run on: Llama-architecture
#: checkpoints, which is what the references' ``llama.py`` drivers handle.
REFERENCE_MODELS = ("shakespeare-llama", "smollm2-135m")


def model_path(name: str) -> Any:
    """The local directory of a benchmark model: the Shakespeare Llama secateurs trains, or a zoo
    pretrained LLM (``secateurs.zoo.pretrained_llm``, converted once from its packaged GGUF)."""
    if name == "shakespeare-llama":
        from secateurs.zoo.shakespeare import shakespeare_llama

        return shakespeare_llama()
    from secateurs.zoo import pretrained_llm

    return pretrained_llm(name, progress=False)


def needs_bos(model: Any) -> bool:
    """Gemma models are trained with a BOS token at position 0 and are evaluated and calibrated with one per
    window (``perplexity(bos_token_id=...)``, ``draw_windows(bos_token_id=...)``); Llama-family models follow the
    Wanda/SparseGPT protocol (windows cut from one token stream)."""
    config = getattr(model, "config", model)  # a model or its config
    return str(getattr(config, "model_type", "")).startswith("gemma")


def shakespeare_setup(path: Any, kind: str, nsamples: int, seqlen: int,
                      bos_token_id: int | None = None) -> tuple[Any, Any, torch.Tensor, torch.Tensor, int]:
    """Load a local model + tokenizer, draw the calibration rows (seed 0) from the calibration plays, and
    tokenize the held-out plays: ``(model, tokenizer, rows, heldout_ids, calibration_tokens)``.  With
    ``bos_token_id`` every calibration row starts with that token (see :func:`needs_bos`)."""
    from secateurs.llm.calibration import draw_windows
    from secateurs.llm.text import load_local_model, load_local_tokenizer, load_token_ids
    from secateurs.zoo.shakespeare import shakespeare_text_file

    model, tok = load_local_model(path, kind), load_local_tokenizer(path)
    calib = load_token_ids(shakespeare_text_file("calibration"), tokenizer=tok)
    rows = draw_windows(calib, nsamples, seqlen, seed=0, bos_token_id=bos_token_id)
    held = load_token_ids(shakespeare_text_file("heldout"), tokenizer=tok)
    return model, tok, rows, held, int(calib.numel())


def run_worker(cmd: list[str], result: Any, weights: Any, tag: str) -> dict:
    """Run one benchmark worker subprocess; its JSON result plus the process's wall seconds and weights file."""
    import json
    import subprocess
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{tag} failed:\n{proc.stderr[-3000:]}")
    doc = json.loads(result.read_text())
    doc["process_seconds"] = round(time.perf_counter() - t0, 1)
    doc["weights_file"] = str(weights)
    return doc
