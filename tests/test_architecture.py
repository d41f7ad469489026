"""One library, one module: each third-party library is imported by exactly one adapter.

Read from the source (the AST of every module under firmware/linetap), so a lazy import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import functools
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
