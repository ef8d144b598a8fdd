"""Iterative magnitude pruning (IMP) with lottery-ticket rewinding, and the controls the papers use.

IMP (Frankle & Carbin 2019, "The Lottery Ticket Hypothesis", §1 "Identifying winning tickets"): initialise
f(x; θ₀), train to θ_j, prune p% of the surviving weights by magnitude into a mask m, reset the survivors to get
f(x; m ⊙ θ₀), and repeat.  After ``r`` levels a layer pruned at rate ``p`` keeps ``(1 − p)^r`` of its weights;
we prune exactly ``ceil(p × remaining)`` per level, as open_lth does (``pruning/sparse_global.py``), so
``remaining_r = remaining_{r−1} − ceil(p · remaining_{r−1})``.

What "rewind" means, following facebookresearch/open_lth (``lottery/runner.py``, ``training/train.py``):

- ``rewind="weights"``, ``rewind_step=0``: every parameter and buffer (biases, BatchNorm statistics included)
  goes back to its value at initialisation θ₀ (Frankle & Carbin 2019).
- ``rewind="weights"``, ``rewind_step=k > 0``: late rewinding, f(x; m ⊙ θ_k) (Frankle et al. 2019,
  "Stabilizing the Lottery Ticket Hypothesis"; Frankle et al. 2020, "Linear Mode Connectivity and the Lottery
  Ticket Hypothesis", IMP with rewinding to iteration k): the whole model state after optimizer step ``k`` of
  the first (dense) run; every later level trains from step ``k`` to the end with the learning-rate schedule
  resumed at ``k`` (``fit(start_step=k)``).
- ``rewind="lr"``: learning-rate rewinding (Renda, Frankle & Carbin 2020, "Comparing Rewinding and Fine-tuning
  in Neural Network Pruning"): the surviving weights keep their trained values θ_T and retrain with the original
  learning-rate schedule from step ``k`` (default 0: the whole schedule again).

In every case the optimizer starts fresh (zero momentum / Adam moments) at the beginning of a level, as in
open_lth, where each level is a new ``train()`` call that builds a new optimizer.  The state to rewind to is
captured automatically: at construction for ``k = 0``, by :meth:`Schedule.step` after optimizer step ``k`` of
the first run otherwise (call ``pruner.step()`` after every optimizer step, as for every schedule).

Controls (Frankle & Carbin 2019: "randomly reinitialized" and "randomly sampled sparse" networks; open_lth
``lottery/branch/randomly_reinitialize.py`` and ``randomly_prune.py`` with its default ``strategy='layerwise'``):

- :meth:`LotteryTicket.reinit_control` — the ticket's mask on a freshly initialised network (new seed),
  trained from the same start step.
- :meth:`LotteryTicket.random_mask_control` — a random mask with the ticket's per-layer number of weights on the
  weights the ticket starts its level from.

Pruning goes through the engine: :func:`secateurs.prune` with ``method="magnitude"`` (``allocation="global"``:
one threshold over every target, as open_lth and the paper's VGG/ResNet runs; ``"uniform"``: each layer prunes
its own rate of its own remaining weights, the paper's layer-wise rule for LeNet and Conv-2/4/6) and
``method="random"`` for the random-mask control.  A pruned model is pruned further; old masks are kept.
"""
from __future__ import annotations

import contextlib
import fnmatch
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.masks import get_mask, masked_targets, set_mask
from ..core.progress import progress_bar
from ..core.prune import prune
from ..core.targets import Target, resolve_targets
from ..errors import InvalidArgumentError
from .base import Schedule, check_fraction, check_step

REWIND_MODES = ("weights", "lr")
ALLOCATIONS = ("uniform", "global")
# seed offsets of the controls: independent of the ticket's seed stream and of each other, one per level
REINIT_SEED_OFFSET = 10_000
RANDOM_MASK_SEED_OFFSET = 20_000


def check_prune_rate(name: str, value: Any, allow_zero: bool = False) -> float:
    """``value`` as a float in (0, 1) (``[0, 1)`` when ``allow_zero``), else InvalidArgumentError."""
    rate = check_fraction(name, value)
    if rate == 0 and not allow_zero:
        raise InvalidArgumentError(f"{name} must be in (0, 1) (the fraction of the remaining weights pruned per "
                                   f"round, e.g. 0.2), got {value!r}")
    return rate


def prune_count(rate: float, remaining: int) -> int:
    """``ceil(rate × remaining)`` (open_lth ``sparse_global.py``), robust to float noise: 0.07 × 100 is
    7.000000000000001 in floating point, which a bare ceil would turn into 8."""
    return min(remaining, math.ceil(rate * remaining - 1e-9))


def rounds_for(sparsity: float, prune_rate: float = 0.2) -> int:
    """The number of IMP levels at ``prune_rate`` needed to reach at least ``sparsity`` ((1 − p)^r ≤ 1 − s)."""
    sparsity = check_fraction("sparsity", sparsity)
    prune_rate = check_prune_rate("prune_rate", prune_rate)
    return 0 if sparsity == 0 else math.ceil(math.log1p(-sparsity) / math.log1p(-prune_rate) - 1e-9)


def _exact(names: set[str]) -> Callable[[str, nn.Module], bool]:
    """A ``targets=`` selector matching exactly these module names (globs could match more)."""
    return lambda name, _module: name in names


def _mask_keys(model: nn.Module) -> set[str]:
    """state_dict keys of the mask buffers: structure, not state, so never snapshotted nor rewound."""
    ids = {id(get_mask(t)) for t in masked_targets(model)}
    return {name for name, buf in model.named_buffers() if id(buf) in ids}


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """An exact copy of every parameter and buffer of ``model`` except the masks (what rewinding restores)."""
    skip = _mask_keys(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in skip}


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`model_state`) into ``model`` in place, keeping its masks; pruned originals
    are zeroed again so optimizers and weight decay keep them at zero."""
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    missing = set(missing) - _mask_keys(model)
    if missing or unexpected:
        raise InvalidArgumentError(f"the saved state does not fit this model: missing {sorted(missing)[:5]}, "
                                   f"unexpected {sorted(unexpected)[:5]}; build it with the same architecture")
    for t in masked_targets(model):
        set_mask(t, get_mask(t))


def random_layer_masks(model: nn.Module, targets: list[Target], kept: list[int], seed: int) -> nn.Module:
    """A random mask keeping exactly ``kept[i]`` weights of ``targets[i]`` of ``model``, layer by layer: the
    random-pruning control at given layer-wise densities (open_lth ``randomly_prune``, ``layerwise``; Liu et al.
    2022, "The Unreasonable Effectiveness of Random Pruning").  Drawn by the engine's ``random`` criterion, one
    layer at a time at that layer's sparsity (seed ``seed * 1000 + i`` for layer ``i``); a layer with no weight
    kept gets an all-false mask, a layer with all of them is left as it is.  Shared by the lottery ticket's
    control and the recipes' ``random_mask`` control."""
    for i, (t, k) in enumerate(zip(targets, kept)):
        if k == 0:  # a layer global pruning removed entirely: nothing to choose
            set_mask(t, torch.zeros(t.shape, dtype=torch.bool, device=t.leaf.device))
        elif k < t.numel:
            prune(model, (t.numel - k) / t.numel, method="random", allocation="uniform",
                  targets=_exact({t.name}), seed=seed * 1_000 + i)
    return model


class LotteryTicket(Schedule):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020; Renda et al. 2020).

    Loop (what :func:`run_lottery` does)::

        pruner = LotteryTicket(model, prune_rate=0.2, rewind_step=k, total_steps=T)
        fit(model, loader, epochs, on_step=lambda s, opt: pruner.step())      # level 0: dense; captures step k
        for level in range(1, rounds + 1):
            pruner.prune_round()            # prune ceil(p × remaining) by magnitude, then rewind
            fit(model, loader, epochs, start_step=pruner.start_step, on_step=lambda s, opt: pruner.step())

    Args:
        prune_rate: fraction ``p`` of the *remaining* weights pruned per level, in (0, 1); default 0.2.
        rewind: ``"weights"`` (to θ₀ or θ_k) or ``"lr"`` (keep the weights, rewind the learning-rate schedule).
        rewind_step: ``k``, the optimizer step rewound to (0 = initialisation); later levels train from ``k``.
        allocation: ``"uniform"`` — layer-wise, each layer prunes its rate of its own remaining weights (the
            paper's rule for LeNet/Conv-x); ``"global"`` — one magnitude threshold over every target.
        output_rate: layer-wise only; the rate of the last target (the output layer).  The paper's LeNet rule is
            ``prune_rate=0.2, output_rate=0.1``; 0 leaves the output layer dense.
        layer_rates: layer-wise only; ``{module-name glob: rate}`` overriding ``prune_rate`` (rate 0: dense).
        targets, ignore: which weights are pruned (:func:`secateurs.core.targets.resolve_targets`).
        total_steps: the length ``T`` of one training run, to refuse a rewind step beyond it early.

    In layer-wise mode a layer always keeps at least one weight (a fully pruned layer makes the network
    constant); ``ceil(p × remaining)`` is capped at ``remaining − 1`` there.  Deviation from open_lth: level 0
    is one uninterrupted run with the state at step ``k`` copied on the way, where open_lth trains a separate
    "pretrain" run to step ``k`` and restarts the optimizer there; later levels match (fresh optimizer at ``k``).
    """

    def __init__(self, model: nn.Module, prune_rate: float = 0.2, *, rewind: str = "weights", rewind_step: int = 0,
                 allocation: str = "uniform", output_rate: float | None = None,
                 layer_rates: Mapping[str, float] | None = None, targets=None, ignore=None,
                 total_steps: int | None = None, seed: int = 0, optimizer: torch.optim.Optimizer | None = None):
        prune_rate = check_prune_rate("prune_rate", prune_rate)
        if rewind not in REWIND_MODES:
            raise InvalidArgumentError(f"rewind must be one of {REWIND_MODES} ('weights': rewind the surviving "
                                       f"weights to step k; 'lr': keep them, rewind the learning rate), got {rewind!r}")
        if allocation not in ALLOCATIONS:
            raise InvalidArgumentError(f"allocation must be 'uniform' (layer-wise, the paper's LeNet rule) or "
                                       f"'global' (one threshold over all layers), got {allocation!r}")
        rewind_step = check_step("rewind_step", rewind_step)
        if total_steps is not None:
            total_steps = check_step("total_steps", total_steps, 1)
            if rewind_step >= total_steps:
                raise InvalidArgumentError(
                    f"rewind_step {rewind_step} is beyond the training run of {total_steps} steps; rewind to a "
                    f"step in [0, {total_steps - 1}] (late rewinding uses an early step, e.g. 0.1-7% of training)")
        if allocation == "global" and (output_rate is not None or layer_rates):
            raise InvalidArgumentError("output_rate and layer_rates set per-layer rates, which only layer-wise "
                                       "pruning (allocation='uniform') has; with allocation='global' leave layers "
                                       "out with ignore= instead")
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)
        self.rates = self._layer_rates(prune_rate, output_rate, layer_rates)
        self.prune_rate, self.rewind, self.rewind_step = prune_rate, rewind, rewind_step
        self.allocation, self.total_steps, self.seed = allocation, total_steps, int(seed)
        self.round = 0
        self.ensure_masks()  # stable state_dict keys (…parametrizations.weight.original) from the first snapshot on
        self.rewind_state: dict[str, torch.Tensor] | None = model_state(model) if rewind_step == 0 else None
        self.round_start: dict[str, torch.Tensor] | None = None  # what the controls start a level from

    def _layer_rates(self, rate: float, output_rate: float | None,
                     layer_rates: Mapping[str, float] | None) -> list[float]:
        rates = [rate] * len(self.targets)
        if output_rate is not None:
            rates[-1] = check_prune_rate("output_rate", output_rate, allow_zero=True)
        for pattern, value in (layer_rates or {}).items():
            hit = [i for i, t in enumerate(self.targets) if fnmatch.fnmatchcase(t.name, pattern)]
            if not hit:
                raise InvalidArgumentError(f"layer_rates key {pattern!r} matches no target; targets are "
                                           f"{[t.name for t in self.targets][:8]}")
            for i in hit:
                rates[i] = check_prune_rate(f"layer_rates[{pattern!r}]", value, allow_zero=True)
        if not any(rates):
            raise InvalidArgumentError("every layer's prune rate is 0: nothing would ever be pruned")
        return rates

    # ------------------------------------------------------------------ the Schedule protocol
    @property
    def start_step(self) -> int:
        """The step every level after the first trains from (``fit(..., start_step=pruner.start_step)``)."""
        return self.rewind_step

    def sparsity_at(self, step: int) -> float:
        """Masks change only between levels, so within a level the sparsity is that of the current masks."""
        return self.sparsity()

    def is_update_step(self, step: int) -> bool:
        return self.round == 0 and self.rewind_state is None and self.rewind == "weights" \
            and step == self.rewind_step

    def update(self, step: int) -> dict[str, Any]:
        """Copy the whole model state after optimizer step ``k`` of the first run (the late-rewinding point)."""
        self.rewind_state = model_state(self.model)
        return {"event": "rewind point captured", "round": self.round}

    # ------------------------------------------------------------------ levels
    def remaining(self) -> list[int]:
        """Surviving weights per target (mask ones)."""
        return [int(torch.count_nonzero(get_mask(t))) for t in self.targets]

    def layer_density(self) -> dict[str, float]:
        """Fraction of weights kept in each target, by weight name (``fc1.weight``)."""
        return {t.key: r / t.numel for t, r in zip(self.targets, self.remaining())}

    def density(self) -> float:
        """Fraction of the target weights kept (masks)."""
        return sum(self.remaining()) / sum(t.numel for t in self.targets)

    def planned_remaining(self, rounds: int) -> list[int]:
        """Surviving weights per target after ``rounds`` more levels, from the current masks (the exact
        ``ceil`` recurrence; global pruning's split over layers depends on the weights, so only the total is
        meaningful there and it is returned as a one-element list)."""
        rem = self.remaining()
        if self.allocation == "global":
            total = sum(rem)
            for _ in range(rounds):
                total -= min(prune_count(self.prune_rate, total), total - 1)
            return [total]
        for _ in range(rounds):
            rem = [r - min(prune_count(p, r), r - 1) if r > 1 else r for r, p in zip(rem, self.rates)]
        return rem

    def prune_round(self) -> dict[str, Any]:
        """End a level: prune ``ceil(p × remaining)`` weights by magnitude (the engine), then rewind.

        Returns the level's record (also appended to :attr:`history`).  Call after the level's training.
        """
        if self.rewind == "weights" and self.rewind_state is None:
            raise InvalidArgumentError(
                f"the rewind point (step {self.rewind_step}) was never reached: the first run took "
                f"{self.step_count} steps (call pruner.step() after every optimizer step, and rewind to a step "
                f"inside the run)")
        before = self.remaining()
        trained = model_state(self.model) if self.rewind == "lr" else None
        names = [t.name for t in self.targets]
        if self.allocation == "global":
            total, kept = sum(t.numel for t in self.targets), sum(before)
            k = min(prune_count(self.prune_rate, kept), kept - 1)
            if k > 0:
                prune(self.model, (total - kept + k) / total, method="magnitude", allocation="global",
                      targets=_exact(set(names)), seed=self.seed)
        else:
            for t, rate, kept in zip(self.targets, self.rates, before):
                k = min(prune_count(rate, kept), kept - 1)
                if k > 0:  # one layer at a time: its own rate of its own remaining weights
                    prune(self.model, (t.numel - kept + k) / t.numel, method="magnitude", allocation="uniform",
                          targets=_exact({t.name}), seed=self.seed)
        pruned = sum(before) - sum(self.remaining())
        if pruned == 0:
            raise InvalidArgumentError("nothing left to prune: every layer is down to its last weight; "
                                       "use fewer rounds or a lower prune rate")
        if self.rewind == "weights":
            load_model_state(self.model, self.rewind_state)
            self.round_start = self.rewind_state
        else:  # the controls start from the trained weights the ticket kept (not the zeroed pruned ones)
            self.round_start = trained
        self.round += 1
        self.step_count = self.rewind_step
        record = {"round": self.round, "step": self.step_count, "event": f"pruned {pruned}, rewound ({self.rewind})",
                  "density": self.density(), "sparsity": self.sparsity()}
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ controls
    def _same_targets(self, other: nn.Module) -> list[Target]:
        names = [t.name for t in self.targets]
        found = {t.name: t for t in resolve_targets(other, _exact(set(names)))}
        if list(found) != names or any(found[t.name].shape != t.shape for t in self.targets):
            raise InvalidArgumentError("the control model must have the ticket's architecture (same layer names "
                                       "and weight shapes); build it with the same factory")
        return [found[n] for n in names]

    def reinit_control(self, fresh: nn.Module) -> nn.Module:
        """The ticket's masks on ``fresh``, a new instance of the architecture initialised from another seed
        (Frankle & Carbin 2019, "random reinitialization"); train it from :attr:`start_step`."""
        for t, theirs in zip(self.targets, self._same_targets(fresh)):
            if get_mask(theirs) is not None:
                raise InvalidArgumentError(f"the control model already has a mask on {theirs.key!r}; pass an "
                                           f"unpruned model")
            set_mask(theirs, get_mask(t).clone())
        return fresh

    def random_mask_control(self, other: nn.Module, seed: int) -> nn.Module:
        """``other`` (same architecture) with the weights the ticket starts its level from and a random mask
        keeping the ticket's number of weights in every layer (open_lth ``randomly_prune``, ``layerwise``).

        The mask is drawn by the engine's ``random`` criterion, one layer at a time at that layer's sparsity.
        """
        if self.round_start is None:
            raise InvalidArgumentError("no level has been pruned yet: call prune_round() first")
        theirs = self._same_targets(other)
        for t in theirs:
            if get_mask(t) is not None:
                raise InvalidArgumentError(f"the control model already has a mask on {t.key!r}; pass an "
                                           f"unpruned model")
            set_mask(t, torch.ones(t.shape, dtype=torch.bool, device=t.leaf.device), zero=False)
        load_model_state(other, self.round_start)
        return random_layer_masks(other, theirs, self.remaining(), seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "round": self.round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.round = int(state["round"])


# ====================================================================================== the experiment driver
@dataclass
class LotteryRound:
    """One IMP level: accuracy of the ticket and of its two controls at the level's density.

    Level 0 is the dense network; its controls are ``None`` (a dense network has no mask to re-use).
    """

    round: int
    density: float
    ticket_accuracy: float
    reinit_accuracy: float | None
    random_mask_accuracy: float | None
    layer_density: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LotteryResult:
    rounds: list[LotteryRound]
    settings: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [r.to_dict() for r in self.rounds], "settings": self.settings, "seconds": self.seconds}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def run_lottery(model: str | Callable[[], nn.Module] = "lenet300", dataset: Any = "digits", rounds: int = 10,
                prune_rate: float = 0.2, rewind_step: int = 0, rewind: str = "weights", epochs: int | None = None,
                seed: int = 0, allocation: str = "uniform", output_rate: float | None = None,
                layer_rates: Mapping[str, float] | None = None, targets=None, ignore=None, controls: bool = True,
                lr: float | None = None, optimizer: str | None = None, batch_size: int | None = None,
                num_threads: int | None = None, progress: bool = False) -> LotteryResult:
    """A lottery-ticket experiment: ``rounds`` levels of IMP, each with the ticket and both controls trained.

    ``model`` is a zoo name or a factory ``() -> nn.Module`` (initialised from the global RNG, seeded here);
    ``dataset`` a zoo name or a :class:`~secateurs.zoo.ClassificationData`.  Training uses the zoo trainer
    (:func:`secateurs.zoo.fit`) with the model's recipe (:func:`secateurs.zoo.recipe_for`; ``epochs``, ``lr``,
    ``optimizer``, ``batch_size`` override it); every run uses the same data order (``seed``), as open_lth's
    fixed data-order seed.  (With ``rewind_step`` of a whole epoch or more, :func:`~secateurs.zoo.fit` skips the
    epochs before it without drawing their shuffles, so the order after ``k`` differs from level 0's; levels and
    controls still share one order.)  The ticket's initialisation is drawn with ``seed``, the re-initialised
    control's with ``seed + 10000 + level``, the random mask with ``seed + 20000 + level``.  Returns one
    :class:`LotteryRound` per level (0 = dense) with test accuracies at the end of training.
    """
    from ..zoo import build_model, evaluate, fit, load_dataset, recipe_for

    rounds = check_step("rounds", rounds, 1)
    prune_rate = check_prune_rate("prune_rate", prune_rate)
    check_step("seed", seed)
    if isinstance(model, str):
        from ..registry import get

        get("model", model)  # unknown names fail here, with a did-you-mean
        name = model
    elif callable(model):
        name = getattr(model, "__name__", "custom")
    else:
        raise InvalidArgumentError(f"model must be a zoo model name or a factory returning an nn.Module, "
                                   f"got {type(model).__name__}")
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    data_name = dataset if isinstance(dataset, str) else getattr(data, "name", "custom")
    recipe = recipe_for(name, data_name, epochs)
    epochs = check_step("epochs", recipe["epochs"], 1)
    recipe.update({k: v for k, v in {"lr": lr, "optimizer": optimizer, "batch_size": batch_size,
                                     "num_threads": num_threads}.items() if v is not None})
    train_loader, test_loader = data.loaders(batch_size=recipe["batch_size"], seed=seed)
    total = epochs * len(train_loader)

    def build(init_seed: int) -> nn.Module:
        with _seeded(init_seed):
            net = build_model(model, num_classes=data.num_classes) if isinstance(model, str) else model()
        if not isinstance(net, nn.Module):
            raise InvalidArgumentError(f"the model factory returned {type(net).__name__}, not an nn.Module")
        return net

    def train(net: nn.Module, start: int, pruner: LotteryTicket | None = None) -> float:
        hook = None if pruner is None else (lambda _step, _opt: pruner.step())
        fit(net, train_loader, epochs, lr=recipe["lr"], optimizer=recipe["optimizer"],
            weight_decay=recipe["weight_decay"], momentum=recipe["momentum"], seed=seed,
            num_threads=recipe["num_threads"], on_step=hook, start_step=start)
        return evaluate(net, test_loader)["accuracy"]

    t0 = time.perf_counter()
    net = build(seed)
    pruner = LotteryTicket(net, prune_rate, rewind=rewind, rewind_step=rewind_step, allocation=allocation,
                           output_rate=output_rate, layer_rates=layer_rates, targets=targets, ignore=ignore,
                           total_steps=total,
                           seed=seed)
    runs_per_level = 3 if controls else 1
    out: list[LotteryRound] = []
    with progress_bar(progress, 1 + rounds * runs_per_level, f"lottery {name}", density=1.0) as advance:
        acc = train(net, 0, pruner)
        out.append(LotteryRound(0, pruner.density(), acc, None, None, pruner.layer_density()))
        advance(density=pruner.density())
        for level in range(1, rounds + 1):
            pruner.prune_round()
            acc = train(net, pruner.start_step, pruner)
            advance(density=pruner.density())
            reinit_acc = random_acc = None
            if controls:
                reinit_acc = train(pruner.reinit_control(build(seed + REINIT_SEED_OFFSET + level)), pruner.start_step)
                advance()
                random_acc = train(pruner.random_mask_control(build(seed), seed + RANDOM_MASK_SEED_OFFSET + level),
                                   pruner.start_step)
                advance()
            out.append(LotteryRound(level, pruner.density(), acc, reinit_acc, random_acc, pruner.layer_density()))
    settings = {"model": name, "dataset": data_name, "rounds": rounds, "prune_rate": prune_rate,
                "output_rate": output_rate, "layer_rates": dict(layer_rates or {}), "allocation": allocation,
                "rewind": rewind, "rewind_step": rewind_step, "epochs": epochs, "steps_per_run": total,
                "seed": seed, "ignore": ignore, "controls": controls,
                **{k: recipe[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "batch_size")}}
    return LotteryResult(out, settings, time.perf_counter() - t0)


__all__ = ["LotteryTicket", "LotteryRound", "LotteryResult", "run_lottery", "rounds_for", "prune_count",
           "model_state", "load_model_state"]
