"""The one mapping from what went wrong to what the user sees and the exit code.

Every command raises; only :func:`outcome` decides the message and the code, so two
commands can never report the same failure differently:

- a bad argument or config: one line each naming the argument or dotted key, exit 2;
- an expected failure (a corrupt index, a missing file, a recording that fails a
  check, a file that does not decrypt): one line, exit 1;
- anything else: one line, exit 1, and only then is a traceback worth showing
  (``--debug``);
- Ctrl-C: 130 (128 + SIGINT, as a shell reports it); a closed pipe (``linetap calls |
  head``): 0, the reader asked for no more.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass

from ..config import ConfigError
from ..evidence import EvidenceError
from ..index.schema import SchemaTooNew

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class CliError(Exception):
    """A failure the command has put into words: ``linetap: <message>``, exit ``code``."""

    code = EXIT_FAIL

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    """A bad argument (named in the message): exit 2."""

    code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``main`` does with an exception: print ``lines`` (each prefixed ``linetap: ``)
    to stderr, show the traceback if ``unexpected`` and ``--debug`` is on, exit ``code``."""

    code: int
    lines: tuple[str, ...] = ()
    unexpected: bool = False


def outcome(exc: Exception | KeyboardInterrupt) -> Outcome:
    """The exit code and message lines for an exception that ended a command."""
    if isinstance(exc, CliError):
        return Outcome(exc.code, (str(exc),))
    if isinstance(exc, ConfigError):
        return Outcome(EXIT_USAGE, tuple(f"config error: {line}" for line in exc.errors))
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(EXIT_INTERRUPTED)
    if isinstance(exc, BrokenPipeError):
        return Outcome(EXIT_OK)
    if isinstance(exc, EvidenceError) or _is_crypto_error(exc):
        return Outcome(EXIT_FAIL, (str(exc),))
    if isinstance(exc, SchemaTooNew):
        return Outcome(EXIT_FAIL, (f"index error: {exc}",))
    if isinstance(exc, sqlite3.Error):
        # A corrupt or locked index: the recorder rebuilds it, the CLI only reports it.
        return Outcome(EXIT_FAIL, (f"index error: {exc}",))
    if isinstance(exc, OSError):
        return Outcome(EXIT_FAIL, (f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}",))
    return Outcome(EXIT_FAIL, (f"error: {exc}",), unexpected=True)


def _is_crypto_error(exc: BaseException) -> bool:
    # linetap.crypto imports PyNaCl; a command that never needed it must not pay for
    # importing it here, and its errors can only come from a command that did.
    crypto = sys.modules.get("linetap.crypto")
    return crypto is not None and isinstance(exc, crypto.CryptoError)
