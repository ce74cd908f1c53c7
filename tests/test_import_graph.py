"""The package's imports form a DAG (data flows one way: Sample -> shift -> model -> adapter -> record ->
aggregate -> export), function-local imports included, so none can hide a cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import vittle_bench

PACKAGE = Path(vittle_bench.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The package modules a module imports anywhere in its body (`from pkg import submodule` included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & modules


def import_graph() -> dict[str, set[str]]:
    sources = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(sources)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in sources.items()}


def test_the_package_imports_without_cycles():
    graph = import_graph()
    assert len(graph) > 80 and "vittle_bench.runner" in graph
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert order.index("vittle_bench.schema") < order.index("vittle_bench.runner")


def test_the_packages_import_each_other_without_cycles():
    """One level up as well: no sub-package (or top-level module) imports one that imports it back, so each
    stands on a floor of its own."""
    rooms: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        room = ".".join(module.split(".")[:2])
        rooms.setdefault(room, set()).update(".".join(t.split(".")[:2]) for t in targets)
    try:
        TopologicalSorter({room: targets - {room} for room, targets in rooms.items()}).prepare()
    except CycleError as exc:
        raise AssertionError(f"package cycle: {' -> '.join(exc.args[1])}") from None


def test_layers_point_one_way():
    """Models know nothing about task adapters or judges, judges nothing about model backends, shifts nothing
    about task adapters or models (docs/architecture.md)."""
    forbidden = {"vittle_bench.models": ("vittle_bench.adapters", "vittle_bench.tasks", "vittle_bench.judges"),
                 "vittle_bench.judges": ("vittle_bench.models",),
                 "vittle_bench.shifts": ("vittle_bench.adapters", "vittle_bench.tasks", "vittle_bench.models",
                                         "vittle_bench.judges")}
    wrong = [f"{module} -> {target}" for module, targets in import_graph().items()
             for layer, banned in forbidden.items() if module.startswith(layer + ".") or module == layer
             for target in targets if target.startswith(banned)]
    assert not wrong, wrong


def test_a_cycle_is_found():
    """The walk sees function-local imports: a cycle closed inside a function is still a cycle."""
    modules = {"vittle_bench.a", "vittle_bench.b"}
    a = _imports(ast.parse("import vittle_bench.b\n"), modules)
    b = _imports(ast.parse("def f():\n    from vittle_bench import a\n"), modules)
    try:
        TopologicalSorter({"vittle_bench.a": a, "vittle_bench.b": b}).prepare()
    except CycleError:
        return
    raise AssertionError("the cycle a -> b -> a was not found")
