"""ALPS: ADMM support selection + preconditioned conjugate-gradient reconstruction (Meng, Behdin, Wang &
Mazumder, NeurIPS 2024, "ALPS: Improved Optimization for Highly Sparse One-Shot Pruning of LLMs").

Per layer ALPS solves ``min_Ŵ ||XW − XŴ||²  s.t.  Ŵ in the sparsity set`` (top-k entries of the layer, or N
of every M consecutive inputs of each row) by operator splitting, then refits the kept weights on the support it
found.  Written from the authors' code, mazumder-lab/ALPS@8af9e6b ``alps.py`` ``ALPS_prune.ALPS_admm`` and
``cg_batch`` (read, not copied), in the (out, in) layout of secateurs instead of the reference's (in, out):

* **statistics** — ``XtX = Σ x xᵀ`` over all calibration tokens (secateurs' Hessian is ``(2/n)·XtX``, rescaled
  back by ``n/2``); ridge ``XtX += percdamp·mean(diag XtX)·I`` (percdamp 0.01); normalisation
  ``X_norm = sqrt(diag XtX) + 1e-8``, ``XtX ← XtX / (X_norm X_normᵀ)`` (unit diagonal) and the weights
  scaled to ``B = W·diag(X_norm)``, so the target is ``YtX = B·XtX`` and ``||XW − XŴ||² = tr((B−B̂) XtX
  (B−B̂)ᵀ)`` up to the ridge;
* **ADMM** — one float64 eigendecomposition ``XtX = Q Λ Qᵀ``, ``M_ρ = Q (Λ+ρ)⁻¹ Qᵀ``; from
  ``D⁰`` = the projection of B onto the sparsity set (largest ``B²``), ``V⁰ = 0`` iterate
  ``B ← (YtX − V + ρD) M_ρ``,  ``D ← P_S(B + V/ρ)``,  ``V ← V + ρ(B − D)``;
* **ρ schedule** (start ρ = 0.1) — every ``update_iter`` = 3 iterations count the entries whose membership of the
  support changed since the last check, s: ρ ×1.3 if s > 0.1·k, ×1.2 if s > 0.005·k (k = weights kept; either
  marks ρ as "started"), ×1.1 if 0 < s once started; before ρ has started, s > 0 divides ρ by 5 and restarts
  from ``(B, D, V) = (B⁰, D⁰, 0)``, s = 0 divides ρ by 5; once started, s = 0 stops.  ρ ≤ 1e6, ``M_ρ`` is
  rebuilt from the eigendecomposition, and after ``switch_iter`` = 30 iterations a change s < 0.0003·k stops;
  at most ``max_iter`` = 300 iterations;
* **back-solve** — the last B projected onto the sparsity set fixes the support; conjugate
  gradient on ``XtX·B = YtX`` restricted to that support (residuals and directions masked), started at the
  projected B, at most ``pcg_iters`` = 10 steps, stopping early only if every column's full residual norm is
  ``≤ pcg_rtol``·its right-hand-side norm (1e-4).  The preconditioner is the diagonal normalisation above (the
  reference's ``M_bmm`` is the identity on the normalised system: Jacobi-preconditioned CG on the raw one);
* the result ``W = B·diag(X_norm)⁻¹``, pruned entries exactly 0.

With a mask given (any criterion, ``solver="alps"``) the ADMM is skipped: the back-solve runs on that support,
started from the masked weights.

Deliberate differences (same arithmetic otherwise): the support is the projection's keep mask rather than
``D != 0`` (they differ only if a kept entry is exactly 0); the reference's per-check diagnostic errors (a full
``XtX·B`` product and an (out × out) ``diag(BᵀR)`` product, used only for a commented-out print) are not
computed; the CG's full residual for its stopping test is updated with the ``A·P`` product it already has
instead of a third matrix product per step; the top-k projection uses an exact k-th-value threshold
(numpy's introselect; ties: the later entries kept) instead of ``topk`` over all entries, and N:M keeps the N
largest of each group with ties to the lower column (as :func:`~secateurs.patterns.nm_keep_mask`);
the unstructured count is the allocation's (``plan.count``) rather than ``round((1−sp)·numel)``; the
eigendecomposition is shared by layers fed the same input (q/k/v, gate/up) — it depends on the Hessian only;
no ``cuda:0`` hard-coding: everything runs where the statistics live; on CPU, layers up to 2³⁰ multiply-adds
per product (out·in², e.g. 1024³) are solved on one thread (two threads were 3-10x slower on the 2-core
machine it was written on).
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

from ..core.finite import all_finite
from ..core.plan import LayerPlan
from ..core.select import prune_lowest
from ..errors import NonFiniteError
from ..patterns import Pattern, nm_keep_mask
from ..registry import option, register
from .base import Solver, check_selectable
from .sparsegpt import _one_thread

_SELECT_DIRECT = 1 << 24  # up to this many weights, the top-k threshold is found in one selection pass
# below this many multiply-adds per ADMM product (out·in²) a layer is solved on one CPU thread: on the 2-core
# machine this was written on, two threads made a 256x688 layer 10x slower (0.3 s -> 3.8 s; OpenMP start-up and
# contention for many small products); large layers keep torch's thread pool
_ONE_THREAD_MACS = 1 << 30


@dataclass
class Normalised:
    """What ALPS derives from one Hessian (shared by every layer fed the same input)."""

    xtx: torch.Tensor  # (in, in) float32, ridge added, unit diagonal
    x_norm: torch.Tensor  # (in,) float32, sqrt(diag(XtX + ridge)) + 1e-8
    eigvals: torch.Tensor  # (in,) float64
    eigvecs: torch.Tensor  # (in, in) float64

    def inverse(self, rho: float) -> torch.Tensor:
        """``(XtX + ρI)⁻¹ = Q (Λ+ρ)⁻¹ Qᵀ``, formed in float64 and used in float32 (as the reference)."""
        q = self.eigvecs
        return (q @ (q * (1.0 / (self.eigvals + rho))).T).float()


def normalise(hessian: torch.Tensor, nsamples: int | None = None, percdamp: float = 0.01,
              name: str = "layer") -> Normalised:
    """ALPS's ridge and diagonal normalisation of ``XtX`` and its eigendecomposition.

    ``hessian`` is secateurs' ``(2/n) Σ x xᵀ`` over ``nsamples`` samples (``XtX = n/2 · H``; only the 1e-8 guard
    of ``X_norm`` depends on that scale), or ``XtX`` itself when ``nsamples`` is None.  Not modified."""
    xtx = hessian.float() * (nsamples / 2 if nsamples else 1.0)
    diag = torch.diagonal(xtx)
    diag += percdamp * diag.mean()
    x_norm = diag.sqrt() + 1e-8
    xtx = xtx.div_(x_norm.reshape(1, -1)).div_(x_norm.reshape(-1, 1))
    try:
        with _one_thread(xtx.device):
            eigvals, eigvecs = torch.linalg.eigh(xtx.double())
    except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise NonFiniteError(f"{name}: the eigendecomposition of the normalised XᵀX failed ({exc}); the "
                             f"calibration inputs are probably not finite") from exc
    if not all_finite(eigvals):
        raise NonFiniteError(f"{name}: the calibration Hessian contains NaN or Inf")
    return Normalised(xtx, x_norm, eigvals, eigvecs)


def _top_keep(sq: torch.Tensor, kept: int) -> torch.Tensor:
    """Keep mask of exactly the ``kept`` largest entries of ``sq`` (of equal values at the threshold, the later
    ones in flat order are kept).  On CPU the threshold comes from numpy's introselect, ~10x faster than
    ``torch.kthvalue`` here; very large layers go through :func:`~secateurs.core.select.prune_lowest`."""
    flat = sq.reshape(-1)
    n = flat.numel()
    if n > _SELECT_DIRECT:
        return prune_lowest(sq, n - kept).logical_not_()
    if flat.device.type == "cpu":
        t = float(np.partition(flat.numpy(), n - kept - 1)[n - kept - 1])  # the largest pruned value
    else:
        t = flat.kthvalue(n - kept).values.item()
    keep = flat > t
    short = kept - int(torch.count_nonzero(keep))
    if short > 0:  # ties at the threshold: keep the last `short` of them
        eq = torch.nonzero(flat == t).view(-1)
        keep.index_fill_(0, eq[eq.numel() - short:], True)
    return keep.reshape(sq.shape)


def _nm_keep(sq: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N largest of every M consecutive entries of each row, ties to the lower column — the same mask
    as :func:`~secateurs.patterns.nm_keep_mask`, by M² elementwise comparisons instead of a sort (3x faster for
    2:4 on CPU)."""
    if m > 8:
        return nm_keep_mask(sq, n, m)
    g = sq.reshape(sq.shape[0], -1, m)
    keep = torch.empty(g.shape, dtype=torch.bool, device=sq.device)
    for i in range(m):
        gi = g[..., i]
        beaten = torch.zeros(gi.shape, dtype=torch.uint8, device=sq.device)  # entries of the group ahead of i
        for j in range(m):
            if j != i:
                beaten += torch.ge(g[..., j], gi) if j < i else torch.gt(g[..., j], gi)
        torch.lt(beaten, n, out=keep[..., i])
    return keep.reshape(sq.shape)


def _project(z: torch.Tensor, plan: LayerPlan, kept: int) -> torch.Tensor:
    """Keep mask of the projection onto the sparsity set: the ``kept`` largest ``z²`` of the layer, or the N
    largest of every M consecutive inputs of each row."""
    sq = z * z
    if plan.is_nm:
        return _nm_keep(sq, plan.n, plan.m)
    return _top_keep(sq, kept)


def admm_support(b0: torch.Tensor, ytx: torch.Tensor, norm: Normalised, plan: LayerPlan, kept: int, *,
                 rho: float = 0.1, max_iter: int = 300, update_iter: int = 3,
                 switch_iter: int = 30) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """ALPS's ADMM with the ρ schedule on the normalised problem, in (out, in) layout (``b0 = W·diag(X_norm)``,
    ``ytx = b0 @ XtX``).  Returns the last B projected onto the sparsity set, its keep mask and a summary
    (iterations, final ρ)."""
    m_inv = norm.inverse(rho)
    keep_prev = _project(b0, plan, kept)
    d = b0 * keep_prev
    d_init = d.clone()
    v = torch.zeros_like(b0)
    b = b0
    started = False
    it = -1
    for it in range(max_iter):
        # B = (XtX + ρI)⁻¹ (YtX − V + ρD), here transposed: (YtX − V + ρD) M_ρ
        b = torch.add(ytx, d, alpha=rho).sub_(v) @ m_inv
        z = torch.add(v, b, alpha=rho).div_(rho)  # (V + ρB)/ρ
        keep = _project(z, plan, kept)
        d = z.mul_(keep)
        v.add_(torch.sub(b, d), alpha=rho)  # V += ρ(B − D)
        if (it + 1) % update_iter:
            continue
        change = int(torch.count_nonzero(keep != keep_prev))
        frac = change / max(kept, 1)
        if frac > 0.1:
            started, rho = True, rho * 1.3
        elif frac > 0.005:
            started, rho = True, rho * 1.2
        elif change > 0:
            if started:
                rho *= 1.1
            else:  # ρ too large before the support settled: restart smaller
                rho /= 5
                b, d, v = b0.clone(), d_init.clone(), torch.zeros_like(b0)
        elif started:
            break
        else:
            rho /= 5
        keep_prev = keep
        rho = min(rho, 1e6)
        m_inv = norm.inverse(rho)
        if it >= switch_iter and frac < 0.0003:
            break
    keep = _project(b, plan, kept)
    return b * keep, keep, {"iterations": it + 1, "rho": rho}


def pcg_on_support(a: torch.Tensor, rhs: torch.Tensor, keep: torch.Tensor, x0: torch.Tensor, *,
                   maxiter: int = 10, rtol: float = 1e-4) -> torch.Tensor:
    """Conjugate gradient for ``X A = rhs`` (each row an independent system; A symmetric positive definite)
    with the entries outside ``keep`` held at their value in ``x0`` (0): residuals and search directions are
    masked to the support, as ALPS's ``cg_batch``.  Stops after ``maxiter`` steps, or earlier when every
    column's full residual norm is at most ``rtol`` times that column's norm of ``rhs``."""
    mask = keep.to(x0.dtype)
    x = x0.clone()
    ax = x @ a
    r = (rhs - ax).mul_(mask)
    stop = rhs.norm(dim=0).mul_(rtol)
    p = None
    rz_prev = None
    for _ in range(maxiter):
        rz = (r * r).sum(dim=1)  # preconditioner: identity on the normalised system
        if p is None:
            p = r.clone()
        else:
            beta = rz / rz_prev.masked_fill_(rz_prev == 0, 1e-8)
            p = p.mul_(beta.unsqueeze(1)).add_(r)
        ap = p @ a
        denom = (p * ap).sum(dim=1)
        alpha = (rz / denom.masked_fill_(denom == 0, 1e-8)).unsqueeze(1)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1).mul_(mask)
        ax.addcmul_(alpha, ap)
        rz_prev = rz
        if bool(((ax - rhs).norm(dim=0) <= stop).all()):
            break
    return x


def alps_prune(weight: torch.Tensor, hessian: torch.Tensor, plan: LayerPlan, keep: torch.Tensor | None = None, *,
               nsamples: int | None = None, rho: float = 0.1, max_iter: int = 300, update_iter: int = 3,
               switch_iter: int = 30, pcg_iters: int = 10, pcg_rtol: float = 1e-4, percdamp: float = 0.01,
               name: str = "layer", normalised: Normalised | Callable[[], Normalised] | None = None,
               info: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune an (out, in) weight with ALPS (Meng et al. 2024): ADMM support selection, then PCG on the support.

    ``hessian``: secateurs' ``(2/n) Σ x xᵀ`` over ``nsamples`` samples (or ``XtX`` when ``nsamples`` is None);
    ``normalised`` may pass its :func:`normalise` instead (or a callable giving it, called only if there is
    work to do), shared by layers with the same input.  ``keep``: the (out, in) mask to reconstruct on (the
    ADMM is skipped); None: chosen by the ADMM at ``plan.count`` pruned weights (unstructured) or
    ``plan.n:plan.m``.  ``info``, if given, receives the ADMM's iteration count and final ρ.  Returns the new
    float32 weight and its keep mask; ``weight`` is not modified."""
    w = weight.float()
    numel = w.numel()
    if keep is None:
        kept = numel * plan.n // plan.m if plan.is_nm else numel - plan.count
        if kept >= numel:
            return w.clone(), torch.ones_like(w, dtype=torch.bool)
        if kept <= 0:
            return torch.zeros_like(w), torch.zeros_like(w, dtype=torch.bool)
    elif bool(keep.all()):
        return w.clone(), keep.clone()
    rows, cols = w.shape
    small = rows * cols * cols <= _ONE_THREAD_MACS
    with _one_thread(w.device) if small else contextlib.nullcontext():
        if normalised is None:
            norm = normalise(hessian, nsamples, percdamp, name)
        else:
            norm = normalised() if callable(normalised) else normalised
        out, keep, summary = _solve(w, norm, plan, keep, kept if keep is None else 0, rho, max_iter, update_iter,
                                    switch_iter, pcg_iters, pcg_rtol)
    if not all_finite(out):
        raise NonFiniteError(f"{name}: ALPS produced NaN or Inf weights (non-finite calibration inputs?); "
                             f"nothing was pruned")
    if info is not None:
        info.update(summary)
    return out, keep


def _solve(w: torch.Tensor, norm: Normalised, plan: LayerPlan, keep: torch.Tensor | None, kept: int, rho: float,
           max_iter: int, update_iter: int, switch_iter: int, pcg_iters: int,
           pcg_rtol: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    b0 = w * norm.x_norm.reshape(1, -1)  # B = W·diag(X_norm)
    ytx = b0 @ norm.xtx
    summary: dict[str, Any] = {"iterations": 0}
    if keep is None:
        b, keep, summary = admm_support(b0, ytx, norm, plan, kept, rho=rho, max_iter=max_iter,
                                        update_iter=update_iter, switch_iter=switch_iter)
    else:
        keep = keep.to(torch.bool)
        b = b0 * keep
    if pcg_iters > 0:
        b = pcg_on_support(norm.xtx, ytx, keep, b, maxiter=pcg_iters, rtol=pcg_rtol)
    return b.div_(norm.x_norm.reshape(1, -1)).masked_fill_(~keep, 0), keep, summary


# layers fed the same input share one Hessian statistic, and so one eigendecomposition (keyed weakly by it)
_SHARED: "weakref.WeakKeyDictionary[Any, tuple[tuple, Normalised]]" = weakref.WeakKeyDictionary()


def _shared_normalised(stat: Any, percdamp: float, name: str) -> Normalised:
    value = stat.value
    key = (value.data_ptr(), value._version, stat.nsamples, percdamp)
    try:
        hit = _SHARED.get(stat)
    except TypeError:  # not weak-referenceable: no sharing
        return normalise(value, stat.nsamples, percdamp, name)
    if hit is not None and hit[0] == key:
        return hit[1]
    norm = normalise(value, stat.nsamples, percdamp, name)
    _SHARED[stat] = (key, norm)
    return norm


@register("solver", "alps")
class ALPS(Solver):
    """ADMM support selection with a ρ schedule, then conjugate gradient on the support (Meng et al. 2024)."""

    stats = ("hessian",)
    selects = True

    def __init__(
        self,
        rho: Annotated[float, option("initial ADMM penalty ρ", gt=0, lt=1e6)] = 0.1,
        max_iter: Annotated[int, option("at most this many ADMM iterations", ge=1)] = 300,
        update_iter: Annotated[int, option("ρ is updated every this many iterations", ge=1)] = 3,
        switch_iter: Annotated[int, option("after this many iterations a small support change stops", ge=0)] = 30,
        pcg_iters: Annotated[int, option("conjugate-gradient steps of the back-solve", ge=0)] = 10,
        pcg_rtol: Annotated[float, option("CG stops when every residual is below this × its right-hand side",
                                          gt=0, allow_inf_nan=False)] = 1e-4,
        percdamp: Annotated[float, option("ridge added to XᵀX, as a fraction of its mean diagonal", gt=0,
                                          lt=10)] = 0.01,
    ):
        self.rho, self.max_iter, self.update_iter, self.switch_iter = float(rho), max_iter, update_iter, switch_iter
        self.pcg_iters, self.pcg_rtol, self.percdamp = pcg_iters, float(pcg_rtol), float(percdamp)
        self.last: dict[str, Any] = {}  # iterations and final ρ of the last ADMM run (for inspection)

    def options(self) -> dict[str, Any]:
        return {"rho": self.rho, "max_iter": self.max_iter, "update_iter": self.update_iter,
                "switch_iter": self.switch_iter, "pcg_iters": self.pcg_iters, "pcg_rtol": self.pcg_rtol,
                "percdamp": self.percdamp}

    def check(self, pattern: Pattern, selecting: bool) -> None:
        """Selecting, ALPS projects onto single weights (top-k of the layer) or N:M groups only."""
        check_selectable("alps", pattern, selecting)

    def solve(self, weight2d: torch.Tensor, keep2d: torch.Tensor | None, stats: dict[str, Any], plan: LayerPlan,
              name: str) -> tuple[torch.Tensor, torch.Tensor]:
        stat = stats["hessian"]
        self.last = {}
        return alps_prune(weight2d, stat.value, plan, keep2d, nsamples=stat.nsamples, rho=self.rho,
                          max_iter=self.max_iter, update_iter=self.update_iter, switch_iter=self.switch_iter,
                          pcg_iters=self.pcg_iters, pcg_rtol=self.pcg_rtol, percdamp=self.percdamp, name=name,
                          normalised=lambda: _shared_normalised(stat, self.percdamp, name), info=self.last)
