"""Dynamic sparse training: the one drop-and-grow step that SET, RigL and GraNet share.

Every update of a dynamic sparse method does, per layer (Mocanu et al. 2018, "Scalable training of artificial
neural networks with adaptive sparse connectivity inspired by network science", Nat. Commun. 9:2383; Evci et al.
2020, "Rigging the Lottery: Making All Tickets Winners", ICML, Alg. 1; Liu et al. 2021, "Sparse Training via
Boosting Pruning Plasticity with Neuroregeneration", NeurIPS, "zero-cost neuroregeneration")::

    drop  = the k active weights with the smallest |θ|
    grow  = the k inactive weights (the just-dropped ones included) with the largest score
            (uniform random for SET, |∂L/∂θ| of the dense weight for RigL and GraNet)
    mask  = mask − drop + grow                       # the layer's number of connections is unchanged

as google-research/rigl@d39fc7d ``SparseSETOptimizerBase._get_update_op``: newly grown connections start at exactly
zero (``grow_init='zeros'``) with their optimizer state (SGD momentum, Adam moments) reset; a weight dropped and
grown again in the same update keeps its value and state (``reinit_when_same=False``); dropped weights are zeroed
and their state reset too, so their stored original cannot drift away from zero while masked.

Deviation: the reference breaks ties in the drop ranking by adding N(0, 1e-5) noise to |θ|; here ties (in either
ranking) are broken uniformly at random from the schedule's seeded generator and the magnitudes themselves are
left exact, so the same seed gives the same masks on any device.

The dense gradient is the gradient of the loss with respect to the *effective* weight, pruned entries included
(:func:`secateurs.core.masks.capture_dense_grads`).  It is captured only during the forward/backward of an update
step — :class:`DropAndGrow` switches the capture on when the next optimizer step is an update step and off
after the update — so the other steps pay nothing; as in the reference, it is the current batch's gradient.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.masks import capture_dense_grads, dense_grad, get_mask, set_mask
from ..core.prune import check_prune, prune
from ..core.targets import Target, select_names
from ..errors import InvalidArgumentError, MissingDataError
from .base import Schedule, check_fraction, check_step, reset_optimizer_state

ANNEALS = ("cosine", "constant")
END_FRACTION = 0.75  # from_budget: T_end = 75 % of training (RigL's text; its reference: 25,000 of 32,000 steps)
UPDATES = 100  # from_budget: one mask update every total_steps / 100 steps


MIN_FREQUENCY = 10  # steps between mask updates in from_budget, at least


def budget_defaults(total_steps: int) -> dict[str, int]:
    """``frequency`` and ``end_step`` that scale the reference update schedule (ΔT = 100 steps until T_end) to a
    run of ``total_steps`` steps: an update every ``max(MIN_FREQUENCY, total_steps // 100)`` steps until 75 % of
    the run.  The floor keeps short runs sane: regrown weights need some steps of training before the next drop
    (SET swapping 30% of every layer at every step of a 110-step run reached 15% accuracy on digits)."""
    total = check_step("total_steps", total_steps, 1)
    return {"frequency": max(min(MIN_FREQUENCY, total), total // UPDATES), "end_step": max(1, int(END_FRACTION * total))}


def cosine_decay(initial: float, progress: float, floor: float = 0.0) -> float:
    """``floor + (initial − floor)/2 · (1 + cos(π p))`` with ``p = progress`` clamped to [0, 1].

    RigL's drop fraction f0/2·(1 + cos(π t/T_end)) (Evci et al. 2020, Eq. 1; TF ``cosine_decay``) with floor 0,
    and GraNet's death rate (``CosineDecay``: torch's ``CosineAnnealingLR`` with ``eta_min=0.005``).
    """
    p = min(1.0, max(0.0, progress))
    return floor + (initial - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def _order(values: torch.Tensor, generator: torch.Generator, descending: bool) -> torch.Tensor:
    """Indices sorting 1-D ``values``, ties broken uniformly at random (seeded permutation, then a stable sort)."""
    perm = torch.randperm(values.numel(), generator=generator).to(values.device)
    return perm[torch.sort(values[perm], descending=descending, stable=True).indices]


def drop_and_grow(t: Target, k: int, grow_score: torch.Tensor | None, *,
                  optimizer: torch.optim.Optimizer | None = None,
                  generator: torch.Generator | None = None) -> dict[str, int]:
    """Drop the ``k`` smallest-magnitude active weights of ``t`` and grow ``k`` inactive ones by ``grow_score``.

    ``grow_score`` (weight-shaped, larger grows first) ranks the inactive weights, the just-dropped ones included;
    None draws it uniformly at random (SET).  The layer keeps exactly as many connections as before.  Newly grown
    weights are set to zero; their optimizer state and that of the dropped weights is reset (see module doc).
    Returns ``{"dropped": k, "grown": connections that are new, i.e. not dropped and grown back}``.
    """
    mask = get_mask(t)
    if mask is None:
        raise InvalidArgumentError(f"layer {t.key!r} has no mask: a dynamic sparse update needs the engine's masks")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    flat = mask.reshape(-1)
    active = flat.nonzero().squeeze(1)
    if not 0 <= k <= active.numel():
        raise InvalidArgumentError(f"cannot drop {k} of the {active.numel()} active weights of layer {t.key!r}")
    if k == 0:
        return {"dropped": 0, "grown": 0}
    w = t.leaf.detach().reshape(-1)
    dropped = active[_order(w[active].abs(), gen, descending=False)[:k]]
    keep = flat.clone()
    keep[dropped] = False
    candidates = (~keep).nonzero().squeeze(1)
    if grow_score is None:
        score = torch.rand(candidates.numel(), generator=gen).to(candidates.device)
    else:
        score = grow_score.detach().reshape(-1).to(candidates.device)[candidates].float()
    grown = candidates[_order(score, gen, descending=True)[:k]]
    keep[grown] = True
    changed = keep ^ flat  # new connections and the dropped ones not grown back
    born = changed & keep
    with torch.no_grad():  # grow_init='zeros' (pruned originals are zero already; made certain)
        t.leaf.masked_fill_(born.reshape(mask.shape), 0)
    set_mask(t, keep.reshape(mask.shape), zero=True)
    reset_optimizer_state(optimizer, t.leaf, changed.reshape(mask.shape))
    return {"dropped": k, "grown": int(born.sum())}


class DropAndGrow(Schedule):
    """Base of the drop-and-grow schedules (SET, RigL, GraNet): sparse from the first step to the last.

    At construction every target gets the engine's mask at ``init_sparsity``: by default random with Erdős–Rényi-
    Kernel layer densities over all Linear/Conv weights (``secateurs.prune(model, s, method="random",
    allocation="erk")``), as the RigL README's ERK models (every layer sparse; a layer ERK would make over-full is
    dense); ``dense=`` keeps named layers dense (they count in the total, and are never updated).  Updates happen
    at ``start_step + frequency·j <= end_step`` (j = 1, 2, …).  Subclasses say how many weights each layer
    exchanges (:meth:`n_drop`) and whether they grow by the dense gradient (:attr:`grows_by_gradient`).
    """

    grows_by_gradient = False

    def __init__(self, model: nn.Module, *, init_sparsity: float, frequency: int, start_step: int, end_step: int,
                 allocation: str = "erk", init_method: str = "random", dense=None, data=None, targets=None,
                 ignore=None, seed: int = 0, optimizer: torch.optim.Optimizer | None = None):
        init_sparsity = check_fraction("sparsity", init_sparsity)
        self.frequency = check_step("frequency", frequency, 1)
        self.start_step = check_step("start_step", start_step, 0)
        self.end_step = check_step("end_step", end_step, 1)
        if self.end_step <= self.start_step:
            raise InvalidArgumentError(f"end_step ({end_step}) must be after start_step ({start_step})")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise InvalidArgumentError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)  # touches no weight
        self.seed, self.allocation, self.init_method, self._data = seed, allocation, init_method, data
        self._init_sparsity = init_sparsity
        self.dense = sorted(select_names(self.targets, dense, "dense"))
        self.generator = torch.Generator().manual_seed(seed)
        self._capturing = False
        names = {t.name for t in self.targets}
        self._select = lambda name, _module: name in names  # the engine sees exactly this schedule's targets
        self.check_options()  # every engine call this schedule will make, checked before any mask exists
        if init_sparsity > 0:
            prune(model, init_sparsity, method=init_method, allocation=allocation, targets=self._select,
                  dense=self.dense or None, data=data, seed=seed)
        self.ensure_masks()
        self._arm(1)

    # ------------------------------------------------------------------ what subclasses define
    def check_options(self) -> None:
        """Raise (before any weight is touched) if an engine call of this schedule would be refused."""
        check_prune(self.model, self._init_sparsity or 0.5, method=self.init_method, allocation=self.allocation,
                    targets=self._select, dense=self.dense or None, data=self._data, seed=self.seed)

    def n_drop(self, active: int, step: int) -> int:
        """How many of a layer's ``active`` weights are exchanged at update ``step``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ schedule
    def is_update_step(self, step: int) -> bool:
        return self.start_step < step <= self.end_step and (step - self.start_step) % self.frequency == 0

    def step(self) -> dict[str, Any] | None:
        record = super().step()
        self._arm(self.step_count + 1)
        return record

    def finish(self) -> None:
        """Stop capturing dense gradients; the masks stay (``secateurs.finalize`` bakes them in)."""
        self._set_capture(False)

    # ------------------------------------------------------------------ the drop-and-grow step
    def regrow(self, step: int, counts: dict[str, int] | None = None) -> dict[str, int]:
        """One drop-and-grow over every updatable layer; ``counts`` (layer key -> k) overrides :meth:`n_drop`."""
        layers = self.updatable()
        grads = self.dense_grads(layers) if self.grows_by_gradient else [None] * len(layers)
        dropped = grown = 0
        for t, g in zip(layers, grads):
            active = int(get_mask(t).sum())
            k = counts[t.key] if counts is not None else self.n_drop(active, step)
            out = drop_and_grow(t, k, None if g is None else g.abs(), optimizer=self.optimizer,
                                generator=self.generator)
            dropped += out["dropped"]
            grown += out["grown"]
        return {"dropped": dropped, "grown": grown}

    def updatable(self) -> list[Target]:
        """Targets whose connections can move: not kept dense by ``dense=``, neither empty nor full."""
        out = []
        for t in self.targets:
            m = get_mask(t)
            if t.name in self.dense or m is None:
                continue
            active = int(m.sum())
            if 0 < active < m.numel():
                out.append(t)
        return out

    def dense_grads(self, layers: list[Target]) -> list[torch.Tensor]:
        """The captured dense gradients of ``layers``; a clear error when none is there (checked before any change)."""
        name = type(self).__name__
        grads = [dense_grad(t) for t in layers]
        if any(g is None for g in grads):
            raise MissingDataError(
                f"{name} grows connections by the dense gradient, which is captured during the forward/backward of "
                f"an update step; call pruner.step() exactly once after every optimizer.step(), with loss.backward() "
                f"before it (no gradient is being captured now)")
        if grads and not any(bool(g.any()) for g in grads):
            raise MissingDataError(
                f"{name} grows connections by the dense gradient, but no backward pass ran since the previous step "
                f"(every captured gradient is zero); call loss.backward() and optimizer.step() before pruner.step()")
        return grads

    # ------------------------------------------------------------------ reporting
    def active_counts(self) -> dict[str, int]:
        """Number of connections (mask entries that are on) of every target, by ``module.param`` key."""
        return {t.key: int(get_mask(t).sum()) for t in self.targets}

    def mask_sparsity(self) -> float:
        """Fraction of connections that are off: exact and on schedule.  :meth:`sparsity` (and
        :func:`secateurs.sparsity`) count zero *values*, so they also count grown connections that are still zero
        (all of them right after an update, a few that never get a gradient, e.g. into dead units, later)."""
        total = sum(t.numel for t in self.targets)
        return 1 - sum(self.active_counts().values()) / max(1, total)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self._arm(self.step_count + 1)

    # ------------------------------------------------------------------ gradient capture
    def _arm(self, next_step: int) -> None:
        """Capture dense gradients during the next step's backward only if that step updates the masks."""
        self._set_capture(self.grows_by_gradient and self.is_update_step(next_step))

    def _set_capture(self, on: bool) -> None:
        if on == self._capturing:
            return
        capture_dense_grads([t for t in self.targets if get_mask(t) is not None], on)
        self._capturing = on


class SparseToSparse(DropAndGrow):
    """Fixed sparsity, a fraction of each layer's connections exchanged per update (SET, RigL).

    The fraction is ``drop_fraction`` ("constant") or ``drop_fraction/2·(1 + cos(π (t − start)/(end − start)))``
    ("cosine", Evci et al. 2020 Eq. 1; the reference's TF ``cosine_decay`` of the global step, the same for its
    default ``begin_step=0``); each layer exchanges ``floor(active · fraction)`` weights, as the reference.
    """

    def __init__(self, model: nn.Module, sparsity: float, *, end_step: int, frequency: int = 100,
                 drop_fraction: float = 0.3, anneal: str = "cosine", start_step: int = 0, allocation: str = "erk",
                 init_method: str = "random", dense=None, data=None, targets=None, ignore=None, seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None):
        self.drop_fraction = check_fraction("drop_fraction", drop_fraction)
        if anneal not in ANNEALS:
            raise InvalidArgumentError(f"anneal must be one of {ANNEALS}, got {anneal!r}")
        self.anneal = anneal
        self.target_sparsity = check_fraction("sparsity", sparsity)
        super().__init__(model, init_sparsity=self.target_sparsity, frequency=frequency, start_step=start_step,
                         end_step=end_step, allocation=allocation, init_method=init_method, dense=dense, data=data,
                         targets=targets, ignore=ignore, seed=seed, optimizer=optimizer)

    def sparsity_at(self, step: int) -> float:
        """Constant: sparse from start to end."""
        return self.target_sparsity

    def drop_fraction_at(self, step: int) -> float:
        if self.anneal == "constant":
            return self.drop_fraction
        return cosine_decay(self.drop_fraction, (step - self.start_step) / (self.end_step - self.start_step))

    def n_drop(self, active: int, step: int) -> int:
        return int(active * self.drop_fraction_at(step))

    def update(self, step: int) -> dict[str, Any]:
        fraction = self.drop_fraction_at(step)
        out = self.regrow(step)
        return {"drop_fraction": fraction, **out, "mask_sparsity": self.mask_sparsity()}
