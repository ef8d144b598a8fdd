"""The oracle study (issue 18, item 4): is the loss right after pruning a guide to accuracy after fine-tuning?

Feng, Tao & Wang (2024/2025), "Is Oracle Pruning the True Oracle?" (arXiv 2412.00143): *oracle pruning* removes
the structures whose removal raises the training loss least; they measure, over many pruned models, the Kendall
tau between the pruned model's training loss and its accuracy after retraining, and find it weak (or of the wrong
sign) for every network beyond LeNet-scale toys.  :func:`oracle_study` reproduces that experiment on a zoo model
in one call (``secateurs oracle --model lenet5 --dataset digits --json``):

1. **The oracle.**  For every structured unit (an output channel / neuron of a dependency group of
   :mod:`secateurs.structured`, i.e. the group's slices in every coupled layer), the true change of the mean
   cross-entropy on a fixed, class-balanced set of training batches when that unit alone is removed:
   ``oracle[g, u] = L(W without unit u of group g) - L(W)`` (the removal is the structured surgery itself, undone
   after the measurement).
2. **The criteria.**  Every structured importance (registry kind ``importance``: ``l1``, ``l2``, ``bn_scale``,
   ``group_taylor``, ``fpgm``, ``group_random``) and engine criteria summed per unit (``magnitude``, ``snip``,
   ``taylor``), and the Spearman rho / Kendall tau (:mod:`scipy.stats`) between each criterion's scores and the
   oracle, per group and pooled over every unit (a criterion is good when high scores go with large loss
   increases: positive correlations).  Groups whose importance gives no score (``bn_scale`` without BatchNorm)
   are reported as skipped.
3. **Pruned models.**  Each criterion at each sparsity (uniform allocation: that fraction of every group's units),
   plus ``n_random`` random structures (``group_random`` scores with a ``global`` allocation, so the layer-wise
   widths are random too), each fine-tuned with the same small budget by :func:`secateurs.zoo.fit` (the zoo
   recipe's optimizer at ``finetune_lr``).  Per model: the training-batch loss right after pruning (the paper's
   "pruned train loss"), the oracle's additive prediction of it (dense loss + the removed units' oracle values),
   test accuracy before and after fine-tuning.  Then Kendall tau / Spearman rho between (a) the pruned loss and
   the oracle prediction and (b) accuracy after fine-tuning, per sparsity and pooled (pooled correlations mostly
   measure the sparsity, so the per-sparsity ones are the ones to read).  With a good oracle these are negative
   (higher loss after pruning, lower accuracy after fine-tuning).

Oracle pruning itself (``"oracle"``: the units whose lone removal raised the loss least go, uniformly per group)
is one of the pruned models.

What it shows, honestly (``python benchmarks/oracle.py --budgets 1,3,10`` -> benchmarks/results/oracle.json:
lenet5, the zoo's 60-epoch dense model, 98.0 % test accuracy; oracle on 200 training examples; sparsities 0.3 /
0.5 / 0.7; 7 distinct criterion models + 8 random structures per sparsity; one seed):

- Criteria vs the oracle (Kendall tau pooled over the 226 units): group Taylor (= engine taylor summed per unit)
  +0.82, SNIP +0.78, L2 +0.55, L1 (= magnitude) +0.52, FPGM +0.11, random -0.11.  The first-order Taylor
  estimate is what the single-unit oracle is closest to, as expected (Molchanov et al. 2019).
- The single-unit oracle is not additive: the oracle's additive prediction of a pruned model's loss is 1.3 to
  12x too low, and oracle pruning is the best by its own measure only at 30 % (pruned training loss 0.07); at
  50 % it leaves 0.62 where L2 leaves 0.35.  group Taylor, the criterion closest to the oracle, leaves the worst
  pruned loss of the non-random criteria at 50 / 70 % (1.65 / 1.72) and the *best* accuracy after 10 epochs of
  fine-tuning (96.7 / 95.1 %).
- Over all 15 models of a sparsity the pruned training loss ranks them by accuracy after fine-tuning (Kendall tau
  -0.78 / -0.77 / -0.85 at 30 / 50 / 70 % after 1 epoch, -0.75 / -0.73 / -0.75 after 3, -0.61 / -0.38 / -0.56
  after 10), weakening with the fine-tuning budget: the paper's direction (retraining decouples the two), at
  the small scale where the paper still finds oracle pruning roughly valid (LeNet-5 on MNIST).  Much of that is
  the random structures being far worse than every criterion before and after fine-tuning: among the 7 criteria
  alone (``per_sparsity_criteria_only``) tau is -0.31 / +0.29 / +0.29 after 10 epochs, i.e. no predictive
  value (or the wrong sign) between the criteria a paper would actually compare.
- Limits: one model, one seed, 15 models per sparsity, a 450-image test set (0.22 % per image); the dense model
  fits its training set (loss 0.0007), so lone-unit oracle values are tiny.  Run more seeds before citing a tau.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..errors import InvalidArgumentError
from ..io import atomic_write_json

STRUCTURED_IMPORTANCES = ("l1", "l2", "bn_scale", "group_taylor", "fpgm", "group_random")
ENGINE_CRITERIA = ("magnitude", "snip", "taylor")
DEFAULT_CRITERIA = STRUCTURED_IMPORTANCES + ENGINE_CRITERIA
RANDOM = "random_structure"  # the label of the random candidates
ORACLE = "oracle"  # the label of the models pruned by the oracle's own ranking


def _prune_by_scores(model: nn.Module, example: torch.Tensor, sparsity: float,
                     scores: dict[tuple[str, ...], list[float]], seed: int) -> dict[tuple[str, ...], list[int]]:
    """Structured-prune ``model`` in place with given per-unit ``scores`` (group members -> one score per unit,
    higher = keep) at a uniform ``sparsity``, through the structured pruner's own plan, cut and check; returns
    the removed units per group."""
    from ..structured.prune import _Pruner

    pr = _Pruner(model, example, "l2", "uniform", None, None, None, None, seed, 0.9, "sum", {})
    pr.analyse()
    pr.scored = [(g, torch.tensor(scores[tuple(g.names)], dtype=torch.float32)) for g in pr.groups]
    removals = pr.plan(sparsity)
    pr.verify(pr.cut(removals))
    return {tuple(g.names): removals[g.space].tolist() if g.space in removals else [] for g, _ in pr.scored}


def rank_correlation(a: list[float], b: list[float]) -> dict[str, float]:
    """Spearman rho and Kendall tau-b (scipy.stats) of two equally long sequences; NaN where undefined
    (fewer than 3 values or a constant one)."""
    from scipy import stats

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return {"spearman": math.nan, "kendall": math.nan, "n": len(a)}
    return {"spearman": float(stats.spearmanr(a, b).statistic), "kendall": float(stats.kendalltau(a, b).statistic),
            "n": len(a)}


@torch.no_grad()
def batch_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy of ``model`` (eval mode) over every example of ``batches``."""
    from ..core.modes import eval_mode

    total, n = 0.0, 0
    with eval_mode(model):
        for x, y in batches:
            total += nn.functional.cross_entropy(model(x), y, reduction="sum").item()
            n += len(y)
    return total / max(n, 1)


def _check(sparsities: Any, n_random: Any, finetune_epochs: Any, finetune_lr: Any, criteria: Any,
           n_per_class: Any) -> tuple[list[float], list[str]]:
    from ..structured.importance import build as build_importance

    try:
        sp = [float(s) for s in sparsities]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"sparsities must be numbers in (0, 1), got {sparsities!r}") from None
    if not sp or any(not 0.0 < s < 1.0 for s in sp):
        raise InvalidArgumentError(f"sparsities must be a non-empty list of numbers in (0, 1), got {sparsities!r}")
    for name, v, lo in (("n_random", n_random, 0), ("finetune_epochs", finetune_epochs, 0),
                        ("n_per_class", n_per_class, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InvalidArgumentError(f"{name} must be an integer >= {lo}, got {v!r}")
    if isinstance(finetune_lr, bool) or not isinstance(finetune_lr, (int, float)) or not finetune_lr > 0:
        raise InvalidArgumentError(f"finetune_lr must be a number > 0, got {finetune_lr!r}")
    crit = [criteria] if isinstance(criteria, str) else list(criteria)
    if not crit or not all(isinstance(c, str) for c in crit):
        raise InvalidArgumentError(f"criteria must be a non-empty list of importance/criterion names, got {criteria!r}")
    for c in crit:
        build_importance(c, {})  # UnknownNameError with a did-you-mean
    return sp, list(dict.fromkeys(crit))


def oracle_study(model: str = "lenet5", dataset: str = "digits", *, sparsities: Any = (0.3, 0.5, 0.7),
                 criteria: Any = DEFAULT_CRITERIA, n_random: int = 8, finetune_epochs: int = 2,
                 finetune_lr: float = 0.01, n_per_class: int = 20, seed: int = 0, pretrain_epochs: int | None = None,
                 out: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """The oracle study of Feng et al. (2024) on zoo model ``model`` trained on ``dataset`` (see the module
    docstring for the three parts).  Returns ``{"protocol", "oracle", "criteria", "pruned", "correlations"}``
    (JSON-ready) and, with ``out``, writes it there atomically.  ``n_per_class`` training examples of every class
    (fixed by ``seed``) form the batch set the oracle and the pruned losses are measured on.  Same arguments, same
    seed: the same result (everything runs on one thread).  Bad arguments raise before anything is trained."""
    from ..core.modes import num_threads
    from ..registry import get
    from ..structured import count_params, prune as structured_prune
    from ..structured.importance import ImportanceContext, build as build_importance
    from ..structured.prune import _Pruner
    from ..zoo import calibration_batches, evaluate, fit, load_dataset, pretrained, recipe_for

    sparsities, criteria = _check(sparsities, n_random, finetune_epochs, finetune_lr, criteria, n_per_class)
    get("model", model)
    get("dataset", dataset)
    t0 = time.perf_counter()
    data = load_dataset(dataset)
    base = pretrained(model, dataset, seed=seed, epochs=pretrain_epochs, progress=progress).eval()
    batches = calibration_batches(data, n_per_class=n_per_class, seed=seed, batch_size=100)
    example = batches[0][0][:1]
    train_loader, test_loader = data.loaders(batch_size=64, seed=seed)
    z = recipe_for(model, dataset)
    with torch.random.fork_rng(devices=[]), num_threads(1):
        torch.manual_seed(seed)
        dense_loss = batch_loss(base, batches)
        dense_test = evaluate(base, test_loader)

        # 1. the oracle: remove each unit alone (the structured surgery, undone), measure the loss change
        work = copy.deepcopy(base)
        pr = _Pruner(work, example, "l2", "uniform", None, None, batches, None, seed, 0.9, "sum", {})
        pr.analyse()
        groups = pr.groups
        oracle: list[list[float]] = []
        for g in groups:
            deltas = []
            for u in range(g.units):
                undo = pr.cut({g.space: torch.tensor([u])})
                try:
                    deltas.append(batch_loss(work, batches) - dense_loss)
                finally:
                    undo()
            oracle.append(deltas)
        keys = [tuple(g.names) for g in groups]
        flat_oracle = [d for ds in oracle for d in ds]

        # 2. every criterion's scores and their rank correlation with the oracle
        ctx = ImportanceContext(work, groups, pr.tr.names, pr.feed, seed)
        crit_rows = []
        for c in criteria:
            scores = build_importance(c, {}).scores(ctx)
            per_group, pooled_s, pooled_o, skipped = [], [], [], []
            for g, s, o in zip(groups, scores, oracle):
                if s is None:
                    skipped.append(g.names[0])
                    continue
                s = [float(v) for v in s.float().cpu()]
                per_group.append({"group": g.names[0], "units": g.units, **rank_correlation(s, o)})
                pooled_s += s
                pooled_o += o
            crit_rows.append({"criterion": c, "skipped": skipped, "per_group": per_group,
                              "pooled": rank_correlation(pooled_s, pooled_o),
                              "scores": [None if s is None else [float(v) for v in s] for s in scores]})

    # 3. pruned models, fine-tuned with one budget: does the loss after pruning predict accuracy after it?
    scoring = [r["criterion"] for r in crit_rows if len(r["skipped"]) < len(groups)]  # bn_scale without BN: none
    candidates = [(c, s, "uniform", seed) for s in sparsities for c in [ORACLE, *scoring]]
    candidates += [(RANDOM, s, "global", seed + 1 + k) for s in sparsities for k in range(n_random)]
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}  # removals -> the first row that made them
    for name, s, allocation, cseed in candidates:
        m = copy.deepcopy(base)
        params_before = count_params(m)
        if name == ORACLE:  # oracle pruning itself: the units whose lone removal raised the loss least go
            removed = _prune_by_scores(m, example, s, dict(zip(keys, oracle)), cseed)
        else:
            rep = structured_prune(m, example, s, "group_random" if name == RANDOM else name, allocation,
                                   data=batches, seed=cseed)
            removed = {tuple(sorted({f"{mm['param']}[{mm['dim']}]" for mm in gd["members"]})): gd["removed"]
                       for gd in rep.groups}
        signature = tuple(sorted((k, tuple(v)) for k, v in removed.items()))
        if signature in seen:  # l1 and magnitude, taylor and group_taylor cut the same units: one model, once
            rows.append({**seen[signature], "criterion": name, "seed": cseed,
                         "duplicate_of": seen[signature]["criterion"]})
            continue
        predicted = dense_loss + sum(oracle[i][u] for i, k in enumerate(keys) for u in removed.get(k, []))
        pruned_loss = batch_loss(m, batches)
        pruned_test = evaluate(m, test_loader)
        if finetune_epochs:
            fit(m, train_loader, finetune_epochs, lr=finetune_lr, optimizer=z["optimizer"],
                weight_decay=z["weight_decay"], momentum=z["momentum"], seed=seed, num_threads=1)
        final = evaluate(m, test_loader)
        rows.append({"criterion": name, "sparsity": s, "allocation": allocation, "seed": cseed,
                     "params": count_params(m), "params_before": params_before,
                     "pruned_train_loss": pruned_loss, "oracle_predicted_loss": predicted,
                     "pruned_test_accuracy": pruned_test["accuracy"], "finetuned_test_accuracy": final["accuracy"],
                     "finetuned_test_loss": final["loss"],
                     "removed": {k[0]: v for k, v in removed.items() if v}})
        seen[signature] = rows[-1]

    def corr(sel: list[dict[str, Any]]) -> dict[str, Any]:
        acc = [r["finetuned_test_accuracy"] for r in sel]
        return {"pruned_train_loss_vs_finetuned_accuracy": rank_correlation([r["pruned_train_loss"] for r in sel], acc),
                "oracle_predicted_loss_vs_finetuned_accuracy":
                    rank_correlation([r["oracle_predicted_loss"] for r in sel], acc),
                "pruned_accuracy_vs_finetuned_accuracy":
                    rank_correlation([r["pruned_test_accuracy"] for r in sel], acc),
                "n_models": len(sel)}

    distinct = [r for r in rows if "duplicate_of" not in r]  # a model counted twice would weigh twice
    at = {str(s): [r for r in distinct if r["sparsity"] == s] for s in sparsities}
    correlations = {"pooled": corr(distinct), "per_sparsity": {s: corr(v) for s, v in at.items()},
                    # the random structures are far worse than any criterion: does the ranking hold within each?
                    "per_sparsity_criteria_only": {s: corr([r for r in v if r["criterion"] != RANDOM])
                                                   for s, v in at.items()},
                    "per_sparsity_random_only": {s: corr([r for r in v if r["criterion"] == RANDOM])
                                                 for s, v in at.items()}}
    doc = {
        "protocol": {"paper": "Feng, Tao & Wang 2024, Is Oracle Pruning the True Oracle? (arXiv 2412.00143)",
                     "model": model, "dataset": dataset, "seed": seed, "pretrain_epochs": pretrain_epochs,
                     "oracle_batches": f"{n_per_class} training examples per class (calibration_batches, seed)",
                     "oracle_examples": sum(len(y) for _, y in batches),
                     "oracle": "loss(model without unit) - loss(model), mean cross-entropy on the oracle batches; "
                               "a unit is one channel/neuron of a structured dependency group, removed by surgery",
                     "criteria": criteria, "sparsities": sparsities, "n_random": n_random,
                     "pruned_criteria": scoring,  # those that score at least one group
                     "duplicates": "a model whose removals equal an earlier one's is listed with duplicate_of and "
                                   "left out of the correlations",
                     "random": "group_random scores, global allocation (random layer-wise widths), seeds seed+1..",
                     "criterion_allocation": "uniform",
                     "finetune": {"epochs": finetune_epochs, "lr": finetune_lr, "optimizer": z["optimizer"],
                                  "momentum": z["momentum"], "weight_decay": z["weight_decay"], "batch_size": 64,
                                  "schedule": "cosine to 0 (secateurs.zoo.fit)"},
                     "correlation": "scipy.stats spearmanr and kendalltau (tau-b)",
                     "version": __version__, "torch": torch.__version__},
        "dense": {"train_batch_loss": dense_loss, "test_accuracy": dense_test["accuracy"],
                  "test_loss": dense_test["loss"]},
        "oracle": [{"group": g.names[0], "members": g.names, "units": g.units, "delta_loss": o}
                   for g, o in zip(groups, oracle)],
        "oracle_summary": {"units": len(flat_oracle), "mean": sum(flat_oracle) / max(len(flat_oracle), 1),
                           "min": min(flat_oracle, default=math.nan), "max": max(flat_oracle, default=math.nan),
                           "negative": sum(d < 0 for d in flat_oracle)},
        "criteria": crit_rows,
        "pruned": rows,
        "correlations": correlations,
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        atomic_write_json(out, doc, indent=1, allow_nan=True)
    return doc
