"""Running one :class:`~secateurs.recipes.Recipe`: each family through its front door, each built-in control as
its paper defines it, the result as one flat JSON row (what the report plots and tables read).

Families: ``weights`` (:func:`secateurs.experiment.run`: dense -> prune -> fine-tune -> evaluate), ``schedule``
(:func:`secateurs.schedules.train.train_sparse`), ``structured`` (:func:`secateurs.structured.prune`, with
parameters, MACs and optionally latency), ``data`` (:mod:`secateurs.data`: score -> select -> train_subset) and
``llm`` (:func:`secateurs.llm.prune` + perplexity).  Controls (:mod:`secateurs.recipes.controls`): ``dense``,
``scratch`` (Liu et al. 2019, "Rethinking the Value of Network Pruning"), ``random_mask`` (same layer-wise
densities; Liu et al. 2022, "The Unreasonable Effectiveness of Random Pruning") and ``global_magnitude`` with a
minimum-keep floor (Gupta et al. 2022, "Is Complexity Required for Neural Network Pruning?").
"""
from __future__ import annotations

import copy
import functools
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from .store import finished, open_runs_dir, write_run

# ``Recipe`` (secateurs.recipes.recipe) is only named in annotations here: Recipe.run() imports this module

# calibration batches as the weights family's experiment draws them (10 per class, batches of 25)
from ..experiment import CALIBRATION_BATCH


def run_recipe(recipe: Recipe, runs_dir: str | Path | None = None, *, progress: bool = False,
               cached_only: bool = False) -> dict[str, Any]:
    """The result row of ``recipe``: read from ``runs_dir`` when that run is finished (never recomputed), else
    computed and, with a ``runs_dir``, written there atomically (``run.json`` beside nothing partial)."""
    key = recipe.key()
    store = open_runs_dir(runs_dir, create=True) if runs_dir is not None else None
    if store is not None:
        done = finished(store, key)
        if done is not None:
            return {**done["result"], "cached": True}
    if cached_only:
        raise LookupError(key)
    start = time.perf_counter()
    result = execute(recipe, progress=progress)
    result["seconds"] = time.perf_counter() - start
    result["key"] = key
    if store is not None:
        write_run(store, key, {"key": key, "version": __version__, "recipe": recipe.resolved(), "result": result})
    return {**result, "cached": False}


def execute(recipe: Recipe, progress: bool = False) -> dict[str, Any]:
    """Run ``recipe`` (no cache) and return its result row."""
    row = {"family": recipe.family, "model": recipe.model, "data": recipe.data, "method": recipe.resolved_method,
           "control": recipe.control, "seed": recipe.seed, "target_sparsity": 0.0 if recipe.control == "dense" else recipe.resolved_sparsity,
           "pattern": recipe.pattern, "allocation": recipe.allocation, "label": recipe.label()}
    fn = {"weights": _weights, "schedule": _schedule, "structured": _structured, "data": _data,
          "llm": _llm}[recipe.family]
    row.update(fn(recipe, progress))
    return row


# llm family: perplexity on this many held-out Shakespeare sentences (windows of 128 tokens), calibration rows
LLM_EVAL_SENTENCES = 64
LLM_CALIBRATION_ROWS = 16


# ------------------------------------------------------------------------------------------------ shared pieces
@functools.lru_cache(maxsize=8)
def _dense(model: str, data: str, seed: int) -> nn.Module:
    """The trained dense zoo model (cached on disk by the zoo, and in this process: sweep workers reuse it)."""
    from ..experiment import load_model

    return load_model(model, data, seed)


@functools.lru_cache(maxsize=4)
def _dataset(name: str) -> Any:
    from ..zoo import load_dataset

    return load_dataset(name)


def _calibration(data: Any, seed: int) -> list:
    from ..zoo import calibration_batches

    return calibration_batches(data, n_per_class=10, seed=seed, batch_size=CALIBRATION_BATCH)


def _evaluate(model: nn.Module, test_loader: Any) -> dict[str, float]:
    from ..zoo import evaluate

    return evaluate(model, test_loader)


def _train(model: nn.Module, r: Recipe, train_loader: Any, epochs: int, lr: float | None, scratch: bool,
           progress: bool) -> None:
    """Fine-tune (lr, SGD defaults of the experiment) or, ``scratch``, train with the zoo recipe's optimizer."""
    from ..zoo import fit, recipe_for

    if epochs <= 0:
        return
    if scratch:
        z = recipe_for(r.model, r.data, epochs)
        fit(model, train_loader, epochs, lr=lr or z["lr"], optimizer=z["optimizer"], weight_decay=z["weight_decay"],
            momentum=z["momentum"], seed=r.seed, progress=progress, num_threads=z["num_threads"])
    else:
        fit(model, train_loader, epochs, lr=lr or 0.01, seed=r.seed, progress=progress)
    model.eval()


def layer_rows(model: nn.Module) -> list[dict[str, Any]]:
    """Per prunable weight: name, size, kept weights and sparsity (masked or not)."""
    from ..core.masks import get_mask
    from ..core.targets import resolve_targets

    out = []
    for t in resolve_targets(model):
        m = get_mask(t)
        kept = int(m.sum()) if m is not None else int((t.weight != 0).sum())
        out.append({"name": t.key, "numel": t.numel, "kept": kept, "sparsity": 1 - kept / max(t.numel, 1)})
    return out


def _overall(layers: list[dict[str, Any]]) -> float:
    total = sum(l["numel"] for l in layers)
    return 1 - sum(l["kept"] for l in layers) / max(total, 1)


def _count(model: nn.Module, example: Any) -> dict[str, int]:
    from ..structured.count import count_macs, count_params

    return {"params": count_params(model), "macs": count_macs(model, example)}


# ---------------------------------------------------------------------------------------------------- families
def _weights(r: Recipe, progress: bool) -> dict[str, Any]:
    from ..experiment import Experiment, run
    from .controls import global_magnitude_floor, masked_control

    base = _dense(r.model, r.data, r.seed)
    lr = r.resolved()["finetune"]["lr"]
    if r.control in ("dense", "scratch", "random_mask"):
        data = _dataset(r.data)
        train_loader, test_loader = data.loaders(batch_size=r.evaluation.batch_size, seed=r.seed)
        dense_ev = _evaluate(base, test_loader)
        if r.control == "dense":
            return {"dense": dense_ev, "pruned": dense_ev, "finetuned": None, "accuracy": dense_ev["accuracy"],
                    "loss": dense_ev["loss"], "sparsity": 0.0, "layers": layer_rows(base)}
        model, epochs = masked_control(r, base, data, _calibration(data, r.seed))
        pruned_ev = _evaluate(model, test_loader)
        _train(model, r, train_loader, epochs, lr if r.control != "scratch" else r.finetune.lr, r.control == "scratch",
               progress)
        final = _evaluate(model, test_loader) if epochs > 0 else None
        layers = layer_rows(model)
        last = final or pruned_ev
        return {"dense": dense_ev, "pruned": pruned_ev, "finetuned": final, "accuracy": last["accuracy"],
                "loss": last["loss"], "sparsity": _overall(layers), "layers": layers, "train_epochs": epochs}
    method, allocation, min_keep = r.resolved_method, r.allocation, r.min_keep
    if r.control == "global_magnitude":
        method, allocation, min_keep = "magnitude", "global", global_magnitude_floor(r, base)
    exp = Experiment(r.model, r.data, method, allocation, r.pattern, r.resolved_sparsity, min_keep, r.seed,
                     r.finetune.epochs, lr, r.ignore, r.dense, r.scope if r.control is None else None,
                     r.solver if r.control is None else None, dict(r.options) if r.control is None else {})
    out, model = run(exp, base, progress=progress)
    last = out.finetuned or out.pruned
    layers = layer_rows(model)
    return {"dense": out.dense, "pruned": out.pruned, "finetuned": out.finetuned, "accuracy": last["accuracy"],
            "loss": last["loss"], "sparsity": out.sparsity, "layers": layers, "min_keep": min_keep,
            "prune_seconds": out.seconds}


def _schedule(r: Recipe, progress: bool) -> dict[str, Any]:
    from ..schedules.train import train_sparse

    if r.control == "dense":
        data = _dataset(r.data)
        _, test_loader = data.loaders(batch_size=r.evaluation.batch_size, seed=r.seed)
        ev = _evaluate(_dense(r.model, r.data, r.seed), test_loader)
        return {"accuracy": ev["accuracy"], "loss": ev["loss"], "sparsity": 0.0}
    options = dict(r.options)
    if r.method is not None:
        options.setdefault("method", r.method)
    if r.allocation is not None:
        options.setdefault("allocation", r.allocation)
    res = train_sparse(r.model, r.data, r.schedule or "gmp", r.resolved_sparsity, epochs=r.finetune.epochs or None,
                       seed=r.seed, lr=r.finetune.lr, progress=progress, **options)
    return {"accuracy": res["accuracy"], "loss": res["loss"], "sparsity": res["sparsity"], "history": res["history"],
            "train_epochs": res["epochs"]}


def _structured(r: Recipe, progress: bool) -> dict[str, Any]:
    from ..structured import prune as structured_prune
    from ..structured.count import latency
    from .controls import reinitialise

    data = _dataset(r.data)
    base = _dense(r.model, r.data, r.seed)
    train_loader, test_loader = data.loaders(batch_size=r.evaluation.batch_size, seed=r.seed)
    calib = _calibration(data, r.seed)
    example = calib[0][0][:1]
    dense_ev = _evaluate(base, test_loader)
    dense_count = _count(base, example)
    model = copy.deepcopy(base)
    epochs, lr, scratch = r.finetune.epochs, r.resolved()["finetune"]["lr"], False
    report = None
    if r.control != "dense":
        method = "random" if r.control == "random_mask" else r.resolved_method
        options = {} if r.control == "random_mask" else dict(r.options)
        report = structured_prune(model, example, r.resolved_sparsity, method, r.allocation or "uniform", ignore=r.ignore,
                                  data=calib, seed=r.seed, **options)
    pruned_ev = _evaluate(model, test_loader)
    if r.control == "scratch":
        from ..zoo import recipe_for

        epochs = r.finetune.scratch_epochs or recipe_for(r.model, r.data)["epochs"]
        reinitialise(model, r.seed)
        lr, scratch = r.finetune.lr, True
    if r.control != "dense":
        _train(model, r, train_loader, epochs, lr, scratch, progress)
    final = _evaluate(model, test_loader) if epochs > 0 and r.control != "dense" else None
    last = final or pruned_ev
    counts = _count(model, example)
    row = {"dense": dense_ev, "pruned": pruned_ev, "finetuned": final, "accuracy": last["accuracy"],
           "loss": last["loss"], "params": counts["params"], "macs": counts["macs"],
           "dense_params": dense_count["params"], "dense_macs": dense_count["macs"],
           "sparsity": 1 - counts["params"] / max(dense_count["params"], 1), "train_epochs": epochs,
           "groups": len(report.groups) if report is not None else 0}
    if r.evaluation.latency:
        batch = next(iter(test_loader))[0]
        t_dense, t_pruned = latency([base, model], batch, rounds=r.evaluation.latency_rounds, clock="thread")
        row.update(dense_latency_s=t_dense, latency_s=t_pruned)
    return row


def _data(r: Recipe, progress: bool) -> dict[str, Any]:
    from .. import data as D

    dataset = _dataset(r.data)
    n = len(dataset.train)
    if r.control == "dense":
        keep = None
    else:
        scorer = "random" if r.control == "random_mask" else r.resolved_method
        selector = "random" if r.control == "random_mask" else (r.selector or "hard")
        scores = D.score(scorer, dataset.train, **({} if r.control == "random_mask" else dict(r.options)))
        labels = dataset.train.tensors[1].numpy()
        keep = D.select(scores, sparsity=r.resolved_sparsity, method=selector, labels=labels, seed=r.seed)
    res = D.train_subset(r.data, keep, model=r.model, epochs=r.finetune.epochs or None, seed=r.seed,
                         lr=r.finetune.lr, progress=progress)
    kept = n if keep is None else len(keep)
    return {"accuracy": res["accuracy"], "loss": res.get("loss", math.nan), "sparsity": 1 - kept / n,
            "kept": kept, "train_examples": n, "train_epochs": res.get("epochs")}


def _llm(r: Recipe, progress: bool) -> dict[str, Any]:
    from ..llm import perplexity, prune as llm_prune
    from ..llm.evaluate import heldout_sentences

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        from ..schedules.callbacks import MissingExtraError

        raise MissingExtraError("llm recipes need transformers: pip install 'secateurs[llm]'") from None

    path = Path(r.model)
    if not path.is_dir():
        from ..zoo import pretrained_llm

        path = pretrained_llm(r.model, progress=progress)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    from ..zoo.shakespeare import shakespeare_texts

    text = "\n".join(heldout_sentences(LLM_EVAL_SENTENCES, seed=r.seed))  # the held-out plays
    dense_ppl = perplexity(model, text, tok, seqlen=128)
    if r.control == "dense":
        return {"perplexity": dense_ppl, "dense_perplexity": dense_ppl, "sparsity": 0.0}
    spec = r.spec()
    calib = shakespeare_texts("calibration")  # the calibration plays (never the held-out ones), a list of texts
    report = llm_prune(model, calib, method=spec.method, sparsity=spec.sparsity, pattern=spec.pattern,
                       allocation=spec.allocation or "uniform", seed=r.seed, tokenizer=tok, progress=progress,
                       scope=spec.scope, solver=spec.solver, nsamples=LLM_CALIBRATION_ROWS, seqlen=128,
                       **spec.options)
    return {"perplexity": perplexity(model, text, tok, seqlen=128), "dense_perplexity": dense_ppl, "sparsity": report.sparsity,
            "layers": [{"name": l.name, "numel": l.numel, "kept": l.kept, "sparsity": l.sparsity}
                       for l in report.layers]}
