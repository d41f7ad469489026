"""One library, one module: each third-party library is imported by exactly one adapter.

Read from the source (the AST of every module under firmware/linetap), so a lazy import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import functools
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


# --- pure modules stay pure: importing one never loads a library behind an adapter ------------

BLOCKED = frozenset(ADAPTERS)  # alsaaudio, gpiozero, paho, sqlite_utils, soundfile, nacl


def module_name(rel: str) -> str:
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
    me = module_name(rel)
    package = me if rel.endswith("__init__.py") else me.rpartition(".")[0]
    libs: set[str] = set()
    mods: set[str] = set()
    for node in _top_level_nodes(ast.parse(path.read_text(), filename=str(path))):
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
    rel_of = {module_name(rel): rel for rel in modules()}
    names = set(rel_of)
    deps: dict[str, set[str]] = {}
    impure: set[str] = {module_name(rel) for rel in ADAPTERS.values()}
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
    assert not {module_name(rel) for rel in ADAPTERS.values()} & set(pure)
    assert "linetap.mqtt.link" not in pure and "linetap.leds.driver" not in pure  # built on adapters


# index/__init__.py still re-exports Index and open_index from its sqlite-utils adapter (index/db.py).
INITS_STILL_IMPORTING_AN_ADAPTER = {"linetap.index"}


def test_no_package_init_imports_an_adapter() -> None:
    inits = {module_name(rel) for rel in modules() if rel.endswith("__init__.py")}
    assert inits - set(pure_modules()) == INITS_STILL_IMPORTING_AN_ADAPTER


def test_importing_every_pure_module_loads_no_adapted_library() -> None:
    pure = pure_modules()
    done = subprocess.run([sys.executable, "-c", BLOCKING_IMPORTER, ",".join(sorted(BLOCKED)), *pure],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parents[1])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"errors": {}, "attempts": [], "loaded": []}


def test_the_blocking_importer_would_see_a_leak() -> None:
    adapter = module_name(ADAPTERS["paho"])
    done = subprocess.run([sys.executable, "-c", BLOCKING_IMPORTER, "paho", adapter],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parents[1])
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["attempts"] and "paho is blocked" in result["errors"][adapter]
