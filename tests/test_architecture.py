"""The shape of the code: imports point one way inside ldm_ui/, and the engine never imports Gradio."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ldm_ui"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every ldm_ui module `path` imports anywhere in it (lazy imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from ldm_ui.demo import scoring` imports the module ldm_ui.demo.scoring
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "ldm_ui":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        edges = imported_modules(path, modules) - {name}
        # importing a package's own submodule from its __init__ is not a dependency of the submodule on it
        graph[name] = {m for m in edges if not name.startswith(m + ".") or path.name != "__init__.py"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_lazy_import_cycle(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_inside_ldm_ui():
    graph = import_graph()
    assert "ldm_ui.engine.engine" in graph and "ldm_ui.engine.registry" in graph["ldm_ui.engine.engine"]
    assert cycles(graph) == []


def test_tasks_never_import_the_engine_or_the_registry():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("ldm_ui.engine.tasks"):
            assert not edges & {"ldm_ui.engine.engine", "ldm_ui.engine.registry"}, (name, edges)


def test_the_engine_and_the_requests_never_import_gradio():
    for path in [*(PACKAGE / "engine").rglob("*.py"), PACKAGE / "requests.py", PACKAGE / "results.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "gradio" or n.startswith("gradio.") for n in names), path
