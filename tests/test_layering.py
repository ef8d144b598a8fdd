"""The package's layers, enforced on the source: primitives at the bottom, components above them, the engine
above the components, front doors (llm, structured, schedules, data) above the engine, the zoo and the CLI on top.

Every ``import`` and ``from ... import`` is read statically (inside functions too), so a lazy import cannot hide
an upward edge.  Library code never imports the zoo, except the driver functions listed in ``ZOO_DRIVERS``
(they take zoo model/data set *names* and resolve them): the list may only shrink.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "secateurs"

LAYERS = {  # layer of a module by its package (first match on the dotted name wins)
    "secateurs.core.spec": 2, "secateurs.core.prune": 2, "secateurs.core.executors": 2,
    "secateurs.core.scope": 1, "secateurs.criteria": 1, "secateurs.allocations": 1, "secateurs.solvers": 1,
    "secateurs.patterns": 1,
    "secateurs.llm": 3, "secateurs.deltas": 3, "secateurs.structured": 3, "secateurs.schedules": 3, "secateurs.data": 3,
    "secateurs.experiment": 3,
    "secateurs.zoo": 4,
    "secateurs.recipes": 4,  # the harness: resolves zoo names, drives every front door
    "secateurs.cli": 5, "secateurs.__main__": 5, "secateurs": 5,
}
NAMES = {0: "primitives", 1: "components", 2: "engine", 3: "front doors", 4: "zoo", 5: "CLI / package root"}

# (module, imported zoo module): lazy imports inside functions that resolve zoo names.  Shrink, never grow.
ZOO_DRIVERS = {
    ("secateurs.data.dynamics", "secateurs.zoo"),        # train_dynamics(model="lenet5", data="digits")
    ("secateurs.data.embeddings", "secateurs.zoo"),      # embed(data, encoder="resnet20"): pretrained by name
    ("secateurs.data.embeddings", "secateurs.zoo.shakespeare"),  # sentence_embeddings: default MiniLM directory
    ("secateurs.data.score", "secateurs.zoo"),           # score(..., data="digits")
    ("secateurs.data.ssp", "secateurs.zoo"),             # ssp on a named data set
    ("secateurs.data.train", "secateurs.zoo"),           # train_subset(data="digits", model="lenet5")
    ("secateurs.experiment", "secateurs.zoo"),           # Experiment(model="lenet300", data="digits")
    ("secateurs.llm.evaluate", "secateurs.zoo.shakespeare"),  # heldout_sentences: the held-out plays
    ("secateurs.schedules.lottery", "secateurs.zoo"),    # run_lottery(model="lenet300", dataset="digits")
    ("secateurs.schedules.train", "secateurs.zoo"),      # train_sparse(model="resnet20", dataset="digits")
}


def layer(mod: str) -> int:
    if mod == "secateurs":
        return 5
    best = None
    for prefix, lay in LAYERS.items():
        if prefix == "secateurs":
            continue
        if (mod == prefix or mod.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, lay)
    return 0 if best is None else best[1]


def modules() -> dict[str, tuple[pathlib.Path, bool]]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if pkg else parts)] = (p, pkg)
    return out


def edges() -> dict[str, set[tuple[str, bool]]]:
    """module -> {(imported secateurs module, at import time?)}."""
    mods = modules()
    out: dict[str, set[tuple[str, bool]]] = {m: set() for m in mods}
    for mod, (path, pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        top |= {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try)) for n in ast.walk(s)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = mod.split(".") if pkg else mod.split(".")[:-1]
                if node.level:
                    base = base[: len(base) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                for a in node.names:
                    full = f"{name}.{a.name}"
                    targets.append(full if full in mods else name)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t.startswith("secateurs") and t != mod and t in mods:
                    out[mod].add((t, id(node) in top))
    return out


def test_no_module_imports_a_higher_layer():
    ups = []
    for mod, deps in edges().items():
        for dep, _ in deps:
            if layer(dep) > layer(mod) and (mod, dep) not in ZOO_DRIVERS:
                ups.append(f"{mod} ({NAMES[layer(mod)]}) imports {dep} ({NAMES[layer(dep)]})")
    assert not ups, "\n".join(sorted(ups))


def test_zoo_drivers_list_is_current():
    """An entry that no longer imports the zoo must leave the list (so it can only shrink)."""
    e = edges()
    stale = [pair for pair in ZOO_DRIVERS if pair[1] not in {d for d, _ in e.get(pair[0], ())}]
    assert not stale, f"remove from ZOO_DRIVERS: {stale}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("lazy", [False, True], ids=["import-time", "with-lazy-imports"])
def test_no_import_cycles(lazy):
    """No cycle among import-time imports; none either counting lazy imports (the zoo drivers' upward edges
    aside, and a submodule's reach into its own package's ``__init__``, which Python resolves after it)."""
    graph = {m: {d for d, top in deps if (top or lazy) and (m, d) not in ZOO_DRIVERS
                 and not (lazy and not top and m.startswith(d + "."))}
             for m, deps in edges().items()}
    assert not _cycles(graph)


def test_library_code_never_imports_the_cli():
    bad = [(m, d) for m, deps in edges().items() for d, _ in deps
           if d.startswith("secateurs.cli") and not m.startswith("secateurs.cli") and m != "secateurs.__main__"]
    assert not bad
