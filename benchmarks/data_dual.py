"""Side-by-side with DUAL (behaapyy/dual-pruning, Cho et al. 2025): its scorers and its CCS sampler run on our digits
training dynamics, compared with secateurs.data's scores and selections on the same run.

    git clone <mirror of behaapyy/dual-pruning> /tmp/dual   # never into this repository
    OMP_NUM_THREADS=1 python benchmarks/data_dual.py [--dual /tmp/dual] [--epochs 30]

DUAL computes every score offline from saved training dynamics (``exp_cifar/train.py --dynamics``: the logits of
the training forward pass of every example, every epoch, with the example indices; ``importance_evaluation.py``
then scores them).  Its scorer functions are imported from ``exp_cifar/importance_evaluation.py`` and
``exp_cifar/data_subset.py`` unmodified (their top-level ``argparse`` gets a fake ``sys.argv``; ``torchvision``
and ``PIL``, which they import for CIFAR loading only, are stubbed since they are not installed here).

Same inputs: one LeNet-5 run on digits (seed 0, the zoo recipe, ``--epochs`` as in benchmarks/data_pruning.py) is
trained by :func:`secateurs.data.dynamics.train_run` -- exactly the run our ``forgetting``/``aum``/``entropy``
scorers make for seed 0 (checked: our scores from it equal ``secateurs.data.score``'s) -- with a forward hook that
stores the training logits per epoch in data set order (DUAL's ``rearrange``).  DUAL's forgetting, EL2N (at epoch
10 % of the run, as its epoch 20 of 200), AUM, entropy, TDDS and DUAL scores are computed on those logits; ours
come from ``secateurs.data.score`` with the same model, recipe and epochs.  Reported: Spearman rank correlations,
the overlap (Jaccard and fraction of ours) of the sets kept by ``hard`` at 70/90 % pruning, and for CCS the stratum
budgets of DUAL's ``stratified_sampling`` against our ``ccs_budgets`` on the same scores and cut, plus the overlap
of the kept sets (both draw at random inside strata, so the overlap of two random draws is given as the baseline).
A run-to-run baseline (our score of seed 0 against seed 1) shows how much rank agreement to expect from noise alone.

Writes benchmarks/results/data_dual.json atomically.
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

import secateurs.data as D  # noqa: E402
from secateurs.data.dynamics import build, train_run  # noqa: E402
from secateurs.zoo import load_dataset, recipe_for  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RATES = [0.7, 0.9]


def import_dual(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """DUAL's ``importance_evaluation`` and ``data_subset`` modules, imported as they are."""
    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms", "PIL"):
        sys.modules.setdefault(name, types.ModuleType(name))  # CIFAR image loading only; not used here
    sys.modules["PIL"].Image = getattr(sys.modules["PIL"], "Image", None)
    sys.modules["torchvision"].datasets = sys.modules["torchvision.datasets"]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.path.insert(0, str(root / "exp_cifar"))
    argv = sys.argv
    sys.argv = ["importance_evaluation.py", "--dynamics_path", "-", "--save_path", "-"]
    try:
        import data_subset  # type: ignore[import-not-found]
        import importance_evaluation  # type: ignore[import-not-found]
    finally:
        sys.argv = argv
    return importance_evaluation, data_subset


def record_run(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> tuple[Any, torch.Tensor]:
    """Our seed-``seed`` LeNet-5 run (as ``collect`` makes it) and its training logits ``(epochs, n, classes)`` in
    data set order: DUAL's ``rearranged``.  The batch rows are matched to examples by their bytes (identical inputs
    give identical logits in the same forward pass, so duplicates are harmless)."""
    rec = recipe_for("lenet5")
    n = len(x)
    keys = {}
    flat = x.reshape(n, -1).numpy()
    group = np.empty(n, dtype=np.int64)
    for i in range(n):
        group[i] = keys.setdefault(flat[i].tobytes(), len(keys))
    logits = torch.full((epochs, len(keys), int(y.max()) + 1), float("nan"), dtype=torch.float64)
    steps_per_epoch = -(-n // rec["batch_size"])
    calls = [0]

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        rows = args[0].reshape(len(output), -1).numpy()
        g = [keys[r.tobytes()] for r in rows]
        logits[calls[0] // steps_per_epoch, g] = output.detach().double()
        calls[0] += 1

    net = build("lenet5", int(y.max()) + 1, seed, tuple(x.shape[1:]))
    net.register_forward_hook(hook)
    run = train_run(net, x, y, epochs, epochs, seed=seed, batch_size=rec["batch_size"], lr=rec["lr"],
                    optimizer=rec["optimizer"], momentum=rec["momentum"], weight_decay=rec["weight_decay"],
                    num_threads=1)
    full = logits[:, torch.as_tensor(group)]
    if torch.isnan(full).any():
        raise RuntimeError("some example was not presented in some epoch")
    return run, full


def rho(a: Any, b: Any) -> float:
    return float(spearmanr(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).statistic)


def overlap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    sa, sb = set(a.tolist()), set(b.tolist())
    return {"jaccard": len(sa & sb) / len(sa | sb), "fraction_of_ours": len(sa & sb) / len(sa)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dual", type=Path, default=Path("/tmp/dual"), help="a clone of behaapyy/dual-pruning")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS / "data_dual.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    ie, ds = import_dual(args.dual)
    data = load_dataset("digits")
    x, y = data.train.tensors[0], data.train.tensors[1]
    n, E = len(x), args.epochs
    run, rearranged = record_run(x, y, E, seed=0)
    el2n_epoch = max(1, round(0.1 * E))

    ours = {name: D.score(name, data, model="lenet5", total_epochs=E, **({"seeds": 1} if name == "el2n" else {}))
            for name in ("forgetting", "el2n", "aum", "entropy")}
    ours_seed1 = {name: D.score(name, data, model="lenet5", total_epochs=E, seed=1, seeds=1)
                  for name in ("forgetting", "el2n", "aum", "entropy")}
    same_run = {"forgetting_events_equal": bool(np.array_equal(
        np.where(run.ever_correct, run.forgetting, E).astype(float), np.asarray(ours["forgetting"]))),
        "aum_equal": bool(np.allclose(run.aum(), np.asarray(ours["aum"])))}

    # DUAL's functions on the logits, as its importance_evaluation.py main calls them
    ie.targets = y  # its aum() reads the module-level ``targets``
    target_probs = torch.softmax(rearranged, dim=2).gather(2, y[None, :, None].expand(E, -1, 1)).squeeze(2)
    T = E  # its TDDS windows: T=90, J=10 of 200 epochs (also 70/10, 20/10, ...); here the whole run, J=10
    dual_scores = {
        "forgetting": ie.forgetting(rearranged, y)[0].numpy().astype(float),
        "el2n": np.asarray(ie.el2n(rearranged[el2n_epoch], y)[0], dtype=float),
        "aum": ie.aum(rearranged.clone())[0].numpy().astype(float),
        "entropy": ie.entropy(rearranged)[0].numpy().astype(float),
        "tdds": np.asarray(ie.tdds(T, 10, rearranged)[0], dtype=float),
        "tdds_on_probabilities": np.asarray(ie.tdds(T, 10, torch.softmax(rearranged, dim=2))[0], dtype=float),
        "dual": ie.dual(target_probs[: min(30, E)])[0].numpy().astype(float),
        "dynunc": ie.dynunc(target_probs)[0].numpy().astype(float),
    }
    # which end DUAL treats as hard: masks are ascending sorts and train_subset keeps mask[-k:] (the highest)
    correlations = {name: {"spearman_dual_vs_ours": rho(dual_scores[name], ours[name]),
                           "spearman_ours_seed0_vs_seed1": rho(ours[name], ours_seed1[name])}
                    for name in ("forgetting", "el2n", "aum", "entropy")}
    extra = {name: {f"spearman_vs_ours_{o}": rho(dual_scores[name], ours[o]) for o in ours}
             for name in ("tdds", "tdds_on_probabilities", "dual", "dynunc")}

    selections: dict[str, Any] = {}
    for name in ("forgetting", "el2n", "aum", "entropy"):
        ours_diff = ours[name].difficulty()
        dual_diff = dual_scores[name] if ours[name].harder == "high" else -dual_scores[name]
        per_rate = {}
        for rate in RATES:
            k = D.keep_count(n, rate)
            ours_hard = D.select(ours[name], rate, "hard", seed=0)
            # DUAL's "hard" keep: the top of its ascending mask (data_subset's default branch: mask[-k:])
            dual_hard = np.argsort(dual_diff, kind="stable")[-k:]
            beta = D.default_beta(rate)
            cut = round(beta * n)
            order = np.argsort(-ours_diff, kind="stable")  # hardest first: cut the first ``cut`` (CCS's mis-ratio)
            pool = np.sort(order[cut:])
            torch.manual_seed(0)
            dual_ccs = pool[np.asarray(ds.stratified_sampling(torch.tensor(ours_diff[pool]), k), dtype=np.int64)]
            vals = ours_diff[pool]
            strata = D.stratify(vals)
            ours_budget = D.ccs_budgets(np.bincount(strata, minlength=50), k)
            # DUAL's bins (its code: [min, max * 1.0001) in 50 equal steps) and what it drew from each
            lo, hi = vals.min(), vals.max() * 1.0001
            edges = lo + (hi - lo) / 50 * np.arange(51)
            dual_bin = np.clip(np.searchsorted(edges, vals, side="right") - 1, 0, 49)
            in_range = vals < hi
            sizes = np.bincount(dual_bin[in_range], minlength=50)
            drawn = np.isin(pool, dual_ccs)
            dual_budget = np.bincount(dual_bin[drawn & in_range], minlength=50)
            ours_ccs = D.select(ours[name], rate, "ccs", seed=0)
            ours_ccs_1 = D.select(ours[name], rate, "ccs", seed=1)
            per_rate[str(rate)] = {
                "hard_overlap": overlap(ours_hard, dual_hard),
                "ccs_overlap": overlap(ours_ccs, dual_ccs), "ccs_overlap_ours_seed0_vs_seed1": overlap(ours_ccs,
                                                                                                        ours_ccs_1),
                "ccs_kept": [int(len(ours_ccs)), int(len(dual_ccs))], "ccs_beta": beta,
                "strata_sizes_equal": bool(np.array_equal(sizes, np.bincount(strata, minlength=50))),
                "budgets_equal": bool(np.array_equal(ours_budget, dual_budget)),
                "budgets_max_abs_diff": int(np.abs(ours_budget - dual_budget).max()),
                "ours_budgets": ours_budget.tolist(), "dual_budgets": dual_budget.tolist(),
            }
        selections[name] = per_rate

    doc = {"benchmark": "data_dual", "dataset": "digits", "model": "lenet5", "epochs": E, "seed": 0,
           "dual_repo": "behaapyy/dual-pruning", "dual_commit": _commit(args.dual), "el2n_epoch_index": el2n_epoch,
           "same_run_check": same_run, "correlations": correlations, "dual_only_scores": extra,
           "selections": selections, "notes": NOTES, "seconds": time.perf_counter() - start,
           "machine": machine_info()}
    D.write_json_atomic(args.out, doc)
    print(f"wrote {args.out}", file=sys.stderr)
    for name, c in correlations.items():
        print(f"{name:>10} spearman DUAL vs ours {c['spearman_dual_vs_ours']:.3f}  (ours seed0 vs seed1 "
              f"{c['spearman_ours_seed0_vs_seed1']:.3f})")


NOTES = [
    "DUAL's aum() re-initialises its accumulator inside the epoch loop, so its AUM is the last epoch's probability "
    "margin, not an area; ours is the mean logit margin over all presentations (Pleiss et al. 2020).",
    "DUAL's forgetting gives never-learned examples 0 events (lowest = easiest); ours counts them as most forgotten.",
    "DUAL's el2n is one run's training-mode logits during epoch 10 % of E; ours is eval mode at that checkpoint "
    "(averaged over 10 seeds in the benchmark; 1 seed here for a like-for-like rank comparison).",
    "DUAL's entropy is of the last epoch's training logits; ours is of the trained model in eval mode.",
    "DUAL's tdds() is called with logits in its main (log of negative values -> NaN -> 0) and its window loop never "
    "uses k; it is run here exactly as its main calls it (\"tdds\"), and also on softmax probabilities as the TDDS paper "
    "defines it (\"tdds_on_probabilities\").",
]


def _commit(root: Path) -> str | None:
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (root / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


if __name__ == "__main__":
    main()
