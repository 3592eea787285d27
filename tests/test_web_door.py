"""The web door holds no query and no transaction, and does not reach for the wiring.

Its handlers parse the request, call one function of ``newsletter.services`` and present the
result. Only the door's entry (``command.py``) and the app factory (``app.py``) may import
``newsletter.bootstrap``. (``metrics.py``, the in-process counters, is checked by its own owner.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import newsletter.web

WEB = Path(newsletter.web.__file__).parent
MODULES = sorted(path for path in WEB.rglob("*.py") if path.name != "metrics.py")
MAY_IMPORT_BOOTSTRAP = {WEB / "command.py", WEB / "app.py"}
#: SQL built by a bare function (``select(...)``) and what a session or database is asked to do.
STATEMENTS = {"select", "update", "delete", "insert", "text"}
SESSION_CALLS = {"transaction", "execute", "scalar", "scalars", "flush", "commit"}


def _query(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name) and node.id in STATEMENTS:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in SESSION_CALLS:
        return "." + node.attr
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(WEB)))
def test_a_web_module_runs_no_query_and_opens_no_transaction(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        f"{path.name}:{node.lineno} {_query(node.func)}("
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _query(node.func) is not None
    ]
    assert calls == []
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not any(name.startswith("sqlalchemy") for name in imported)
    if path not in MAY_IMPORT_BOOTSTRAP:
        assert "newsletter.bootstrap" not in imported


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(WEB)))
def test_a_web_module_is_small_enough_to_read_in_one_sitting(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400
