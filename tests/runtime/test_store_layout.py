"""Every SQL statement lives in runtime/store/: no other runtime module imports SQLAlchemy.

An AST scan of every import statement, at any depth (a function-level import counts), so the
rule holds as modules move. Outside the store only two things may name SQLAlchemy:
runtime/tools/sql.py, which speaks SQL to a job's *target* database, not ours; and an import
made only for annotations, under `if TYPE_CHECKING:` (e.g. the AsyncConnection a caller's
transaction is typed with), which never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
ALLOWED = {
    Path("runtime/tools/sql.py"),  # the target database's SQL, not the control plane's
}
ALLOWED_TREES = (Path("runtime/store"),)  # includes runtime/store/migrations
# Modules that still import SQLAlchemy at run time, with what is left to move. Each is an
# expected failure that must keep failing: once a module is clean its entry has to go.
PENDING: dict[Path, str] = {}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def sqlalchemy_imports(source: str, filename: str = "<module>") -> list[str]:
    """`line: module` for every run-time import of sqlalchemy (or a submodule) in `source`."""
    found: list[str] = []

    def visit(node: ast.AST, *, annotations_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, annotations_only=True)
            for child in node.orelse:
                visit(child, annotations_only=annotations_only)
            return
        if isinstance(node, ast.stmt) and not annotations_only:
            for module in _imported(node):
                if module == "sqlalchemy" or module.startswith("sqlalchemy."):
                    found.append(f"{node.lineno}: {module}")
        for child in ast.iter_child_nodes(node):
            visit(child, annotations_only=annotations_only)

    visit(ast.parse(source, filename), annotations_only=False)
    return found


def _outside_store() -> list[Path]:
    modules = []
    for path in sorted(RUNTIME.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative in ALLOWED or any(tree in relative.parents for tree in ALLOWED_TREES):
            continue
        modules.append(relative)
    return modules


def _param(relative: Path):  # type: ignore[no-untyped-def]
    if relative in PENDING:
        reason = f"SQL still to move to runtime/store/: {PENDING[relative]}"
        return pytest.param(relative, marks=pytest.mark.xfail(reason=reason, strict=True))
    return relative


@pytest.mark.parametrize("relative", [_param(p) for p in _outside_store()], ids=str)
def test_no_sqlalchemy_outside_the_store(relative: Path) -> None:
    found = sqlalchemy_imports((ROOT / relative).read_text(), str(relative))
    assert not found, (
        f"{relative} imports SQLAlchemy ({', '.join(found)}); its SQL belongs in runtime/store/ "
        "(an annotation-only import goes under `if TYPE_CHECKING:`)"
    )


def test_pending_modules_exist() -> None:
    """A pending entry for a module that moved or went would hide nothing: it must go."""
    missing = [str(p) for p in PENDING if not (ROOT / p).exists()]
    assert not missing, missing


def test_the_scan_sees_every_kind_of_import() -> None:
    source = """
import sqlalchemy
import sqlalchemy.orm as orm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from typing import TYPE_CHECKING
import typing
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from . import sqlalchemy_like

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection
if typing.TYPE_CHECKING:
    import sqlalchemy.engine
else:
    from sqlalchemy import text

def f():
    from sqlalchemy import update

class C:
    async def g(self):
        if True:
            import sqlalchemy.dialects.postgresql
"""
    assert sqlalchemy_imports(source) == [
        "2: sqlalchemy",
        "3: sqlalchemy.orm",
        "4: sqlalchemy",
        "5: sqlalchemy.exc",
        "16: sqlalchemy",
        "19: sqlalchemy",
        "24: sqlalchemy.dialects.postgresql",
    ]
