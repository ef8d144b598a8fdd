"""Post-training pruning of Hugging Face language models (``secateurs.llm``): the front door to the one engine.

``prune(model, calibration, method="wanda", sparsity=0.5, pattern="unstructured", allocation="uniform", ...)``
prunes the linear layers of a transformer's repeated blocks with any criterion of the engine — ``magnitude``,
``wanda`` (Sun et al. 2023), ``sparsegpt`` (Frantar & Alistarh 2023), ``gblm`` (Das et al. 2023)... — allocated
``uniform``-ly, by ``owl`` (Yin et al. 2023) or any other allocation, in the sequential block-by-block order of
the references; ``save_pruned`` writes a ``save_pretrained`` directory plus ``secateurs.json`` atomically;
``perplexity`` and ``embedding_fidelity`` measure the result (:mod:`secateurs.llm.evaluate`);
``prune_structured(model, calibration, method="flap"|"width"|"shortgpt", sparsity=0.2)`` removes heads, MLP
neurons or whole layers so that the model is really smaller (:mod:`secateurs.llm.structured`), reloaded by plain
``from_pretrained`` or, for per-layer widths, ``load_pruned``; ``prune_checkpoint(model_dir, out_dir, calibration,
...)`` does what ``prune`` does to a checkpoint larger than memory, streaming it block by block
(:mod:`secateurs.llm.stream`);
``recover(model, text, steps, train="biases,norms"|"lora"|...)`` retrains a pruned model parameter-efficiently
(PERP, Zimmer et al. 2023; masks held, optional distillation from the dense model; :mod:`secateurs.llm.recover`).
"""
from __future__ import annotations

from typing import Any

from ..core.blocks import find_blocks, find_linears
from .output import check_output_dir, load_pruned, save_pruned
from .prune import LayerReport, PruneReport, prune
from .recover import RecoverReport, recover
from .stream import compress_checkpoint, prune_checkpoint
from .structured import StructuredReport, prune_structured

__all__ = ["prune", "prune_structured", "StructuredReport", "recover", "RecoverReport", "prune_checkpoint", "perplexity", "embedding_fidelity", "save_pruned", "load_pruned", "compress_checkpoint",
           "check_output_dir", "PruneReport",
           "LayerReport", "find_blocks", "find_linears"]


def __getattr__(name: str) -> Any:
    # re-exported lazily so that pruning does not depend on the evaluation module being importable
    if name in ("perplexity", "embedding_fidelity"):
        from . import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'secateurs.llm' has no attribute {name!r}")
