"""Coupled dimensions: channel *spaces* joined by union-find, the data structure behind the dependency graph.

A *space* is a set of ``size`` channels that must be removed together wherever they appear (DepGraph, Fang et al.
2023, §3: a group is a connected set of coupled dimensions).  Each tensor dimension the tracer sees carries a
*label*: the concatenation of pieces ``(space, inner)``, where every channel of ``space`` spans ``inner`` consecutive
elements of that dimension (``inner`` > 1 after ``flatten`` of a C×H×W map, or for attention heads of width d).

* Two dimensions that must stay aligned (the operands of an addition, the input of a Linear and its weight's
  second dimension, a BatchNorm's parameters and its input) are *unified*: their spaces are joined.
* ``torch.cat`` makes a label of several pieces; when such a dimension meets one that has a single space (a
  BatchNorm after a DenseNet concatenation), that space is *split* at the piece boundaries.
* A space that touches something that cannot be pruned (the model's inputs and outputs, a dimension an operation
  the tracer does not understand reads whole) is *fixed*.

Every parameter dimension that a space spans is a :class:`Member` of the space, so tied weights (one Parameter
used by two modules) are joined by construction.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

_ids = itertools.count()


@dataclass(frozen=True)
class Member:
    """``inner`` consecutive elements per channel of dimension ``dim`` of ``param``, starting at ``offset``."""

    param: torch.Tensor
    dim: int
    offset: int
    inner: int


@dataclass(eq=False)
class Space:
    size: int
    kind: str = "channels"  # "channels" or "heads"
    factor: int = 1  # as the coarsened child of a space: elements of the parent per channel of this one
    parent: "Space | None" = None
    children: list["Space"] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    fixed: str = ""  # why it cannot be pruned ("" = prunable)
    id: int = field(default_factory=lambda: next(_ids))

    def root(self) -> "Space":
        s = self
        while s.parent is not None:
            if s.parent.parent is not None:  # path halving
                s.parent = s.parent.parent
            s = s.parent
        return s


Piece = tuple[Space, int]  # (space, inner)
Label = tuple[Piece, ...] | None  # None: not a channel dimension (batch, spatial, tokens)


def length(label: Label) -> int:
    return sum(s.size * inner for s, inner in label) if label else 0


def expand(label: Label) -> list[Piece]:
    """The label's pieces in terms of current roots, split spaces replaced by their parts."""
    out: list[Piece] = []
    stack = list(reversed(label or ()))
    while stack:
        s, inner = stack.pop()
        r = s.root()
        if r.children:
            stack.extend((c, inner * c.factor) for c in reversed(r.children))
        else:
            out.append((r, inner))
    return out


def fix(label: Label, why: str) -> None:
    for s, _ in expand(label):
        if not s.fixed:
            s.fixed = why


def _split(r: Space, k: int) -> None:
    """Split root ``r`` into its first ``k`` channels and the rest; members are cut at the boundary."""
    a, b = Space(k, r.kind, fixed=r.fixed), Space(r.size - k, r.kind, fixed=r.fixed)
    for m in r.members:
        a.members.append(m)
        b.members.append(Member(m.param, m.dim, m.offset + k * m.inner, m.inner))
    r.members = []
    r.children = [a, b]


def _coarsen(r: Space, f: int) -> Space:
    """Re-express root ``r`` as a space of ``r.size / f`` channels of ``f`` of its elements each (a Linear's input
    after ``flatten`` of C×H×W maps: one channel of the convolution is H·W columns)."""
    c = Space(r.size // f, r.kind, factor=f, fixed=r.fixed)
    c.members = [Member(m.param, m.dim, m.offset, m.inner * f) for m in r.members]
    r.members = []
    r.children = [c]
    return c


def _union(a: Space, b: Space) -> None:
    a, b = a.root(), b.root()
    if a is b:
        return
    if len(a.members) < len(b.members):
        a, b = b, a
    b.parent = a
    a.members.extend(b.members)
    b.members = []
    a.fixed = a.fixed or b.fixed
    if b.kind == "heads":
        a.kind = "heads"


def unify(x: Label, y: Label, size: int, why: str) -> Label:
    """Join two labels of a dimension of ``size`` elements; returns the joined label (None if neither had one).

    A labelled dimension joined with an unlabelled one of more than one element is fixed (``why``): its channels
    meet something that is not a channel space, e.g. a learned position table or a reshape the tracer cannot map.
    """
    if not x and not y:
        return None
    if not x or not y:
        lab = x or y
        if size > 1:
            fix(lab, why)
        return lab
    px, py = expand(x), expand(y)
    i = j = 0
    while i < len(px) and j < len(py):
        (a, ia), (b, ib) = px[i], py[j]
        la, lb = a.size * ia, b.size * ib
        if ia != ib:
            (small, si), (_, bi) = (px[i], py[j]) if ia < ib else (py[j], px[i])
            f = bi // si
            if bi % si or small.size % f:
                fix(x, why + " (the channel widths differ)")
                fix(y, why + " (the channel widths differ)")
                return x
            c = _coarsen(small, f)
            if ia < ib:
                px[i] = (c, bi)
            else:
                py[j] = (c, bi)
            continue
        if la == lb:
            _union(a, b)
            i, j = i + 1, j + 1
        elif la > lb:
            _split(a, b.size)
            px[i:i + 1] = [(c, ia) for c in a.children]
        else:
            _split(b, a.size)
            py[j:j + 1] = [(c, ib) for c in b.children]
    return x


def leaves(spaces: list[Space]) -> list[Space]:
    """The distinct current root spaces (split ones replaced by their parts), in first-seen order."""
    seen: dict[int, Space] = {}
    for s in spaces:
        for r, _ in expand(((s, 1),)):
            seen.setdefault(r.id, r)
    return list(seen.values())
