"""SparseGPT: one-shot pruning with OBS weight reconstruction (Frantar & Alistarh 2023, "SparseGPT: Massive
Language Models Can Be Accurately Pruned in One-Shot", Algorithm 1).

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
from typing import Any

import torch

from ..errors import InvalidArgumentError, NonFiniteError, PatternError
from ..registry import register
from .pipeline import LLMMethod, Target, prune_lowest_in_group, prune_nm


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run on one thread on CPU.  The column loop's many tiny in-place ops only pay threading overhead (10-100x
    slower on 2 busy cores), and torch 2.13's multi-threaded CPU ``cholesky_inverse`` took 15 s for a 1536² matrix
    where one thread takes 0.06 s (measured here)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, target: Target, *, blocksize: int = 128,
                    percdamp: float = 0.01, name: str = "layer", copy: bool = True) -> torch.Tensor:
    """Prune an (out, in) float32 weight with SparseGPT's OBS reconstruction (Frantar & Alistarh 2023, Alg. 1).

    ``hessian`` is ``(2/n) Σ x xᵀ`` (in, in); it is not modified (layers fed the same input share it).
    Returns the new weight; with ``copy=False`` a float32 ``weight`` is updated in place and returned."""
    W = weight.float().clone() if copy or weight.dtype != torch.float32 else weight
    H = hessian.clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

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
    del H

    with _one_thread(W.device):
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            d = torch.diag(Hinv1)
            if target.is_nm:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            else:  # one comparison group: the whole block, rows x columns
                mask1 = prune_lowest_in_group(W1 ** 2 / d.reshape(1, -1) ** 2, target.sparsity)
            for i in range(i2 - i1):
                if target.is_nm and i % target.m == 0:  # scored on the already-updated weights
                    s = slice(i, i + target.m)
                    mask1[:, s] = prune_nm(W1[:, s] ** 2 / d[s].reshape(1, -1) ** 2, target.n, target.m)
                # err = (w - q) / Hinv_ii with q = w where kept, 0 where pruned; then W1[:, i:] -= err ⊗ Hinv[i, i:]
                err = torch.mul(W1[:, i], mask1[:, i], out=Err1[:, i])
                err.div_(d[i])
                W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1)
            W[:, i1:i2] = W1.masked_fill_(mask1, 0)  # kept columns are w itself, pruned ones exactly 0
            W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1)
    return W


@register("llm_method", "sparsegpt")
class SparseGPT(LLMMethod):
    """OBS reconstruction, mask per 128-column block, percdamp 0.01 (Frantar & Alistarh 2023, Alg. 1)."""

    stats = ("hessian",)

    def __init__(self, percdamp: float = 0.01, blocksize: int = 128):
        if not (isinstance(percdamp, (int, float)) and 0 < percdamp < 10):
            raise InvalidArgumentError(f"sparsegpt percdamp must be a small positive number (0.01), got {percdamp!r}")
        if not (isinstance(blocksize, int) and blocksize >= 1):
            raise InvalidArgumentError(f"sparsegpt blocksize must be a positive integer (128), got {blocksize!r}")
        self.percdamp, self.blocksize = float(percdamp), blocksize

    def options(self) -> dict[str, Any]:
        """The options, for the report and secateurs.json."""
        return {"percdamp": self.percdamp, "blocksize": self.blocksize}

    def check_target(self, target: Target) -> None:
        """N:M groups must not straddle two lazy-update blocks: M has to divide ``blocksize``."""
        if target.is_nm and self.blocksize % target.m:
            raise PatternError(f"sparsegpt needs M={target.m} to divide blocksize={self.blocksize}")

    def prune_layer(self, block: int, name: str, weight: torch.Tensor, stats: dict[str, Any],
                    target: Target) -> torch.Tensor:
        """OBS-prune one layer on its Hessian (see :func:`sparsegpt_prune`)."""
        return sparsegpt_prune(weight, stats["hessian"].value, target, blocksize=self.blocksize,
                               percdamp=self.percdamp, name=f"block {block} {name}", copy=False)
