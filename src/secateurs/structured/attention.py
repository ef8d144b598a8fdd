"""Attention adapters: whole heads (q, k, v rows and o columns together) as one group.

The heads of multi-head attention are coupled through reshapes (``view(b, t, heads, d)``) that a channel tracer
cannot follow in general, so each supported attention module declares its head group itself and runs as a leaf of
the trace.  With grouped-query attention the unit is a key/value group: removing kv head g removes k and v rows
of head g and the ``n_rep`` query heads that share it (Ainslie et al. 2023), so the model stays a GQA model.

Adapters: secateurs' zoo ViT (``qkv`` fused + ``proj``), GPT-2 (``c_attn`` fused Conv1D + ``c_proj``), Hugging Face
decoders with ``q_proj/k_proj/v_proj`` and
``o_proj`` (Llama, Mistral, Qwen2/3, Gemma, Phi-3 style) or ``out_proj`` (OPT), and BERT-style self-attention
(``query/key/value``; its output projection is an ordinary Linear the tracer follows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .graph import Label, Space


@dataclass
class Spec:
    heads: int
    kv_heads: int
    head_dim: int
    q: nn.Linear | None = None
    k: nn.Linear | None = None
    v: nn.Linear | None = None
    qkv: nn.Linear | None = None  # fused q|k|v rows (zoo ViT)
    o: nn.Linear | None = None
    update: Callable[[nn.Module, int, int], None] | None = None  # (module, heads, kv_heads) after surgery
    transposed: bool = False  # GPT-2 Conv1D: weights stored (in, out)

    def out_dim(self) -> int:  # the weight dimension of a projection's outputs
        return 1 if self.transposed else 0

    def in_dim(self) -> int:
        return 0 if self.transposed else 1


def _is_linear(m: Any) -> bool:
    return isinstance(m, nn.Linear)


def spec_of(module: nn.Module) -> Spec | None:
    """The head layout of a supported attention module, or None."""
    if type(module).__name__ == "GPT2Attention" and not getattr(module, "is_cross_attention", False):
        hd = module.head_dim

        def set_gpt2(m: nn.Module, h: int, _kv: int) -> None:
            m.num_heads, m.split_size = h, h * hd
        return Spec(module.num_heads, module.num_heads, hd, qkv=module.c_attn, o=module.c_proj, update=set_gpt2,
                    transposed=True)
    names = ("q_proj", "k_proj", "v_proj")
    if all(_is_linear(getattr(module, n, None)) for n in names) and isinstance(getattr(module, "head_dim", None), int):
        hd = module.head_dim
        o = getattr(module, "o_proj", None) or getattr(module, "out_proj", None)
        if not _is_linear(o):
            return None
        h, kv = module.q_proj.out_features // hd, module.k_proj.out_features // hd

        def set_hf(m: nn.Module, h: int, kv: int) -> None:
            for attr, val in (("num_heads", h), ("num_key_value_heads", kv)):
                if isinstance(getattr(m, attr, None), int):
                    setattr(m, attr, val)
            if hasattr(m, "embed_dim") and isinstance(m.embed_dim, int) and getattr(m, "out_proj", None) is not None:
                m.embed_dim = h * hd  # OPT reshapes its output with embed_dim
        return Spec(h, kv, hd, module.q_proj, module.k_proj, module.v_proj, o=o, update=set_hf)
    if all(_is_linear(getattr(module, n, None)) for n in ("query", "key", "value")) and \
            isinstance(getattr(module, "attention_head_size", None), int):
        hd = module.attention_head_size
        h = module.query.out_features // hd

        def set_bert(m: nn.Module, h: int, _kv: int) -> None:
            m.num_attention_heads, m.all_head_size = h, h * hd
        return Spec(h, h, hd, module.query, module.key, module.value, update=set_bert)
    return None


class HeadAdapter:
    """Runs one attention module as a leaf of the trace and declares its head group."""

    def __init__(self, name: str, module: nn.Module, spec: Spec):
        self.name, self.module, self.spec = name, module, spec
        self.space: Space | None = None

    def trace(self, tr: Any, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        s = self.spec
        x = args[0] if args else kwargs.get("hidden_states")
        from .graph import fix
        from .trace import _tensors

        for t in _tensors((args, kwargs)):  # rotary tables, masks...: how the module reads them is not traced
            if t is not x:
                for lab in tr.get(t):
                    fix(lab, f"read inside attention {self.name}")
        rep = s.heads // s.kv_heads
        self.space = hs = tr.new_space(s.kv_heads, kind="heads")
        q_lab: Label = ((hs, rep * s.head_dim),)
        kv_lab: Label = ((hs, s.head_dim),)
        ins = [s.qkv] if s.qkv is not None else [s.q, s.k, s.v]
        for lin in ins:
            tr.join(tr.get(x)[-1], tr.bind(lin.weight, s.in_dim()), size=x.shape[-1])
        if s.qkv is not None:
            layout = q_lab + kv_lab + kv_lab
            tr.bind_pieces(s.qkv.weight, s.out_dim(), layout)
            if s.qkv.bias is not None:
                tr.bind_pieces(s.qkv.bias, 0, layout)
        else:
            for lin, lab in ((s.q, q_lab), (s.k, kv_lab), (s.v, kv_lab)):
                tr.bind_pieces(lin.weight, s.out_dim(), lab)
                if lin.bias is not None:
                    tr.bind_pieces(lin.bias, 0, lab)
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            return
        if s.o is not None:
            tr.bind_pieces(s.o.weight, s.in_dim(), q_lab)
            width = s.o.weight.shape[s.out_dim()]
            lo = tr.join(tr.bind(s.o.weight, s.out_dim()), *([tr.bind(s.o.bias, 0)] if s.o.bias is not None else []),
                         size=width)
        else:
            lo = q_lab
        tr.set(out, [None] * (out.dim() - 1) + [lo])

    def finish(self) -> None:
        s = self.spec
        width = (s.qkv.weight.shape[s.out_dim()] // 3) if s.qkv is not None else s.k.weight.shape[s.out_dim()]
        kv = width // s.head_dim
        h = kv * (s.heads // s.kv_heads)
        if s.update is not None:
            s.update(self.module, h, kv)


def find_adapters(model: nn.Module) -> dict[int, HeadAdapter]:
    out: dict[int, HeadAdapter] = {}
    for name, m in model.named_modules():
        spec = spec_of(m)
        if spec is not None:
            out[id(m)] = HeadAdapter(name, m, spec)
    return out


# ------------------------------------------------------------------------------ heads split in a user's own forward
def _is_head_count(attr: str) -> bool:
    """``num_heads``, ``heads``, ``n_head``, ``num_attention_heads``... (not ``head_dim`` / ``head_size``)."""
    a = attr.lower()
    return "head" in a and not any(w in a for w in ("dim", "size", "width", "scale"))


def _is_heads_width(attr: str) -> bool:
    """``all_head_size``, ``inner_dim``: the width of all heads together, stored on the module."""
    a = attr.lower()
    return "all_head" in a or "inner" in a


def split_modules(model: nn.Module, splits: list[Any]) -> list[nn.Module]:
    """The modules whose forward splits heads (:class:`~secateurs.structured.trace.HeadSplit`)."""
    mods = dict(model.named_modules())
    return list({id(mods[s.module]): mods[s.module] for s in splits if s.module in mods}.values())


def heads_after(split: Any, removals: dict[Space, torch.Tensor]) -> int:
    """How many heads a split has once ``removals`` (space -> units dropped) are cut."""
    from .graph import expand

    return sum((s.size - len(removals.get(s, ()))) * inner for s, inner in expand(split.label))


def set_split_heads(model: nn.Module, splits: list[Any], removals: dict[Space, torch.Tensor],
                    hinted: set[str] = frozenset()) -> None:
    """Write the new head count into the module that splits heads in its own forward: every int attribute named
    like a head count (``num_heads``, ``heads``, ``n_head``...) that held the old count, and one named like the
    heads' total width (``all_head_size``, ``inner_dim``) that held heads x head size.  For a module given a
    ``num_heads=`` hint (``hinted``) any int attribute equal to the old count is a head count."""
    mods = dict(model.named_modules())
    for sp in splits:
        m = mods.get(sp.module)
        new = heads_after(sp, removals)
        if m is None or new == sp.heads:
            continue
        for attr, v in list(vars(m).items()):
            if attr.startswith("_") or isinstance(v, bool) or not isinstance(v, int):
                continue
            if v == sp.heads and (_is_head_count(attr) or sp.module in hinted):
                setattr(m, attr, new)
            elif v == sp.heads * sp.head_size and _is_heads_width(attr):
                setattr(m, attr, new * sp.head_size)
