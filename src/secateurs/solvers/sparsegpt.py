"""SparseGPT: one-shot pruning with OBS weight reconstruction (Frantar & Alistarh 2023, "SparseGPT: Massive
Language Models Can Be Accurately Pruned in One-Shot", Algorithm 1), as a solver.

With a given mask (``solver="sparsegpt"`` after any criterion) the kept weights are updated column by column
with the optimal-brain-surgeon step of Algorithm 1 (``err = (w − q)/Hinv_ii``, q = w masked); with no mask
(``method="sparsegpt"``) the solver also chooses the mask as it goes, exactly as the paper:

Faithful to IST-DASLab/sparsegpt@147d215 sparsegpt.py ``SparseGPT.fasterprune`` (and Wanda's pinned copy):

* Hessian ``H = (2/n) Σ x xᵀ`` in float32 over all calibration tokens (:class:`~.pipeline.Hessian`);
  input columns with ``H_ii = 0`` ("dead") get ``H_ii = 1`` and their weights are zeroed;
* dampening ``H += percdamp · mean(diag H) · I`` (percdamp 0.01), then ``Hinv = chol(H⁻¹)ᵀ`` (upper factor);
* columns are processed in blocks of ``blocksize`` (128) with lazy batch updates: inside a block column i is
  pruned and the rest of the block updated by ``W[:, i:] -= err ⊗ Hinv[i, i:]`` with
  ``err = (w − q)/Hinv_ii``; after the block the remaining columns get ``W[:, i2:] -= Err @ Hinv[i1:i2, i2:]``;
* unstructured: the mask is chosen once per 128-column block by the score ``w²/Hinv_cc²`` over the *whole
  block* (all rows × the block's columns) — the comparison group is the block, not a row;
* N:M: at every column ``i % M == 0`` each row keeps the N highest ``w²/Hinv_cc²`` of the next M columns,
  scored on the already-updated weights.

Deliberate differences: exactly ``int(numel*s)`` weights of a block are removed (the reference's
``<= sorted[int(numel*s)]`` removes one more); a Cholesky failure raises :class:`NonFiniteError` with a hint
instead of a raw ``torch.linalg`` error; no ``torch.cuda.synchronize`` (works on CPU); the column loop
keeps ``q`` implicitly (kept weights are never touched by their own update, pruned ones are set to exactly 0)
and uses in-place rank-1 updates; the factorisation and the column loop run single-threaded on CPU — the same
arithmetic, fewer temporaries.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import torch

from ..core.plan import LayerPlan
from ..core.select import prune_lowest
from ..core.modes import num_threads
from ..errors import NonFiniteError, PatternError
from ..patterns import NM, Pattern, nm_keep_mask
from ..registry import option, register
from .base import Solver, check_selectable


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run on one thread on CPU.  The column loop's many tiny in-place ops only pay threading overhead (10-100x
    slower on 2 busy cores), and torch 2.13's multi-threaded CPU ``cholesky_inverse`` took 15 s for a 1536² matrix
    where one thread takes 0.06 s (measured here)."""
    with num_threads(1 if device.type == "cpu" else None):
        yield


def hinv_factor(hessian: torch.Tensor, percdamp: float = 0.01, name: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """``(Hinv, dead)``: the upper Cholesky factor of the dampened ``H⁻¹`` and the input columns with ``H_ii = 0``
    (SparseGPT: dead columns get ``H_ii = 1``; ``H += percdamp·mean(diag H)·I``).  ``hessian`` is not modified."""
    H = hessian.clone()
    cols = H.shape[0]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols, device=H.device)
    H[idx, idx] += damp
    try:
        with _one_thread(H.device):  # torch's multi-threaded CPU cholesky_inverse is pathologically slow
            H = torch.linalg.cholesky(H)  # rebinding frees each intermediate: at most two cols² at a time
            H = torch.cholesky_inverse(H)
            Hinv = torch.linalg.cholesky(H, upper=True)
    except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise NonFiniteError(
            f"{name}: the dampened Hessian is not positive definite ({exc}); raise percdamp (now {percdamp}) "
            f"or use more calibration data"
        ) from exc
    return Hinv, dead


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, plan: LayerPlan, keep: torch.Tensor | None = None,
                    *, blocksize: int = 128, percdamp: float = 0.01, name: str = "layer",
                    copy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune an (out, in) float32 weight with SparseGPT's OBS reconstruction (Frantar & Alistarh 2023, Alg. 1).

    ``hessian`` is ``(2/n) Σ x xᵀ`` (in, in); it is not modified (layers fed the same input share it).  ``keep``:
    the (out, in) mask to reach (then only the weights are updated); None: chosen per block as the paper, at
    ``plan.sparsity`` or ``plan.n:plan.m``.  Returns the new weight and its keep mask; with ``copy=False`` a
    float32 ``weight`` is updated in place."""
    W = weight.float().clone() if copy or weight.dtype != torch.float32 else weight
    cols = W.shape[1]
    Hinv, dead = hinv_factor(hessian, percdamp, name)
    W[:, dead] = 0
    pruned = torch.zeros_like(W, dtype=torch.bool)

    with _one_thread(W.device):
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            d = torch.diag(Hinv1)
            if keep is not None:
                mask1 = ~keep[:, i1:i2]
            elif plan.is_nm:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            else:  # one comparison group: the whole block, rows x columns
                score = W1 ** 2 / d.reshape(1, -1) ** 2
                mask1 = prune_lowest(score, int(score.numel() * plan.sparsity))
            for i in range(i2 - i1):
                if keep is None and plan.is_nm and i % plan.m == 0:  # scored on the already-updated weights
                    s = slice(i, i + plan.m)
                    mask1[:, s] = ~nm_keep_mask(W1[:, s] ** 2 / d[s].reshape(1, -1) ** 2, plan.n, plan.m)
                # err = (w - q) / Hinv_ii with q = w where kept, 0 where pruned; then W1[:, i:] -= err ⊗ Hinv[i, i:]
                err = torch.mul(W1[:, i], mask1[:, i], out=Err1[:, i])
                err.div_(d[i])
                W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1)
            W[:, i1:i2] = W1.masked_fill_(mask1, 0)  # kept columns are w itself, pruned ones exactly 0
            pruned[:, i1:i2] = mask1
            W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1)
    return W, ~pruned


@register("solver", "sparsegpt")
class SparseGPT(Solver):
    """OBS reconstruction column by column, lazy blocks of 128, percdamp 0.01 (Frantar & Alistarh 2023, Alg. 1)."""

    stats = ("hessian",)
    selects = True

    def __init__(self, percdamp: Annotated[float, option("Hessian dampening, as a fraction of its mean diagonal",
                                                       gt=0, lt=10)] = 0.01,
                 blocksize: Annotated[int, option("columns per lazy-update block", ge=1)] = 128):
        self.percdamp, self.blocksize = float(percdamp), blocksize

    def options(self) -> dict[str, Any]:
        return {"percdamp": self.percdamp, "blocksize": self.blocksize}

    def check(self, pattern: Pattern, selecting: bool) -> None:
        """Selecting, SparseGPT chooses single weights or N:M groups (no blocks); N:M groups must not straddle two
        lazy-update blocks: M must divide blocksize."""
        check_selectable("sparsegpt", pattern, selecting)
        if selecting and isinstance(pattern, NM) and self.blocksize % pattern.m:
            raise PatternError(f"sparsegpt needs M={pattern.m} to divide blocksize={self.blocksize}")

    def solve(self, weight2d: torch.Tensor, keep2d: torch.Tensor | None, stats: dict[str, Any], plan: LayerPlan,
              name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return sparsegpt_prune(weight2d, stats["hessian"].value, plan, keep2d, blocksize=self.blocksize,
                               percdamp=self.percdamp, name=name, copy=False)
