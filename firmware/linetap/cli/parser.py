"""The one ``linetap`` parser, built from the command modules' ``COMMANDS``.

A new command is a :class:`~linetap.cli.base.Command` in the module of what it touches
and, for a new module, one entry in :data:`COMMANDS` here; nothing is found by name
at run time, so a missing module fails at import, not in front of a user.
"""

from __future__ import annotations

import argparse

from .. import __version__
from . import archive, boot, calls, coverage, evidence, fleet, recorder, users, web
from .base import Command
from .errors import UsageError

# One list, in the order ``linetap --help`` shows them: the recorder, its records, the evidence, setting up.
COMMANDS: tuple[Command, ...] = (
    *recorder.COMMANDS,
    *calls.COMMANDS,
    *coverage.COMMANDS,
    *evidence.COMMANDS,
    *archive.COMMANDS,
    *boot.COMMANDS,
    *web.COMMANDS,
    *users.COMMANDS,
    *fleet.COMMANDS,
)

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2 with usage; keep it to one line
        raise UsageError(message)


def build_parser(commands: tuple[Command, ...] = COMMANDS) -> argparse.ArgumentParser:
    p = _Parser(prog="linetap", description="Call recorder that never fails silently.")
    p.add_argument("--version", action="version", version=f"linetap {__version__}")
    p.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in commands:
        sp = sub.add_parser(command.name, help=command.help)
        if command.config != "none":
            sp.add_argument("-c", "--config", required=command.config == "required", metavar="CONFIG",
                            help="the linetap.toml to use")
        command.arguments(sp)
        sp.set_defaults(func=command.run)
    return p
