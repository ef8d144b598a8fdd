"""DARE — Drop And REscale (Yu et al. 2024, "Language Models are Super Mario: Absorbing Abilities from Homologous
Models as a Free Lunch", ICML; Eq. 1-2): each delta parameter is dropped with probability ``p`` and the kept ones
are rescaled by ``1/(1 − p)``, so that the expected output of every layer is unchanged,
``m ~ Bernoulli(p)``, ``Δ̂ = (1 − m) ⊙ Δ / (1 − p)``."""
from __future__ import annotations

import torch

from ..registry import register
from .base import DeltaMethod, random_keep_


@register("delta", "dare")
class DARE(DeltaMethod):
    """DARE (Yu et al. 2024): drop a random fraction p of the delta, rescale the rest by 1/(1-p) (Eq. 1-2)."""

    def sparsify(self, name: str, delta: torch.Tensor, sparsity: float, rescale: bool,
                 generator: torch.Generator) -> tuple[torch.Tensor, float]:
        scale = 1.0 / (1.0 - sparsity) if rescale else 1.0
        return random_keep_(delta, sparsity, generator, scale), scale
