"""A run of any pruning family described by one validated object: :class:`Recipe`.

The same recipe is a YAML file (``secateurs run recipe.yaml``), a Python object
(``secateurs.Recipe(method="snip", sparsity=0.9).run()``) and command-line flags (``secateurs run --method snip
--finetune.epochs 1``).  Its weight-pruning part *is* a :class:`secateurs.PruneSpec` (:meth:`Recipe.spec`): the
names and options of the criterion, allocation, pattern, scope and solver are validated by the spec and the
registry's one option validator, not by a second schema.  Like open_lth's hyperparameter dataclasses
(``foundations/desc.py``), the resolved recipe plus the library version is the run's cache key
(:meth:`Recipe.key`).
"""
from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import registry
from .._version import __version__
from ..errors import InvalidArgumentError, PruningError, UnknownNameError

FAMILIES = ("weights", "schedule", "structured", "llm", "data")
CONTROLS = ("dense", "scratch", "random_mask", "global_magnitude")

# the method of each family when none is given (the family's usual baseline)
DEFAULT_METHOD = {"weights": "magnitude", "schedule": "magnitude", "structured": "l2", "llm": "wanda",
                  "data": "el2n"}
DEFAULT_SPARSITY = {"weights": 0.9, "schedule": 0.9, "structured": 0.5, "llm": 0.5, "data": 0.5}
# fields that only some families read; a value other than the default elsewhere is refused
ONLY_FOR = {
    "allocation": ("weights", "schedule", "structured", "llm"),
    "pattern": ("weights", "schedule", "llm"),
    "scope": ("weights", "llm"),
    "solver": ("weights", "llm"),
    "min_keep": ("weights",),
    "ignore": ("weights", "structured", "llm"),
    "dense": ("weights",),
    "schedule": ("schedule",),
    "selector": ("data",),
}


class RecipeError(InvalidArgumentError):
    """A recipe (file, object, flag or grid) with an unknown field, a value out of range or an unknown name: the
    message names the field's path (``finetune.epochs``), what is allowed and the closest match."""

    def __init__(self, path: str, message: str):
        super().__init__(f"recipe field {path!r}: {message}" if path else f"recipe: {message}")
        self.path = path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finetune(_Strict):
    """The training budget after pruning (and of the controls that train)."""

    epochs: int = Field(0, ge=0, description="epochs of fine-tuning after pruning (schedule family: of training; "
                                             "data family: of training on the subset; 0 / None = the zoo recipe's)")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (None: 0.01 for fine-tuning, the zoo "
                                                        "recipe's for training from scratch)")
    scratch_epochs: Optional[int] = Field(None, ge=1, description="epochs of the 'scratch' control (None: the zoo "
                                                                  "recipe's dense epochs, Liu et al. 2019 Scratch-E)")


class Evaluation(_Strict):
    """What is measured besides test accuracy and loss."""

    latency: bool = Field(False, description="structured: median forward latency, dense and pruned (1 thread)")
    latency_rounds: int = Field(20, ge=1, description="timed forwards per model for latency")
    batch_size: int = Field(64, ge=1, description="evaluation (and fine-tuning) batch size")


class Recipe(_Strict):
    """One pruning run: model, data, family, method and its options, allocation, pattern, schedule, fine-tuning
    budget, seed, evaluation, and the control it is (None: the method itself).

    Construction validates everything that needs no model: unknown fields (with a did-you-mean), values out of
    range, unknown method/allocation/pattern/schedule/selector names, options the component does not take, and
    fields set on a family that does not read them.  Errors are :class:`RecipeError` (an
    :class:`~secateurs.InvalidArgumentError`) naming the field's path.
    """

    family: Literal["weights", "schedule", "structured", "llm", "data"] = "weights"
    model: str = Field("lenet300", description="zoo model name (llm: a zoo LLM name or a Hugging Face directory)")
    data: str = Field("digits", description="zoo data set (digits, fashion-mnist, ...); llm: ignored")
    method: Optional[str] = Field(None, description="criterion / importance / scorer (None: the family's default)")
    sparsity: Optional[float] = Field(None, ge=0, lt=1, description="fraction removed (weights, channels, "
                                      "examples); None: the family's default, or what an N:M pattern implies")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the method and its components")
    allocation: Optional[str] = None
    pattern: str = "unstructured"
    scope: Optional[str] = None
    solver: Optional[str] = None
    min_keep: Optional[int] = Field(None, ge=0)
    ignore: Optional[list[str]] = None
    dense: Optional[list[str]] = None
    schedule: Optional[str] = Field(None, description="schedule family: the registered schedule (default gmp)")
    selector: Optional[str] = Field(None, description="data family: the selector (default hard)")
    finetune: Finetune = Field(default_factory=Finetune)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    seed: int = Field(0, ge=0)
    control: Optional[Literal["dense", "scratch", "random_mask", "global_magnitude"]] = Field(
        None, description="which built-in control this run is (None: the method itself)")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _from_pydantic(e, type(self)) from None
        self._check_names()

    # --------------------------------------------------------------------------------------------- validation
    def _check_names(self) -> None:
        fam = self.family
        for name, families in ONLY_FOR.items():
            if fam not in families and getattr(self, name) != type(self).model_fields[name].default:
                raise RecipeError(name, f"is not read by family {fam!r} (it applies to {', '.join(families)}); "
                                        f"remove it")
        if self.control is not None:
            allowed = controls_for(fam)
            if self.control not in allowed:
                raise RecipeError("control", f"{self.control!r} is not a control of family {fam!r}; "
                                             f"allowed: {', '.join(allowed)}")
        if fam != "llm":
            _named("model", "model", self.model)
            _named("data", "dataset", self.data)
        elif not Path(self.model).is_dir():
            from ..zoo import LLM_SOURCES

            if self.model not in LLM_SOURCES:
                raise RecipeError("model", f"{self.model!r} is neither a Hugging Face model directory nor a zoo LLM."
                                  + _did_you_mean(self.model, sorted(LLM_SOURCES))
                                  + f" Zoo LLMs: {', '.join(sorted(LLM_SOURCES))}")
        method = self.resolved_method
        if fam in ("weights", "llm"):
            self.spec()
        elif fam == "schedule":
            _named("schedule", "schedule", self.schedule or "gmp")
            _named("method", "criterion", method)
            if self.allocation is not None:
                _named("allocation", "allocation", self.allocation)
        elif fam == "structured":
            known = set(registry.names("importance")) | set(registry.names("criterion")) | {"random", "taylor"}
            if method not in known:
                raise RecipeError("method", str(UnknownNameError("structured importance", method, known)))
            if self.allocation is not None:
                _named("allocation", "structured_allocation", self.allocation)
        elif fam == "data":
            _named("method", "scorer", method)
            _named("selector", "selector", self.selector or "hard")
            try:
                registry.check_options("scorer", method, dict(self.options))
            except PruningError as e:
                raise RecipeError("options", str(e)) from None

    @property
    def resolved_sparsity(self) -> float | None:
        """The sparsity: the family's default when None, except for an N:M pattern (which implies it)."""
        if self.sparsity is None and ":" not in self.pattern:
            return DEFAULT_SPARSITY[self.family]
        return self.sparsity

    @property
    def resolved_method(self) -> str:
        return self.method or DEFAULT_METHOD[self.family]

    def spec(self) -> Any:
        """The weight-pruning part as a :class:`secateurs.PruneSpec` (weights and llm families): validated by the
        spec itself; its errors are re-raised naming the recipe field."""
        from ..core.spec import PruneSpec

        try:
            return PruneSpec(sparsity=self.resolved_sparsity,
                             method=self.resolved_method, allocation=self.allocation, pattern=self.pattern,
                             scope=self.scope, solver=self.solver, options=dict(self.options), ignore=self.ignore,
                             dense=self.dense, min_keep=self.min_keep, seed=self.seed)
        except UnknownNameError as e:
            field = {"criterion": "method"}.get(e.kind, e.kind if e.kind in type(self).model_fields else "method")
            raise RecipeError(field, str(e)) from None
        except PruningError as e:
            msg = str(e)
            field = "pattern" if "pattern" in msg else "sparsity" if "sparsity" in msg else "options"
            raise RecipeError(field, msg) from None

    # ------------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """The recipe as written (JSON-safe); ``Recipe(**d)`` inverts it."""
        return self.model_dump(mode="json")

    def resolved(self) -> dict[str, Any]:
        """Every field with the family's defaults filled in: what the run actually does (the cache key's input)."""
        d = self.to_dict()
        d["method"] = self.resolved_method
        if self.family == "schedule":
            d["schedule"] = self.schedule or "gmp"
        if self.family == "data":
            d["selector"] = self.selector or "hard"
        if d["finetune"]["lr"] is None and self.family in ("weights", "structured"):
            d["finetune"]["lr"] = 0.01
        d["sparsity"] = self.resolved_sparsity
        return d

    def key(self) -> str:
        """The run's cache key: a hash of the resolved recipe and the library version."""
        doc = json.dumps({"recipe": self.resolved(), "version": __version__}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def label(self) -> str:
        """A short human name of the run (progress lines, report legends)."""
        what = self.control or self.resolved_method
        if self.control == "dense":
            return f"{self.family}/dense seed={self.seed}"
        sp = self.pattern if self.resolved_sparsity is None else f"{self.resolved_sparsity:g}"
        return f"{self.family}/{what} sparsity={sp} seed={self.seed}"

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def model_validate(cls, obj: Any, **_: Any) -> Recipe:  # pydantic's entry point: the same checks as Recipe(...)
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, d: Any) -> Recipe:
        if not isinstance(d, dict):
            raise RecipeError("", f"a recipe is a mapping of field -> value, got {type(d).__name__}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """Read a recipe file (YAML, so JSON too)."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise RecipeError("", f"no such recipe file: {p}")
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise RecipeError("", f"{p} is not valid YAML: {e}") from None
        return cls.from_dict({} if doc is None else doc)

    def with_changes(self, changes: dict[str, Any]) -> Recipe:
        """A copy with dotted-path changes (``{"finetune.epochs": 1, "options.percdamp": 0.05}``), validated."""
        d = self.to_dict()
        for path, value in changes.items():
            set_path(d, path, value)
        return type(self)(**d)

    # ------------------------------------------------------------------------------------------------- running
    def run(self, runs_dir: str | Path | None = None, *, progress: bool = False) -> dict[str, Any]:
        """Run it (or read its finished result from ``runs_dir``) and return the result row."""
        from .run import run_recipe

        return run_recipe(self, runs_dir, progress=progress)


def controls_for(family: str) -> tuple[str, ...]:
    """The built-in controls that apply to a family."""
    return {"weights": CONTROLS, "structured": ("dense", "scratch", "random_mask"), "data": ("dense", "random_mask"),
            "schedule": ("dense",), "llm": ("dense",)}[family]


def field_paths(model: type[BaseModel] = Recipe, prefix: str = "") -> list[str]:
    """Every settable dotted field path of the recipe (``finetune.epochs``...; ``options.*`` is free-form)."""
    out = []
    for name, f in model.model_fields.items():
        sub = f.annotation if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel) else None
        out.extend(field_paths(sub, f"{prefix}{name}.") if sub is not None else [f"{prefix}{name}"])
    return out


def check_path(path: str) -> str:
    """``path`` if it names a recipe field (``options.<name>`` for any name), else RecipeError with a
    did-you-mean."""
    paths = field_paths()
    if path in paths or (path.startswith("options.") and len(path) > len("options.")):
        return path
    raise RecipeError(path, "no such field." + _did_you_mean(path, paths) + f" Fields: {', '.join(paths)}")


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` of the recipe dict ``d`` (checked with :func:`check_path`)."""
    parts = check_path(path).split(".")
    node = d
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def _did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _named(field: str, kind: str, name: str) -> None:
    try:
        registry.get(kind, name)
    except UnknownNameError as e:
        raise RecipeError(field, str(e)) from None


def _from_pydantic(e: ValidationError, cls: type[BaseModel]) -> RecipeError:
    """The first error of a pydantic ValidationError as a RecipeError naming the field path, what is allowed and
    the closest allowed name."""
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        model: Any = cls
        for p in loc[:-1]:
            ann = model.model_fields[p].annotation if p in getattr(model, "model_fields", {}) else None
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if model is None:
                break
        known = sorted(model.model_fields) if model is not None else []
        return RecipeError(path, "unknown field." + _did_you_mean(loc[-1], known) +
                           (f" Fields: {', '.join(known)}" if known else ""))
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        allowed = [a.strip(" '") for a in expected.replace(" or ", ",").split(",") if a.strip(" '")]
        value = err.get("input")
        return RecipeError(path, f"{value!r} is not allowed." + _did_you_mean(str(value), allowed) +
                           f" Allowed: {', '.join(allowed)}")
    more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return RecipeError(path, f"{err['msg']}, got {err.get('input')!r}{more}")
