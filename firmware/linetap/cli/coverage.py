"""``linetap coverage``: per line, the covered fraction and every gap with its reason.

The report an owner shows in a dispute: from the ``gaps`` table, which the
recorder fills whenever a line was not captured (no device, dead or stalled
line, lost samples, the recorder itself down). Read-only; times are UTC.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..alarms.gaps import coverage_report, load_gaps
from ..clock import iso, parse_iso
from .base import Command, load_config, when_arg
from .errors import EXIT_OK, UsageError
from .render import render_coverage, render_coverage_json

DAY_S = 86400.0
STALE_HEARTBEAT_S = 5.0  # the recorder writes one every second


def cmd_coverage(args: argparse.Namespace) -> int:
    from ..index.db import open_index

    cfg = load_config(args)
    until = args.until if args.until is not None else time.time()
    since = args.since if args.since is not None else until - 7 * DAY_S
    if until <= since:
        raise UsageError(f"--until ({iso(until)}) must be after --since ({iso(since)})")
    names = [ln.name for ln in cfg.lines]
    if args.line:
        if args.line not in names:
            raise UsageError(f"--line: no line named {args.line!r} in {cfg.source} "
                             f"(lines: {', '.join(names)})")
        names = [args.line]
    index = open_index(cfg.recorder.data_dir)
    try:
        gaps = load_gaps(index, since, until, args.line)
        first, heartbeat = index.get_meta("first_started_at"), index.get_meta("heartbeat")
    finally:
        index.close()
    gaps += not_running(names, first, heartbeat, until)
    report = coverage_report(gaps, names, since, until)
    print(render_coverage_json(report) if args.json else render_coverage(report), end="")
    return EXIT_OK


def not_running(lines: list[str], first: str | None, heartbeat: str | None,
                until: float) -> list[dict[str, Any]]:
    """Time the recorder was not running at all is not covered either: before its first
    start, and from its last heartbeat on if it is not running now (no heartbeat for 5 s)."""
    extra: list[dict[str, Any]] = []
    for line in lines:
        if first is None:
            extra.append({"line": line, "started_at": iso(0), "ended_at": iso(until),
                          "reason": "never_started"})
            continue
        extra.append({"line": line, "started_at": iso(0), "ended_at": first, "reason": "before_first_start"})
        if heartbeat and until - parse_iso(heartbeat) > STALE_HEARTBEAT_S:
            extra.append({"line": line, "started_at": heartbeat, "ended_at": iso(until),
                          "reason": "recorder_down"})
    return extra


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--since", type=when_arg, metavar="ISO", help="default: 7 days before --until")
    sp.add_argument("--until", type=when_arg, metavar="ISO", help="default: now")
    sp.add_argument("--line", metavar="NAME")
    sp.add_argument("--json", action="store_true", help="the report as JSON")


COMMANDS = (Command("coverage", "per line: the covered fraction and every gap with its reason", cmd_coverage,
                    _arguments),)
