"""Structured pruning: physically remove channels, neurons, heads and whole blocks from any architecture.

    report = secateurs.structured.prune(model, example_inputs, sparsity=0.5, method="l2")
    plan = secateurs.structured.plan(model, example_inputs, 0.5)   # dry run: groups and exactly what would go
    report = secateurs.structured.prune_layers(model, example_inputs, n=2, method="bi")  # whole blocks
    secateurs.structured.register_surgery(MyLayer, handler)   # re-read a user layer's sizes after the cut
    secateurs.structured.save(model, "out/"); model = secateurs.structured.load(fresh_model, "out/")
    fast = secateurs.structured.for_inference(model, example_inputs)   # BatchNorm folded into the convs
"""
from __future__ import annotations

from .count import count_macs, count_params, latency
from .deploy import FusedPair, for_inference, fuse_bn
from .io import load, load_pretrained, save
from .layers import LayerReport, prune_layers
from .plan import Cut, Removal, StructuredPlan
from .prune import StructuredReport, plan, prune
from .surgery import register_surgery

__all__ = ["prune", "plan", "StructuredPlan", "Removal", "Cut", "StructuredReport", "register_surgery",
           "count_macs", "count_params", "latency", "save", "load", "load_pretrained", "prune_layers", "LayerReport",
           "fuse_bn", "for_inference", "FusedPair"]
