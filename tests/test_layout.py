"""The layout's rules (ARCHITECTURE.md "The one rule of the layout"), checked on the source: core reaches the
database only through storage's repositories, storage never imports core, the chat adapters never import the
server, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400  # core and storage
MAX_FUNCTION_LINES = 60  # everywhere but tests and migrations


def _modules(package: str) -> list[Path]:
    return [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in sorted(_imports(path))
        if name.split(".")[0] in forbidden
    ]


def test_core_reaches_the_database_only_through_storage() -> None:
    assert _offenders("core", ("sqlalchemy",)) == []


def test_storage_never_imports_core() -> None:
    assert _offenders("storage", ("core", "tools", "bot")) == []


def test_chat_adapters_never_import_the_server() -> None:
    assert _offenders("bot", ("tools", "sqlalchemy")) == []


@pytest.mark.parametrize("package", ["core", "storage"])
def test_modules_are_at_most_400_lines(package: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


@pytest.mark.parametrize("package", ["core", "storage", "tools", "bot", "bench"])
def test_functions_are_at_most_60_lines(package: str) -> None:
    long = []
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
