"""Layer scores for :func:`secateurs.structured.prune_layers` (registry kind ``layer_score``), one file each:
``bi`` (ShortGPT's Block Influence), ``angular`` (Gromov et al.'s angular distance), ``cka`` (Pons et al.'s 1 −
linear CKA) and ``random``."""
from __future__ import annotations

from . import angular, bi, cka, random  # noqa: F401  (registration)
from .base import LayerContext, LayerScore

__all__ = ["LayerContext", "LayerScore"]
