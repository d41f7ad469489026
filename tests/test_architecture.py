"""One library, one module: each third-party library is imported by exactly one adapter.

Read from the source (the AST of every module under firmware/linetap), so a lazy import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import functools
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "firmware" / "linetap"

ADAPTERS = {  # library -> the one module allowed to import it
    "alsaaudio": "capture/alsa.py",
    "soundfile": "store/audio.py",
    "sqlite_utils": "index/db.py",
    "paho": "mqtt/paho_client.py",  # the link and the probe both build their client there
    "gpiozero": "gpio.py",
    "nacl": ("crypto.py", "sign.py"),  # encryption; the device's Ed25519 signing key
    "rfc3161_client": "timestamp.py",  # RFC 3161 trusted time-stamps of the checkpoints
    "cryptography": "timestamp.py",  # the TSA's certificates (rfc3161_client's own dependency)
    "pyrage": "crypto.py",  # age encryption of recordings, next to PyNaCl (sealed files, keys)
    "starlette": "web/app.py",  # the web interface's routes
    "uvicorn": "web/app.py",  # and its server
    "argon2": "web/passwords.py",
}
ANYWHERE = {"numpy"}  # plain data, not a collaborator


def parse(path: Path) -> ast.Module:
    """The module's AST, parsed once per session while the file is unchanged (each rule reads every
    module; parsing and walking them again for each was most of this file's ~10 s)."""
    st = path.stat()
    return _parse(str(path), st.st_mtime_ns, st.st_size)[0]


def walk(path: Path) -> tuple[ast.AST, ...]:
    """``ast.walk`` of :func:`parse`, as a tuple kept with it."""
    st = path.stat()
    return _parse(str(path), st.st_mtime_ns, st.st_size)[1]


@functools.cache
def _parse(path: str, _mtime_ns: int, _size: int) -> tuple[ast.Module, tuple[ast.AST, ...]]:
    tree = ast.parse(Path(path).read_text(), filename=path)
    return tree, tuple(ast.walk(tree))


def adapter_modules() -> list[str]:
    """Every adapter module (a library may have more than one: nacl's encryption and signing)."""
    return [m for rel in ADAPTERS.values() for m in ([rel] if isinstance(rel, str) else rel)]


def imported_libraries(path: Path) -> set[str]:
    """Top-level names of every absolute import in a module (including importlib/__import__ of a constant)."""
    names: set[str] = set()
    for node in walk(path):
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
    allowed = ADAPTERS[library]
    assert users == sorted([allowed] if isinstance(allowed, str) else allowed)


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
    tree = parse(path)
    skip = _docstrings(tree)
    found: list[str] = []
    for node in walk(path):
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


# --- no import cycles inside linetap -------------------------------------------------
#
# The graph counts every import of a linetap module, at the top of a module or inside a
# function: a lazy import keeps a cycle from failing at import time but not from being a
# cycle (two modules that each need the other are one module in two files), and the
# CLI's old cli <-> cli_health cycle was exactly such a lazy import. An edge goes to the
# module imported (``from .x import y``: to ``x``; ``from . import x``: to ``x`` if it is a
# module, else to the package's ``__init__``), not to the packages around it, which
# Python initialises first anyway.


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_dynamic_import(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "__import__")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))


def linetap_imports(path: Path, known: set[str], package: Path = PACKAGE) -> set[str]:
    """The modules of ``known`` that ``path`` imports (every import statement, wherever it is)."""
    name = module_name(path, package)
    parent = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
    edges: set[str] = set()
    for node in walk(path):
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(parent[:len(parent) - (node.level - 1)] + ([node.module] if node.module else []))
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    edges.add(f"{base}.{a.name}")
                elif base in known:
                    edges.add(base)
    return edges - {name}


def graph_of(package: Path) -> dict[str, frozenset[str]]:
    paths = sorted(package.rglob("*.py"))
    known = {module_name(p, package) for p in paths}
    return {module_name(p, package): frozenset(linetap_imports(p, known, package)) for p in paths}


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    return graph_of(PACKAGE)


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def dynamic_import_problems(package: Path) -> list[str]:
    """``importlib.import_module``/``__import__`` calls whose module this test cannot read
    (not a constant) or that name a module of the package that does not exist."""
    known = set(graph_of(package))
    problems: list[tuple[str, int, str]] = []
    for path in sorted(package.rglob("*.py")):
        for node in walk(path):
            if not _is_dynamic_import(node):
                continue
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                problems.append((module_name(path, package), node.lineno, "not a constant"))
            elif arg.value.split(".")[0] == package.name and arg.value not in known:
                problems.append((module_name(path, package), node.lineno, f"no module {arg.value}"))
    return [f"{module}:{line}: {what}" for module, line, what in sorted(problems)]


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"linetap/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "linetap"


def test_the_graph_sees_the_cli_and_its_edges():
    graph = import_graph()
    assert {"linetap.cli", "linetap.cli.parser", "linetap.cli.errors", "linetap.cli.render"} <= set(graph)
    assert "linetap.cli.parser" in graph["linetap.cli"]
    assert "linetap.config" in graph["linetap.cli.base"]  # from ..config import ...
    assert "linetap.firstboot" in graph["linetap.cli.boot"]  # from .. import firstboot, inside a function


def test_a_cycle_through_a_lazy_import_is_found(tmp_path):
    pkg = _package(tmp_path, {"linetap/cli/__init__.py": "from .health import when\n",
                              "linetap/cli/health.py": "def when():\n    from . import UsageError\n",
                              "linetap/clock.py": "import linetap.cli.health\n"})
    assert cycles(graph_of(pkg)) == [["linetap.cli", "linetap.cli.health"]]


def test_the_cli_modules_import_no_cycle():
    assert [c for c in cycles(import_graph()) if any(m.startswith("linetap.cli") for m in c)] == []


def test_no_module_of_linetap_is_in_an_import_cycle():
    assert cycles(import_graph()) == []


def test_a_dynamic_import_of_a_missing_or_unreadable_module_is_found(tmp_path):
    pkg = _package(tmp_path, {"linetap/cli.py": "for name in ('linetap.cli', 'linetap.cli_fleet'):\n"
                                                "    __import__(name)\n"
                                                "importlib.import_module('linetap.cli_fleet')\n"
                                                "importlib.import_module('linetap.cli')\n"})
    assert dynamic_import_problems(pkg) == ["linetap.cli:2: not a constant",
                                            "linetap.cli:3: no module linetap.cli_fleet"]


def test_every_dynamic_import_names_a_module_that_exists():
    assert dynamic_import_problems(PACKAGE) == []
# --- pure modules stay pure: importing one never loads a library behind an adapter ------------

BLOCKED = frozenset(ADAPTERS)  # alsaaudio, gpiozero, paho, sqlite_utils, soundfile, nacl


def dotted_name(rel: str) -> str:
    """``mqtt/link.py`` -> ``linetap.mqtt.link``; ``mqtt/__init__.py`` -> ``linetap.mqtt``."""
    parts = ["linetap", *rel.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_nodes(tree: ast.Module) -> list[ast.stmt]:
    """Statements run at import time: the module body, into if/try/with/class, not into functions."""
    out: list[ast.stmt] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        out.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += [n for n in getattr(node, field, []) if isinstance(n, (ast.stmt, ast.ExceptHandler))]
    return [n for n in out if isinstance(n, ast.stmt)]


def top_level_imports(rel: str, names: set[str]) -> tuple[set[str], set[str]]:
    """(third-party libraries, linetap modules) a module imports when it is imported itself."""
    path = PACKAGE / rel
    me = dotted_name(rel)
    package = me if rel.endswith("__init__.py") else me.rpartition(".")[0]
    libs: set[str] = set()
    mods: set[str] = set()
    for node in _top_level_nodes(parse(path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                (mods if a.name.split(".")[0] == "linetap" else libs).add(a.name if a.name.startswith("linetap")
                                                                          else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.split(".")[0] == "linetap":
                target = node.module
            else:
                libs.add((node.module or "").split(".")[0])
                continue
            mods.add(target)
            mods |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in names}
    return libs, {m for m in mods if m in names}


@functools.cache
def pure_modules() -> list[str]:
    """Every module whose import loads no adapted library: not an adapter, importing no adapter-backed
    module at top level (transitively, parent packages included). Computed, so a new module is covered."""
    rel_of = {dotted_name(rel): rel for rel in modules()}
    names = set(rel_of)
    deps: dict[str, set[str]] = {}
    impure: set[str] = {dotted_name(rel) for rel in adapter_modules()}
    for name, rel in rel_of.items():
        libs, mods = top_level_imports(rel, names)
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        deps[name] = (mods | parents) - {name}
        if libs & BLOCKED:
            impure.add(name)
    changed = True
    while changed:
        changed = False
        for name, ds in deps.items():
            if name not in impure and ds & impure:
                impure.add(name)
                changed = True
    return sorted(n for n in names - impure if not n.endswith(".__main__"))  # __main__ runs the CLI


BLOCKING_IMPORTER = r"""
import importlib, json, sys
blocked, attempts = set(sys.argv[1].split(",")), []

class Refuse:
    # First on sys.meta_path: every import of a blocked library is recorded and fails.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            attempts.append(name)
            raise ImportError(f"{name} is blocked: a pure module must not load it")
        return None

sys.meta_path.insert(0, Refuse())
errors = {}
for mod in sys.argv[2:]:
    try:
        importlib.import_module(mod)
    except Exception as e:
        errors[mod] = f"{type(e).__name__}: {e}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print(json.dumps({"errors": errors, "attempts": sorted(set(attempts)), "loaded": loaded}))
"""


def test_the_pure_modules_are_computed_not_listed() -> None:
    pure = pure_modules()
    # Modules that must stay pure: if one of these drops out, something pulled an adapter in.
    assert {"linetap.events", "linetap.mqtt.topics", "linetap.mqtt.credentials", "linetap.mqtt.state",
            "linetap.mqtt.outbox", "linetap.health.broker", "linetap.leds.patterns"} <= set(pure)
    assert not {dotted_name(rel) for rel in adapter_modules()} & set(pure)
    assert "linetap.mqtt.link" not in pure and "linetap.leds.driver" not in pure  # built on adapters


def test_no_package_init_imports_an_adapter() -> None:
    inits = {dotted_name(rel) for rel in modules() if rel.endswith("__init__.py")}
    assert inits - set(pure_modules()) == set()


def test_importing_every_pure_module_loads_no_adapted_library() -> None:
    pure = pure_modules()
    done = subprocess.run([sys.executable, "-c", BLOCKING_IMPORTER, ",".join(sorted(BLOCKED)), *pure],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parents[1])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"errors": {}, "attempts": [], "loaded": []}


def test_the_blocking_importer_would_see_a_leak() -> None:
    adapter = dotted_name(ADAPTERS["paho"])
    done = subprocess.run([sys.executable, "-c", BLOCKING_IMPORTER, "paho", adapter],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parents[1])
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["attempts"] and "paho is blocked" in result["errors"][adapter]


def test_only_the_rclone_adapter_runs_rclone():
    """archive/rclone.py is rclone's one module, as paho_client.py is paho's: the executable is
    named nowhere else (a second subprocess call would escape its nice level and timeouts)."""
    users = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                   if re.search(r"""(["'])rclone\1""", p.read_text()))
    assert users == ["archive/rclone.py"]
