"""The config's documentation, generated from its declarations in ``config.py``.

Two outputs, so neither can drift from what the loader accepts:

- the README's configuration table (between ``<!-- config-table:start -->`` and
  ``<!-- config-table:end -->``), and
- ``docs/linetap.schema.json``, a JSON Schema (draft 2020-12) of ``linetap.toml`` with
  ``additionalProperties: false`` everywhere, so an editor that reads TOML schemas (Taplo,
  VS Code's Even Better TOML) underlines a misspelt key on the installer's laptop, before the
  box refuses it.

``python -m linetap.config_docs --markdown`` / ``--json-schema`` print them;
``scripts/gen-config-docs`` writes both into the repository, and ``tests/test_config.py`` fails
when the committed copies differ from what the declarations give.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from .config import SECTIONS, Between, Field, Matches, OneOf, Section, fields

TABLE_START = "<!-- config-table:start -->"
TABLE_END = "<!-- config-table:end -->"

_JSON_TYPES = {str: "string", Path: "string", int: "integer", float: "number", bool: "boolean",
               tuple: "array"}
_WORDS = {str: "string", Path: "file path", int: "integer", float: "number", bool: "`true` \\| `false`",
          tuple: "list"}


def _num(v: float) -> str:
    """8000, 14400, 10000000, 0.4: no exponent, no trailing .0."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# --- Markdown -------------------------------------------------------------------------------------

def _md_value(v: Any) -> str:
    if isinstance(v, bool):
        return f"`{'true' if v else 'false'}`"
    if isinstance(v, (int, float)):
        return _num(v)
    if isinstance(v, tuple):
        return ", ".join(_md_value(x) for x in v)
    return f"`{v}`"


def _md_default(f: Field) -> str:
    if f.decl.required:
        return "required"
    if f.decl.shown_default is not None:
        return f.decl.shown_default
    if f.default is None:
        return "–"
    return _md_value(f.default)


def _md_allowed(f: Field) -> str:
    check = f.decl.check
    if isinstance(check, OneOf):
        options = " \\| ".join(_md_value(o) for o in check.options)
        return f"any of {options}" if f.kind is tuple else options
    if isinstance(check, Between):
        return f"{_num(check.lo)} – {_num(check.hi)}"
    if isinstance(check, Matches):
        return check.shown
    return _WORDS[f.kind]


def markdown_table() -> str:
    """One row per key: ``section.key``, default, allowed values, meaning."""
    out = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for section in SECTIONS:
        table = f"[[{section.name}]]" if section.many else f"[{section.name}]"
        out.append(f"| **`{table}`** | | | {section.doc} |")
        for f in fields(section.cls):
            out.append(f"| `{section.name}.{f.name}` | {_md_default(f)} | {_md_allowed(f)} | {f.decl.doc} |")
    return "\n".join(out) + "\n"


def replace_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    head, start, rest = readme.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"the README has no {TABLE_START} ... {TABLE_END} markers")
    return f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}"


# --- JSON Schema ----------------------------------------------------------------------------------

def _json_default(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _property(f: Field) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": _JSON_TYPES[f.kind], "description": f.decl.doc}
    check = f.decl.check
    constraint: dict[str, Any] = {}
    if isinstance(check, OneOf):
        constraint = {"enum": list(check.options)}
    elif isinstance(check, Between):
        constraint = {"minimum": check.lo, "maximum": check.hi}
    elif isinstance(check, Matches):
        constraint = {"pattern": check.pattern}
    if f.kind is tuple:
        prop["items"] = {"type": _JSON_TYPES[f.item or str], **constraint}
    else:
        prop.update(constraint)
    default = f.default if f.default is not MISSING else f.decl.fallback
    if not f.decl.required and default is not None and not callable(default):
        prop["default"] = _json_default(default)
    return prop


def _table_schema(section: Section) -> dict[str, Any]:
    fs = fields(section.cls)
    schema: dict[str, Any] = {"type": "object", "description": section.doc, "additionalProperties": False,
                              "properties": {f.name: _property(f) for f in fs}}
    required = [f.name for f in fs if f.decl.required]
    if required:
        schema["required"] = required
    return schema


def json_schema() -> dict[str, Any]:
    """The schema of ``linetap.toml``: every table closed to keys the loader does not know."""
    properties: dict[str, Any] = {}
    for section in SECTIONS:
        table = _table_schema(section)
        if section.many:
            table = {"type": "array", "description": table.pop("description"), "minItems": 1, "items": table}
        properties[section.name] = table
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "linetap.toml",
        "description": "The linetap call recorder's configuration (README.md, Configuration). "
                       "Generated from firmware/linetap/config.py by scripts/gen-config-docs.",
        "type": "object",
        "additionalProperties": False,
        "required": [s.name for s in SECTIONS if s.many],
        "properties": properties,
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linetap.config_docs",
                                     description="Print the config's docs, generated from its declarations.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="the README's configuration table")
    what.add_argument("--json-schema", action="store_true", help="the JSON Schema of linetap.toml")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown_table() if args.markdown else json_schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
