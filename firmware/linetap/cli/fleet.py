"""``linetap fleet``: every box on a broker, live in the terminal or as one JSON snapshot.

Exit status, Nagios-style (docs/CONTRACT.md, "Fleet"): 0 every box online without a critical
alarm, 1 a warning alarm or a stale box, 2 a box offline or in a critical alarm, 3 the broker
could not be reached. The live view exits with the code of its last refresh (Ctrl-C: 130).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .base import Command
from .errors import CliError, UsageError

EXIT_BROKER_UNREACHABLE = 3

# ANSI: cursor home + clear to end of screen, so the table updates in place without curses.
_HOME_CLEAR = "\x1b[H\x1b[J"


def broker_arg(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (1883 without TLS by default; ``[v6addr]:PORT`` for IPv6)."""
    host, port = text, 0
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p)
    if not host:
        raise argparse.ArgumentTypeError(f"HOST[:PORT] expected, not {text!r}")
    return host, port


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {text!r}")
    return int(text)


def cmd_fleet(args: argparse.Namespace) -> int:
    from ..fleet import state
    from ..fleet.watch import BrokerUnreachable, FleetWatch
    host, port = args.broker
    tls = args.tls is not None
    password = None
    if args.password_file is not None:
        try:
            password = Path(args.password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(f"--password-file: {e.strerror}: {args.password_file}") from None
    if password and not tls and not args.allow_plaintext_password:
        raise UsageError("--password-file needs --tls (or --allow-plaintext-password on a trusted network)")
    watch = FleetWatch(host=host, port=port or (8883 if tls else 1883), prefix=args.prefix,
                       collect_dir=args.collect, stale_after_s=args.stale_after,
                       client_kw={"username": args.username, "password": password, "tls_ca": args.tls,
                                  "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                                  "tls_insecure": args.tls_insecure})
    try:
        watch.start()
    except BrokerUnreachable as e:
        raise CliError(f"broker unreachable: {e}", EXIT_BROKER_UNREACHABLE) from None
    try:
        watch.settle(args.wait)
        if args.json:
            now = time.time()
            boxes = watch.boxes()
            print(json.dumps(state.fleet_doc(boxes, now)))
            return state.exit_code(boxes, now)
        colour = sys.stdout.isatty()
        n = 0
        while True:
            now = time.time()
            boxes = watch.boxes()
            table = state.render_table(boxes, now, colour=colour)
            summary = (f"{len(boxes)} boxes on {host}:{watch.port}, "
                       f"{sum(state.box_state(b, now) == state.ONLINE for b in boxes)} online - {time.strftime('%H:%M:%S')}")
            sys.stdout.write((_HOME_CLEAR if colour else "") + summary + "\n" + table)
            sys.stdout.flush()
            n += 1
            if args.iterations and n >= args.iterations:
                return state.exit_code(boxes, now)
            time.sleep(args.refresh)
    finally:
        watch.stop()


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--broker", required=True, type=broker_arg, metavar="HOST[:PORT]")
    sp.add_argument("--tls", metavar="CA_FILE", help="connect with TLS, verifying the broker against this CA")
    sp.add_argument("--tls-cert", metavar="FILE", help="client certificate (with --tls-key)")
    sp.add_argument("--tls-key", metavar="FILE")
    sp.add_argument("--tls-insecure", action="store_true", help="skip the broker's host name check")
    sp.add_argument("--username", metavar="NAME")
    sp.add_argument("--password-file", metavar="FILE", help="file holding the password (one line)")
    sp.add_argument("--allow-plaintext-password", action="store_true")
    sp.add_argument("--prefix", default="linetap", metavar="PREFIX", help="the boxes' mqtt.topic_prefix")
    sp.add_argument("--json", action="store_true", help="print one JSON snapshot and exit")
    sp.add_argument("--collect", type=Path, metavar="DIR",
                    help="append every box's signed checkpoints to DIR/<id>.jsonl")
    sp.add_argument("--wait", type=float, default=5.0, metavar="S",
                    help="at most this long for the retained messages before the first snapshot (default 5)")
    sp.add_argument("--stale-after", type=float, default=90.0, metavar="S",
                    help="a snapshot without an MQTT 5 expiry is stale after this long (default 90)")
    sp.add_argument("--refresh", type=float, default=1.0, metavar="S", help="table refresh period (default 1)")
    sp.add_argument("-n", "--iterations", type=int, default=0, metavar="N",
                    help="stop after N refreshes, like top -n (default: until Ctrl-C)")


COMMANDS = (Command("fleet", "watch every box on a broker (Nagios-style exit status)", cmd_fleet, _arguments,
                    config="none"),)
