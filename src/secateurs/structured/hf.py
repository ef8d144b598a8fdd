"""Hugging Face config bookkeeping after structured pruning.

When every layer keeps the same widths, the stock config can say so: ``num_attention_heads``,
``num_key_value_heads``, ``head_dim`` (written explicitly, since the head width no longer equals hidden / heads),
``intermediate_size`` (``ffn_dim`` for OPT, ``n_inner`` for GPT-2) and ``hidden_size``; plain
``from_pretrained`` then rebuilds the pruned model.  When widths differ per layer (global allocation) or the family
derives the head width from the hidden size (BERT), the config cannot express it: the structure file written by
:func:`secateurs.structured.save` records every module's widths and :func:`secateurs.structured.load_pretrained`
rebuilds from it.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .attention import spec_of

_MLP = (("up_proj", "intermediate_size"), ("fc1", "ffn_dim"), ("c_fc", "n_inner"))


def _uniform(values: list[int]) -> int | None:
    return values[0] if values and all(v == values[0] for v in values) else None


def sync_config(model: nn.Module) -> tuple[Callable[[], None], bool]:
    """Write the pruned widths into ``model.config`` where it can express them; returns (undo, expressible)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        return (lambda: None), True
    before = dict(vars(cfg))
    heads, kv, hd, mlp = [], [], [], {}
    for m in model.modules():
        spec = spec_of(m)
        if spec is not None:
            w = (spec.k.weight.shape[spec.out_dim()] if spec.k is not None
                 else spec.qkv.weight.shape[spec.out_dim()] // 3)
            kv.append(w // spec.head_dim)
            heads.append(kv[-1] * (spec.heads // spec.kv_heads))
            hd.append(spec.head_dim)
        for attr, field in _MLP:
            lin = getattr(m, attr, None)
            if isinstance(lin, nn.Linear) or type(lin).__name__ == "Conv1D":
                mlp.setdefault(field, []).append(lin.weight.shape[0] if isinstance(lin, nn.Linear)
                                                 else lin.weight.shape[1])
        inter = getattr(getattr(m, "intermediate", None), "dense", None)  # BERT
        if isinstance(inter, nn.Linear):
            mlp.setdefault("intermediate_size", []).append(inter.out_features)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    ok = True
    updates: dict[str, Any] = {}
    if emb is not None and hasattr(cfg, "hidden_size"):
        updates["hidden_size"] = emb.embedding_dim
    for field, values in mlp.items():
        v = _uniform(values)
        if v is None:
            ok = False
        elif hasattr(cfg, field) or field == "intermediate_size":
            updates[field] = v
    h, k, d = _uniform(heads), _uniform(kv), _uniform(hd)
    if heads:
        if h is None or k is None:
            ok = False
        else:
            updates["num_attention_heads"] = h
            if hasattr(cfg, "num_key_value_heads"):
                updates["num_key_value_heads"] = k
            hidden = updates.get("hidden_size", getattr(cfg, "hidden_size", None))
            if d is not None and hidden is not None and hidden // h != d:
                if "head_dim" in vars(cfg) or type(cfg).__name__.startswith(("Llama", "Mistral", "Qwen", "Gemma")):
                    updates["head_dim"] = d
                else:  # the family computes head width = hidden / heads: not expressible
                    ok = False
    for key, v in updates.items():
        if not ok and key in ("num_attention_heads", "num_key_value_heads", "head_dim"):
            continue
        setattr(cfg, key, v)

    def undo() -> None:
        for key in list(vars(cfg)):
            if key not in before:
                delattr(cfg, key)
        vars(cfg).update(before)
    return undo, ok
