"""The text the commands print for people: the status, coverage and calls tables.

Pure functions from the documents and reports the rest of the package builds
(``health.snapshot.build_snapshot``, ``alarms.gaps.coverage_report``, the index's
call rows) to text, so the data code knows nothing of columns and widths, and the
tables get exact tests without a running recorder.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..alarms.gaps import LineCoverage
from ..clock import iso, parse_iso

# --- linetap status -----------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def render_status(doc: dict[str, Any], *, now: float | None = None,
                  stale_after_s: float | None = None) -> str:
    """Human text for ``linetap status``. With ``now`` it says how old the snapshot
    is, and with ``stale_after_s`` it warns that the recorder is not updating it."""
    out = []
    head = f"linetap {doc.get('id', '?')}  version {doc.get('version', '?')}  " \
           f"up {_duration(float(doc.get('uptime_s') or 0))}  snapshot {doc.get('ts', '?')}"
    age = None
    if now is not None and doc.get("ts"):
        age = now - parse_iso(doc["ts"])
        head += f" ({max(0, int(age))} s ago)"
    out.append(head)
    if age is not None and stale_after_s is not None and age > stale_after_s:
        out.append(f"WARNING: the snapshot is {int(age)} s old: the recorder is not running or is stuck")
    failure = doc.get("last_start_failure")
    if failure:
        out.append(f"last start failure: {failure.get('at', '?')}: {failure.get('reason', '?')}")
    synced = doc.get("clock_synced")
    out.append("clock:  " + {True: "synchronised", False: "NOT synchronised (timestamps may be wrong)",
                             None: "synchronisation unknown"}[synced])
    disk = doc.get("disk") or {}
    if disk.get("free_mb") is not None:
        hl = disk.get("hours_left")
        left = f", about {hl:g} h of recording left" if hl is not None else ""
        out.append(f"disk:   {disk['free_mb']:g} MB free, {disk.get('used_mb') or 0:g} MB in "
                   f"{disk.get('recordings') or 0} recordings{left}")
    ev = doc.get("evidence") or {}
    cp = doc.get("checkpoint") or {}
    if ev.get("key_fingerprint") or cp:
        key = ev.get("key_fingerprint") or "?"
        signed = f", chain of {cp['length']} entries signed {cp.get('ts')}" if cp.get("length") is not None else ""
        passed = {True: "intact", False: "PROBLEMS FOUND", None: ""}[ev.get("last_full_pass_ok")]
        last = f"last full check {ev['last_full_pass']} {passed}" if ev.get("last_full_pass") else \
            "no full check yet"
        out.append(f"evidence: key {key}{signed}; {last}")
    out.append("lines:")
    lines = doc.get("lines") or {}
    width = max((len(n) for n in lines), default=4)
    for name, ln in lines.items():
        level = ln.get("level_dbfs")
        level_s = f"{level:6.1f} dBFS" if level is not None else f"{'-':>6} dBFS"
        last = ln.get("last_audio_at") or "never"
        alarms = "  " + " ".join(ln["alarms"]) if ln.get("alarms") else ""
        out.append(f"  {name:<{width}}  {ln.get('state', '?'):<9}  {level_s}  last audio {last}{alarms}")
    details = doc.get("alarm_details")
    if details:
        out.append("alarms:")
        for a in details:
            where = f" {a['line']}" if a.get("line") else ""
            detail = f": {a['detail']}" if a.get("detail") else ""
            out.append(f"  {a['severity'].upper():<8} {a['code']}{where} since {a['raised_at']}{detail}")
    elif doc.get("alarms"):
        out.append("alarms: " + " ".join(doc["alarms"]))
    else:
        out.append("alarms: none")
    return "\n".join(out) + "\n"


# --- linetap coverage ---------------------------------------------------------------


def _hms(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:d}:{m:02d}:{s:02d}.{ms:03d}"


def _percent(fraction: float) -> str:
    # Rounded *down*: a line with any gap at all must never print as 100.000 %.
    # (The epsilon only absorbs float noise such as 0.29 * 1e5 = 28999.999999999996.)
    return f"{math.floor(fraction * 100_000 + 1e-6) / 1000:.3f} %"


def render_coverage(report: list[LineCoverage]) -> str:
    """A plain table for ``linetap coverage``: per line the covered fraction, then
    every gap (start, end, duration, reason), all times UTC."""
    if not report:
        return "no lines\n"
    since, until = report[0].since, report[0].until
    out = [f"coverage from {iso(since)} to {iso(until)} ({_hms(until - since)}), times UTC", ""]
    width = max(len(r.line) for r in report)
    for r in report:
        n = len(r.gaps)
        summary = "no gaps" if not n else f"{_hms(r.missing_s)} missing in {n} gap{'s' if n > 1 else ''}"
        out.append(f"{r.line:<{width}}  {_percent(r.covered_fraction):>9} covered  ({summary})")
        for g in r.gaps:
            out.append(f"{'':<{width}}    {iso(g.start)}  {iso(g.end)}  {_hms(g.duration_s):>13}  {g.reason}")
    return "\n".join(out) + "\n"


def render_coverage_json(report: list[LineCoverage]) -> str:
    """The same as JSON: ``{"since", "until", "lines": [{"line", "covered_fraction",
    "missing_s", "gaps": [{"started_at", "ended_at", "duration_s", "reason"}]}]}``."""
    since = report[0].since if report else 0.0
    until = report[0].until if report else 0.0
    doc = {
        "since": iso(since), "until": iso(until),
        "lines": [{
            "line": r.line,
            "covered_fraction": r.covered_fraction,
            "missing_s": round(r.missing_s, 3),
            "gaps": [{"started_at": iso(g.start), "ended_at": iso(g.end),
                      "duration_s": round(g.duration_s, 3), "reason": g.reason} for g in r.gaps],
        } for r in report],
    }
    return json.dumps(doc, indent=2)


# --- linetap calls ------------------------------------------------------------------


def render_calls(rows: list[dict[str, Any]]) -> str:
    """One line per call (the index's public call objects), under a heading."""
    if not rows:
        return "no recordings match\n"
    out = [f"{'id':>6}  {'line':<10} {'started (UTC)':<24} {'dur s':>8}  {'caller':<16} {'status':<10} path"]
    for r in rows:
        dur = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        caller = r["caller_number"] or (r["caller_name"] or "")
        out.append(f"{r['id']:>6}  {r['line']:<10} {r['started_at']:<24} {dur:>8}  {caller:<16} "
                   f"{r['status']:<10} {r['path']}")
    return "\n".join(out) + "\n"
