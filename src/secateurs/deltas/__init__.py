"""Delta pruning (``secateurs.deltas``): sparsify the difference between a fine-tuned model and its base.

``prune(base_dir, finetuned_dir, out_dir, method="dare", sparsity=0.9, rescale=True, seed=0)`` streams two
safetensors checkpoints tensor by tensor and writes ``θ_base + Δ̂`` as a directory plain transformers loads.
Methods (registered under the kind ``"delta"``, one file each): ``dare`` (Yu et al. 2024), ``darex`` (DAREx-q,
Deng et al. 2025), ``magnitude`` (the baseline).  ``merge(base_dir, [ft_a, ft_b], out_dir, ...)`` merges several
pruned deltas with TIES' sign election (Yadav et al. 2023).
"""
from __future__ import annotations

from . import dare, darex, magnitude  # noqa: F401  (registers the methods)
from .base import DeltaMethod, tensor_generator
from .prune import DeltaReport, TensorReport, prune
from .ties import merge

__all__ = ["prune", "merge", "DeltaReport", "TensorReport", "DeltaMethod", "tensor_generator"]
