"""Our GraNet / RigL / SET side by side with the authors' PyTorch reference → ``results/dst_reference.json``.

The reference is VITA-Group/GraNet (Liu et al. 2021, NeurIPS), ``CIFAR/sparselearning/core.py`` ``Masking``: its
``--method GraNet`` is gradual global magnitude pruning + zero-cost neuroregeneration, its ``--method DST`` is the
drop-and-grow of "RigL (ITOP version)" in its README.  It is imported from a local clone (never copied here)::

    # fetch the mirror of github.com/VITA-Group/GraNet, then
    git clone <mirror> /tmp/granet_ref
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dst_reference.py --ref /tmp/granet_ref   # ~1 min, 1 thread
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dst_reference.py --ref /tmp/granet_ref --quick  # ~10 s, no file

Reference modes used (all ``death_mode='magnitude'``, the only death ``truncate_weights`` calls):

* GraNet → ``args.method='GraNet'``, ``growth='gradient'``, ``CosineDecay(0.5, T)`` (its ``eta_min=0.005``).
* RigL   → ``args.method='DST'``, ``growth='gradient'``, ``CosineDecay(0.3, T_end, eta_min=0)``: RigL's drop fraction
  f0/2·(1+cos(πt/T_end)); the loop stops calling updates after T_end (``DST`` itself never stops).
* SET    → ``args.method='DST'``, ``CosineDecay(0.3, ·, eta_min=0.3)`` (constant 0.3) and ``random_growth``.
  ``truncate_weights`` always calls ``gradient_growth`` whatever ``--growth`` says, so the benchmark rebinds the
  instance's ``gradient_growth`` to its own ``random_growth`` — the only way to reach the reference's SET mode.

Wrapping, all outside the reference's code: ``torch.Tensor.cuda`` is the identity while the benchmark runs (the
reference hard-codes ``.cuda()``); ``args`` comes from the reference's own ``add_sparse_args`` parser; its prints
are captured.  ``Masking.pruning`` / ``truncate_weights`` are wrapped (call through unchanged) to read the counts.

Same inputs: the zoo LeNet-300-100 built under ``torch.manual_seed(seed)`` and copied, so both start from the same
weights; our schedule draws the initial ERK mask and it is written into the reference's ``masks`` (then its
``apply_mask``), so both start from the same mask (the reference's own ERK densities are recorded beside ours);
one ``load_dataset("digits").loaders(64, seed)`` loader feeds the *same batch* to both models at every step (lockstep);
the zoo LeNet recipe for both (SGD lr 0.05, momentum 0.9, weight decay 5e-4, per-step cosine learning rate).

Two comparisons per update step:

* ``trajectory``: each implementation trains on its own; number of connections per layer, gradual-pruning count,
  drop count (death) and regrowth count (connections that are new) of both, then the final test accuracy.
  Trajectories diverge (tie-breaking, rounding), so per-layer counts of global pruning can drift apart.
* ``replay``: just before our update, the state it sees (weights, masks, the step's dense gradient, the death rate)
  is copied into a second reference ``Masking`` that performs the same update (``pruning`` + ``truncate_weights``);
  the masks that come out are compared entry by entry with ours.  This isolates the update rule from training noise.
  Not for SET, whose growth is random in both.

Differences the rules themselves produce (all visible in the JSON):

* per-layer drop count: the reference's ``ceil(r·n)`` vs our RigL/SET ``int(f·n)`` (google-research/rigl): one more
  weight exchanged per layer per update in the reference (GraNet: both ceil);
* strict ``>`` thresholds in the reference: gradual pruning keeps ``int(N(1−s)) − 1`` weights (ours
  N − round(sN)), and death drops *every* weight tied with the k-th smallest (exact ties do occur: weights from
  constant input pixels into one unit get identical updates), where ours drops exactly k;
* the reference's ``gradient_growth`` ranks all entries with active ones scored 0, so when fewer than k inactive
  entries have a nonzero gradient (a dense layer, dead units) it regrows fewer than it dropped
  (``lost_in_regrowth``); ours always regrows k;
* the reference's GraNet prunes at iterations ``ini … final−1`` only, so it never reaches ``final_density``
  (short by (s_f − s_i)/n³); ours prunes at ``end_step`` too.  It also regenerates at the last training step (ours
  stops before it: ``update_steps_only_ref``);
* the reference's ``random_growth`` draws Bernoulli(k/n) per entry, so its SET does not keep the connection count.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.core.masks import dense_grad, get_mask  # noqa: E402
from secateurs.io import atomic_write_text  # noqa: E402
from secateurs.schedules import GraNet, RigL, SET  # noqa: E402
from secateurs.zoo import build_model, evaluate, load_dataset  # noqa: E402

OUT = Path(__file__).parent / "results" / "dst_reference.json"
RECIPE = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64}  # zoo lenet300 recipe
GRANET_END_FRACTION = 110 / 160  # the reference README's CIFAR runs: pruning ends at epoch 110 of 160
DST_END_FRACTION = 0.75  # RigL's T_end


# ---------------------------------------------------------------------------------------------- the reference
@contextlib.contextmanager
def cpu_cuda() -> Iterator[None]:
    """``Tensor.cuda()`` returns the tensor itself: the reference calls ``.cuda()`` unconditionally."""
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = saved  # type: ignore[method-assign]


def import_reference(ref: Path):
    sys.path.insert(0, str(ref / "CIFAR"))
    import sparselearning.core as core  # noqa: PLC0415
    return core


def reference_args(core, *, method: str, init_density: float, final_density: float, frequency: int,
                   final_prune_epoch: int) -> argparse.Namespace:
    """The reference's ``args`` through its own ``add_sparse_args`` parser (+ ``--multiplier`` from main.py)."""
    parser = argparse.ArgumentParser()
    core.add_sparse_args(parser)
    parser.add_argument("--multiplier", type=int, default=1)
    return parser.parse_args([
        "--sparse", "--method", method, "--sparse-init", "ERK", "--growth", "gradient", "--prune", "magnitude",
        "--init-density", str(init_density), "--final-density", str(final_density),
        "--update-frequency", str(frequency), "--init-prune-epoch", "0", "--final-prune-epoch", str(final_prune_epoch),
    ])


def make_masking(core, net: nn.Module, optimizer: torch.optim.Optimizer, args, loader, *, rate: float,
                 t_max: int, eta_min: float, random_growth: bool) -> tuple[Any, dict[str, float]]:
    """A reference ``Masking`` on ``net`` as main.py builds it; returns it and the ERK densities it printed."""
    decay = core.CosineDecay(rate, t_max, eta_min=eta_min)
    mask = core.Masking(optimizer, prune_rate=rate, death_mode="magnitude", prune_rate_decay=decay,
                        growth_mode="gradient", redistribution_mode="none", args=args, train_loader=loader)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mask.add_module(net, sparse_init="ERK")
    erk = {m.group(1): float(m.group(2)) for m in re.finditer(r"layer: (\S+), shape: .*?, density: ([0-9.eE+-]+)",
                                                               buf.getvalue())}
    if random_growth:  # SET: truncate_weights hard-codes gradient_growth; point it at the reference's random one
        mask.gradient_growth = mask.random_growth
    return mask, erk


def ref_counts(mask) -> dict[str, int]:
    return {name: int((m != 0).sum()) for name, m in mask.masks.items()}


def instrument(mask, log: dict[str, Any]) -> None:
    """Wrap ``pruning`` and ``truncate_weights`` on the instance (behaviour unchanged) to record their counts."""
    pruning, truncate = mask.pruning, mask.truncate_weights

    def pruning_(step):
        before = sum(ref_counts(mask).values())
        pruning(step)
        log["pruned"] = before - sum(ref_counts(mask).values())

    def truncate_(step=None):
        before = {n: (m != 0).clone() for n, m in mask.masks.items()}
        truncate(step)
        after = {n: (m != 0) for n, m in mask.masks.items()}
        # zero-cost neuroregeneration regrows what it drops; gradient_growth's top-k runs over every entry with
        # active ones scored 0, so when fewer inactive entries than that have a nonzero gradient it regrows fewer
        log["lost_in_regrowth"] = int(sum(int(b.sum()) - int(after[n].sum()) for n, b in before.items()))
        sparse = [n for n, b in before.items() if 0 < int(b.sum()) < b.numel()]  # layers ours would update
        log["dropped_all_layers"] = int(sum(mask.pruning_rate.values()))
        log["dropped"] = int(sum(mask.pruning_rate[n] for n in sparse))
        log["grown"] = int(sum(int((after[n] & ~before[n]).sum()) for n in before))
        log["death_rate"] = float(mask.prune_rate)

    mask.pruning, mask.truncate_weights = pruning_, truncate_


# ---------------------------------------------------------------------------------------------- one run
def ours_masks(pruner) -> dict[str, torch.Tensor]:
    return {t.key: get_mask(t).clone() for t in pruner.targets}


def build_ours(method: str, net: nn.Module, cfg: dict[str, Any], seed: int):
    s, f, total = cfg["sparsity"], cfg["frequency"], cfg["total_steps"]
    if method == "granet":
        return GraNet(net, s, end_step=cfg["end_step"], total_steps=total, initial_sparsity=cfg["initial_sparsity"],
                      frequency=f, death_rate=0.5, death_rate_min=0.005, allocation="global",
                      init_allocation="erk", seed=seed)
    cls = RigL if method == "rigl" else SET
    return cls(net, s, cfg["end_step"], frequency=f, drop_fraction=0.3,
               anneal="cosine" if method == "rigl" else "constant", allocation="erk", seed=seed)


def replay(core, pruner, method: str, step: int, cfg: dict[str, Any], shadow: dict[str, Any],
           before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
           after: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The reference's update from the exact state our update saw; its masks vs ours, entry by entry."""
    net, mask = shadow["net"], shadow["mask"]
    params = dict(net.named_parameters())
    with torch.no_grad():
        for key in before:
            params[key].copy_(weights[key])
            params[key].grad = grads[key].clone()
            mask.masks[key] = before[key].float()
    mask.steps = step
    mask.prune_rate = pruner.death_rate_at(step) if method == "granet" else pruner.drop_fraction_at(step)
    with contextlib.redirect_stdout(io.StringIO()):
        mask.apply_mask()
        if method == "granet":
            mask.pruning(step)
        before_truncate = sum(ref_counts(mask).values())
        mask.truncate_weights(step)
    ref_after = {k: mask.masks[k] != 0 for k in after}
    diff = {k: int((ref_after[k] ^ after[k]).sum()) for k in after}
    # our per-layer drop count: n_drop of the connections left after gradual pruning (= ours_after count)
    active = {k: int(v.sum()) for k, v in after.items()}
    drop_ours = {k: pruner.n_drop(n, step) if 0 < n < after[k].numel() else 0 for k, n in active.items()}

    def same(values: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.equal(values[a].abs().sort().values, values[b].abs().sort().values)

    # masks that differ only by which of equally-scored entries were picked keep the same multisets of scores:
    # |θ| of the old connections kept, |∂L/∂θ| of the new ones
    ties_only = {k: diff[k] == 0 or (same(weights[k], after[k] & before[k], ref_after[k] & before[k])
                                      and same(grads[k], after[k] & ~before[k], ref_after[k] & ~before[k]))
                 for k in after}
    return {"step": step, "mask_entries_differing": diff, "differences_are_ties_only": ties_only,
            "nnz_ours": {k: int(v.sum()) for k, v in after.items()}, "nnz_ref": ref_counts(mask),
            "dropped_ours": drop_ours, "dropped_ref": {k: int(mask.pruning_rate[k]) for k in after},
            "ref_lost_in_regrowth": before_truncate - sum(ref_counts(mask).values()),
            # connections whose weight is exactly 0 (grown and never moved, e.g. into a dead unit): the reference's
            # strict '>' thresholds prune all of them even beyond the scheduled count when the threshold is 0
            "active_zero_weights": {k: int((before[k] & (weights[k] == 0)).sum()) for k in after}}


def run_one(core, method: str, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    data = load_dataset("digits")
    loader, test_loader = data.loaders(RECIPE["batch_size"], seed)
    torch.manual_seed(seed)
    net = build_model("lenet300")
    ref_net = copy.deepcopy(net)  # same initial weights
    pruner = build_ours(method, net, cfg, seed)
    init_masks = ours_masks(pruner)

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"],
                               weight_decay=RECIPE["weight_decay"])

    opt = sgd(net)
    pruner.attach_optimizer(opt)
    ref_opt = sgd(ref_net)
    total = cfg["total_steps"]
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total) for o in (opt, ref_opt)]

    ref_method = "GraNet" if method == "granet" else "DST"
    init_density = 1 - (cfg["initial_sparsity"] if method == "granet" else cfg["sparsity"])
    args = reference_args(core, method=ref_method, init_density=init_density, final_density=1 - cfg["sparsity"],
                          frequency=cfg["frequency"], final_prune_epoch=cfg.get("end_epoch", 0))
    rate, t_max, eta_min = {"granet": (0.5, total, 0.005), "rigl": (0.3, cfg["end_step"], 0.0),
                            "set": (0.3, cfg["end_step"], 0.3)}[method]
    dense_init = copy.deepcopy(ref_net.state_dict())
    mask, ref_erk = make_masking(core, ref_net, ref_opt, args, loader, rate=rate, t_max=t_max, eta_min=eta_min,
                                 random_growth=method == "set")
    ref_net.load_state_dict(dense_init)  # add_module applied the reference's own ERK mask to the weights: undo it
    with torch.no_grad():  # same initial mask: ours, written into the reference
        for key in mask.masks:
            mask.masks[key] = init_masks[key].float()
    mask.apply_mask()
    log: dict[str, Any] = {}
    instrument(mask, log)

    shadow = None
    if method != "set":
        shadow_net = copy.deepcopy(ref_net)
        shadow_mask, _ = make_masking(core, shadow_net, sgd(shadow_net), args, loader, rate=rate, t_max=t_max,
                                      eta_min=eta_min, random_growth=False)
        shadow = {"net": shadow_net, "mask": shadow_mask}

    updates: dict[int, dict[str, Any]] = {}
    replays: list[dict[str, Any]] = []
    loss_fn = nn.CrossEntropyLoss()
    dst_end = cfg["end_step"] if method != "granet" else None
    start = time.perf_counter()
    step = 0
    net.train()
    ref_net.train()
    for _epoch in range(cfg["epochs"]):
        for x, y in loader:  # the same batch for both
            step += 1
            # ours
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
            scheds[0].step()
            snap = None
            if shadow is not None and pruner.is_update_step(step):
                snap = (ours_masks(pruner), {t.key: t.leaf.detach().clone() for t in pruner.targets},
                        {t.key: dense_grad(t).clone() for t in pruner.targets})
            rec = pruner.step()
            if rec is not None:
                u = updates.setdefault(step, {"step": step})
                u["ours"] = {"nnz": pruner.active_counts(), "pruned": int(rec.get("pruned", 0)),
                             "dropped": int(rec["dropped"]), "grown": int(rec["grown"]),
                             "rate": float(rec.get("death_rate", rec.get("drop_fraction", 0.0))),
                             "target_sparsity": float(rec.get("target_sparsity", pruner.sparsity_at(step)))}
                if snap is not None:
                    replays.append(replay(core, pruner, method, step, cfg, shadow, *snap, ours_masks(pruner)))
            # the reference (main.py's train(): backward, then mask.step() instead of optimizer.step())
            ref_opt.zero_grad()
            loss_fn(ref_net(x), y).backward()
            if dst_end is not None and step > dst_end:
                mask.prune_every_k_steps = None  # DST never stops by itself; RigL/SET stop at T_end
            log.clear()
            with contextlib.redirect_stdout(io.StringIO()):
                mask.step()
            scheds[1].step()
            if "dropped" in log:
                u = updates.setdefault(step, {"step": step})
                u["ref"] = {"nnz": ref_counts(mask), "pruned": int(log.get("pruned", 0)), "dropped": log["dropped"],
                            "dropped_all_layers": log["dropped_all_layers"], "grown": log["grown"],
                            "lost_in_regrowth": log["lost_in_regrowth"],
                            "rate": log["death_rate"]}
    seconds = time.perf_counter() - start
    total_w = sum(m.numel() for m in init_masks.values())
    ours_nnz = sum(pruner.active_counts().values())
    ref_nnz = sum(ref_counts(mask).values())
    return {
        "seed": seed,
        "initial_density_ours": {k: float(m.float().mean()) for k, m in init_masks.items()},
        "reference_erk_density": ref_erk,
        "accuracy_ours": evaluate(net, test_loader)["accuracy"],
        "accuracy_ref": evaluate(ref_net, test_loader)["accuracy"],
        "final_nnz_ours": pruner.active_counts(), "final_nnz_ref": ref_counts(mask),
        "final_sparsity_ours": 1 - ours_nnz / total_w, "final_sparsity_ref": 1 - ref_nnz / total_w,
        "updates": [updates[k] for k in sorted(updates)],
        "replay": replays,
        "seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------- summaries
def _stat(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    both = [u for r in runs for u in r["updates"] if "ours" in u and "ref" in u]
    only_ours = sorted({u["step"] for r in runs for u in r["updates"] if "ref" not in u})
    only_ref = sorted({u["step"] for r in runs for u in r["updates"] if "ours" not in u})

    def tot(u, side):
        return sum(u[side]["nnz"].values())

    out: dict[str, Any] = {
        "accuracy_ours": _stat([r["accuracy_ours"] for r in runs]),
        "accuracy_ref": _stat([r["accuracy_ref"] for r in runs]),
        "accuracy_diff_ours_minus_ref": _stat([r["accuracy_ours"] - r["accuracy_ref"] for r in runs]),
        "final_sparsity_ours": _stat([r["final_sparsity_ours"] for r in runs]),
        "final_sparsity_ref": _stat([r["final_sparsity_ref"] for r in runs]),
        "update_steps_compared": len(both),
        "update_steps_only_ours": only_ours, "update_steps_only_ref": only_ref,
        "trajectory": {
            "max_abs_total_nnz_diff": max((abs(tot(u, "ours") - tot(u, "ref")) for u in both), default=0),
            "max_abs_layer_nnz_diff": max((abs(u["ours"]["nnz"][k] - u["ref"]["nnz"][k]) for u in both
                                           for k in u["ours"]["nnz"]), default=0),
            "max_rel_layer_nnz_diff": max((abs(u["ours"]["nnz"][k] - u["ref"]["nnz"][k]) / max(1, u["ref"]["nnz"][k])
                                           for u in both for k in u["ours"]["nnz"]), default=0.0),
            "max_abs_rate_diff": max((abs(u["ours"]["rate"] - u["ref"]["rate"]) for u in both), default=0.0),
            "sum_dropped_ours": sum(u["ours"]["dropped"] for u in both),
            "sum_dropped_ref": sum(u["ref"]["dropped"] for u in both),
            "sum_grown_ours": sum(u["ours"]["grown"] for u in both),
            "sum_grown_ref": sum(u["ref"]["grown"] for u in both),
            "sum_pruned_ours": sum(u["ours"]["pruned"] for u in both),
            "sum_pruned_ref": sum(u["ref"]["pruned"] for u in both),
            "ref_lost_in_regrowth_total": sum(u["ref"]["lost_in_regrowth"] for r in runs for u in r["updates"]
                                              if "ref" in u),
            "max_abs_dropped_diff_per_update": max((abs(u["ours"]["dropped"] - u["ref"]["dropped"]) for u in both),
                                                   default=0),
        },
    }
    reps = [p for r in runs for p in r["replay"]]
    if reps:
        diffs = [sum(p["mask_entries_differing"].values()) for p in reps]
        nnz_d = [abs(sum(p["nnz_ours"].values()) - sum(p["nnz_ref"].values())) for p in reps]
        layer_d = [abs(p["nnz_ours"][k] - p["nnz_ref"][k]) for p in reps for k in p["nnz_ours"]]
        out["replay"] = {
            "updates": len(reps),
            "identical_masks": sum(d == 0 for d in diffs),
            "max_mask_entries_differing": max(diffs), "mean_mask_entries_differing": statistics.fmean(diffs),
            "max_abs_total_nnz_diff": max(nnz_d), "max_abs_layer_nnz_diff": max(layer_d),
            "differing_updates_ties_only": sum(d > 0 and all(p["differences_are_ties_only"].values())
                                               for p, d in zip(reps, diffs)),
            "differing_updates_same_counts": sum(d > 0 and p["nnz_ours"] == p["nnz_ref"]
                                                 and p["dropped_ours"] == p["dropped_ref"]
                                                 for p, d in zip(reps, diffs)),
            "ref_lost_in_regrowth_total": sum(p["ref_lost_in_regrowth"] for p in reps),
            "max_abs_layer_drop_diff": max(abs(p["dropped_ours"][k] - p["dropped_ref"][k]) for p in reps
                                           for k in p["dropped_ours"]),
            "differing_steps": sorted({p["step"] for p, d in zip(reps, diffs) if d}),
        }
    return out


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def dump(obj: Any, indent: int = 0) -> str:
    """JSON with one line per per-update record (records nest at most two levels): readable, and small."""
    if _depth(obj) <= 2:
        return json.dumps(obj, separators=(", ", ": "))
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(str(k))}: {dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    return "[\n" + ",\n".join(f"{inner}{dump(v, indent + 1)}" for v in obj) + f"\n{pad}]"


# ---------------------------------------------------------------------------------------------- main
def configs(epochs: int, steps_per_epoch: int, frequency: int, sparsities: list[float],
            methods: list[str]) -> dict[str, dict[str, Any]]:
    total = epochs * steps_per_epoch
    end_epoch = max(1, round(GRANET_END_FRACTION * epochs))
    granet_end = end_epoch * steps_per_epoch  # the reference counts the end of pruning in whole epochs
    dst_end = frequency * max(1, int(DST_END_FRACTION * total) // frequency)
    if granet_end % frequency:
        raise SystemExit(f"--frequency {frequency} must divide the GraNet end step {granet_end} "
                         f"(the reference's pruning iterations are int(step / frequency))")
    out = {}
    for m in methods:
        for s in sparsities:
            c = {"method": m, "sparsity": s, "epochs": epochs, "total_steps": total, "frequency": frequency}
            if m == "granet":
                c.update(initial_sparsity=0.5, end_step=granet_end, end_epoch=end_epoch, death_rate=0.5,
                         death_rate_min=0.005, allocation="global", init_allocation="erk")
            else:
                c.update(initial_sparsity=s, end_step=dst_end, drop_fraction=0.3,
                         anneal="cosine" if m == "rigl" else "constant", allocation="erk")
            out[f"{m}_{s}"] = c
    return out


MODE_MAP = {
    "granet": "Masking(args.method='GraNet', growth 'gradient', death 'magnitude'), CosineDecay(0.5, T, eta_min=0.005)",
    "rigl": "Masking(args.method='DST', growth 'gradient', death 'magnitude'), CosineDecay(0.3, T_end, eta_min=0); "
            "updates stopped after T_end by the benchmark loop",
    "set": "Masking(args.method='DST', death 'magnitude'), gradient_growth rebound to the reference's random_growth, "
           "CosineDecay(0.3, T_end, eta_min=0.3) = constant 0.3; updates stopped after T_end",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", type=Path, default=Path("/tmp/granet_ref"), help="clone of VITA-Group/GraNet")
    ap.add_argument("--quick", action="store_true", help="1 seed, 5 epochs, 90%% only; writes nothing")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--frequency", type=int, default=11, help="steps between mask updates (22 steps = 1 epoch)")
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.98])
    ap.add_argument("--methods", nargs="+", default=["granet", "rigl", "set"], choices=["granet", "rigl", "set"])
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    if not (a.ref / "CIFAR" / "sparselearning" / "core.py").is_file():
        print(f"skipped: no GraNet reference at {a.ref} (expected {a.ref}/CIFAR/sparselearning/core.py); clone "
              f"github.com/VITA-Group/GraNet there or pass --ref", file=sys.stderr)
        return
    if a.quick:
        a.seeds, a.epochs, a.sparsities = a.seeds[:1], 5, [0.9]
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\).*")  # CosineDecay steps before any SGD
    core = import_reference(a.ref)
    try:
        commit = subprocess.run(["git", "-C", str(a.ref), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    steps_per_epoch = len(load_dataset("digits").loaders(RECIPE["batch_size"], 0)[0])
    cfgs = configs(a.epochs, steps_per_epoch, a.frequency, a.sparsities, a.methods)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    with cpu_cuda():
        for name, cfg in cfgs.items():
            runs = []
            for seed in a.seeds:
                r = run_one(core, cfg["method"], cfg, seed)
                runs.append(r)
                print(f"{name:12s} seed {seed}: acc ours {r['accuracy_ours']:.4f} ref {r['accuracy_ref']:.4f}  "
                      f"sparsity ours {r['final_sparsity_ours']:.5f} ref {r['final_sparsity_ref']:.5f}  "
                      f"({r['seconds']:.1f}s)", flush=True)
            results[name] = {"config": cfg, "reference_mode": MODE_MAP[cfg["method"]], "summary": summarize(runs),
                             "runs": runs}
            s = results[name]["summary"]
            rep = s.get("replay")
            print(f"{name:12s} acc ours {s['accuracy_ours']['mean']:.4f}±{s['accuracy_ours']['std']:.4f} "
                  f"ref {s['accuracy_ref']['mean']:.4f}±{s['accuracy_ref']['std']:.4f}; trajectory max |Δnnz| total "
                  f"{s['trajectory']['max_abs_total_nnz_diff']} layer {s['trajectory']['max_abs_layer_nnz_diff']}"
                  + (f"; replay identical {rep['identical_masks']}/{rep['updates']}, max entries differing "
                     f"{rep['max_mask_entries_differing']}" if rep else ""), flush=True)
    doc = {
        "benchmark": "dst_reference",
        "command": " ".join(["python", "benchmarks/dst_reference.py", *sys.argv[1:]]),
        "reference": {"repo": "VITA-Group/GraNet", "commit": commit, "file": "CIFAR/sparselearning/core.py (Masking)"},
        "setup": {"model": "lenet300", "dataset": "digits", "steps_per_epoch": steps_per_epoch, "seeds": a.seeds,
                  "optimizer": "SGD lr 0.05 momentum 0.9 weight_decay 5e-4, per-step cosine lr (both)",
                  "same_initial_weights": True, "same_initial_mask": True, "same_batches": "lockstep, one loader",
                  "threads": 1},
        "results": results,
        "seconds_total": time.perf_counter() - t0,
        "machine": machine_info(),
    }
    if a.quick:
        print("--quick: nothing written")
        return
    atomic_write_text(a.out, dump(doc) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
