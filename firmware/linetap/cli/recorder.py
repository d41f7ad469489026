"""The commands about the recorder itself: run, check, status, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..config import Config
from .base import Command, load_config
from .errors import EXIT_FAIL, EXIT_OK
from .render import render_status

# The recorder rewrites its status file every second; 10 s without a new one means it
# is not running or is stuck, and ``linetap status`` says so.
STATUS_STALE_AFTER_S = 10.0


def cmd_run(args: argparse.Namespace) -> int:
    from ..service import run_service
    try:
        return run_service(load_config(args))
    except BaseException as e:
        if not isinstance(e, (KeyboardInterrupt, SystemExit)):
            # Why this start failed, on the data partition: the journal is in RAM, and the
            # next start shows it (rollback.py).
            from ..rollback import record_failure
            record_failure(Path(args.config), " ".join(str(e).split()) or type(e).__name__, now=time.time())
        raise


def cmd_check(args: argparse.Namespace) -> int:
    from ..service import run_checks
    return run_checks(load_config(args))


def cmd_status(args: argparse.Namespace) -> int:
    from ..service import read_status
    cfg = load_config(args)
    doc = read_status(cfg)
    from ..rollback import failure_of
    failure = failure_of(Path(args.config), Path(cfg.recorder.data_dir))
    if doc is None:
        print(f"linetap is not running (no status in {cfg.recorder.data_dir})", file=sys.stderr)
        if failure:
            print(f"its last start failed at {failure.get('at')}: {failure.get('reason')}", file=sys.stderr)
        return EXIT_FAIL
    if failure and failure != doc.get("last_start_failure"):
        # A start failed after this snapshot was written (failure.json is removed once a start
        # has run well): the snapshot is stale, the failure is the news.
        doc = {**doc, "last_start_failure": {k: failure.get(k) for k in ("at", "reason")}}
    if args.json:
        print(json.dumps(doc))
    else:
        print(render_status(doc, now=time.time(), stale_after_s=STATUS_STALE_AFTER_S), end="")
        print(_web_status(cfg), end="")
    return EXIT_OK


def _web_status(cfg: Config) -> str:
    """The web interface's HTTPS fingerprint and, while there is no admin, its setup token (w-web)."""
    from ..web.service import SETUP_TOKEN_FILE, web_dir
    from ..web.tls import stored_fingerprint
    state = web_dir(cfg)
    out = ""
    fp = stored_fingerprint(state)
    if fp:
        out += f"web: https://{cfg.recorder.id}.local:{cfg.web.listen.rsplit(':', 1)[1]}/ certificate SHA-256 {fp}\n"
    try:
        token = (state / SETUP_TOKEN_FILE).read_text().strip()
    except OSError:
        token = ""
    if token:
        out += f"web: no admin yet: log in as 'admin' with the setup token {token}\n"
    return out


def _status_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..sim.demo import run_demo
    return run_demo(Path(args.dir), seconds=args.seconds, codec=args.codec)


def _demo_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--dir", default="demo-data", help="where the demo keeps its data (default ./demo-data)")
    sp.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    sp.add_argument("--codec", default="opus", choices=("opus", "flac", "wav"))


COMMANDS = (
    Command("run", "run the recorder until SIGTERM/SIGINT", cmd_run),
    Command("check", "validate the config and probe lines, data dir and broker", cmd_check),
    Command("status", "the running recorder's health snapshot", cmd_status, _status_arguments),
    Command("demo", "record a simulated phone line (no hardware needed)", cmd_demo, _demo_arguments, config="none"),
)
