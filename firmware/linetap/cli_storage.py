"""The storage and evidence commands: hold, release, verify, export, erase, decrypt, keygen.

Registered into the ``linetap`` parser by :func:`add_commands`. Each command function takes the
parsed arguments and returns the exit code: 0 done, 1 failed (e.g. verify found problems, a
file does not decrypt), 2 bad arguments or config. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable

from .config import Config, ConfigError, load

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
NUMBER_RE = re.compile(r"^\+?[0-9*#]{1,32}$")
SEALED_ID_RE = re.compile(r"_(\d+)\.[a-z0-9]+\.sealed$")

Command = Callable[[argparse.Namespace], int]


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _err(message: str) -> None:
    print(f"linetap: {message}", file=sys.stderr)


def _command(fn: Command) -> Command:
    """One clear line and an exit code for every failure; a traceback only in the debug log."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from .evidence import EvidenceError
        try:
            return fn(args)
        except _Exit as e:
            _err(str(e))
            return e.code
        except ConfigError as e:
            for line in e.errors:
                _err(f"config error: {line}")
            return EXIT_USAGE
        except EvidenceError as e:
            _err(str(e))
            return EXIT_FAIL
        except sqlite3.Error as e:
            _err(f"index error: {e}")
            return EXIT_FAIL
        except OSError as e:
            _err(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
            return EXIT_FAIL
        except Exception as e:  # noqa: BLE001 - one line for the user; the trace for --debug
            crypto = sys.modules.get("linetap.crypto")  # not imported (nacl) unless the command needed it
            if crypto is not None and isinstance(e, crypto.CryptoError):
                _err(str(e))
                return EXIT_FAIL
            logger.debug("unexpected error", exc_info=True)
            _err(f"error: {e}")
            return EXIT_FAIL
    return run


def _config(args: argparse.Namespace) -> Config:
    if not getattr(args, "config", None):
        raise _Exit(EXIT_USAGE, "-c/--config: required")
    return load(args.config)


def _index(cfg: Config) -> Any:
    from .index.db import open_index
    data_dir = Path(cfg.recorder.data_dir)
    if not (data_dir / "index.db").is_file():
        raise _Exit(EXIT_FAIL, f"no index at {data_dir / 'index.db'}: has the recorder run with this config?")
    return open_index(data_dir)


# --- commands -----------------------------------------------------------------

@_command
def cmd_hold(args: argparse.Namespace) -> int:
    from .evidence import hold
    cfg = _config(args)
    index = _index(cfg)
    try:
        placed = hold.hold(index, args.call_id, reason=args.reason)
    finally:
        index.close()
    print(f"call {args.call_id} is on legal hold" + ("" if placed else " (already)"))
    return EXIT_OK


@_command
def cmd_release(args: argparse.Namespace) -> int:
    from .evidence import hold
    cfg = _config(args)
    index = _index(cfg)
    try:
        released = hold.release(index, args.call_id)
    finally:
        index.close()
    print(f"call {args.call_id}: legal hold released" if released else f"call {args.call_id} was not on hold")
    return EXIT_OK


@_command
def cmd_verify(args: argparse.Namespace) -> int:
    from .evidence.verify import verify
    cfg = _config(args)
    index = _index(cfg)
    try:
        report = verify(index, cfg.recorder.data_dir, rehash=not args.quick)
    finally:
        index.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "recordings": report.recordings, "files_checked": report.files_checked,
                          "chain": {"entries": report.entries, "head_seq": report.head_seq,
                                    "head_hash": report.head_hash},
                          "problems": [{"kind": p.kind, "call_id": p.call_id, "path": p.path, "detail": p.detail}
                                       for p in report.problems]}))
    else:
        for p in report.problems:
            print(p)
        state = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.recordings} recordings, {report.files_checked} files checked, chain of {report.entries} "
              f"entries (head {report.head_seq} {report.head_hash[:16]}): {state}")
    return EXIT_OK if report.ok else EXIT_FAIL


@_command
def cmd_export(args: argparse.Namespace) -> int:
    from .evidence.export import export_call
    cfg = _config(args)
    if args.key is not None and not Path(args.key).is_file():
        raise _Exit(EXIT_USAGE, f"--key: {args.key}: no such file")
    index = _index(cfg)
    try:
        res = export_call(index, cfg.recorder.data_dir, args.call_id, Path(args.to),
                          key_path=Path(args.key) if args.key else None, recorder_id=cfg.recorder.id)
    finally:
        index.close()
    for f in res.files:
        print(f)
    return EXIT_OK


@_command
def cmd_erase(args: argparse.Namespace) -> int:
    from .evidence.erase import erase_number
    number = args.number.replace(" ", "").replace("-", "")
    if not NUMBER_RE.match(number):
        raise _Exit(EXIT_USAGE, f"--number: must be the caller's digits (0-9, * #, optional leading +), "
                                f"not {args.number!r}")
    cfg = _config(args)
    index = _index(cfg)
    try:
        res = erase_number(index, cfg.recorder.data_dir, number)
    finally:
        index.close()
    print(f"erased {len(res.erased)} recording(s) with caller number {number}"
          + (f": {', '.join(map(str, res.erased))}" if res.erased else ""))
    if res.held:
        print(f"kept {len(res.held)} on legal hold: {', '.join(map(str, res.held))} (release them, then erase again)")
    if res.recording:
        print(f"kept {len(res.recording)} still being recorded: {', '.join(map(str, res.recording))} "
              "(erase again once they end)")
    return EXIT_OK if not res.recording else EXIT_FAIL


@_command
def cmd_decrypt(args: argparse.Namespace) -> int:
    from . import crypto
    src, key, out = Path(args.file), Path(args.key), Path(args.out)
    if not src.is_file():
        raise _Exit(EXIT_USAGE, f"FILE: {src}: no such file")
    if not key.is_file():
        raise _Exit(EXIT_USAGE, f"--key: {key}: no such file")
    if out.exists():
        raise _Exit(EXIT_USAGE, f"--out: {out} already exists; not overwriting")
    cfg = _config(args) if args.config else None
    res = crypto.decrypt_file(src, out, key)
    if cfg is not None:
        # On the box (or with a copy of its index): the read is audited.
        from .evidence import audit
        m = SEALED_ID_RE.search(src.name)
        index = _index(cfg)
        try:
            audit.record(index, "decrypt", int(m.group(1)) if m else None, detail=f"{src.name} -> {out}")
        finally:
            index.close()
    print(f"{out}: {res.bytes} bytes, sha256 {res.sha256}")
    return EXIT_OK


@_command
def cmd_keygen(args: argparse.Namespace) -> int:
    from . import crypto
    pub, key = crypto.generate_keypair(Path(args.out))
    print(f"public key:  {pub}   -> copy to the recorder, set [storage] encrypt_to = \"{pub.name}\" (its path)")
    print(f"private key: {key}   -> keep it OFF the recorder; without it no recording can be decrypted")
    return EXIT_OK


# --- wiring -------------------------------------------------------------------

def _call_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"CALL_ID: must be a recording id (a whole number), not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"CALL_ID: must be positive, not {value}")
    return value


def add_commands(subparsers: Any, common: Any = None) -> None:
    """Register the commands. ``common(parser, required=...)`` adds ``-c/--config`` (as linetap.cli does)."""
    def config_option(sp: argparse.ArgumentParser, required: bool = True) -> None:
        if callable(common):
            common(sp, required=required)
        else:
            sp.add_argument("-c", "--config", required=required, metavar="CONFIG", help="the linetap.toml to use")

    sp = subparsers.add_parser("hold", help="put a recording on legal hold (exempt from every deletion)")
    config_option(sp)
    sp.add_argument("call_id", type=_call_id, metavar="CALL_ID")
    sp.add_argument("--reason", help="why (kept with the hold)")
    sp.set_defaults(func=cmd_hold)

    sp = subparsers.add_parser("release", help="lift a legal hold")
    config_option(sp)
    sp.add_argument("call_id", type=_call_id, metavar="CALL_ID")
    sp.set_defaults(func=cmd_release)

    sp = subparsers.add_parser("verify", help="re-hash every recording and check the tamper-evidence chain")
    config_option(sp)
    sp.add_argument("--json", action="store_true", help="one JSON document")
    sp.add_argument("--quick", action="store_true", help="compare file sizes only, do not re-hash")
    sp.set_defaults(func=cmd_verify)

    sp = subparsers.add_parser("export", help="export a recording with its metadata and chain proof")
    config_option(sp)
    sp.add_argument("call_id", type=_call_id, metavar="CALL_ID")
    sp.add_argument("--to", required=True, metavar="DIR", help="directory to write the export into")
    sp.add_argument("--key", metavar="PRIVATE_KEY", help="also write the decrypted audio (encrypted stores)")
    sp.set_defaults(func=cmd_export)

    sp = subparsers.add_parser("erase", help="privacy request: delete every recording of a caller number")
    config_option(sp)
    sp.add_argument("--number", required=True, metavar="DIGITS")
    sp.set_defaults(func=cmd_erase)

    sp = subparsers.add_parser("decrypt", help="decrypt a .sealed recording with the off-box private key")
    config_option(sp, required=False)
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--key", required=True, metavar="PRIVATE_KEY")
    sp.add_argument("--out", required=True, metavar="FILE")
    sp.set_defaults(func=cmd_decrypt)

    sp = subparsers.add_parser("keygen", help="make a key pair for [storage] encrypt_to")
    config_option(sp, required=False)
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.set_defaults(func=cmd_keygen)
