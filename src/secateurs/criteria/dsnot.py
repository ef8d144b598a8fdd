"""DSnoT as a method: a base criterion's mask, refined by DSnoT's prune-and-grow cycles (Zhang, Zhao, Lin, Sun,
Yao, Han, Tanner, Liu & Ji 2024, "Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs").

``method="dsnot", base="wanda"`` (or ``"sparsegpt"``, ``"magnitude"`` — the reference's ``--initial_method``,
zyxxmu/DSnoT@4c029df lib/prune.py ``prune_DSnoT``; any other single-round criterion such as ``"ria"`` works
too) scores with the base criterion, selects the initial mask as the reference does — the lowest
``int(cols·s)`` of every output row (``default_scope="row"``, same sparsity in every layer), or N:M per group —
and hands it to the ``dsnot`` solver (:mod:`secateurs.solvers.dsnot`), which swaps weights per row.  The base
criterion's own solver is *not* run: the reference's ``initial_method="sparsegpt"`` is SparseGPT's saliency
``w²/[H⁻¹]_jj²`` on the dense weights, ranked per row, with no OBS update.  (Deliberate difference: the
reference's DSnoT ``WrappedGPT.add_batch`` never accumulates the Hessian it allocates, so its ``H`` stays 0, every
column is "dead", and its sparsegpt initial scores are all 0 — the first ``int(cols·s)`` columns of each row are
pruned.  Here the SparseGPT criterion's real Hessian is used.)

Options: ``base`` and ``base_options`` (a dict given to the base criterion, e.g. ``{"percdamp": 0.01}`` for
SparseGPT or ``{"a": 0.5}`` for RIA); the solver's (``max_cycle_time``, ``update_threshold``,
``pow_of_var_regrowing``, ``skip_layer``, ``skip_sub_layer``, ``without_same_sign``) are routed to it.

For N:M the solver prunes, inside the group of the weight it grows, the kept weight of lowest *base* score (the
reference's ``initial_metric``); the criterion leaves those scores in each layer's statistics under
:data:`secateurs.solvers.dsnot.BASE_SCORES` for it.  The statistics are the base's plus the solver's
(``scaler_row``, ``sum_row``, ``var_row``), so even a data-free base is scored layer by layer with them.
"""
from __future__ import annotations

from typing import Annotated, Any

from .. import registry
from ..errors import InvalidArgumentError
from ..registry import option, register
from ..solvers.dsnot import BASE_SCORES, DSnoT
from .base import Criterion, ScoreContext, ScoreFn


@register("criterion", "dsnot")
class DSnoTCriterion(Criterion):
    """A base criterion's per-row mask (default Wanda) refined by DSnoT's training-free prune-and-grow
    (Zhang et al. 2024); needs calibration inputs."""

    default_scope = "row"
    default_allocation = "uniform"
    solver = "dsnot"

    def __init__(self, base: Annotated[str, option("criterion of the initial mask (the reference's "
                                                   "--initial_method): wanda, sparsegpt, magnitude, ria...")] = "wanda",
                 base_options: Annotated[dict[str, Any] | None, option("options of the base criterion, e.g. "
                                                                       "{\"percdamp\": 0.01}")] = None):
        if base == "dsnot":
            raise InvalidArgumentError("dsnot base cannot be 'dsnot' itself; use 'wanda', 'sparsegpt' or 'magnitude'")
        self.base_name = base
        self.base: Criterion = registry.build("criterion", base, base_options)  # unknown names/options raise here
        if self.base.rounds != 1:
            raise InvalidArgumentError(f"dsnot base {base!r} re-scores in {self.base.rounds} rounds; DSnoT refines "
                                       f"a one-shot mask: use 'wanda', 'sparsegpt', 'magnitude' or 'ria'")
        self.stats = tuple(dict.fromkeys(self.base.stats + DSnoT.stats))
        self.needs_data = self.base.needs_data

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"base": self.base_name}
        if self.base.options():
            opts["base_options"] = self.base.options()
        return opts

    def prepare(self, ctx: ScoreContext) -> None:
        self.base.prepare(ctx)

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        fns = self.base.scores(ctx)
        for t, fn, st in zip(ctx.targets, fns, ctx.stats or [None] * len(fns)):
            if st:  # layers that share statistics (q/k/v) share the dict: one entry per layer name
                st.setdefault(BASE_SCORES, {})[t.name] = lambda t=t, fn=fn: t.view2d(fn()).float()
        return fns
