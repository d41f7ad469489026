"""The health snapshot: one JSON document for MQTT ``health``, ``linetap status`` and the web UI.

``build_snapshot`` is pure (plain values in, the contract's document out). The
recorder writes it to a file with ``write_snapshot`` (atomically, so a reader
never sees half a document) and ``linetap status`` reads it back, which works
without a broker and without touching the running recorder (the text it
prints is ``linetap.cli.render``'s).

Document (the contract's fields, plus ``clock_synced`` and ``alarm_details``)::

    {"ts": ISO, "id": str, "version": str, "uptime_s": float,
     "lines": {name: {"state": "idle|recording|fault|disabled", "level_dbfs": float|null,
                      "last_audio_at": ISO|null, "alarms": [codes]}},
     "disk": {"free_mb": float|null, "used_mb": float|null, "recordings": int|null,
              "hours_left": float|null},
     "alarms": [active codes, sorted, unique],
     "alarm_details": [{"code", "severity", "line", "raised_at", "cleared_at", "detail"}],
     "clock_synced": bool|null,
     "checkpoint": the newest signed checkpoint (evidence/checkpoint.py) | null,
     "evidence": {"key_fingerprint": str|null, "last_full_pass": ISO|null,
                  "last_full_pass_ok": bool|null, "rehashed": int}}

``evidence`` is the background check's (evidence/background.py): when it last finished
re-hashing every recording, whether that pass found them all intact, and how many it has
re-hashed in the pass under way.

A line is in ``fault`` while it has an active *critical* line alarm
(LINE_NO_DEVICE, LINE_DEAD): it is not being captured. Warnings on a line
(LINE_OVERRUN, LINE_CLIPPING) are listed in its ``alarms`` but leave its
state ``idle``/``recording``, because it is still being recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

from ..alarms.catalogue import CRITICAL, LINE, spec
from ..alarms.manager import Alarm
from ..clock import iso
from ..fsutil import write_atomic

MiB = 1024 * 1024
LINE_STATES = ("idle", "recording", "fault", "disabled")


@dataclass(frozen=True, slots=True)
class LineStatus:
    name: str
    enabled: bool = True
    recording: bool = False
    level_dbfs: float | None = None
    last_audio_at: float | None = None  # wall time of the last block received


@dataclass(frozen=True, slots=True)
class DiskStatus:
    free_bytes: int
    used_bytes: int  # space taken by the recordings
    recordings: int
    hours_left: float | None


@dataclass(frozen=True, slots=True)
class EvidenceStatus:
    key_fingerprint: str | None
    last_full_pass: float | None  # wall time the last complete re-hash of every recording ended
    last_full_pass_ok: bool | None
    rehashed: int = 0  # recordings re-hashed so far in the pass under way


def line_state(enabled: bool, recording: bool, line_alarms: Iterable[str]) -> str:
    if not enabled:
        return "disabled"
    if any(spec(c).severity == CRITICAL and spec(c).scope == LINE for c in line_alarms):
        return "fault"
    return "recording" if recording else "idle"


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / MiB, 1)


def _alarm_order(a: Alarm) -> tuple[float, str, str]:
    return (a.raised_at, a.code, a.line or "")


def line_states(lines: Iterable[LineStatus], alarms: Iterable[Alarm]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each line's state and its active alarm codes (sorted), in the lines' order: the part of the
    document that the LEDs and ``significant`` look at, without formatting the rest."""
    by_line: dict[str, set[str]] = {}
    for a in alarms:
        if a.line is not None:
            by_line.setdefault(a.line, set()).add(a.code)
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for ln in lines:
        codes = tuple(sorted(by_line.get(ln.name, ())))
        out[ln.name] = (line_state(ln.enabled, ln.recording, codes), codes)
    return out


def build_snapshot(*, recorder_id: str, version: str, now: float, started_at: float,
                   lines: Iterable[LineStatus], alarms: Iterable[Alarm], disk: DiskStatus | None,
                   clock_synced: bool | None, checkpoint: dict[str, Any] | None = None,
                   evidence: EvidenceStatus | None = None) -> dict[str, Any]:
    """The health document from plain values; ``now`` and ``started_at`` are wall times."""
    lines = list(lines)
    active = sorted(alarms, key=_alarm_order)
    states = line_states(lines, active)
    lines_doc: dict[str, Any] = {}
    for ln in lines:
        state, codes = states[ln.name]
        lines_doc[ln.name] = {
            "state": state,
            "level_dbfs": None if ln.level_dbfs is None else round(ln.level_dbfs, 1),
            "last_audio_at": None if ln.last_audio_at is None else iso(ln.last_audio_at),
            "alarms": list(codes),
        }
    return {
        "ts": iso(now),
        "id": recorder_id,
        "version": version,
        "uptime_s": round(max(0.0, now - started_at), 1),
        "lines": lines_doc,
        "disk": disk_doc(disk),
        "alarms": sorted({a.code for a in active}),
        "alarm_details": [a.as_dict() for a in active],
        "clock_synced": clock_synced,
        "checkpoint": checkpoint,
        "evidence": {
            "key_fingerprint": evidence.key_fingerprint if evidence else None,
            "last_full_pass": None if evidence is None or evidence.last_full_pass is None
            else iso(evidence.last_full_pass),
            "last_full_pass_ok": evidence.last_full_pass_ok if evidence else None,
            "rehashed": evidence.rehashed if evidence else 0,
        },
    }


def disk_doc(disk: DiskStatus | None) -> dict[str, Any]:
    """The document's ``disk`` object."""
    return {
        "free_mb": _mb(disk.free_bytes) if disk else None,
        "used_mb": _mb(disk.used_bytes) if disk else None,
        "recordings": disk.recordings if disk else None,
        "hours_left": None if disk is None or disk.hours_left is None else round(disk.hours_left, 1),
    }


def significant(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a snapshot worth publishing at once: line states and alarms
    (not the level or the clock ticking). Compare two of these for "changed"."""
    return (tuple((n, ln["state"], tuple(ln["alarms"])) for n, ln in sorted(doc["lines"].items())),
            tuple((a["code"], a["line"]) for a in doc.get("alarm_details", ())),
            tuple(doc["alarms"]))


def significant_of(states: dict[str, tuple[str, tuple[str, ...]]], alarms: Iterable[Alarm]) -> tuple[Any, ...]:
    """``significant`` of the document ``build_snapshot`` would make from the same lines and
    alarms (``states`` from ``line_states``), without making it: the health thread asks ten
    times a second, and formatting every line's times and levels is most of a snapshot's cost."""
    active = sorted(alarms, key=_alarm_order)
    return (tuple((n, state, codes) for n, (state, codes) in sorted(states.items())),
            tuple((a.code, a.line) for a in active),
            tuple(sorted({a.code for a in active})))


def write_snapshot(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write atomically (``fsutil.write_atomic``), mode 0640. Not fsynced: it is rewritten every
    few seconds and only describes now."""
    write_atomic(path, json.dumps(doc, indent=1) + "\n", mode=0o640, fsync=False)


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last snapshot written, or None if there is none (recorder never ran)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    return doc if isinstance(doc, dict) else None
