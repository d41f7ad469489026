"""The ``linetap`` command line (the commands and exit codes are in README.md, "Command line").

A package, one module per thing the commands touch:

- ``recorder``: run, check, status, demo;   ``calls``: calls;   ``coverage``: coverage;
- ``evidence``: verify, hold, release, export, erase, decrypt, keygen;   ``boot``: firstboot;
- ``render``: the tables they print;   ``base``: the registration record and argument types;
- ``parser``: the one parser, from the one list of commands;
- ``errors``: the one mapping from a failure to its message and exit code.

Errors in the config or the arguments: one clear message each, exit 2, never a
traceback. Anything unexpected: one line, exit 1 (``--debug`` shows the trace).
"""

from __future__ import annotations

import logging
import sys
import traceback

from .base import Command
from .errors import outcome
from .parser import COMMANDS, build_parser

__all__ = ["main", "build_parser"]


def setup_logging(debug: bool) -> None:
    # No timestamps: journald adds them.
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None, *, commands: tuple[Command, ...] = COMMANDS) -> int:
    """``linetap ARGS``: run one of ``commands`` (all of them, but for tests), return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # known before parsing, so a parser failure obeys it too
    try:
        args = build_parser(commands).parse_args(argv)
        setup_logging(args.debug)
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes one line and a code
        result = outcome(e)
        if result.unexpected and debug:
            traceback.print_exception(e, file=sys.stderr)
        for line in result.lines:
            print(f"linetap: {line}", file=sys.stderr)
        return result.code
