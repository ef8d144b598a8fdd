"""Typed options: every registered component declares its options (type, default, help) in its signature; the
registry lists them, validates Python values strictly and coerces command-line text.  Parametrized over the
registry, so a newly registered component is covered without a new test."""
from __future__ import annotations

import json
import re

import pytest

from secateurs import registry
from secateurs.errors import InvalidArgumentError
from secateurs.registry import TextValue

KINDS = ("criterion", "allocation", "solver", "pattern", "schedule", "importance", "scorer", "selector")
COMPONENTS = [(k, n) for k in KINDS for n in registry.names(k)]
OPTIONS = [(k, n, s.name) for k, n in COMPONENTS for s in registry.option_specs(k, n)]


class _Wrong:
    """A value of no declared type (not a number, string, bool, list, dict, callable or module)."""

    def __repr__(self) -> str:
        return "<wrong>"


def test_every_kind_has_components_and_the_components_have_options():
    assert {k for k, _ in COMPONENTS} == set(KINDS)
    assert {k for k, _, _ in OPTIONS} >= {"criterion", "allocation", "solver", "schedule", "importance", "scorer",
                                          "selector"}


@pytest.mark.parametrize("kind,name", COMPONENTS)
def test_options_are_listed_with_type_and_default(kind, name):
    specs = registry.option_specs(kind, name)
    accepted = registry.accepted_options(registry.get(kind, name), kind)
    for s in specs:
        assert s.name in accepted
        assert isinstance(s.type, str) and s.type and s.type != "any"
        assert s.required or s.default is not None or "None" in s.type  # a default of the declared type
        json.dumps(s.to_dict())  # `secateurs methods --json` can print it
    assert len({s.name for s in specs}) == len(specs)


@pytest.mark.parametrize("kind,name,option", OPTIONS)
def test_a_wrongly_typed_value_names_component_option_and_value(kind, name, option):
    with pytest.raises(InvalidArgumentError) as info:
        registry.check_options(kind, name, {option: _Wrong()})
    msg = str(info.value)
    assert msg.startswith(f"{kind} {name!r} option {option}") and "got <wrong>" in msg


def _out_of_range(constraint: str):
    for part in constraint.split(", "):
        m = re.fullmatch(r"(>=|>|<=|<) (\S+)", part)
        if m:
            op, bound = m.group(1), float(m.group(2))
            return {">": bound, ">=": bound - 1, "<": bound, "<=": bound + 1}[op], f"{op} {m.group(2)}"
    return None


RANGED = [(k, n, s.name, s.type) + r for k, n in COMPONENTS for s in registry.option_specs(k, n)
          if (r := _out_of_range(s.constraint)) is not None]


@pytest.mark.parametrize("kind,name,option,type_,value,bound", RANGED)
def test_a_value_out_of_the_declared_range_is_refused(kind, name, option, type_, value, bound):
    value = int(value) if type_ == "int" else value
    with pytest.raises(InvalidArgumentError, match=re.escape(f"option {option} must be {bound}")):
        registry.check_options(kind, name, {option: value})


def test_the_message_says_expected_range_help_and_default():
    with pytest.raises(InvalidArgumentError) as info:
        registry.build("solver", "sparsegpt", {"percdamp": -1})
    assert str(info.value).startswith("solver 'sparsegpt' option percdamp must be > 0, got -1 (float, > 0, < 10: ")
    assert str(info.value).endswith("default 0.01)")


def test_strict_python_values_but_numpy_scalars_and_tuples_pass():
    import numpy as np

    for bad in ({"max_iter": True}, {"max_iter": 2.0}, {"rho": "0.1"}, {"rho": float("nan")}):
        with pytest.raises(InvalidArgumentError):
            registry.check_options("solver", "alps", bad)
    assert registry.check_options("solver", "alps", {"max_iter": np.int64(3), "rho": np.float32(0.5)}) == \
        {"max_iter": 3, "rho": 0.5}
    assert registry.check_options("allocation", "owl", {"owl_ratios": (1, 2)}) == {"owl_ratios": [1.0, 2.0]}
    with pytest.raises(InvalidArgumentError, match="owl_ratios must be at least 1 item"):
        registry.check_options("allocation", "owl", {"owl_ratios": []})


def test_command_line_text_is_coerced_to_the_declared_type():
    T = TextValue
    assert registry.check_options("solver", "sparsegpt", {"percdamp": T("0.05"), "blocksize": T("64")}) == \
        {"percdamp": 0.05, "blocksize": 64}
    assert registry.check_options("solver", "dsnot", {"without_same_sign": T("false"), "skip_layer": T("none")}) == \
        {"without_same_sign": False, "skip_layer": None}
    assert registry.check_options("allocation", "owl", {"owl_ratios": T("1,2.5")}) == {"owl_ratios": [1.0, 2.5]}
    assert registry.check_options("allocation", "owl", {"owl_ratios": T("[3]")}) == {"owl_ratios": [3.0]}
    assert registry.check_options("criterion", "dsnot", {"base_options": T('{"a": 0.25}')}) == \
        {"base_options": {"a": 0.25}}
    assert registry.check_options("scorer", "el2n", {"seeds": T("1,2")}) == {"seeds": [1, 2]}
    assert registry.check_options("scorer", "el2n", {"seeds": T("3")}) == {"seeds": 3}
    with pytest.raises(InvalidArgumentError, match="option percdamp must be a number, got 'abc'"):
        registry.check_options("solver", "sparsegpt", {"percdamp": T("abc")})


def test_unknown_options_list_the_accepted_ones():
    with pytest.raises(InvalidArgumentError, match="solver 'alps' does not take option.*'rh'.*accepts: rho, max_iter"):
        registry.build("solver", "alps", {"rh": 1})


def test_catalog_has_description_and_options():
    cat = registry.catalog("solver")
    assert set(cat) == set(registry.names("solver"))
    opts = {o["name"]: o for o in cat["sparsegpt"]["options"]}
    assert opts["percdamp"] == {"name": "percdamp", "type": "float", "default": 0.01, "required": False,
                                "help": "Hessian dampening, as a fraction of its mean diagonal",
                                "constraint": "> 0, < 10"}
    assert cat["sparsegpt"]["description"].startswith("SparseGPT") or cat["sparsegpt"]["description"]
