"""The layering the design map asks for, checked on the source: app/ is a plain library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.paths import REPO

APP = REPO / "app"


def _imports(path: Path) -> set[str]:
    """Modules a file imports at any depth (function-level imports count: they still tie modules)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _app_graph() -> dict[str, set[str]]:
    modules = {f"app.{p.stem}": p for p in APP.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def test_app_never_imports_streamlit_or_pages() -> None:
    for path in APP.glob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("streamlit", "pages")}
        assert not bad, f"{path.name} imports {bad}"


def test_app_has_no_import_cycle() -> None:
    graph = _app_graph()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node) :], node]))
        if node in done:
            return
        for dep in graph[node]:
            visit(dep, [*stack, node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_the_cycle_check_finds_a_cycle(monkeypatch) -> None:
    """The check above must be able to fail: a made-up two-module circle is reported."""
    monkeypatch.setattr("tests.test_structure._app_graph", lambda: {"app.a": {"app.b"}, "app.b": {"app.a"}})
    with pytest.raises(AssertionError, match="import cycle"):
        test_app_has_no_import_cycle()


def test_analyses_are_passed_to_the_cache_as_functions() -> None:
    """No page names an analysis by a string such as "app.occlusion:occlusion_map"."""
    for path in (REPO / "pages").glob("*.py"):
        assert '"app.' not in path.read_text(), f"{path.name} names an app function by a string"
