"""One library, one module: each third-party library is imported by exactly one adapter.

Read from the source (the AST of every module under firmware/linetap), so a lazy import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "firmware" / "linetap"

ADAPTERS = {  # library -> the one module allowed to import it
    "alsaaudio": "capture/alsa.py",
    "soundfile": "store/audio.py",
    "sqlite_utils": "index/db.py",
    "paho": "mqtt/client.py",
    "gpiozero": "gpio.py",
    "nacl": "crypto.py",
}
ANYWHERE = {"numpy"}  # plain data, not a collaborator


def imported_libraries(path: Path) -> set[str]:
    """Top-level names of every absolute import in a module (including importlib/__import__ of a constant)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            names.add(node.args[0].value.split(".")[0])
    return names


@functools.cache
def modules() -> dict[str, set[str]]:
    return {p.relative_to(PACKAGE).as_posix(): imported_libraries(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_is_where_the_test_looks():
    assert (PACKAGE / "__init__.py").exists() and len(modules()) > 20


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_each_library_is_imported_by_its_adapter_only(library):
    users = sorted(m for m, libs in modules().items() if library in libs)
    assert users == [ADAPTERS[library]]


def test_no_other_third_party_library_is_imported():
    allowed = set(ADAPTERS) | ANYWHERE | {"linetap"} | set(sys.stdlib_module_names)
    stray = {m: sorted(libs - allowed) for m, libs in modules().items() if libs - allowed}
    assert stray == {}, "a new dependency needs an adapter module and a line in ADAPTERS"


def test_the_rule_sees_a_lazy_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import soundfile.x\n    from paho.mqtt import client\n"
                 "    importlib.import_module('gpiozero')\n    from . import sibling\n")
    assert imported_libraries(p) == {"soundfile", "paho", "gpiozero"}


# --- the index is the one SQL boundary ------------------------------------------------------------

SQL_HOMES = ("index/", "mqtt/outbox.py")  # the index package; the outbox's own SQLite file
SQL = re.compile(
    # a select list as SQL writes it ("select id from", "select c.id, ...", "select count(*)"),
    # not prose ("select a line from the list")
    r"\bSELECT\s+(?:DISTINCT\s+)?(?:\*|\d+\b|\w+\s*\(|[\w.]+\s*(?:,|\bAS\b|\bFROM\b))|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\S+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP)\s+(?:UNIQUE\s+)?(?:TEMP\s+)?(?:TABLE|INDEX|TRIGGER|VIEW)\b|\bALTER\s+TABLE\b"
    r"|\bPRAGMA\s+\w+|\bBEGIN\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION)\b|\bVACUUM\b",
    re.IGNORECASE)
INDEX_INTERNALS = {"db", "_db", "table", "query", "execute", "update_table"}
INDEX_NAME = re.compile(r"(?:^|[._])(?:index|idx)$")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may name a statement; code may not hold one)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def sql_violations(path: Path) -> list[str]:
    """SQL text in string constants (f-string parts included), and reaching into the index's
    internals (``index.db``, ``index.table(...)``, ``self.index.query(...)``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            if SQL.search(text):
                found.append(f"{node.lineno}: SQL {text[:60]!r}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
              and SQL.search(node.value)):
            found.append(f"{node.lineno}: SQL {node.value[:60]!r}")
        elif (isinstance(node, ast.Attribute) and node.attr in INDEX_INTERNALS
              and INDEX_NAME.search(ast.unparse(node.value))):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(set(found), key=lambda s: (int(s.split(":")[0]), s))


def test_no_sql_outside_the_index() -> None:
    stray = {m: sql_violations(PACKAGE / m) for m in modules() if not m.startswith(SQL_HOMES)}
    assert {m: v for m, v in stray.items() if v} == {}, \
        "SQL belongs in linetap/index/: add a named query there (and a migration in index/schema.py)"


def test_the_sql_rule_sees_planted_sql_and_index_internals(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text('"""Docstrings may say: select x from calls."""\n'
                 'def f(index, self, table):\n'
                 '    """Nor here: PRAGMA synchronous."""\n'
                 '    index.query("select id from calls where line = ?", [1])\n'
                 '    self.index.execute(f"update {table} set x = 1")\n'
                 '    index.table("calls").insert({})\n'
                 '    return self.index.db, "PRAGMA secure_delete = ON", "Select a line from the list"\n')
    assert sql_violations(p) == [
        "4: SQL 'select id from calls where line = ?'",
        "4: index.query",
        "5: SQL 'update {} set x = 1'",
        "5: self.index.execute",
        "6: index.table",
        "7: SQL 'PRAGMA secure_delete = ON'",
        "7: self.index.db",
    ]
