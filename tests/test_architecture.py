"""The package's import graph: every import points down the layers, and no module imports itself back.

README's "Architecture" section describes the same layers.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfrobust")

# Layer of each module or subpackage (the longest matching prefix wins). A module may import
# modules of its own layer or below, never above; a new module must be placed here.
LAYERS = {
    # 0: primitives with no tfrobust dependency above them.
    "tfrobust.seeds": 0, "tfrobust.validation": 0, "tfrobust.jsonfile": 0, "tfrobust.faults": 0,
    "tfrobust.progress": 0, "tfrobust.version": 0, "tfrobust.keras_compat": 0, "tfrobust.stores": 0,
    # 1: the building blocks.
    "tfrobust.models": 1, "tfrobust.attacks": 1, "tfrobust.data": 1,
    # 2: what trains and what measures.
    "tfrobust.training": 2, "tfrobust.evaluation": 2, "tfrobust.distribute": 2,
    # 3: recipes, runs, exports, serving and the workflows that train and evaluate a recipe.
    "tfrobust.config": 3, "tfrobust.run": 3, "tfrobust.export": 3, "tfrobust.landscape": 3,
    "tfrobust.experiment": 3, "tfrobust.bench": 3, "tfrobust.serving": 3, "tfrobust.model_server": 3,
    # 4: built on those: the zoo, the HTML report, the main job.
    "tfrobust.zoo": 4, "tfrobust.report": 4, "tfrobust.main_job": 4,
    # 5: the entry points: the package itself and the command line.
    "tfrobust": 5, "tfrobust.__main__": 5, "tfrobust.cli": 5,
}


def _module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules():
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                out[_module_name(os.path.join(root, f))] = os.path.join(root, f)
    return out


def _edges(modules):
    """(importer, imported module) for every tfrobust import, at module level or inside functions."""
    edges = set()
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges.update((name, t) for t in targets if t.split(".")[0] == "tfrobust" and t != name)
    return edges


def layer(module):
    keys = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    if not keys:
        raise KeyError(module)
    return LAYERS[max(keys, key=len)]


MODULES = _modules()
EDGES = _edges(MODULES)


def test_every_module_has_a_layer():
    missing = []
    for m in MODULES:
        try:
            layer(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"place these modules in LAYERS: {missing}"


def test_no_import_points_up_the_layers():
    # A package's __init__ gathering its own submodules is not an upward import.
    upward = sorted((a, b) for a, b in EDGES if layer(b) > layer(a) and not b.startswith(a + "."))
    assert not upward, "\n".join(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, b in upward)


def _cycle(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    # Package __init__ files only gather their submodules; a cycle through one is not a dependency.
    edges = {(a, b) for a, b in EDGES if b in MODULES and not MODULES[b].endswith("__init__.py")
             and not MODULES[a].endswith("__init__.py")}
    assert _cycle(edges) is None, " -> ".join(_cycle(edges))


@pytest.mark.parametrize("edges, cycle", [
    ({("a", "b"), ("b", "c")}, None),
    ({("a", "b"), ("b", "c"), ("c", "a")}, ["a", "b", "c", "a"]),
])
def test_the_cycle_finder_finds_cycles(edges, cycle):
    assert _cycle(edges) == cycle


def test_no_function_in_the_package_reaches_80_lines():
    # Docstrings count: a function that needs 80 lines to say and do what it does is two functions.
    long = []
    for name, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= 80:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long
