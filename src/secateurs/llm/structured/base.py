"""What every structured LLM method shares: the layout of a decoder block (its attention heads as whole key/value
groups, its gated MLP's neurons), the cut (the structured package's surgery on channel spaces built from that
layout, plus FLAP-style bias compensation), the streamed block-by-block passes of the engine, and the report.

A block's attention unit is a key/value group (Ainslie et al. 2023): k/v rows of kv head g and the ``n_rep`` query
heads that share it, with their ``o_proj`` columns, so a grouped-query model stays one.  A block's MLP unit is one
neuron: a ``gate_proj``/``up_proj`` row and the ``down_proj`` column.  The slicing itself is
:func:`secateurs.structured.surgery.apply` with its registered per-module handlers (nn.Linear re-reads its sizes);
the attention's head counts are written back by :func:`secateurs.structured.attention.spec_of`'s update, and the
config by :func:`secateurs.structured.hf.sync_config`.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ...core.feed import Feed
from ...core.sequential import sequential
from ...core.targets import Target
from ...errors import InvalidArgumentError, ModelStructureError
from ...structured.attention import Spec, spec_of
from ...structured.graph import Member, Space
from ...structured.hf import sync_config
from ...structured.surgery import apply as surgery_apply

__all__ = ["Layout", "StructuredContext", "StructuredMethod", "StructuredReport", "block_layouts", "cut",
           "keep_top", "finish_model", "stock_loadable", "structure_record", "apply_structure"]


class WidthError(InvalidArgumentError):
    """A requested width or sparsity the layer's structure cannot hold (every head or neuron of a layer, a head
    count that is not a whole number of key/value groups, every layer of the model)."""


# ------------------------------------------------------------------------------------------------- the layout
@dataclass(eq=False)
class Layout:
    """One decoder block: its attention (as a :class:`~secateurs.structured.attention.Spec`) and gated MLP."""

    index: int
    block: nn.Module
    attn_name: str | None = None
    attn: nn.Module | None = None
    spec: Spec | None = None
    mlp_name: str | None = None
    mlp: nn.Module | None = None

    @property
    def rep(self) -> int:
        return self.spec.heads // self.spec.kv_heads if self.spec else 1

    @property
    def kv_heads(self) -> int:
        return self.spec.k.out_features // self.spec.head_dim if self.spec else 0

    @property
    def heads(self) -> int:
        return self.kv_heads * self.rep

    @property
    def intermediate(self) -> int:
        return self.mlp.down_proj.in_features if self.mlp is not None else 0

    def head_space(self) -> Space | None:
        """The key/value groups as one space: q and o span n_rep·head_dim elements per group, k and v head_dim."""
        s = self.spec
        if s is None:
            return None
        rep, hd = self.rep, s.head_dim
        mem = [Member(s.q.weight, 0, 0, rep * hd), Member(s.k.weight, 0, 0, hd), Member(s.v.weight, 0, 0, hd),
               Member(s.o.weight, 1, 0, rep * hd)]
        mem += [Member(lin.bias, 0, 0, inner) for lin, inner in ((s.q, rep * hd), (s.k, hd), (s.v, hd))
                if lin.bias is not None]
        return Space(self.kv_heads, kind="heads", members=mem)

    def mlp_space(self) -> Space | None:
        m = self.mlp
        if m is None:
            return None
        mem = [Member(lin.weight, 0, 0, 1) for lin in (m.gate_proj, m.up_proj)] + [Member(m.down_proj.weight, 1, 0, 1)]
        mem += [Member(lin.bias, 0, 0, 1) for lin in (m.gate_proj, m.up_proj) if lin.bias is not None]
        return Space(self.intermediate, members=mem)

    def unit_params(self, space: Space | None) -> int:
        """Parameters one unit of ``space`` holds (a head group: (2·n_rep + 2)·head_dim·hidden plus biases)."""
        return sum(m.param.numel() for m in space.members) // space.size if space is not None and space.size else 0

    def outputs(self) -> tuple[nn.Linear | None, nn.Linear | None]:
        """(o_proj, down_proj): the layers whose inputs are the units' activations."""
        return (self.spec.o if self.spec else None), (self.mlp.down_proj if self.mlp is not None else None)


def _is_gated_mlp(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, n, None), nn.Linear) for n in ("gate_proj", "up_proj", "down_proj"))


def block_layouts(blocks: Sequence[nn.Module]) -> list[Layout]:
    """The attention (q/k/v/o_proj with ``head_dim``) and gated MLP (gate/up/down_proj) of every block: the
    Llama family (Llama, Mistral, Qwen2/3, Gemma-3, SmolLM...).  Raises ModelStructureError for other blocks."""
    out = []
    for i, blk in enumerate(blocks):
        lay = Layout(i, blk)
        for name, m in blk.named_modules():
            spec = spec_of(m) if lay.spec is None else None
            if spec is not None and spec.q is not None and spec.k is not None and spec.o is not None \
                    and not spec.transposed:
                lay.attn_name, lay.attn, lay.spec = name, m, spec
            elif lay.mlp is None and _is_gated_mlp(m):
                lay.mlp_name, lay.mlp = name, m
        if lay.spec is None or lay.mlp is None:
            raise ModelStructureError(
                f"block {i} ({type(blk).__name__}) has no Llama-style attention (q_proj/k_proj/v_proj/o_proj with "
                f"head_dim) and gated MLP (gate_proj/up_proj/down_proj); structured LLM pruning supports the Llama "
                f"family (Llama, Mistral, Qwen2/3, Gemma-3); use secateurs.structured.prune for other models")
        out.append(lay)
    return out


# ------------------------------------------------------------------------------------------------- the cut
def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (ascending) of the ``k`` highest scores; ties keep the earlier unit (a stable, deterministic sort)."""
    order = torch.sort(-scores.float().cpu(), stable=True).indices
    return order[:k].sort().values


def _drop(size: int, keep: torch.Tensor | None) -> torch.Tensor | None:
    if keep is None:
        return None
    mask = torch.ones(size, dtype=torch.bool)
    mask[keep] = False
    return mask.nonzero().squeeze(1)


def _add_bias(lin: nn.Linear, extra: torch.Tensor) -> None:
    extra = extra.to(device=lin.weight.device, dtype=torch.float32)
    if lin.bias is None:
        lin.bias = nn.Parameter(extra.to(lin.weight.dtype), requires_grad=lin.weight.requires_grad)
    else:
        lin.bias.data = (lin.bias.data.float() + extra).to(lin.bias.dtype)


@torch.no_grad()
def cut(lay: Layout, keep_groups: torch.Tensor | None, keep_neurons: torch.Tensor | None,
        attn_mean: torch.Tensor | None = None, mlp_mean: torch.Tensor | None = None) -> None:
    """Keep the key/value groups ``keep_groups`` and MLP neurons ``keep_neurons`` (None: all) of block ``lay``.

    ``attn_mean``/``mlp_mean``: the mean over calibration tokens of o_proj's/down_proj's input; given, the removed
    units' expected contribution becomes a bias (FLAP, An et al. 2024, eq. 7: ``b = W[:, removed] · E[x_removed]``,
    CASIA-IVA-Lab/FLAP lib/prune.py ``compress``), computed from the weights before the cut."""
    o, down = lay.outputs()
    spaces: dict[Space, torch.Tensor] = {}
    extra: list[tuple[nn.Linear, torch.Tensor]] = []
    hs, ms = lay.head_space(), lay.mlp_space()
    drop_g, drop_n = _drop(lay.kv_heads, keep_groups), _drop(lay.intermediate, keep_neurons)
    width = lay.rep * lay.spec.head_dim
    if drop_g is not None and drop_g.numel():
        spaces[hs] = drop_g
        if attn_mean is not None:
            cols = (drop_g[:, None] * width + torch.arange(width)[None, :]).reshape(-1).to(o.weight.device)
            extra.append((o, o.weight.float()[:, cols] @ attn_mean.to(o.weight.device).float()[cols]))
    if drop_n is not None and drop_n.numel():
        spaces[ms] = drop_n
        if mlp_mean is not None:
            cols = drop_n.to(down.weight.device)
            extra.append((down, down.weight.float()[:, cols] @ mlp_mean.to(down.weight.device).float()[cols]))
    if not spaces:
        return
    surgery_apply(lay.block, spaces)
    kv = lay.kv_heads
    lay.spec.update(lay.attn, kv * lay.rep, kv)
    lay.spec = spec_of(lay.attn)
    if isinstance(getattr(lay.mlp, "intermediate_size", None), int):
        lay.mlp.intermediate_size = lay.intermediate
    for lin, b in extra:
        _add_bias(lin, b)


# ------------------------------------------------------------------------------------------------- config and saving
def _skeleton_shapes(model: nn.Module) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes of the stock model its config describes (built on the meta device), or None."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        return None
    try:
        with torch.device("meta"):
            skel = type(model)(copy.deepcopy(cfg))
    except Exception:  # a family whose constructor cannot run on meta tensors: treat as not expressible
        return None
    return {n: tuple(p.shape) for n, p in skel.named_parameters()}


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def stock_loadable(model: nn.Module) -> bool:
    """True when plain ``from_pretrained`` of ``model.config`` builds exactly ``model``'s parameters."""
    skel = _skeleton_shapes(model)
    return skel is not None and skel == _shapes(model)


def finish_model(model: nn.Module, layouts: Sequence[Layout]) -> bool:
    """After the cuts: widths into the config (:func:`sync_config`), compensation biases made expressible where
    the family's config can hold them (Llama's ``attention_bias`` / ``mlp_bias`` put a bias on q/k/v/o resp.
    gate/up/down: the added ones are zero), and whether plain ``from_pretrained`` now rebuilds the model."""
    cfg = getattr(model, "config", None)
    sync_config(model)
    if cfg is not None:
        o_bias = any(l.spec.o.bias is not None for l in layouts)
        d_bias = any(l.mlp.down_proj.bias is not None for l in layouts)
        for flag, wanted, lins in (("attention_bias", o_bias, lambda l: (l.spec.q, l.spec.k, l.spec.v, l.spec.o)),
                                   ("mlp_bias", d_bias, lambda l: (l.mlp.gate_proj, l.mlp.up_proj, l.mlp.down_proj))):
            if not wanted or not isinstance(getattr(cfg, flag, None), bool) or getattr(cfg, flag):
                continue
            setattr(cfg, flag, True)
            skel = _skeleton_shapes(model) or {}
            for lay in layouts:
                prefix = _prefix(model, lay)
                for lin in lins(lay):
                    name = prefix + _name_in(lay.block, lin) + ".bias"
                    if lin.bias is None and name in skel:
                        lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype,
                                                            device=lin.weight.device))
    return stock_loadable(model)


def _name_in(block: nn.Module, mod: nn.Module) -> str:
    for n, m in block.named_modules():
        if m is mod:
            return n
    raise ModelStructureError("module not found in its block")


def _prefix(model: nn.Module, lay: Layout) -> str:
    for n, m in model.named_modules():
        if m is lay.block:
            return n + "."
    raise ModelStructureError(f"block {lay.index} is not part of the model")


def structure_record(model: nn.Module) -> dict[str, Any]:
    """The per-module widths a config cannot express: every Linear whose shape or bias differs from the stock
    model of the config (``[out, in, has_bias]``) and every attention's head counts, for :func:`apply_structure`."""
    skel = _skeleton_shapes(model) or {}
    linears, attention, mlp = {}, {}, {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            same = skel.get(name + ".weight") == tuple(m.weight.shape) and \
                ((name + ".bias") in skel) == (m.bias is not None)
            if not same:
                linears[name] = [m.out_features, m.in_features, m.bias is not None]
        spec = spec_of(m)
        if spec is not None and spec.k is not None:
            attention[name] = [spec.q.out_features // spec.head_dim, spec.k.out_features // spec.head_dim]
        if _is_gated_mlp(m):
            mlp[name] = m.down_proj.in_features
    return {"format": "secateurs.widths/1", "linears": linears, "attention": attention, "mlp": mlp}


def apply_structure(model: nn.Module, record: dict[str, Any]) -> None:
    """Give a freshly built stock model the widths of ``record`` (:func:`structure_record`): each listed Linear is
    replaced by an uninitialised one of the recorded shape, head counts and MLP widths are written back."""
    mods = dict(model.named_modules())
    for name, (out_f, in_f, bias) in record.get("linears", {}).items():
        old = mods.get(name)
        if not isinstance(old, nn.Linear):
            raise ModelStructureError(f"the structure record names {name!r}, which is not a Linear of "
                                      f"{type(model).__name__}")
        parent_name, _, attr = name.rpartition(".")
        new = nn.Linear(int(in_f), int(out_f), bias=bool(bias), device=old.weight.device, dtype=old.weight.dtype)
        setattr(mods[parent_name] if parent_name else model, attr, new)
    mods = dict(model.named_modules())
    for name, (h, kv) in record.get("attention", {}).items():
        spec = spec_of(mods[name])
        if spec is not None and spec.update is not None:
            spec.update(mods[name], int(h), int(kv))
    for name, width in record.get("mlp", {}).items():
        if isinstance(getattr(mods[name], "intermediate_size", None), int):
            mods[name].intermediate_size = int(width)


# ------------------------------------------------------------------------------------------------- context and report
@dataclass
class StructuredContext:
    """What a method sees: the model, its blocks and their layouts, the calibration feed (None when the method
    needs no data), the target sparsity (fraction of the blocks' parameters), and the engine's streamed passes."""

    model: nn.Module
    blocks_path: str
    blocks: nn.ModuleList
    layouts: list[Layout]
    feed: Feed | None
    sparsity: float | None
    device: torch.device
    seed: int = 0
    progress: bool = False
    rows: torch.Tensor | None = None
    block_seconds: list[float] = field(default_factory=list)

    def block_params(self) -> int:
        return sum(p.numel() for b in self.blocks for p in b.parameters())

    def need_feed(self, what: str) -> Feed:
        if self.feed is None:
            from ...errors import MissingDataError

            raise MissingDataError(f"{what} needs calibration data (token rows run block by block): pass "
                                   f"calibration=<text, file or token ids>")
        return self.feed

    def walk(self, targets: Callable[[Layout], list[nn.Module]], kinds: Sequence[str],
             process: Callable[[int, nn.Module, list[dict[str, Any]]], None], modifies: bool,
             description: str) -> None:
        """One block-by-block pass of the engine (:func:`secateurs.core.sequential.sequential`): capture block 0's
        inputs, collect ``kinds`` statistics of each block's ``targets(layout)`` while it runs, ``process`` it, and
        (``modifies``) re-run it so its pruned outputs feed the next block; without ``modifies`` the dense
        outputs do (FLAP's choice)."""
        feed = self.need_feed(description)
        prefix = {id(b): n for n, b in self.model.named_modules() if any(b is x for x in self.blocks)}
        tgts = []
        for lay in self.layouts:
            base = prefix.get(id(lay.block), f"{self.blocks_path}.{lay.index}")
            tgts.append([Target(f"{base}.{_name_in(lay.block, m)}", m) for m in targets(lay)])
        self.block_seconds = sequential(self.model, self.blocks_path, self.blocks, feed, targets=tgts, kinds=kinds,
                                        process=process, modifies=modifies, device=self.device,
                                        progress=self.progress, description=description)


class StructuredMethod:
    """Base class of a registered ``llm_structured`` method: options are the typed keyword arguments of
    ``__init__``; :meth:`check` validates against the model before any data runs; :meth:`run` prunes in place and
    returns method-specific details for the report."""

    needs_data = True

    def check(self, ctx: StructuredContext) -> None:
        """Raise before anything is touched when the request cannot be met."""

    def run(self, ctx: StructuredContext) -> dict[str, Any]:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class StructuredReport:
    """Parameters before/after, per-layer widths, removed layers, timings of :func:`prune_structured`."""

    method: str
    target_sparsity: float | None
    params_before: int
    params_after: int
    block_params_before: int
    block_params_after: int
    layers_before: int
    layers_after: int
    widths: list[dict[str, int]] = field(default_factory=list)  # per kept layer: heads, kv_heads, intermediate
    removed_layers: list[int] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    stock_config: bool = True  # plain from_pretrained rebuilds it (else secateurs.llm.load_pruned)
    block_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    calibration: dict[str, Any] | None = None

    @property
    def sparsity(self) -> float:
        """Fraction of the blocks' parameters removed."""
        return 1 - self.block_params_after / self.block_params_before if self.block_params_before else 0.0

    overall_sparsity = sparsity

    @property
    def model_reduction(self) -> float:
        """Fraction of all the model's parameters removed (embeddings included)."""
        return 1 - self.params_after / self.params_before if self.params_before else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sparsity"], d["model_reduction"] = self.sparsity, self.model_reduction
        return _json_safe(d)

    def table(self) -> str:
        lines = [f"{'layer':>5} {'heads':>5} {'kv':>3} {'mlp':>6}"]
        lines += [f"{w['layer']:>5} {w['heads']:>5} {w['kv_heads']:>3} {w['intermediate']:>6}" for w in self.widths]
        if self.removed_layers:
            lines.append(f"removed layers {self.removed_layers}")
        lines.append(f"{self.method}: parameters {self.params_before:,} -> {self.params_after:,} "
                     f"(blocks -{self.sparsity:.1%}, model -{self.model_reduction:.1%}) in {self.seconds:.1f}s")
        return "\n".join(lines)

    __str__ = table


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if torch.is_tensor(v):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def widths_of(layouts: Sequence[Layout]) -> list[dict[str, int]]:
    return [{"layer": i, "heads": l.heads, "kv_heads": l.kv_heads, "intermediate": l.intermediate}
            for i, l in enumerate(layouts)]


def now() -> float:
    return time.perf_counter()
