"""The command line's one error mapping: every failure is one line and a fixed exit code."""

from __future__ import annotations

import argparse
import errno
import sqlite3
from pathlib import Path

import pytest

from linetap import crypto
from linetap.cli import main
from linetap.cli.base import Command
from linetap.cli.errors import CliError, Outcome, UsageError, outcome
from linetap.cli.parser import COMMANDS, build_parser
from linetap.config import ConfigError
from linetap.evidence import UnknownCall

from helpers import write_config

# --- the mapping (pure) ----------------------------------------------------------------


def test_a_bad_argument_is_its_message_and_exit_2():
    assert outcome(UsageError("--line: no line named 'x'")) == Outcome(2, ("--line: no line named 'x'",))


def test_a_failure_put_into_words_is_its_message_and_exit_1():
    assert outcome(CliError("no index at /d/index.db")) == Outcome(1, ("no index at /d/index.db",))


def test_every_config_error_is_one_line_naming_its_key_and_exit_2():
    e = ConfigError(["l.toml: line[1].rate: must be one of 8000, 16000, 48000, not 44000", "l.toml: leds.x: unknown"])
    assert outcome(e) == Outcome(2, ("config error: l.toml: line[1].rate: must be one of 8000, 16000, 48000, not 44000",
                                     "config error: l.toml: leds.x: unknown"))


def test_a_corrupt_index_is_one_line_and_exit_1():
    assert outcome(sqlite3.DatabaseError("file is not a database")) == \
        Outcome(1, ("index error: file is not a database",))


def test_an_index_from_a_newer_linetap_is_one_line_and_exit_1(tmp_path):
    from linetap.index.db import open_index
    from linetap.index.schema import SchemaTooNew
    data = tmp_path / "data"
    data.mkdir()
    open_index(data).close()
    con = sqlite3.connect(data / "index.db")
    con.execute("PRAGMA user_version = 999")
    con.close()
    with pytest.raises(SchemaTooNew) as e:
        open_index(data)
    assert outcome(e.value) == Outcome(1, (f"index error: {e.value}",))
    cfg = write_config(tmp_path / "c.toml", data, [{"name": "line1", "pcm": "hw:0"}])
    assert main(["calls", "-c", str(cfg)]) == 1


def test_a_missing_file_names_the_file():
    e = FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/rec/a.opus")
    assert outcome(e) == Outcome(1, ("/data/rec/a.opus: No such file or directory",))


def test_evidence_and_crypto_failures_are_their_message():
    assert outcome(UnknownCall("no recording with id 99")) == Outcome(1, ("no recording with id 99",))
    assert outcome(crypto.CryptoError("a.sealed: wrong key")) == Outcome(1, ("a.sealed: wrong key",))


def test_anything_else_is_one_line_exit_1_and_unexpected():
    assert outcome(RuntimeError("boom")) == Outcome(1, ("error: boom",), unexpected=True)


def test_ctrl_c_is_130_and_a_closed_pipe_is_0_both_silent():
    assert outcome(KeyboardInterrupt()) == Outcome(130)
    assert outcome(BrokenPipeError(errno.EPIPE, "Broken pipe")) == Outcome(0)


# --- the one parser ---------------------------------------------------------------------


def test_every_command_of_the_contract_is_registered_once():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert {"run", "check", "calls", "status", "verify", "coverage", "hold", "release", "export", "erase",
            "decrypt", "keygen", "demo", "firstboot", "web", "user", "fleet", "archive"} == set(names)


def test_a_command_gets_a_config_option_as_it_declares():
    def noop(args: argparse.Namespace) -> int:
        return 0

    parser = build_parser((Command("a", "", noop), Command("b", "", noop, config="optional"),
                           Command("c", "", noop, config="none")))
    assert parser.parse_args(["a", "-c", "x.toml"]).config == "x.toml"
    assert parser.parse_args(["b"]).config is None
    with pytest.raises(UsageError, match="required: -c/--config"):
        parser.parse_args(["a"])
    with pytest.raises(UsageError, match="unrecognized arguments: -c"):
        parser.parse_args(["c", "-c", "x.toml"])


# --- through main -------------------------------------------------------------------------


def failing(exc: BaseException) -> tuple[Command, ...]:
    def run(args: argparse.Namespace) -> int:
        raise exc
    return (Command("fail", "raises", run, config="none"),)


def test_an_unexpected_error_is_one_line_without_a_traceback(capsys):
    assert main(["fail"], commands=failing(RuntimeError("boom"))) == 1
    assert capsys.readouterr().err == "linetap: error: boom\n"


def test_debug_shows_the_traceback_of_an_unexpected_error(capsys):
    assert main(["--debug", "fail"], commands=failing(RuntimeError("boom"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and "RuntimeError: boom\n" in err
    assert err.endswith("\nlinetap: error: boom\n")


def test_debug_adds_no_traceback_to_an_expected_failure(capsys):
    assert main(["--debug", "fail"], commands=failing(CliError("no index"))) == 1
    assert capsys.readouterr().err == "linetap: no index\n"


def test_ctrl_c_in_a_command_exits_130(capsys):
    assert main(["fail"], commands=failing(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == ""


def test_an_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("linetap: argument COMMAND: invalid choice: 'frobnicate'")


@pytest.mark.parametrize("argv", [["calls"], ["coverage"], ["verify"], ["hold", "1"], ["erase", "--number", "555"]])
def test_every_command_meeting_a_corrupt_index_says_so_in_one_line_and_exits_1(capsys, tmp_path: Path,
                                                                             data_dir: Path, argv: list[str]):
    cfg = write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": "null"}])
    (data_dir / "index.db").write_bytes(b"not an SQLite database, whatever a failing card made of it " * 20)
    assert main([*argv, "-c", str(cfg)]) == 1
    assert capsys.readouterr().err == "linetap: index error: file is not a database\n"
