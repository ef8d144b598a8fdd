"""``secateurs llm``: post-training pruning and perplexity of local Hugging Face language models.

``secateurs llm prune --model DIR --method sparsegpt --sparsity 0.5 --pattern 2:4 --allocation owl
--calibration FILE --nsamples 128 --seqlen 256 --out DIR [--format dense|bitmask] [--overwrite] [--eval-text FILE]
[--json]`` and
``secateurs llm eval --model DIR --text FILE [--seqlen N] [--json]`` and
``secateurs llm recover --model DIR --text FILE --steps N --out DIR [--train biases,norms,lora]
[--distill logits --teacher DIR] [--json]``.  Errors print one line on stderr and exit 2;
the output directory is checked before anything is loaded or pruned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err, handle_errors, out, parse_options

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Post-training pruning and evaluation of Hugging Face language models.")


def _load(model_dir: Path, kind: str = "auto"):
    from ..llm.text import check_vocab, load_local_model, load_local_tokenizer

    model = load_local_model(model_dir, kind)
    tokenizer = load_local_tokenizer(model_dir)
    check_vocab(model, tokenizer)
    return model, tokenizer


def _readable(path: Optional[Path], what: str) -> None:
    from ..errors import InvalidArgumentError

    if path is not None and not path.is_file():
        raise InvalidArgumentError(f"{what} {str(path)!r} is not a readable file")


def _record_perplexities(out_dir: Path, ppl: dict[str, float]) -> None:
    """Add the measured perplexities to the output's secateurs.json (atomically)."""
    _record_info(out_dir, perplexities=ppl)


def _record_info(out_dir: Path, **entries: object) -> None:
    """Set top-level entries of the output's secateurs.json (atomically)."""
    import json

    from ..io import atomic_write_json

    info = out_dir / "secateurs.json"
    doc = json.loads(info.read_text())
    doc.update(entries)
    atomic_write_json(info, doc, indent=2, default=str)


@app.command("prune")
@handle_errors
def prune_cmd(
    model: Path = typer.Option(..., "--model", help="local save_pretrained directory (nothing is downloaded)"),
    method: str = typer.Option("wanda", help="criterion: wanda | sparsegpt | gblm | magnitude | ... (secateurs methods); "
                                             "structured: flap | width | shortgpt | angular"),
    sparsity: Optional[float] = typer.Option(None, help="fraction of block weights removed (0.5; implied by N:M)"),
    pattern: str = typer.Option("unstructured", help='"unstructured" or N:M such as "2:4", "4:8"'),
    allocation: str = typer.Option("uniform", help="uniform | owl | global | erk | ..."),
    scope: Optional[str] = typer.Option(None, help="row | layer | global (default: the method's)"),
    solver: Optional[str] = typer.Option(None, help="sparsegpt: OBS update of the kept weights (default: the method's)"),
    calibration: Optional[Path] = typer.Option(None, help="text file to draw calibration windows from"),
    nsamples: int = typer.Option(128, help="calibration windows"),
    seqlen: Optional[int] = typer.Option(None, help="tokens per calibration window (default: model positions)"),
    seed: int = typer.Option(0, help="seed of the calibration windows"),
    out_dir: Path = typer.Option(..., "--out", help="output directory (save_pretrained + secateurs.json)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    eval_text: Optional[Path] = typer.Option(None, "--eval-text", help="text file: perplexity before and after"),
    eval_seqlen: Optional[int] = typer.Option(None, "--eval-seqlen", help="perplexity window (default: seqlen)"),
    option: list[str] = typer.Option([], "--option", "-o", help="KEY=VALUE option of the criterion, allocation or "
                                                                "solver (repeatable; `secateurs methods` lists them)"),
    owl_lambda: Optional[float] = typer.Option(None, "--owl-lambda", help="OWL λ (0.08); = --option owl_lambda=..."),
    owl_m: Optional[float] = typer.Option(None, "--owl-m", help="OWL outlier threshold M (5); = --option owl_m=..."),
    percdamp: Optional[float] = typer.Option(None, help="SparseGPT dampening (0.01); = --option percdamp=..."),
    blocks: Optional[str] = typer.Option(None, help="attribute path of the block list, e.g. model.layers"),
    batch_size: int = typer.Option(1, "--batch-size", help="calibration rows per block forward"),
    device: Optional[str] = typer.Option(None, help="cpu | cuda (default: cuda when available)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run with the same arguments"),
    format: str = typer.Option("dense", "--format", help="dense (plain transformers loads it) | bitmask (compressed "
                                                         "sparse tensors; secateurs.llm.load_pruned loads it)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Prune a local model with calibration data and save it (zeros baked in) with secateurs.json.

    The checkpoint is streamed: one block at a time is read from its safetensors shards, pruned, written and
    freed (secateurs.llm.prune_checkpoint), so models larger than memory work; --resume continues an interrupted
    run.  --eval-text loads the whole model (dense, then pruned) to measure perplexity.
    """
    from ..llm import prune_checkpoint
    from ..llm.output import _check_format, check_output_dir

    check_output_dir(out_dir, overwrite)  # before anything is loaded or pruned
    _check_format(format)
    # bitmask: the streamed prune writes a dense directory beside the output, compressed shard by shard after
    dense_dir = out_dir if format == "dense" else out_dir.parent / f".{out_dir.name}.dense"
    _readable(calibration, "--calibration")
    _readable(eval_text, "--eval-text")
    options = parse_options(option, owl_lambda=owl_lambda, owl_m=owl_m, percdamp=percdamp)
    from ..registry import names

    if method in names("llm_structured"):  # flap | width | shortgpt | angular: heads, neurons or layers removed
        _prune_structured(model, method, sparsity, calibration, nsamples, seqlen, seed, out_dir, overwrite, eval_text,
                          eval_seqlen, options, blocks, batch_size, device, format, as_json)
        return
    if sparsity is None and ":" not in pattern:
        sparsity = 0.5
    from ..core.spec import PruneSpec

    # names and --option values, before an output or interrupted-run folder is made
    PruneSpec(sparsity=sparsity, method=method, allocation=allocation, pattern=pattern, scope=scope, solver=solver,
              options=options)
    ppl: dict[str, float] = {}
    if eval_text is not None:
        from ..llm import perplexity

        lm, tokenizer = _load(model)
        ppl["dense"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
        del lm
    report = prune_checkpoint(model, dense_dir, calibration, method=method, sparsity=sparsity, pattern=pattern,
                              allocation=allocation, nsamples=nsamples, seqlen=seqlen, device=device, seed=seed,
                              progress=not as_json, blocks=blocks, batch_size=batch_size, scope=scope,
                              solver=solver, resume=resume, overwrite=overwrite or dense_dir != out_dir, **options)
    saved = out_dir
    if eval_text is not None:
        lm, tokenizer = _load(dense_dir)
        ppl["pruned"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
        _record_perplexities(dense_dir, ppl)
    if dense_dir != out_dir:
        import shutil

        from ..llm import compress_checkpoint

        compress_checkpoint(dense_dir, out_dir, overwrite=overwrite)
        shutil.rmtree(dense_dir)
    if as_json:
        emit_json({"out": str(saved), "format": format, "overall_sparsity": report.overall_sparsity,
                   "perplexity": ppl or None, "report": report.to_dict()})
        return
    out.print(report.table())
    if ppl:
        out.print("perplexity " + ", ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    err.print(f"saved {saved}")


@app.command("eval")
@handle_errors
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="local save_pretrained directory of a causal LM"),
    text: Path = typer.Option(..., "--text", help="text file to measure perplexity on"),
    seqlen: Optional[int] = typer.Option(None, help="window length (default: the model's positions)"),
    stride: Optional[int] = typer.Option(None, help="sliding-window step (default: non-overlapping windows)"),
    as_json: bool = typer.Option(False, "--json", help='print only {"perplexity": …} on stdout'),
) -> None:
    """Perplexity of a local causal LM on a text file (Wanda/SparseGPT protocol: non-overlapping windows)."""
    from ..llm import perplexity

    _readable(text, "--text")
    lm, tokenizer = _load(model, "causal")
    value = perplexity(lm, text, tokenizer=tokenizer, seqlen=seqlen, stride=stride, progress=not as_json)
    if as_json:
        emit_json({"perplexity": value})
    else:
        out.print(f"perplexity {value:.4f}")


def _load_saved(model_dir: Path):
    """A model directory as ``save_pruned`` wrote it (bitmask weights or per-layer widths through
    ``llm.load_pruned``, in float32) or a plain one; returns the model, its tokenizer and its secateurs.json."""
    import json

    import torch

    from ..llm.output import load_pruned
    from ..llm.text import check_vocab, load_local_tokenizer

    info = model_dir / "secateurs.json"
    doc = json.loads(info.read_text()) if info.is_file() else {}
    if not (doc.get("structure") or (doc.get("weights") or {}).get("format", "dense") != "dense"):
        return (*_load(model_dir, "causal"), doc)
    lm = load_pruned(model_dir, dtype=torch.float32).eval()
    tokenizer = load_local_tokenizer(model_dir)
    check_vocab(lm, tokenizer)
    return lm, tokenizer, doc


@app.command("recover")
@handle_errors
def recover_cmd(
    model: Path = typer.Option(..., "--model", help="local save_pretrained directory of the pruned causal LM"),
    text: Path = typer.Option(..., "--text", help="text file to retrain on (windows drawn with --seed)"),
    steps: int = typer.Option(..., "--steps", help="optimizer steps"),
    out_dir: Path = typer.Option(..., "--out", help="output directory (save_pretrained + secateurs.json)"),
    train: str = typer.Option("biases,norms", help="what trains: biases, norms, lora, head, embeddings "
                                                   "(comma-separated)"),
    lr: Optional[float] = typer.Option(None, help="AdamW peak learning rate (default 5e-4, PERP's)"),
    seqlen: Optional[int] = typer.Option(None, help="tokens per training window (default: model positions, ≤ 2048)"),
    batch_size: int = typer.Option(2, "--batch-size", help="windows per step"),
    seed: int = typer.Option(0, help="seed of the windows and of the LoRA initialisation"),
    schedule: str = typer.Option("linear", help="linear | cosine | constant, after 10% warm-up"),
    lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank"),
    lora_alpha: float = typer.Option(32.0, "--lora-alpha", help="LoRA alpha (scale alpha / r)"),
    distill: Optional[str] = typer.Option(None, help="logits | self-data: distil from --teacher"),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="the dense model's directory (for --distill)"),
    temperature: float = typer.Option(1.0, help="logit distillation temperature"),
    eval_text: Optional[Path] = typer.Option(None, "--eval-text", help="text file: perplexity before and after"),
    eval_seqlen: Optional[int] = typer.Option(None, "--eval-seqlen", help="perplexity window (default: seqlen)"),
    format: str = typer.Option("dense", "--format", help="dense | bitmask (as llm prune --format)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Retrain a pruned model parameter-efficiently (PERP: biases, norms and/or MaskLoRA adapters, pruned weights
    held at zero, adapters merged) and save it with secateurs.json (its "recover" entry: loss curve, recipe)."""
    from ..errors import InvalidArgumentError
    from ..llm.output import _check_format, check_output_dir, save_pruned
    from ..llm.recover import parse_train, recover

    check_output_dir(out_dir, overwrite)  # before anything is loaded or trained
    _check_format(format)
    _readable(text, "--text")
    _readable(eval_text, "--eval-text")
    parse_train(train)
    if (distill is None) != (teacher is None):
        raise InvalidArgumentError("--distill and --teacher go together: --distill logits|self-data --teacher DIR")
    lm, tokenizer, saved = _load_saved(model)
    dense = _load_saved(teacher)[0] if teacher is not None else None
    ppl: dict[str, float] = {}
    if eval_text is not None:
        from ..llm import perplexity

        ppl["before"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
    report = recover(lm, text, steps, train=train, lr=lr, seqlen=seqlen, seed=seed, batch_size=batch_size,
                     tokenizer=tokenizer, teacher=dense, distill=distill, temperature=temperature, schedule=schedule,
                     lora_r=lora_r, lora_alpha=lora_alpha, progress=not as_json)
    if eval_text is not None:
        ppl["after"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
    save_pruned(lm, tokenizer, out_dir, saved.get("prune", {}), perplexities=ppl, overwrite=overwrite, format=format)
    _record_info(out_dir, recover=report.to_dict())
    if as_json:
        emit_json({"out": str(out_dir), "perplexity": ppl or None, "report": report.to_dict()})
        return
    out.print(str(report))
    if ppl:
        out.print("perplexity " + ", ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    err.print(f"saved {out_dir}")


def _prune_structured(model: Path, method: str, sparsity: Optional[float], calibration: Optional[Path], nsamples: int,
                      seqlen: Optional[int], seed: int, out_dir: Path, overwrite: bool, eval_text: Optional[Path],
                      eval_seqlen: Optional[int], options: dict, blocks: Optional[str], batch_size: int,
                      device: Optional[str], format: str, as_json: bool) -> None:
    """``llm prune --method flap|width|shortgpt|angular``: secateurs.llm.prune_structured on the whole loaded model
    (sparsity = fraction of the blocks' parameters, default 0.2 unless --option remove_layers=N or widths are
    given), saved with save_pruned (per-layer widths recorded for load_pruned)."""
    from ..llm import prune_structured, save_pruned
    from ..registry import check_options

    check_options("llm_structured", method, options)  # before anything is loaded
    if sparsity is None and not {"remove_layers", "heads", "intermediate"} & set(options):
        sparsity = 0.2
    lm, tokenizer = _load(model, "causal")
    ppl: dict[str, float] = {}
    if eval_text is not None:
        from ..llm import perplexity

        ppl["dense"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
    report = prune_structured(lm, calibration, method, sparsity, tokenizer=tokenizer, nsamples=nsamples,
                              seqlen=seqlen, device=device, seed=seed, progress=not as_json, blocks=blocks,
                              batch_size=batch_size, **options)
    if eval_text is not None:
        ppl["pruned"] = perplexity(lm, eval_text, tokenizer=tokenizer, seqlen=eval_seqlen or seqlen)
    save_pruned(lm, tokenizer, out_dir, report, perplexities=ppl, overwrite=overwrite, format=format)
    if as_json:
        emit_json({"out": str(out_dir), "sparsity": report.sparsity, "params_before": report.params_before,
                   "params_after": report.params_after, "stock_config": report.stock_config,
                   "perplexity": ppl or None, "report": report.to_dict()})
        return
    out.print(report.table())
    if ppl:
        out.print("perplexity " + ", ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    err.print(f"saved {out_dir}" + ("" if report.stock_config else " (per-layer widths: load with "
                                                                   "secateurs.llm.load_pruned)"))
