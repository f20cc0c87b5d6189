"""The shape of the package, checked from its source: no import cycle (imports inside
functions included), no module past 600 lines, and one owner for each outside system."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "palign"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every palign module `name` imports, at the top or inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package `level - 1` above this one
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from palign import refs`
    # Importing `a.b.c` runs the packages `a` and `a.b` first.
    found |= {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    return {module for module in found if module in MODULES and module != name}


def _top_level_libraries(name: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def _cycle() -> list[str] | None:
    graph = {name: _imports(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                return path[path.index(other) :] + [other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert _imports("palign.service"), "the import reader finds nothing: it is broken"
    assert "palign.refs" in _imports("palign.service")
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_no_module_is_longer_than_600_lines() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long


# Outside systems and the modules allowed to use them directly.
OWNERS = {
    "subprocess": {"palign.git", "palign.validation.runner", "palign.validation.sandbox"},  # git; checks
    "git": {"palign.git"},  # GitPython
    "pygit2": {name for name in MODULES if name.startswith("palign.engine")},
    "redis": {"palign.distributed.store"},
    "celery": {
        "palign.distributed.app",
        "palign.distributed.tasks",
        "palign.distributed.producer",
        "palign.distributed.worker",
        "palign.distributed.client",
    },
    "kombu": {"palign.distributed.app", "palign.distributed.client"},
    "billiard": {"palign.distributed.tasks"},
    "platformdirs": {"palign.settings"},
}


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_each_outside_system_has_one_owner(library: str) -> None:
    users = {name for name in MODULES if library in _top_level_libraries(name)}
    assert users, f"nobody uses {library}: the check is reading the wrong thing"
    assert users <= OWNERS[library], sorted(users - OWNERS[library])


def _mentions(name: str, pattern: str) -> bool:
    """`pattern` (a regular expression) in the module's strings but its docstrings, or the
    name of an attribute it uses."""
    tree = ast.parse(MODULES[name].read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return any(
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and re.search(pattern, node.value)
        for node in ast.walk(tree)
    ) or any(isinstance(node, ast.Attribute) and re.fullmatch(pattern, node.attr) for node in ast.walk(tree))


def test_only_the_settings_read_the_environment() -> None:
    readers = {name for name in MODULES if _mentions(name, "environ|getenv")}
    # palign.git passes this process's environment, scrubbed, to git's children.
    assert readers == {"palign.settings", "palign.git"}


def test_only_the_store_spells_redis_keys() -> None:
    spellers = {name for name in MODULES if _mentions(name, r"^palign:[a-z]")}
    assert spellers == {"palign.distributed.store"}
