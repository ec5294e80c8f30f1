"""The layering the design map asks for, checked on the source: app/ is a plain library in rooms."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.base.paths import REPO

APP = REPO / "app"
# Lowest first: a module may import its own room and the rooms before it, never a later one.
ROOMS = ("base", "serving", "networks", "analyses", "pictures")


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


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _app_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in APP.rglob("*.py") if p.stem != "__init__"}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _room(module: str) -> str:
    return module.split(".")[1]


def _layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a later room by an earlier one, as 'importer -> imported'."""
    rank = {room: i for i, room in enumerate(ROOMS)}
    return sorted(
        f"{module} -> {dep}" for module, deps in graph.items() for dep in deps if rank[_room(dep)] > rank[_room(module)]
    )


def test_every_app_module_lives_in_a_room() -> None:
    loose = sorted(p.name for p in APP.glob("*.py") if p.stem != "__init__")
    assert not loose, f"modules outside the rooms {ROOMS}: {loose}"
    rooms = sorted(p.name for p in APP.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert rooms == sorted(ROOMS)
    assert all((APP / room / "__init__.py").exists() for room in ROOMS)


def test_a_lower_room_never_imports_a_higher_one() -> None:
    assert _layering_violations(_app_graph()) == []


def test_the_layering_check_finds_an_upward_import() -> None:
    """The check above must be able to fail: a network module importing an analysis is reported."""
    graph = {"app.networks.models": {"app.analyses.attribution"}, "app.analyses.attribution": {"app.base.errors"}}
    graph["app.base.errors"] = set()
    assert _layering_violations(graph) == ["app.networks.models -> app.analyses.attribution"]


def test_app_never_imports_streamlit_or_pages() -> None:
    for path in APP.rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("streamlit", "pages")}
        assert not bad, f"{path.relative_to(APP)} imports {bad}"


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
    """No page names an analysis by a string such as "app.analyses.occlusion:occlusion_map"."""
    for path in (REPO / "pages").glob("*.py"):
        assert '"app.' not in path.read_text(), f"{path.name} names an app function by a string"
