"""One decorator-based registry for every kind of named component.

``@register("criterion", "magnitude")`` files a class or function under a kind; ``get("criterion", "magnitud")``
raises :class:`~secateurs.errors.UnknownNameError` with a did-you-mean.  Components are registered when their
module is imported; :func:`_load` imports the packages that hold each kind so lookups never depend on import order.
"""
from __future__ import annotations

import collections.abc
import functools
import importlib
import inspect
import json
import re
import types
import typing
from typing import Any, Callable, NamedTuple

from .errors import UnknownNameError

_REGISTRY: dict[str, dict[str, Any]] = {}
# kind -> package whose modules register components of that kind
_PACKAGES = {
    "criterion": "secateurs.criteria",
    "allocation": "secateurs.allocations",
    "pattern": "secateurs.patterns",
    "statistic": "secateurs.core.stats",
    "scope": "secateurs.core.scope",
    "executor": "secateurs.core.executors",
    "model": "secateurs.zoo",
    "dataset": "secateurs.zoo",
    "solver": "secateurs.solvers",
    "importance": "secateurs.structured.importance",
    "structured_allocation": "secateurs.structured.allocations",
    "layer_score": "secateurs.structured.layer_scores",
    "compensation": "secateurs.structured.compensation",
    "llm_structured": "secateurs.llm.structured",
    "surgery": "secateurs.structured.surgery",
    "schedule": "secateurs.schedules",
    "scorer": "secateurs.data",
    "selector": "secateurs.data",
    "delta": "secateurs.deltas",
}


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Class/function decorator that files the object under ``kind``/``name``."""

    def deco(obj: Any) -> Any:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not obj:
            raise RuntimeError(f"{kind} {name!r} registered twice")
        table[name] = obj
        obj.registry_name = name
        return obj

    return deco


def _load(kind: str) -> None:
    pkg = _PACKAGES.get(kind)
    if pkg:
        importlib.import_module(pkg)


def get(kind: str, name: str) -> Any:
    """Look up a registered component; unknown names raise UnknownNameError with a suggestion."""
    _load(kind)
    table = _REGISTRY.get(kind, {})
    if name not in table:
        raise UnknownNameError(kind, name, table)
    return table[name]


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY.get(kind, {}))


_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\beq)(?<!\bcf)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z`(])")


def describe(kind: str) -> dict[str, str]:
    """name -> first sentence of the component's docstring (for ``secateurs methods``)."""
    _load(kind)
    out = {}
    for name, obj in sorted(_REGISTRY.get(kind, {}).items()):
        para = " ".join((obj.__doc__ or "").strip().split("\n\n")[0].split())  # first paragraph, one line
        m = _SENTENCE_END.search(para)
        out[name] = para[:m.start() + 1] if m else para  # its first sentence ("et al." is not an end)
    return out


def catalog(kind: str) -> dict[str, dict[str, Any]]:
    """name -> ``{"description": first sentence, "options": [OptionSpec as dicts]}`` (``secateurs methods --json``)."""
    return {name: {"description": line, "options": [s.to_dict() for s in option_specs(kind, name)]}
            for name, line in describe(kind).items()}


def build(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """Instantiate the registered class ``kind``/``name`` with keyword ``options``, validated by
    :func:`check_options` (unknown names, wrong types and out-of-range values raise InvalidArgumentError)."""
    return get(kind, name)(**check_options(kind, name, options))


def accepted_options(cls: Any, kind: str | None = None) -> list[str]:
    """Keyword options of a registered component (its ``__init__``'s parameters, or a function's, less the inputs
    its caller supplies)."""
    return list(_options_of(cls, kind)[0])


# -- typed options ------------------------------------------------------------------------------------------------
# Each component declares its options once, as the annotated keyword parameters of its ``__init__`` (a function's
# own parameters for scorers and selectors): ``percdamp: Annotated[float, option("help", gt=0)] = 0.01``.  The
# registry reads them (pydantic validates), lists them (``secateurs methods --json``) and coerces CLI text.

# the parameters a kind's caller passes itself (never options): a scorer's data set, a selector's inputs...
_SUPPLIED = {"scorer": ("dataset",), "selector": ("difficulty", "keep", "rng", "rate"), "schedule": ("model",)}
_PLAIN = (int, float, str, bool, type(None))


def option(help: str, **constraints: Any) -> Any:
    """The metadata of one option inside ``Annotated[type, option(...)]``: a one-line ``help`` and pydantic
    constraints (``gt``, ``ge``, ``lt``, ``le``, ``min_length``, ``allow_inf_nan=False``...)."""
    from pydantic import Field

    return Field(description=help, **constraints)


class TextValue(str):
    """An option value as typed on a command line: coerced to the option's declared type when validated
    (``"0.05"`` -> 0.05, ``"true"`` -> True, ``"1,2"`` -> [1, 2] for a list, ``"none"`` -> None)."""


class OptionSpec(NamedTuple):
    """One declared option of a component: name, type (as written), default, one-line help, constraint."""

    name: str
    type: str
    default: Any
    help: str
    constraint: str
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class _Option(NamedTuple):
    param: inspect.Parameter
    hint: Any
    spec: OptionSpec | None  # None: an input that is accepted but not a listable option (a tensor, a callable...)


def option_specs(kind: str, name: str) -> list[OptionSpec]:
    """The declared options of ``kind``/``name``, in signature order (inputs such as tensors or callables that a
    component accepts but that no command line can give are left out)."""
    return [o.spec for o in _options_of(get(kind, name), kind)[0].values() if o.spec is not None]


def check_options(kind: str, name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``options`` validated against the declared types and constraints of ``kind``/``name`` (CLI text coerced):
    the one option validator of secateurs.  Unknown names, wrong types and out-of-range values raise
    :class:`~secateurs.errors.InvalidArgumentError` naming the component, the option, what was expected and the
    value given."""
    return validate(get(kind, name), options, f"{kind} {name!r}", kind)


def validate(obj: Any, options: dict[str, Any] | None, label: str, kind: str | None = None) -> dict[str, Any]:
    """:func:`check_options` for any class or function (``label`` names it in errors, e.g. ``"importance 'wanda'"``)."""
    from pydantic import ValidationError

    from .errors import InvalidArgumentError

    opts, open_ended = _options_of(obj, kind)
    options = dict(options or {})
    unknown = [k for k in options if k not in opts and not open_ended]
    if unknown:
        raise InvalidArgumentError(
            f"{label} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(opts) or 'none'}")
    out = {}
    for key, value in options.items():
        o = opts.get(key)
        if o is None or o.spec is None:  # forwarded by **options, or an input (tensor, array...) it checks itself
            out[key] = _json_or_text(value) if isinstance(value, TextValue) else value
            continue
        text = isinstance(value, TextValue)
        raw = _from_text(o.hint, value) if text else _normalise(o.hint, value)
        try:
            out[key] = _adapter(o.hint).validate_python(raw, strict=not text)
        except ValidationError as exc:
            raise InvalidArgumentError(_describe_error(label, key, o, value, exc)) from None
    return out


@functools.lru_cache(maxsize=None)
def _options_of(obj: Any, kind: str | None) -> tuple[dict[str, _Option], bool]:
    """name -> option of a registered class's ``__init__`` or a function; and whether it takes ``**options``."""
    if isinstance(obj, type):
        if obj.__init__ is object.__init__:
            return {}, False
        fn, skip = obj.__init__, 1
    else:
        fn, skip = obj, 0
    params = list(inspect.signature(fn).parameters.values())[skip:]
    hints = _hints(fn)
    supplied = _SUPPLIED.get(kind or "", ())
    out: dict[str, _Option] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in supplied:
            continue
        hint = hints.get(p.name, Any)
        out[p.name] = _Option(p, hint, _spec(p, hint) if _listable(hint) else None)
    return out, any(p.kind == p.VAR_KEYWORD for p in params)


def _hints(fn: Callable) -> dict[str, Any]:
    """Resolved annotations (with ``Annotated`` extras); one that cannot be resolved (a TYPE_CHECKING-only name)
    is Any."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - resolve one by one below
        pass
    out = {}
    ns = getattr(fn, "__globals__", {})
    for k, v in getattr(fn, "__annotations__", {}).items():
        try:
            out[k] = eval(v, ns) if isinstance(v, str) else v  # noqa: S307 - the component's own annotation
        except Exception:  # noqa: BLE001
            out[k] = Any
    return out


def _strip(hint: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, m...]`` -> (T, [m...]); anything else -> (hint, [])."""
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__origin__, list(hint.__metadata__)
    return hint, []


def _members(hint: Any) -> list[Any]:
    """The alternatives of a union (``X | None``), else ``[hint]``."""
    hint = _strip(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _plain(hint: Any) -> bool:
    """Built from int/float/str/bool/None, literals, lists/tuples/dicts of them: what a command line can give."""
    hint = _strip(hint)[0]
    if hint in _PLAIN:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType, list, tuple, dict, collections.abc.Sequence):
        return all(a is Ellipsis or a is Any or _plain(a) for a in typing.get_args(hint))  # dict[str, Any]: JSON
    return False


def _listable(hint: Any) -> bool:
    return any(m is not type(None) and _plain(m) for m in _members(hint))


def _is_list(hint: Any) -> bool:
    return typing.get_origin(_strip(hint)[0]) in (list, tuple, collections.abc.Sequence)


def _type_name(hint: Any) -> str:
    hint = _strip(hint)[0]
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(map(repr, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint))


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _constraint(hint: Any) -> str:
    """The declared range of an option, e.g. ``"> 0, < 10"`` (from its Annotated metadata)."""
    parts = []
    for m in _strip(hint)[1] + [x for f in _strip(hint)[1] for x in getattr(f, "metadata", [])]:
        for attr, sym in _BOUNDS:
            if getattr(m, attr, None) is not None and type(m).__name__.lower() == attr:
                parts.append(f"{sym} {getattr(m, attr)}")
        if type(m).__name__ == "MinLen":
            parts.append(f"at least {m.min_length} item(s)")
        if type(m).__name__ == "AllowInfNan" and not m.allow_inf_nan:
            parts.append("finite")
    return ", ".join(parts)


def _help(hint: Any) -> str:
    return next((m.description for m in _strip(hint)[1] if getattr(m, "description", None)), "")


def _json_safe(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return repr(v)


def _spec(p: inspect.Parameter, hint: Any) -> OptionSpec:
    required = p.default is inspect.Parameter.empty
    return OptionSpec(p.name, _type_name(hint), None if required else _json_safe(p.default), _help(hint),
                      _constraint(hint), required)


@functools.lru_cache(maxsize=None)
def _adapter(hint: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))


def _normalise(hint: Any, value: Any) -> Any:
    """Python values that strict validation would refuse for no good reason: numpy scalars, tuples for lists."""
    if hasattr(value, "dtype") and getattr(value, "ndim", None) == 0 and hasattr(value, "item") \
            and type(value).__module__ == "numpy":
        return value.item()
    if isinstance(value, tuple) and any(typing.get_origin(_strip(m)[0]) is list for m in _members(hint)):
        return list(value)
    return value


def _from_text(hint: Any, text: str) -> Any:
    """Command-line text before lax validation: ``none`` for an optional option, comma lists, JSON objects."""
    members = _members(hint)
    s = str(text).strip()
    if type(None) in members and s.lower() in ("none", "null", ""):
        return None
    if any(_is_list(m) for m in members) and (s.startswith("[") or "," in s
                                               or all(_is_list(m) or m is type(None) for m in members)):
        if s.startswith("["):
            return _json_or_text(s)
        return [x.strip() for x in s.split(",") if x.strip()]
    if any(typing.get_origin(_strip(m)[0]) is dict for m in members) or not _listable(hint):
        return _json_or_text(s)  # a dict option, or one that declares no type: JSON when it parses
    return s


def _json_or_text(s: str) -> Any:
    try:
        return json.loads(s)
    except ValueError:
        return s


_EXPECTED = {"float_type": "a number", "float_parsing": "a number", "int_type": "an integer",
             "int_parsing": "an integer", "int_from_float": "an integer", "bool_type": "True or False",
             "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
             "dict_type": "a dict", "finite_number": "a finite number", "none_required": "None"}


def _describe_error(label: str, key: str, o: _Option, value: Any, exc: Any) -> str:
    """``solver 'sparsegpt' option percdamp must be > 0, got -1 (float > 0, < 10: dampening...; default 0.01)``."""
    errs = exc.errors()
    e = next((x for x in errs if x["type"] not in _EXPECTED), errs[0]) if len(errs) > 1 else errs[0]
    ctx = e.get("ctx") or {}
    t = e["type"]
    sym = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if t in sym:
        bound = next(iter(ctx.values()))
        what = f"{sym[t]} {bound:g}" if isinstance(bound, float) else f"{sym[t]} {bound}"
    elif t == "literal_error":
        what = f"one of {ctx.get('expected')}"
    elif t == "string_too_short":
        what = f"at least {ctx.get('min_length')} character(s) long"
    elif t == "too_short":
        what = f"at least {ctx.get('min_length')} item(s) long"
    elif t in _EXPECTED and len(errs) == 1:
        what = _EXPECTED[t]
    else:
        what = f"of type {_type_name(o.hint)}"
    where = "".join(f"[{p}]" for p in e.get("loc", ()) if isinstance(p, int))
    spec = o.spec or _spec(o.param, o.hint)
    detail = ", ".join(x for x in (spec.type, spec.constraint) if x)
    detail += f": {spec.help}" if spec.help else ""
    detail += "" if spec.required else f"; default {spec.default!r}"
    return f"{label} option {key}{where} must be {what}, got {value!r} ({detail})"
