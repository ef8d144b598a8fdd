"""Structured pruning: physically remove channels, neurons, heads and whole blocks from any architecture.

    report = secateurs.structured.prune(model, example_inputs, ratio=0.5, importance="l2")
    report = secateurs.structured.prune_layers(model, example_inputs, n=2, importance="bi")  # whole blocks
    secateurs.structured.save(model, "out/"); model = secateurs.structured.load(fresh_model, "out/")
    fast = secateurs.structured.for_inference(model, example_inputs)   # BatchNorm folded into the convs
"""
from __future__ import annotations

from .count import count_macs, count_params, latency
from .deploy import FusedPair, for_inference, fuse_bn
from .io import load, load_pretrained, save
from .layers import LayerReport, prune_layers
from .prune import StructuredReport, prune

__all__ = ["prune", "StructuredReport", "count_macs", "count_params", "latency", "save", "load", "load_pretrained",
           "prune_layers", "LayerReport", "fuse_bn", "for_inference", "FusedPair"]
