"""DAREx-q — DARE the eXtreme (Deng et al., ICLR 2025, "DARE the Extreme: Revisiting Delta-Parameter Pruning
for Fine-Tuned Models", arXiv 2410.09344; reference code vengdeng/DAREx): DARE's random drop, but the kept deltas
are rescaled by ``1/q`` instead of ``1/(1 − p)``.  At extreme rates (p ≥ 0.9) ``1/(1 − p)`` inflates the kept
deltas so much that the layer outputs' variance explodes; a ``q`` somewhat above ``1 − p`` fixes it.

Two ways to choose ``q``, both from the paper:

* ``q=`` a given value (the paper's ``q_v``, found by searching q on validation data or on the change of the
  outputs; the search itself needs the task, so it is the caller's: try a few q on held-out text);
* ``calibration=`` text: the analytical per-layer ``q_e`` (the paper's bound, reference
  ``utils/analyticalq.py`` ``analytical_resolve_new``): with ``c_ij = Δ_ij · E[x_j]`` (the undropped delta times
  the mean of input j of the fine-tuned layer over the calibration tokens, reference ``getwx.get_wx_decoder``;
  a bias delta joins as one more column), every output row i takes the q on the grid ``1 − p, 1 − p + 0.001, …,
  0.998`` that minimises ``|η (1 − (1 − p)/q) Σ_j c_ij + η² φ(p) Σ_j c_ij² / (4 q²) + log(2/(1 − γ))|`` with
  ``φ(p) = (1 − 2p)/log((1 − p)/p)`` (its limit 1/2 at p = 1/2), scanning q upward and stopping once
  ``stop_iter`` of the rows have stopped improving (the reference's guard against outlier features); the layer's
  q is the mean over its rows.  Tensors that are not the weight of a linear layer seen by the calibration (norms,
  embeddings) take the mean q of all layers, as the reference's ``rescale_q_decoder``.  Activation means need
  one forward pass of the fine-tuned model over the calibration rows (the only step that loads the whole model;
  the drop and rescale still stream).  Sums are taken in float32 (the reference casts ``c`` to float16).
"""
from __future__ import annotations

import math
from typing import Annotated, Any

import torch

from ..errors import InvalidArgumentError
from ..registry import option, register
from .base import DeltaMethod, random_keep_


def phi(p: float) -> float:
    """``φ(p) = (1 − 2p)/log((1 − p)/p)`` of the DAREx bound (limit 1/2 at p = 1/2)."""
    if abs(p - 0.5) < 1e-9:
        return 0.5
    return (1 - 2 * p) / math.log((1 - p) / p)


def analytical_q(c: torch.Tensor, p: float, eta: float = 0.45, prob: float = 0.95,
                 stop_iter: float = 0.8) -> torch.Tensor:
    """Per-row ``q`` of the DAREx-q bound for the (rows, cols) matrix ``c = Δ ⊙ E[x]`` at pruning rate ``p``
    (reference ``analytical_resolve_new``: grid 0.001, scanned from ``1 − p`` — the reference's
    ``int((1 - p) * 1000)`` starts one step lower where ``1 − p`` is not exact in binary — ``best`` kept in
    float16 as there, early stop once ``stop_iter`` of the rows have stopped improving)."""
    s1 = c.sum(dim=1, dtype=torch.float32)
    s2 = (c.float() ** 2).sum(dim=1)
    ph, const = phi(p), math.log(2 / (1 - prob))
    q_o = torch.full_like(s1, 1 - p)
    best = torch.full_like(s1, 10000.0, dtype=torch.float16)
    stopped = torch.zeros_like(s1, dtype=torch.bool)
    for step in range(int((1 - p) * 1000 + 1e-9), 999):  # the reference's int() gives 99 (q = 0.099) at p = 0.9
        q = step * 0.001
        res = (eta * (1 - (1 - p) / q) * s1 + eta ** 2 * ph * s2 / (4 * q * q) + const).abs()
        better, worse = res <= best, res >= best
        best[better] = res[better].to(torch.float16)
        q_o[better] = q
        stopped |= worse
        if stopped.float().mean() >= stop_iter:
            break
    return q_o


@register("delta", "darex")
class DAREx(DeltaMethod):
    """DAREx-q (Deng et al. 2025): DARE's random drop with the kept deltas rescaled by 1/q — a given q, or the
    analytical per-layer q of the paper's bound from calibration activations."""

    def __init__(self,
                 q: Annotated[float | None, option("rescale the kept deltas by 1/q (the paper's q_v); "
                                                   "q = 1 - p is DARE", gt=0, le=1)] = None,
                 calibration: Annotated[Any, option("text or text file: analytical per-layer q from the "
                                                    "fine-tuned model's mean activations")] = None,
                 eta: Annotated[float, option("η of the analytical bound", gt=0)] = 0.45,
                 prob: Annotated[float, option("γ: probability of the bound", gt=0, lt=1)] = 0.95,
                 stop_iter: Annotated[float, option("stop the q scan when this fraction of rows stopped "
                                                    "improving", gt=0, le=1)] = 0.8,
                 nsamples: Annotated[int, option("calibration windows", ge=1)] = 16,
                 seqlen: Annotated[int, option("tokens per calibration window", ge=1)] = 128,
                 seed: Annotated[int, option("seed of the calibration windows")] = 0):
        if q is None and calibration is None:
            raise InvalidArgumentError("darex needs q=... (rescale by 1/q, e.g. q=0.2 at p=0.9) or calibration=... "
                                       "(text or a text file, for the analytical per-layer q)")
        self.q, self.calibration = q, calibration
        self.eta, self.prob, self.stop_iter = eta, prob, stop_iter
        self.nsamples, self.seqlen, self.seed = nsamples, seqlen, seed
        self.q_layers: dict[str, float] = {}
        self.q_default: float | None = q

    def prepare(self, ctx: Any) -> None:
        if self.q is not None:
            return
        means = activation_means(ctx.finetuned_dir, self.calibration, self.nsamples, self.seqlen, self.seed)
        for name, mean in means.items():
            if name not in ctx.names:
                continue
            delta = ctx.read_delta(name)
            if delta.dim() != 2 or delta.shape[1] != mean.numel():
                continue
            c = delta * mean.reshape(1, -1)
            bias = name[: -len("weight")] + "bias" if name.endswith("weight") else None
            if bias in ctx.names:
                c = torch.cat([c, ctx.read_delta(bias).reshape(-1, 1)], dim=1)
            self.q_layers[name] = float(analytical_q(c, ctx.sparsity, self.eta, self.prob, self.stop_iter).mean())
        if not self.q_layers:
            raise InvalidArgumentError("darex found no linear layer whose activations it could measure")
        self.q_default = sum(self.q_layers.values()) / len(self.q_layers)

    def sparsify(self, name: str, delta: torch.Tensor, sparsity: float, rescale: bool,
                 generator: torch.Generator) -> tuple[torch.Tensor, float]:
        q = self.q_layers.get(name)
        if q is None and name.endswith("bias"):
            q = self.q_layers.get(name[: -len("bias")] + "weight")
        q = self.q_default if q is None else q
        scale = 1.0 / q if rescale else 1.0
        return random_keep_(delta, sparsity, generator, scale), scale


def activation_means(model_dir: Any, calibration: Any, nsamples: int, seqlen: int, seed: int) \
        -> dict[str, torch.Tensor]:
    """Mean over the calibration tokens of each input column of every linear layer of the model in
    ``model_dir``, by weight name (``<module>.weight``): the engine's ``sum_row`` statistic (mean over
    sequences of the sum over tokens) divided by the tokens per sequence."""
    from ..core.stats import collect
    from ..core.targets import Target
    from ..llm.calibration import calibration_rows
    from ..llm.text import load_local_model, load_local_tokenizer

    model = load_local_model(model_dir, "causal")
    tokenizer = load_local_tokenizer(model_dir) if not torch.is_tensor(calibration) else None
    rows, _ = calibration_rows(calibration, model, nsamples=nsamples, seqlen=seqlen, seed=seed, tokenizer=tokenizer)
    targets = [Target(n, m, "weight") for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    with collect(targets, ["sum_row"], torch.device("cpu")) as stats, torch.no_grad():
        for r in rows:
            model(r.reshape(1, -1))
        out = {t.name + ".weight": s["sum_row"].value / rows.shape[1] for t, s in zip(targets, stats) if s}
    del model
    return out
