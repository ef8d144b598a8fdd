"""Find every set of coupled dimensions by running the model once on example inputs.

Why execution tracing (a ``TorchFunctionMode`` that sees every torch call with real tensors) rather than
``torch.fx`` or ``torch.export``: ``fx.symbolic_trace`` fails on any Python control flow that depends on a tensor
(most Hugging Face models: masks, caches, ``if x.shape[1] > ...``), and ``torch.export`` refuses data-dependent
branches and many custom ops, so both trace fewer real models; running the forward once resolves every branch on
the example and sees what the model really computes, like Torch-Pruning's autograd-graph walk, but at the level of
torch functions (``F.linear``, ``F.conv2d``, ``torch.cat``, ``Tensor.view``) whose arguments name the parameters
themselves.  An operation the tracer does not understand never crashes it: the channel spaces it reads are fixed
(left untouched) and a warning names the operation and the module it ran in.

Attention modules (whose heads are coupled through reshapes the tracer does not follow) are handled by adapters
(:mod:`secateurs.structured.attention`), which declare the head groups of q/k/v/o themselves.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .graph import Label, Member, Space, _coarsen, _split, expand, fix, length, unify

Handler = Callable[["Tracer", str, tuple, dict, Any], None]


@dataclass
class HeadSplit:
    """A channel dimension viewed as ``(..., heads, head_size)`` in module ``module`` (a user's own attention:
    ``q.view(B, T, h, D // h)``): ``label`` is the head dimension's, one unit per head."""

    module: str
    label: Label
    heads: int
    head_size: int
    call: int = 0  # which reshape of the module's forward (0 = its first), to find it again when checking
    dim: int = 0  # the head dimension's index in the view's shape


_OPS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            _OPS[n] = fn
        return fn
    return deco


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    return []


class Tracer(TorchFunctionMode):
    """Labels every tensor dimension with channel spaces while the model runs (see :mod:`.graph`)."""

    def __init__(self, model: nn.Module, adapters: dict[int, Any], head_hints: dict[str, int] | None = None):
        super().__init__()
        self.model = model
        self.labels: dict[int, list[Label]] = {}
        self.alive: list[torch.Tensor] = []  # keeps ids unique while tracing
        self.bound: dict[tuple[int, int], Label] = {}
        self.names: dict[int, str] = {}
        for n, p in model.named_parameters(remove_duplicate=False):
            self.names.setdefault(id(p), n)
        for n, b in model.named_buffers(remove_duplicate=False):
            self.names.setdefault(id(b), n)
        self.spaces: list[Space] = []
        self.warnings: list[str] = []
        self.stack: list[str] = []
        self.depth = 0  # > 0 inside an adapter-handled module
        self.outputs: dict[str, list[Label]] = {}  # module name -> labels of its outputs' dimensions
        self.inputs: dict[str, list[Label]] = {}  # module name -> labels of its inputs' dimensions
        self.adapters = adapters
        self.head_hints: dict[str, int] = dict(head_hints or {})  # module name -> head count (num_heads=)
        self.head_splits: list[HeadSplit] = []  # every view(..., h, d) of a channel dimension into heads
        self.reshapes: dict[str, int] = {}  # module name -> reshapes its forward ran so far

    # ------------------------------------------------------------------------------------------- labels
    def new_space(self, size: int, kind: str = "channels", fixed: str = "") -> Space:
        s = Space(size, kind, fixed=fixed)
        self.spaces.append(s)
        return s

    def bind(self, p: torch.Tensor | None, dim: int) -> Label:
        """The label of dimension ``dim`` of a parameter or buffer, created (one space) at first use."""
        if p is None:
            return None
        dim = dim % p.dim()
        if id(p) not in self.names:  # a computed weight (e.g. weight standardisation): its own labels
            lab = self.get(p)[dim]
            if lab is None and p.shape[dim] > 1:
                lab = ((self.new_space(p.shape[dim], fixed=f"a weight computed in {self.where()}"), 1),)
            return lab
        key = (id(p), dim)
        if key not in self.bound:
            if p.shape[dim] <= 1:
                return None
            s = self.new_space(p.shape[dim])
            s.members.append(Member(p, dim, 0, 1))
            self.bound[key] = ((s, 1),)
            self.alive.append(p)
        return self.bound[key]

    def bind_pieces(self, p: torch.Tensor, dim: int, label: Label) -> None:
        """Declare that dimension ``dim`` of ``p`` is laid out as ``label`` (used by attention adapters)."""
        off = 0
        for s, inner in label:
            s.root().members.append(Member(p, dim % p.dim(), off, inner))
            off += s.size * inner
        self.bound[(id(p), dim % p.dim())] = label
        self.alive.append(p)

    def get(self, t: torch.Tensor) -> list[Label]:
        if id(t) in self.labels:
            return self.labels[id(t)]
        if id(t) in self.names:
            return [self.bind(t, d) for d in range(t.dim())]
        return [None] * t.dim()

    def set(self, t: Any, labels: list[Label]) -> None:
        if isinstance(t, torch.Tensor) and any(labels):
            self.labels[id(t)] = labels
            self.alive.append(t)

    def join(self, *labs: Label, size: int) -> Label:
        """Couple the labels of operands that share a dimension of ``size`` elements (pass only operands that
        really have that dimension; a size-1 broadcast is not one).  A labelled dimension that meets an
        unlabelled one fixes its spaces."""
        out: Label = None
        for lab in labs:
            if lab:
                out = lab if out is None else unify(out, lab, size, f"coupled in {self.where()}")
        if out and size > 1 and any(not lab for lab in labs):  # e.g. the model's input, a position table
            fix(out, f"coupled to a non-channel dimension in {self.where()}")
        return out

    def where(self) -> str:
        return self.stack[-1] if self.stack and self.stack[-1] else "the model's forward"

    def block(self, tensors: list[torch.Tensor], why: str) -> None:
        """Fix every labelled dimension of ``tensors`` (they meet something the tracer does not follow)."""
        hit = False
        for t in tensors:
            for lab in self.get(t):
                if lab and any(not s.fixed for s, _ in expand(lab)):
                    fix(lab, why)
                    hit = True
        if hit:
            self.warnings.append(why)

    # ------------------------------------------------------------------------------------------- the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth:
            return out
        name = getattr(func, "__name__", "")
        if name == "__get__":
            return out
        if name in RESHAPES and isinstance(out, torch.Tensor):
            module = self.stack[-1] if self.stack else ""
            self.reshapes[module] = self.reshapes.get(module, 0) + 1
        ins = [t for t in _tensors(args) + _tensors(kwargs) if t.is_floating_point()]  # ids never carry channels
        if not any(id(t) in self.labels or id(t) in self.names for t in ins):
            return out  # nothing labelled flows through: nothing to couple
        if name == "__iter__" and isinstance(args[0], torch.Tensor):  # `q, k, v = t`: the rows of t, as unbind(0)
            rows = list(out)
            _split_op(self, "unbind", (args[0], 0), {}, rows)
            return iter(rows)
        handler = _OPS.get(name.rstrip("_") if not name.startswith("__") else name)
        if handler is None and name.startswith("__i") and name.endswith("__"):
            handler = _OPS.get("__" + name[3:])
        if handler is None:
            if _tensors(out):
                self.block(ins, f"{name} in {self.where()} is not understood by the tracer; its channels are "
                                f"left untouched")
            return out
        handler(self, name, args, kwargs, out)
        return out

    # module bookkeeping: names for warnings, adapters as leaves
    def _pre(self, name: str, module: nn.Module, args: tuple = (), kwargs: dict | None = None) -> None:
        if not self.depth:
            with torch._C.DisableTorchFunction():
                self.inputs.setdefault(name, []).extend(
                    lab for t in _tensors((args, kwargs or {})) for lab in self.get(t) if lab)
        self.stack.append(name)
        if id(module) in self.adapters:
            self.depth += 1

    def _post(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if id(module) in self.adapters:
            self.depth -= 1
            if not self.depth:
                with torch._C.DisableTorchFunction():
                    self.adapters[id(module)].trace(self, module, args, kwargs, output)
        if not self.depth:
            with torch._C.DisableTorchFunction():
                self.outputs.setdefault(name, []).extend(lab for t in _tensors(output) for lab in self.get(t) if lab)
        self.stack.pop()

    def run(self, inputs: Any) -> Any:
        handles = []
        for name, m in self.model.named_modules():
            handles.append(m.register_forward_pre_hook(lambda mod, a, kw, n=name: self._pre(n, mod, a, kw),
                                                       with_kwargs=True))
            handles.append(m.register_forward_hook(
                lambda mod, a, kw, o, n=name: self._post(n, mod, a, kw, o), with_kwargs=True))
        try:
            with self, torch.no_grad():
                out = call(self.model, inputs)
        finally:
            for h in handles:
                h.remove()
        for t in _tensors(out):
            for lab in self.get(t):
                fix(lab, "reaches the model's output")
        return out


def call(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple/list, else ``model(inputs)``."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


class Watch(TorchFunctionMode):
    """Runs a (pruned) model and sees where it breaks: the innermost module running when it raised (``failed``),
    and the shapes of chosen reshapes (``wanted``: (module, call index) as :class:`HeadSplit` records them), so
    a head split can be checked to still give the heads and head size it should."""

    def __init__(self, model: nn.Module, wanted: set[tuple[str, int]]):
        super().__init__()
        self.model, self.wanted = model, wanted
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.shapes: dict[tuple[str, int], tuple[int, ...]] = {}
        self.failed: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in RESHAPES and isinstance(out, torch.Tensor):
            module = self.stack[-1] if self.stack else ""
            k = self.counts.get(module, 0)
            self.counts[module] = k + 1
            if (module, k) in self.wanted:
                self.shapes[(module, k)] = tuple(out.shape)
        return out

    def _pop(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.stack.pop()

    def run(self, inputs: Any) -> Any:
        handles = []
        for name, m in self.model.named_modules():
            handles.append(m.register_forward_pre_hook(lambda mod, a, n=name: self.stack.append(n)))
            handles.append(m.register_forward_hook(self._pop))
        try:
            with self, torch.no_grad():
                return call(self.model, inputs)
        except Exception:
            self.failed = self.stack[-1] if self.stack else ""
            raise
        finally:
            for h in handles:
                h.remove()


# ------------------------------------------------------------------------------------------------ handlers
def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _present(tr: Tracer, params: tuple, dim: int) -> list[Label]:
    """Labels of dimension ``dim`` of the parameters that are given (a missing bias is no operand)."""
    return [tr.bind(p, dim) for p in params if isinstance(p, torch.Tensor)]


@op("add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod", "where", "maximum", "minimum",
    "pow", "atan2", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "masked_fill", "addcmul",
    "addcdiv", "lerp", "clamp", "clip", "copy", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__floordiv__", "__pow__", "__rpow__", "__and__", "__or__", "__eq__", "__ne__",
    "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__abs__", "__invert__",
    "relu", "gelu", "silu", "sigmoid", "tanh", "neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "erf",
    "sin", "cos", "dropout", "dropout1d", "dropout2d", "alpha_dropout", "hardtanh", "relu6", "leaky_relu", "elu",
    "selu", "celu", "softplus", "mish", "hardswish", "hardsigmoid", "logsigmoid", "square", "reciprocal", "sign",
    "floor", "ceil", "round", "float", "half", "bfloat16", "double", "to", "type", "type_as", "contiguous",
    "clone", "detach", "requires_grad", "nan_to_num", "softmax", "log_softmax", "gelu_new", "fill", "zero",
    "cpu", "cuda", "identity", "tanhshrink", "softsign", "tril", "triu", "cumsum")
def _elementwise(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    outs = _tensors(out)
    if len(outs) != 1:
        tr.block(_tensors(args), f"{name} in {tr.where()} returned several tensors")
        return
    o = outs[0]
    ins = [t for t in _tensors(args) + _tensors(kwargs) if t.dim() <= o.dim()]
    labels: list[Label] = [None] * o.dim()
    for k in range(1, o.dim() + 1):
        labels[-k] = tr.join(*[tr.get(t)[-k] for t in ins if t.dim() >= k and t.shape[-k] == o.shape[-k]],
                             size=o.shape[-k])
    tr.set(o, labels)


@op("linear")
def _linear(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x, w, b = args[0], _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    lx = tr.get(x)
    tr.join(lx[-1], tr.bind(w, 1), size=x.shape[-1])
    lo = tr.join(*_present(tr, (w, b), 0), size=w.shape[0])
    tr.set(out, lx[:-1] + [lo])


@op("addmm")
def _addmm(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:  # HF Conv1D: b + x @ W
    b, x, w = args[0], args[1], args[2]
    lx = tr.get(x)
    tr.join(lx[-1], tr.get(w)[0], size=x.shape[-1])
    lo = tr.join(tr.get(w)[1], *([tr.get(b)[-1]] if b.dim() and b.shape[-1] > 1 else []), size=w.shape[1])
    tr.set(out, [lx[0], lo])


@op("matmul", "mm", "bmm", "__matmul__", "__rmatmul__")
def _matmul(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    a, b = (args[1], args[0]) if name == "__rmatmul__" else (args[0], args[1])
    if a.dim() < 2 or b.dim() < 2:
        tr.block([a, b], f"{name} of a vector in {tr.where()}")
        return
    la, lb = tr.get(a), tr.get(b)
    tr.join(la[-1], lb[-2], size=a.shape[-1])
    labels: list[Label] = [None] * out.dim()
    labels[-2], labels[-1] = la[-2], lb[-1]
    for k in range(3, out.dim() + 1):
        labels[-k] = tr.join(*[lt[-k] for t, lt in ((a, la), (b, lb)) if t.dim() >= k and t.shape[-k] == out.shape[-k]],
                             size=out.shape[-k])
    tr.set(out, labels)


@op("conv1d", "conv2d", "conv3d")
def _conv(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x, w, b = args[0], _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    groups = _arg(args, kwargs, 6, "groups", 1)
    lx = tr.get(x)
    cin = x.shape[1] if x.dim() == w.dim() else x.shape[0]
    ch = 1 if x.dim() == w.dim() else 0  # unbatched input
    if groups == 1:
        tr.join(lx[ch], tr.bind(w, 1), size=cin)
        lo = tr.join(*_present(tr, (w, b), 0), size=w.shape[0])
    elif groups == cin == w.shape[0]:  # depthwise: output channel c is input channel c
        lo = tr.join(lx[ch], *_present(tr, (w, b), 0), size=cin)
    else:
        lo = _grouped_conv(tr, lx[ch], w, b, groups, cin)
    labels = [None] * out.dim()
    labels[ch] = lo
    if ch:
        labels[0] = lx[0]
    tr.set(out, labels)


def _grouped_conv(tr: Tracer, lx: Label, w: torch.Tensor, b: torch.Tensor | None, groups: int, cin: int) -> Label:
    """Grouped convolution (ResNeXt's cardinality, Xie et al. 2017): channel ``j·a + i`` of the input feeds only
    group ``j``'s outputs, through column ``i`` of the weight (out, a, k…).  So the i-th channel of every group is
    one unit: the input label is ``groups`` copies of the weight's column space (removing column i removes input
    channel i of every group), and the output label ``groups`` copies of one space bound to each group's rows.
    Every group keeps the same width, and the layer stays a convolution with ``groups`` groups."""
    where = f"grouped convolution (groups={groups}) in {tr.where()}"
    b_out = w.shape[0] // groups
    col = tr.bind(w, 1)  # None when each group reads one channel (a channel multiplier): inputs are kept whole
    if col is not None:
        tr.join(lx, col * groups, size=cin)
    else:
        fix(lx, where + " (one input channel per group)")
    bound = [(p, k) for p, k in ((w, 0), (b, 0)) if isinstance(p, torch.Tensor) and (id(p), k) in tr.bound]
    if b_out == 1 or bound:  # nothing to prune per group, or the weight is already laid out elsewhere
        lo = tr.join(*_present(tr, (w, b), 0), size=w.shape[0])
        fix(lo, where)
        return lo
    unit = tr.new_space(b_out)
    label: Label = ((unit, 1),) * groups
    for p in (w, b):
        if isinstance(p, torch.Tensor):
            tr.bind_pieces(p, 0, label)
    return label


@op("batch_norm", "instance_norm")
def _batch_norm(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x = args[0]  # both take (input, running_mean, running_var, weight, bias, ...)
    params = tuple(_arg(args, kwargs, i, n) for i, n in enumerate(("running_mean", "running_var", "weight",
                                                                    "bias"), 1))
    lx = list(tr.get(x))
    lx[1] = tr.join(lx[1], *_present(tr, params, 0), size=x.shape[1])
    tr.set(out, lx)


@op("layer_norm", "rms_norm")
def _layer_norm(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x, shape = args[0], _arg(args, kwargs, 1, "normalized_shape")
    w = _arg(args, kwargs, 2, "weight")
    b = _arg(args, kwargs, 3, "bias") if name == "layer_norm" else None
    lx = list(tr.get(x))
    if len(shape) != 1:
        tr.block([x], f"{name} over {len(shape)} dimensions in {tr.where()}")
        tr.set(out, tr.get(x))
        return
    if w is None:  # no affine weight: the width is only in the module's normalized_shape
        tr.block([x], f"{name} without a weight in {tr.where()}")
        tr.set(out, tr.get(x))
        return
    lx[-1] = tr.join(lx[-1], *_present(tr, (w, b), 0), size=x.shape[-1])
    tr.set(out, lx)


@op("group_norm")
def _group_norm(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    """GroupNorm (Wu & He 2018) normalises ``num_groups`` runs of C/G consecutive channels: as for a grouped
    convolution, the i-th channel of every group is one unit, so every group keeps the same width and
    ``num_groups`` stays.  Removing channels changes the statistics of their group (unlike BatchNorm's)."""
    x, groups = args[0], _arg(args, kwargs, 1, "num_groups")
    w, b = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    lx = list(tr.get(x))
    params = [p for p in (w, b) if isinstance(p, torch.Tensor)]
    per = x.shape[1] // groups
    if per == 1:  # one channel per group (InstanceNorm-like): channels are independent, like BatchNorm's
        lx[1] = tr.join(lx[1], *_present(tr, (w, b), 0), size=x.shape[1])
    elif any((id(p), 0) in tr.bound for p in params):
        tr.block([x], f"group_norm in {tr.where()} (its weight is laid out elsewhere; kept)")
    else:
        unit = tr.new_space(per)
        label: Label = ((unit, 1),) * groups
        for p in params:
            tr.bind_pieces(p, 0, label)
        lx[1] = tr.join(lx[1], label, size=x.shape[1])
    tr.set(out, lx)


@op("embedding")
def _embedding(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    idx, w = args[0], args[1]
    tr.set(out, [None] * idx.dim() + [tr.bind(w, 1)])


def _pieces_of(tr: Tracer, t: torch.Tensor, dim: int) -> Label:
    """The label of ``t``'s dimension ``dim``; an unlabelled one becomes a fixed space (keeps offsets right)."""
    lab = tr.get(t)[dim]
    if lab:
        return lab
    return ((tr.new_space(t.shape[dim], fixed=f"concatenated with an unprunable tensor in {tr.where()}"), 1),)


@op("cat", "concat", "concatenate")
def _cat(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    ts = [t for t in _arg(args, kwargs, 0, "tensors") if t.numel() or t.dim() > 1]
    dim = _arg(args, kwargs, 1, "dim", 0) % out.dim()
    labels: list[Label] = [None] * out.dim()
    for d in range(out.dim()):
        if d == dim:
            if any(tr.get(t)[d] for t in ts):
                labels[d] = tuple(p for t in ts for p in _pieces_of(tr, t, d))
            continue
        labels[d] = tr.join(*[tr.get(t)[d] for t in ts], size=out.shape[d])
    tr.set(out, labels)


@op("stack")
def _stack(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    ts = list(_arg(args, kwargs, 0, "tensors"))
    dim = _arg(args, kwargs, 1, "dim", 0) % out.dim()
    labels: list[Label] = [None] * (out.dim() - 1)
    for d in range(out.dim() - 1):
        labels[d] = tr.join(*[tr.get(t)[d] for t in ts], size=ts[0].shape[d])
    tr.set(out, labels[:dim] + [None] + labels[dim:])


def _slice(tr: Tracer, lab: Label, start: int, stop: int) -> Label:
    """The part of ``lab`` covering elements [start, stop); spaces are split at the ends.  None if a boundary
    falls inside one channel's elements (then the label is fixed)."""
    if not lab:
        return None
    if start == 0 and stop == length(lab):
        return lab
    out, pos = [], 0
    pieces = expand(lab)
    k = 0
    while k < len(pieces):
        s, inner = pieces[k]
        n = s.size * inner
        lo, hi = max(start, pos), min(stop, pos + n)
        if lo < hi:
            a, b = (lo - pos), (hi - pos)
            if a % inner or b % inner:
                fix(lab, f"a slice inside one channel in {tr.where()}")
                return None
            if a or b < n:  # cut the space so the slice is made of whole spaces
                if a:
                    _split(s, a // inner)
                elif b < n:
                    _split(s, b // inner)
                pieces[k:k + 1] = [(c, inner) for c in s.children]
                continue
            out.append((s, inner))
        pos += n
        k += 1
    return tuple(out)


@op("split", "split_with_sizes", "chunk", "tensor_split", "unbind")
def _split_op(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    x, outs = args[0], _tensors(out)
    if name == "unbind":
        dim = _arg(args, kwargs, 1, "dim", 0) % x.dim()
    elif name == "chunk":
        dim = _arg(args, kwargs, 2, "dim", 0) % x.dim()
    else:
        dim = _arg(args, kwargs, 2, "dim", 0) % x.dim()
    lx = tr.get(x)
    if name == "unbind":
        if lx[dim]:
            tr.block([x], f"unbind of a channel dimension in {tr.where()}")
        for o in outs:
            tr.set(o, lx[:dim] + lx[dim + 1:])
        return
    pos = 0
    for o in outs:
        n = o.shape[dim]
        lo = list(lx)
        lo[dim] = _slice(tr, lx[dim], pos, pos + n)
        pos += n
        tr.set(o, lo)


def _index(tr: Tracer, x: torch.Tensor, idx: Any, out: torch.Tensor) -> None:
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(isinstance(i, (torch.Tensor, list)) for i in idx) or sum(i is Ellipsis for i in idx) > 1:
        tr.block([x], f"advanced indexing in {tr.where()}")
        return
    lx, labels, d = tr.get(x), [], 0
    n_used = sum(1 for i in idx if i is not None and i is not Ellipsis)
    for i in idx:
        if i is None:
            labels.append(None)
        elif i is Ellipsis:
            for _ in range(x.dim() - n_used):
                labels.append(lx[d])
                d += 1
        elif isinstance(i, slice):
            start, stop, step = i.indices(x.shape[d])
            if step == 1:
                labels.append(_slice(tr, lx[d], start, stop))
            else:
                fix(lx[d], f"strided slice in {tr.where()}")
                labels.append(None)
            d += 1
        else:  # an integer removes the dimension
            if lx[d]:
                fix(lx[d], f"an integer index into a channel dimension in {tr.where()}")
            d += 1
    labels += lx[d:]
    tr.set(out, labels)


@op("__getitem__")
def _getitem(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    if isinstance(out, torch.Tensor):
        _index(tr, args[0], args[1], out)


@op("__setitem__")
def _setitem(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    tr.block(_tensors(args), f"an indexed assignment in {tr.where()}")


def _head_split(tr: Tracer, lab: Label, dims: list[int]) -> tuple[int, Label] | None:
    """A channel dimension split into several (``dims``, the sizes > 1 of the view): the multi-head split of a
    hand-written attention, ``x.view(B, T, h, D // h)`` or, fused, ``qkv.view(B, T, 3, h, D // h)``.  The head
    dimension is the one before the last (or, with a ``num_heads=`` hint for the module, the last one of that
    size); its label has one unit per head: the channel spaces are coarsened to ``head_size`` elements per unit
    (every later use of them then removes whole heads), and the ``P`` chunks before it (q, k, v of a fused
    projection) are unified, so head j goes from all of them together.  Returns (index into ``dims``, label), or
    None when the channels do not tile into heads."""
    module = tr.stack[-1] if tr.stack else ""
    hint = tr.head_hints.get(module)
    cands = [i for i in range(len(dims) - 1) if (dims[i] == hint if hint is not None else i == len(dims) - 2)]
    if not cands:
        return None
    qi = cands[-1]
    chunks, heads, size = math.prod(dims[:qi]), dims[qi], math.prod(dims[qi + 1:])
    per = heads * size
    labels: list[Label] = []
    for a in range(chunks):
        part = _slice(tr, lab, a * per, (a + 1) * per)
        if part is None:
            return None
        pieces: list[tuple[Space, int]] = []
        for piece in part:
            for s, inner in expand((piece,)):
                if inner % size == 0:
                    pieces.append((s, inner // size))
                elif size % inner == 0 and s.size % (size // inner) == 0:
                    pieces.append((_coarsen(s, size // inner), 1))
                else:
                    return None
        labels.append(tuple(pieces))
    joined = labels[0]
    for other in labels[1:]:
        joined = unify(joined, other, heads, f"the heads of {tr.where()}")
    for s, _ in expand(joined):
        s.kind = "heads"
    tr.head_splits.append(HeadSplit(module, joined, heads, size, tr.reshapes.get(module, 1) - 1))
    return qi, joined


def _reshape_labels(tr: Tracer, src: list[int], lab: list[Label], dst: list[int]) -> list[Label]:
    """Labels of a tensor of shape ``dst`` viewed from one of shape ``src``: dims are matched in groups of equal
    products; a channel dimension survives a merge with trailing unlabelled dims (flatten of C×H×W) and the
    inverse split."""
    out: list[Label] = [None] * len(dst)
    i = j = 0
    while i < len(src) or j < len(dst):
        gi, gj = [], []
        pa = pb = 1
        if i < len(src):
            gi.append(i); pa = src[i]; i += 1  # noqa: E702
        if j < len(dst):
            gj.append(j); pb = dst[j]; j += 1  # noqa: E702
        while pa != pb:
            if pa < pb and i < len(src):
                gi.append(i); pa *= src[i]; i += 1  # noqa: E702
            elif j < len(dst):
                gj.append(j); pb *= dst[j]; j += 1  # noqa: E702
            else:
                break
        while i < len(src) and src[i] == 1 and (j >= len(dst) or dst[j] != 1):
            gi.append(i); i += 1  # noqa: E702
        labelled = [k for k in gi if lab[k] and src[k] > 1]
        if not labelled:
            continue
        big_out = [k for k in gj if dst[k] > 1]
        if len(labelled) == 1:
            p = labelled[0]
            before = math.prod(src[k] for k in gi if k < p)
            after = math.prod(src[k] for k in gi if k > p)
            if before == 1 and len(big_out) >= 1:
                q = big_out[0]
                tail = math.prod(dst[k] for k in gj if k > q)
                if tail == 1 or all((inner * after) % tail == 0 for _, inner in expand(lab[p])):
                    pieces = tuple((s, inner * after // tail) for s, inner in expand(lab[p]))
                    if all(inner >= 1 for _, inner in pieces) and math.prod(dst[k] for k in gj if k < q) == 1:
                        out[q] = pieces
                        continue
            if before == 1 and after == 1 and len(big_out) >= 2:
                heads = _head_split(tr, lab[p], [dst[k] for k in big_out])
                if heads is not None:
                    out[big_out[heads[0]]] = heads[1]
                    tr.head_splits[-1].dim = big_out[heads[0]]
                    continue
        for k in labelled:
            fix(lab[k], f"a reshape in {tr.where()} that mixes a channel dimension with others")
        tr.warnings.append(f"a reshape in {tr.where()} mixes a channel dimension with others; its channels "
                           f"are left untouched")
    return out


RESHAPES = ("view", "reshape", "flatten", "unflatten", "view_as", "reshape_as")


@op(*RESHAPES)
def _reshape(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    if not isinstance(out, torch.Tensor):
        return
    x = args[0]
    tr.set(out, _reshape_labels(tr, list(x.shape), tr.get(x), list(out.shape)))


@op("permute", "transpose", "swapaxes", "swapdims", "t", "movedim")
def _permute(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x = args[0]
    lx, n = tr.get(x), x.dim()
    if name in ("transpose", "swapaxes", "swapdims", "t"):
        a, b = (0, 1) if name == "t" else (args[1] % n, args[2] % n)
        order = list(range(n))
        order[a], order[b] = order[b], order[a]
    elif name == "movedim":
        src, dst = args[1], args[2]
        src, dst = ([src], [dst]) if isinstance(src, int) else (list(src), list(dst))
        src, dst = [s % n for s in src], [d % n for d in dst]
        rest = [d for d in range(n) if d not in src]
        order = [-1] * n
        for s, d in zip(src, dst):
            order[d] = s
        it = iter(rest)
        order = [o if o >= 0 else next(it) for o in order]
    else:
        dims = args[1:] if len(args) > 2 or (len(args) == 2 and isinstance(args[1], int)) else \
            (args[1] if len(args) > 1 else kwargs["dims"])
        order = [d % n for d in dims]
    tr.set(out, [lx[o] for o in order])


@op("unsqueeze")
def _unsqueeze(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    lx = list(tr.get(args[0]))
    lx.insert(args[1] % out.dim(), None)
    tr.set(out, lx)


@op("squeeze")
def _squeeze(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x = args[0]
    tr.set(out, _reshape_labels(tr, list(x.shape), tr.get(x), list(out.shape)))


@op("expand", "expand_as", "repeat", "broadcast_to", "tile", "repeat_interleave")
def _expand(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    x = args[0]
    lx = tr.get(x)
    if out.dim() != x.dim() and name not in ("expand", "expand_as", "broadcast_to"):
        tr.block([x], f"{name} in {tr.where()}")
        return
    k = out.dim() - x.dim()
    labels: list[Label] = [None] * k
    for d in range(x.dim()):
        if x.shape[d] == out.shape[k + d]:
            labels.append(lx[d])
        else:
            if lx[d]:
                fix(lx[d], f"{name} of a channel dimension in {tr.where()}")
            labels.append(None)
    tr.set(out, labels)


@op("sum", "mean", "amax", "amin", "max", "min", "var", "std", "norm", "logsumexp", "prod", "all", "any",
    "argmax", "argmin", "median", "nansum", "nanmean", "var_mean", "std_mean")
def _reduce(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0]
    lx = tr.get(x)
    dim = _arg(args, kwargs, 1, "dim", None)
    if name == "norm":
        dim = _arg(args, kwargs, 2, "dim", None)
    keep = bool(kwargs.get("keepdim", False)) or (len(args) > 2 and isinstance(args[2], bool) and args[2])
    if dim is None or not isinstance(dim, (int, list, tuple)):
        return
    dims = {d % x.dim() for d in ([dim] if isinstance(dim, int) else dim)}
    labels = [None if d in dims else lx[d] for d in range(x.dim())]
    if not keep:
        labels = [lab for d, lab in enumerate(labels) if d not in dims]
    for o in _tensors(out):
        if o.dim() == len(labels):
            tr.set(o, labels)


@op("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d",
    "max_pool2d", "max_pool3d", "lp_pool1d", "lp_pool2d", "interpolate", "upsample", "pad",
    "max_pool2d_with_indices", "max_pool1d_with_indices", "boolean_dispatch")
def _pool(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0]
    lx = tr.get(x)
    if name == "pad":
        pad = _arg(args, kwargs, 1, "pad")
        touched = {x.dim() - 1 - k // 2 for k in range(len(pad)) if pad[k]}
        if any(lx[d] for d in touched):
            tr.block([x], f"padding of a channel dimension in {tr.where()}")
            return
        tr.set(out, [lx[d] if d not in touched else None for d in range(x.dim())])
        return
    spatial = {"1d": 1, "2d": 2, "3d": 3}.get(name[-2:], x.dim() - 2)
    keep = x.dim() - spatial
    if any(lx[keep:]):
        tr.block([x], f"{name} over a channel dimension in {tr.where()}")
        return
    for o in _tensors(out):
        if o.dim() == x.dim():
            tr.set(o, list(lx[:keep]) + [None] * spatial)


@op("scaled_dot_product_attention")
def _sdpa(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    q, k, v = args[0], args[1], args[2]
    lq, lk, lv = tr.get(q), tr.get(k), tr.get(v)
    tr.join(lq[-1], lk[-1], size=q.shape[-1])
    labels: list[Label] = [None] * out.dim()
    labels[-2] = lq[-2]
    for d in range(3, out.dim() + 1):  # batch dimensions (heads): shared by q, k, v
        labels[-d] = tr.join(*[lt[-d] for t, lt in ((q, lq), (k, lk), (v, lv))
                               if t.dim() >= d and t.shape[-d] == out.shape[-d]], size=out.shape[-d])
    tr.join(lk[-2], lv[-2], size=k.shape[-2])
    labels[-1] = lv[-1]
    tr.set(out, labels)


@op("einsum")
def _einsum(tr: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    eq = args[0].replace(" ", "")
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    if "..." in eq or "->" not in eq:
        tr.block(ops, f"einsum {eq!r} in {tr.where()}")
        return
    lhs, rhs = eq.split("->")
    seen: dict[str, list[Label]] = {}
    sizes: dict[str, int] = {}
    for spec, t in zip(lhs.split(","), ops):
        for ch, lab, n in zip(spec, tr.get(t), t.shape):
            if n > 1:
                seen.setdefault(ch, []).append(lab)
                sizes[ch] = n
    letters = {ch: tr.join(*labs, size=sizes[ch]) for ch, labs in seen.items()}
    tr.set(out, [letters.get(ch) for ch in rhs])


@op("size", "dim", "numel", "item", "tolist", "__len__", "__bool__", "__index__", "__int__", "__float__",
    "__format__", "__repr__", "is_floating_point", "is_contiguous", "data_ptr", "element_size", "stride",
    "__contains__", "equal", "allclose", "isfinite", "isnan", "isinf", "zeros_like", "ones_like", "empty_like",
    "full_like", "rand_like", "randn_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
    "get_device", "__hash__", "__iter__", "__array__", "__reversed__", "numpy", "register_hook")
def _no_coupling(tr: Tracer, name: str, args: tuple, kwargs: dict, out: Any) -> None:
    """Shape queries and fresh tensors: nothing is coupled."""
    if name in ("isfinite", "isnan", "isinf", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
                "randn_like") and isinstance(out, torch.Tensor):
        tr.set(out, tr.get(args[0]))


def trace(model: nn.Module, inputs: Any, adapters: dict[int, Any], head_hints: dict[str, int] | None = None
          ) -> Tracer:
    """Run ``model`` once on ``inputs`` under the tracer; returns it with every space found.  ``head_hints``:
    module name -> its head count, for :func:`_head_split` (the ``num_heads=`` argument of ``prune``)."""
    tr = Tracer(model, adapters, head_hints)
    tr.output = tr.run(inputs)  # the model's own outputs: callers compare the pruned model's with them
    for w in dict.fromkeys(tr.warnings):
        warnings.warn(f"secateurs.structured: {w}", stacklevel=3)
    return tr
