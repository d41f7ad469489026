"""The ``linetap`` command line (see docs/CONTRACT.md for the commands and exit codes).

Errors in the config or the arguments: one clear message each, exit 2, never a
traceback. Anything unexpected: one line, exit 1 (``--debug`` shows the trace).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .cli_health import when_arg
from .clock import iso
from .config import Config, ConfigError, load

logger = logging.getLogger("linetap")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad argument: reported in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2 with usage; keep it to one line
        raise UsageError(message)


def _load_config(args: argparse.Namespace) -> Config:
    return load(args.config)


def _iso_arg(text: str) -> str:
    return iso(when_arg(text))


# --- commands -----------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    from .service import run_service
    return run_service(cfg)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    from .service import run_checks
    return run_checks(cfg)


def cmd_calls(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    from .index.db import open_index, public_call
    db_path = Path(cfg.recorder.data_dir) / "index.db"
    if not db_path.exists():
        rows: list[dict[str, Any]] = []
    else:
        index = open_index(cfg.recorder.data_dir)
        try:
            rows = [public_call(r) for r in index.calls(line=args.line, since=args.since, until=args.until,
                                                         number=args.number)]
        finally:
            index.close()
    if args.json:
        print(json.dumps(rows, indent=None))
        return EXIT_OK
    if not rows:
        print("no recordings match")
        return EXIT_OK
    print(f"{'id':>6}  {'line':<10} {'started (UTC)':<24} {'dur s':>8}  {'caller':<16} {'status':<10} path")
    for r in rows:
        dur = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        caller = r["caller_number"] or (r["caller_name"] or "")
        print(f"{r['id']:>6}  {r['line']:<10} {r['started_at']:<24} {dur:>8}  {caller:<16} "
              f"{r['status']:<10} {r['path']}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    from .service import read_status
    doc = read_status(cfg)
    if doc is None:
        print(f"linetap is not running (no status in {cfg.recorder.data_dir})", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(doc))
    else:
        from .service import render_status
        print(render_status(doc))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .sim.demo import run_demo
    return run_demo(Path(args.dir), seconds=args.seconds, codec=args.codec)


# --- wiring -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="linetap", description="Call recorder that never fails silently.")
    p.add_argument("--version", action="version", version=f"linetap {__version__}")
    p.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def common(sp: argparse.ArgumentParser, required: bool = True) -> None:
        sp.add_argument("-c", "--config", required=required, metavar="CONFIG",
                        help="the linetap.toml to use")

    sp = sub.add_parser("run", help="run the recorder until SIGTERM/SIGINT")
    common(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("check", help="validate the config and probe lines, data dir and broker")
    common(sp)
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("calls", help="list recordings from the index")
    common(sp)
    sp.add_argument("--json", action="store_true", help="one JSON array of call objects")
    sp.add_argument("--line", metavar="NAME")
    sp.add_argument("--since", type=_iso_arg, metavar="ISO")
    sp.add_argument("--until", type=_iso_arg, metavar="ISO")
    sp.add_argument("--number", metavar="DIGITS")
    sp.set_defaults(func=cmd_calls)

    sp = sub.add_parser("status", help="the running recorder's health snapshot")
    common(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("demo", help="record a simulated phone line (no hardware needed)")
    sp.add_argument("--dir", default="demo-data", help="where the demo keeps its data (default ./demo-data)")
    sp.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    sp.add_argument("--codec", default="opus", choices=("opus", "flac", "wav"))
    sp.set_defaults(func=cmd_demo)

    for extra in _extra_command_modules():
        extra.add_commands(sub, common)
    return p


def _extra_command_modules() -> list[Any]:
    """Feature packages register their own commands (evidence, coverage, ...)."""
    mods = []
    for name in ("linetap.cli_storage", "linetap.cli_health", "linetap.cli_fleet"):
        try:
            mods.append(__import__(name, fromlist=["add_commands"]))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return mods


def setup_logging(debug: bool) -> None:
    # No timestamps: journald adds them.
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        setup_logging(args.debug)
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"linetap: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        for line in e.errors:
            print(f"linetap: config error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
        if debug:
            raise
        print(f"linetap: error: {e}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
