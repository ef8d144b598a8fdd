"""``secateurs demo``: the toolkit's main jobs on real models, in a few minutes on a 2-core CPU.

1. **LLM post-training pruning** of SmolLM2-135M (dequantized from its 4-bit GGUF, :func:`secateurs.zoo.pretrained_llm`):
   magnitude, Wanda (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023) at 50% and 2:4, held-out perplexity on
   Shakespeare next to the dense model's, with the fixed protocol of :data:`LLM_PROTOCOL`.
2. **Structured pruning** of a small CNN trained on Fashion-MNIST (cached by :func:`secateurs.zoo.pretrained`):
   parameters, MACs, measured latency and test accuracy before and after removing channels.
3. **Weight pruning** of LeNet-300-100 on digits: every criterion x allocation at 50/90/98%.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import typer
from rich.progress import track
from rich.table import Table

from ..core.modes import num_threads
from ..experiment import Experiment, load_model, run
from .common import emit_json, err, handle_errors, out

DEMO_CRITERIA = ["magnitude", "random", "snip", "grasp", "synflow", "taylor"]
DEMO_ALLOCATIONS = ["global", "uniform", "erk"]
DEMO_SPARSITIES = [0.5, 0.9, 0.98]
#: Calibration rows and held-out windows of the LLM section (small so that six prunings fit in minutes on CPU).
LLM_PROTOCOL = {"model": "smollm2-135m", "calibration": "8 rows x 128 tokens drawn with seed 0 from the 31 "
                "calibration plays (shakespeare_text_file('calibration'))", "nsamples": 8, "seqlen": 128,
                "heldout": "the first 4 non-overlapping windows of 128 tokens of the 6 held-out plays "
                "(shakespeare_text_file('heldout'))", "windows": 4, "eval_seqlen": 128}
# Small on purpose: on 2 CPU cores the calibration passes dominate (two forward passes of every block per method),
# and the demo must stay within a few minutes; benchmarks/ uses the full protocols.
LLM_METHODS = ["magnitude", "wanda", "sparsegpt"]
LLM_PATTERNS = [("50%", 0.5, "unstructured"), ("2:4", None, "2:4")]
STRUCTURED_RATIOS = [0.25, 0.5]
STRUCTURED_FINETUNE_EPOCHS = 1


def _llm_section(progress: bool) -> dict[str, Any]:
    from .. import llm
    from ..llm.evaluate import perplexity
    from ..llm.text import load_local_model, load_local_tokenizer, load_token_ids
    from ..zoo import pretrained_llm
    from ..zoo.shakespeare import shakespeare_text_file

    t0 = time.perf_counter()
    path = pretrained_llm(LLM_PROTOCOL["model"], progress=progress)
    tokenizer = load_local_tokenizer(path)
    dense = load_local_model(path, kind="causal")  # float32, eval mode
    seqlen, windows = LLM_PROTOCOL["eval_seqlen"], LLM_PROTOCOL["windows"]
    heldout = load_token_ids(shakespeare_text_file("heldout"), tokenizer)[: windows * seqlen]
    calibration = load_token_ids(shakespeare_text_file("calibration"), tokenizer)  # tokenized once, not per method

    def ppl(model: Any) -> float:
        return perplexity(model, heldout, seqlen=seqlen, batch_size=4)

    rows = [{"method": "dense", "pattern": "-", "sparsity": 0.0, "perplexity": ppl(dense), "seconds": 0.0}]
    grid = [(m, label, s, p) for m in LLM_METHODS for label, s, p in LLM_PATTERNS]
    for method, label, sparsity, pattern in track(grid, description="pruning SmolLM2-135M", console=err,
                                                  disable=not progress):
        model = copy.deepcopy(dense)
        report = llm.prune(model, calibration if method != "magnitude" else None, method=method, sparsity=sparsity,
                           pattern=pattern, nsamples=LLM_PROTOCOL["nsamples"], seqlen=LLM_PROTOCOL["seqlen"],
                           tokenizer=tokenizer, seed=0, progress=False)
        rows.append({"method": method, "pattern": label, "sparsity": report.sparsity, "perplexity": ppl(model),
                     "seconds": round(report.seconds, 1)})
        del model
    return {"protocol": LLM_PROTOCOL, "path": str(path), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def _structured_section(progress: bool) -> dict[str, Any]:
    import torch

    from .. import structured
    from ..zoo import evaluate, fit, load_dataset, pretrained

    t0 = time.perf_counter()
    data = load_dataset("fashion-mnist")
    dense = pretrained("convnet", "fashion-mnist", progress=progress)
    train_loader, test_loader = data.loaders(128, seed=0)
    example = data.test.tensors[0][:1]
    batch = data.test.tensors[0][:64]
    models = {"dense": dense}
    reports = {}
    for ratio in STRUCTURED_RATIOS:
        m = copy.deepcopy(dense)
        reports[ratio] = structured.prune(m, example, sparsity=ratio, method="l2")
        models[f"{ratio:.0%} channels removed (L2)"] = m
    seconds = structured.latency(list(models.values()), batch, threads=1, clock="thread", rounds=20)
    rows = []
    for (label, m), lat in zip(models.items(), seconds):
        with torch.no_grad():
            acc = evaluate(m, test_loader)["accuracy"]
        row = {"model": label, "parameters": structured.count_params(m), "macs": structured.count_macs(m, example),
               "latency_ms": lat * 1e3, "accuracy": acc, "finetuned_accuracy": None}
        if m is not dense:  # removing channels needs a little retraining: one epoch of Adam recovers most of it
            fit(m, train_loader, STRUCTURED_FINETUNE_EPOCHS, lr=1e-3, optimizer="adam", weight_decay=0.0, seed=0,
                num_threads=1)
            row["finetuned_accuracy"] = evaluate(m.eval(), test_loader)["accuracy"]
        rows.append(row)
    return {"model": "convnet", "dataset": "fashion-mnist", "latency": "median of 20 forwards of 64 test images, "
            "1 thread, thread CPU time", "accuracy": f"10,000 Fashion-MNIST test images, right after pruning and "
            f"after {STRUCTURED_FINETUNE_EPOCHS} epoch of fine-tuning (Adam, lr 1e-3)",
            "dense_train_seconds": (dense.zoo_metrics or {}).get("train_seconds"), "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1)}


def _weights_section(model: str, finetune_epochs: int, seed: int, progress: bool) -> list[Any]:
    with num_threads(1):  # small models: one thread is as fast and unaffected by a busy neighbour
        base = load_model(model, "digits", seed, progress=progress)
        grid = [(c, a, s) for c in DEMO_CRITERIA for a in DEMO_ALLOCATIONS for s in DEMO_SPARSITIES]
        rows = []
        for c, a, s in track(grid, description=f"pruning {model}", console=err, disable=not progress):
            o, _ = run(Experiment(model, "digits", c, a, "unstructured", s, seed=seed,
                                  finetune_epochs=finetune_epochs), base)
            rows.append(o)
    return rows


def _print_llm(doc: dict[str, Any]) -> None:
    p = doc["protocol"]
    dense = doc["rows"][0]["perplexity"]
    t = Table(title=f"SmolLM2-135M (dequantized from 4-bit GGUF): held-out Shakespeare perplexity, dense {dense:.2f}")
    for c in ("method", "pattern", "sparsity", "perplexity", "x dense", "prune s"):
        t.add_column(c, justify="right" if c not in ("method",) else "left")
    for r in doc["rows"]:
        t.add_row(r["method"], r["pattern"], f"{r['sparsity']:.3f}", f"{r['perplexity']:.2f}",
                  f"{r['perplexity'] / dense:.2f}", f"{r['seconds']:.1f}")
    out.print(t)
    out.print(f"protocol: calibration {p['calibration']}; perplexity on {p['heldout']}; {doc['seconds']:.0f} s",
              highlight=False)


def _print_structured(doc: dict[str, Any]) -> None:
    t = Table(title="Structured pruning: a small CNN on Fashion-MNIST (channels physically removed)")
    for c in ("model", "parameters", "MACs", "latency ms", "accuracy", "+ fine-tune"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in doc["rows"]:
        tuned = "-" if r["finetuned_accuracy"] is None else f"{r['finetuned_accuracy']:.4f}"
        t.add_row(r["model"], f"{r['parameters']:,}", f"{r['macs']:,}", f"{r['latency_ms']:.3f}", f"{r['accuracy']:.4f}",
                  tuned)
    out.print(t)
    out.print(f"latency: {doc['latency']}; accuracy: {doc['accuracy']}; {doc['seconds']:.0f} s", highlight=False)


def _print_weights(rows: list[Any], model: str, finetune_epochs: int) -> None:
    dense = rows[0].dense["accuracy"]
    t = Table(title=f"{model} on digits (dense accuracy {dense:.3f}): accuracy after pruning -> after {finetune_epochs} "
                    "epochs of fine-tuning")
    t.add_column("criterion")
    t.add_column("allocation")
    for s in DEMO_SPARSITIES:
        t.add_column(f"{s:.0%}", justify="right")
    for i in range(0, len(rows), len(DEMO_SPARSITIES)):
        chunk = rows[i : i + len(DEMO_SPARSITIES)]
        cells = [f"{o.pruned['accuracy']:.3f} -> {o.finetuned['accuracy']:.3f}" if o.finetuned
                 else f"{o.pruned['accuracy']:.3f}" for o in chunk]
        t.add_row(chunk[0].settings["method"], chunk[0].settings["allocation"], *cells)
    out.print(t)


@handle_errors
def demo_cmd(
    model: str = typer.Option("lenet300", help="zoo model of the weight-pruning table (digits)"),
    finetune_epochs: int = typer.Option(2, help="fine-tuning epochs after pruning (weight-pruning table)"),
    seed: int = typer.Option(0),
    llm_section: bool = typer.Option(True, "--llm/--no-llm", help="prune SmolLM2-135M (magnitude, Wanda, SparseGPT)"),
    structured_section: bool = typer.Option(True, "--structured/--no-structured",
                                            help="structured pruning of a CNN on Fashion-MNIST"),
    weights_section: bool = typer.Option(False, "--weights/--no-weights",
                                         help="also the weight-pruning table on digits (LeNet-300-100, every "
                                              "criterion x allocation; off by default: it does not fit the demo's "
                                              "few minutes next to the real models)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout"),
) -> None:
    """Prune real models: SmolLM2-135M at 50% and 2:4 with magnitude, Wanda and SparseGPT (held-out perplexity);
    a Fashion-MNIST CNN with structured pruning (parameters, MACs, latency, accuracy); LeNet-300-100 on digits with
    every criterion x allocation.  Models are converted/trained once and cached; later runs take a few minutes."""
    from ..zoo import MissingDatasetError, MissingPackageError

    progress = not as_json
    doc: dict[str, Any] = {}
    sections = [("llm", llm_section, _llm_section, _print_llm),
                ("structured", structured_section, _structured_section, _print_structured)]
    for key, wanted, compute, show in sections:
        if not wanted:
            continue
        try:
            doc[key] = compute(progress)
        except (MissingPackageError, MissingDatasetError) as exc:  # not installed here: say how, run the rest
            doc[key] = {"skipped": str(exc)}
            err.print(f"skipped the {key} section: {exc}", highlight=False)
            continue
        if not as_json:
            show(doc[key])
    if weights_section:
        rows = _weights_section(model, finetune_epochs, seed, progress)
        doc["weights"] = [o.to_dict() for o in rows]
        if not as_json:
            _print_weights(rows, model, finetune_epochs)
    if as_json:
        emit_json(doc)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
