"""What every command module shares: the registration record and the argument types.

A command module lists its commands as :class:`Command` records (``COMMANDS``);
``linetap.cli.parser`` builds the one parser from those lists. A command's ``run``
takes the parsed arguments and returns the exit code, and raises for every failure:
``linetap.cli.errors`` turns the exception into the message and the code.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Literal

from ..clock import iso, parse_iso
from ..config import Config, load

ConfigOption = Literal["required", "optional", "none"]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command that takes nothing but ``-c/--config``."""


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: ``linetap <name>``."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    config: ConfigOption = "required"  # whether it takes -c/--config, and must


def load_config(args: argparse.Namespace) -> Config:
    """The config named by ``-c``; a ``ConfigError`` names every bad key (exit 2)."""
    return load(args.config)


def when_arg(text: str) -> float:
    """An ISO 8601 command-line time as epoch seconds (argparse names the option in its error)."""
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None


def iso_arg(text: str) -> str:
    """An ISO 8601 command-line time in the index's form (UTC, milliseconds), for comparing with its columns."""
    return iso(when_arg(text))


def call_id_arg(text: str) -> int:
    """A recording id: a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"CALL_ID: must be a recording id (a whole number), not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"CALL_ID: must be positive, not {value}")
    return value
