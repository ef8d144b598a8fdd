"""Merging several pruned deltas into one model with TIES' sign election (Yadav et al. 2023, "TIES-Merging:
Resolving Interference When Merging Models", NeurIPS; Algorithm 1): each fine-tuned delta is first sparsified by
a delta method (DARE by default — "DARE-TIES"; ``magnitude`` is TIES' own trim step), then

* elect: ``γ = sgn(Σ_t w_t Δ̂_t)`` per parameter (the sign of the larger total mass);
* disjoint merge: ``Δ_m = Σ_{t ∈ A} w_t Δ̂_t / Σ_{t ∈ A} w_t`` over the models ``A`` whose pruned delta is nonzero
  and agrees with ``γ``;
* ``θ = θ_base + λ Δ_m``.

With ``sign_election=False`` the pruned deltas are summed, ``θ = θ_base + λ Σ_t w_t Δ̂_t`` (task arithmetic,
Ilharco et al. 2023, as DARE's merging experiments).  Streams tensor by tensor like :func:`secateurs.deltas.prune`
(memory ≈ one tensor per model).
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ..io import atomic_dir, atomic_write_json, check_output_dir
from ..registry import build
from .base import tensor_generator
from .prune import INFO_FILE, Checkpoint, _Context, check_pair, check_sparsity, write_like


def merge(base_dir: str | os.PathLike, finetuned_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
          method: str = "dare", sparsity: float = 0.9, rescale: bool = True, seed: int = 0, *,
          weights: Sequence[float] | None = None, sign_election: bool = True, scale: float = 1.0,
          exclude: str | None = None, overwrite: bool = False, **options: Any) -> dict[str, Any]:
    """Merge the deltas of ``finetuned_dirs`` (each against ``base_dir``) after pruning each with ``method`` at
    ``sparsity`` (see the module docstring; ``weights`` per model, default 1; ``scale`` is TIES' λ).  Model t's
    drop uses the generators of ``seed + t``.  ``exclude``: tensors (regex) taken from the first fine-tuned
    model.  Writes a directory shaped like the first fine-tuned one; returns the summary recorded in its
    ``secateurs.json``.  Raises, before anything is written, as :func:`secateurs.deltas.prune`, and
    InvalidArgumentError for fewer than two models or a bad ``weights``."""
    t0 = time.perf_counter()
    p = check_sparsity(sparsity)
    if len(finetuned_dirs) < 2:
        raise InvalidArgumentError(f"merge needs at least two fine-tuned models, got {len(finetuned_dirs)}")
    w = [1.0] * len(finetuned_dirs) if weights is None else [float(x) for x in weights]
    if len(w) != len(finetuned_dirs) or any(not x > 0 for x in w):
        raise InvalidArgumentError(f"weights must be {len(finetuned_dirs)} positive numbers, got {weights}")
    pattern = re.compile(exclude) if exclude else None
    base = Checkpoint(base_dir, "base")
    tuned = [Checkpoint(d, f"fine-tuned #{i}") for i, d in enumerate(finetuned_dirs)]
    for t in tuned:
        check_pair(base, t)
    out = check_output_dir(out_dir, overwrite).absolute()
    algos = [build("delta", method, options) for _ in tuned]
    for a, t in zip(algos, tuned):
        a.prepare(_Context(base, t, p))
    agree = {"entries": 0, "conflicts": 0}

    def combine(name: str, ft0: torch.Tensor) -> torch.Tensor:
        if not ft0.is_floating_point() or (pattern is not None and pattern.search(name)):
            return ft0
        b = base.shards.read([name])[name].float()
        num = torch.zeros_like(b)
        den = torch.zeros_like(b) if sign_election else None
        pruned = []
        for i, (a, t) in enumerate(zip(algos, tuned)):
            f = ft0 if i == 0 else t.shards.read([name])[name]
            d = f.float() - b
            d, _ = a.sparsify(name, d, p, bool(rescale), tensor_generator(int(seed) + i, name))
            pruned.append(d)
            num.add_(d, alpha=w[i])
        if sign_election:
            elected = torch.sign(num)
            num.zero_()
            signs = []
            for i, d in enumerate(pruned):
                s = torch.sign(d)
                keep = (s == elected) & (s != 0)
                num.add_(torch.where(keep, d, 0.0), alpha=w[i])
                den.add_(keep.float(), alpha=w[i])
                signs.append(s)
            nz = torch.stack([s != 0 for s in signs]).sum(0)
            agree["entries"] += int((nz > 0).sum())
            agree["conflicts"] += int(((torch.stack(signs) * elected) < 0).any(0).sum())
            num = torch.where(den > 0, num / den.clamp_min(1e-30), 0.0)
        return (b + scale * num).to(ft0.dtype)

    with atomic_dir(out, overwrite) as tmp:
        write_like(tuned[0], tmp, combine, metadata={"secateurs": "deltas.merge"})
        summary = {"method": method, "sparsity": p, "rescale": bool(rescale), "seed": int(seed), "weights": w,
                   "sign_election": bool(sign_election), "scale": float(scale), "base": str(base.dir.absolute()),
                   "finetuned": [str(t.dir.absolute()) for t in tuned], "sign_conflicts": agree,
                   "seconds": round(time.perf_counter() - t0, 3)}
        from ..llm.output import library_versions

        atomic_write_json(tmp / INFO_FILE, {"format": "secateurs.deltas/1", "merge": summary,
                                            "versions": library_versions()}, indent=2, default=str)
    return summary
