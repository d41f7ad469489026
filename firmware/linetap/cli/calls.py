"""``linetap calls``: the recordings in the index, as a table or as the contract's JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .base import Command, iso_arg, load_config
from .errors import EXIT_OK
from .render import render_calls


def cmd_calls(args: argparse.Namespace) -> int:
    from ..index.db import open_index, public_call
    cfg = load_config(args)
    db_path = Path(cfg.recorder.data_dir) / "index.db"
    if not db_path.exists():
        rows: list[dict[str, Any]] = []  # the recorder has not run yet: nothing recorded, not an error
    else:
        index = open_index(cfg.recorder.data_dir)
        try:
            rows = [public_call(r) for r in index.calls(line=args.line, since=args.since, until=args.until,
                                                         number=args.number)]
        finally:
            index.close()
    if args.json:
        print(json.dumps(rows, indent=None))
    else:
        print(render_calls(rows), end="")
    return EXIT_OK


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="one JSON array of call objects")
    sp.add_argument("--line", metavar="NAME")
    sp.add_argument("--since", type=iso_arg, metavar="ISO")
    sp.add_argument("--until", type=iso_arg, metavar="ISO")
    sp.add_argument("--number", metavar="DIGITS")


COMMANDS = (Command("calls", "list recordings from the index", cmd_calls, _arguments),)
