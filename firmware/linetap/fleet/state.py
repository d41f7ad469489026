"""Every box as the fleet view sees it, from the messages the boxes publish (pure).

A box is known by what it left on the broker: its retained ``status`` (``online``, or
``offline`` from a clean stop or its Last Will), its retained ``health`` snapshot (with an MQTT 5
message expiry of 3 x its health interval, see mqtt/TOPICS.md), its events and its retained
``checkpoint``. Nothing here reads a clock or a socket: each function takes the time it needs.

State of a box (``box_state``):

- ``offline``: its status is ``offline`` (clean stop or Last Will);
- ``stale``: its status is not ``offline`` but its last health snapshot has expired, or none was
  seen: a box that vanished without its Last Will firing (power cut behind a NAT that keeps the
  TCP session, a hung process) looks exactly like this;
- ``online``: otherwise.

A snapshot expires at its arrival plus the message expiry the broker passed on with it (the
*remaining* lifetime, so a retained snapshot received late counts from when it was published);
without one (MQTT 3.1.1 boxes), after ``stale_after_s``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from ..alarms.catalogue import CATALOGUE, CRITICAL, WARNING
from ..clock import iso, parse_iso

ONLINE, OFFLINE, STALE = "online", "offline", "stale"
STATES = (ONLINE, OFFLINE, STALE)

# A snapshot without an MQTT 5 expiry is stale after 3 default health intervals (30 s each):
# the same rule the box's own expiry follows.
DEFAULT_STALE_AFTER_S = 90.0

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3  # Nagios/Icinga plugin codes


@dataclass(frozen=True, slots=True)
class Box:
    """What is known of one box; replaced (never mutated) by :func:`apply`."""

    id: str
    status: str | None = None          # last ``status`` payload
    status_at: float | None = None     # wall time it was received
    health: dict[str, Any] | None = None
    health_expires_at: float | None = None  # wall time the last snapshot stops counting
    last_call_at: str | None = None    # ISO end of the last call seen in an event
    checkpoint: dict[str, Any] | None = None
    first_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    """One message, as the watcher hands it over."""

    box_id: str
    kind: str          # status | health | event | checkpoint
    payload: bytes
    at: float          # wall time of arrival
    expiry_s: int | None = None  # MQTT 5 message expiry still left, if any


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def split_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """``(box id, kind)`` of ``<prefix>/<id>/<kind>``; None for any other topic."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or parts[1] not in ("status", "health", "event", "checkpoint"):
        return None
    if not _ID.fullmatch(parts[0]):  # recorder ids are [a-z0-9_-] (config.py); also a safe file name
        return None
    return parts[0], parts[1]


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def apply(box: Box | None, msg: Received, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> Box:
    """``box`` after ``msg``; a malformed payload changes nothing (a box cannot break the view)."""
    b = box or Box(id=msg.box_id, first_seen=msg.at)
    if msg.kind == "status":
        text = msg.payload.decode("utf-8", "replace").strip()
        if text in (ONLINE, OFFLINE):
            return replace(b, status=text, status_at=msg.at)
        return b
    doc = _json(msg.payload)
    if msg.kind == "health":
        if not isinstance(doc, dict):
            return b
        life_s = float(msg.expiry_s) if msg.expiry_s is not None else stale_after_s
        return replace(b, health=doc, health_expires_at=msg.at + life_s)
    if msg.kind == "checkpoint":
        return replace(b, checkpoint=doc) if _is_checkpoint(doc) else b
    if msg.kind == "event" and isinstance(doc, dict) and doc.get("type") == "call_ended":
        b = replace(b, last_call_at=doc.get("ended_at") if isinstance(doc.get("ended_at"), str) else b.last_call_at)
        if _is_checkpoint(doc.get("checkpoint")):
            b = replace(b, checkpoint=doc["checkpoint"])
    return b


def _is_checkpoint(doc: Any) -> bool:
    return isinstance(doc, dict) and {"length", "head", "signature"} <= doc.keys()


def box_state(box: Box, now: float) -> str:
    """``online`` | ``offline`` | ``stale`` (see the module's docstring)."""
    if box.status == OFFLINE:
        return OFFLINE
    if box.health_expires_at is None or now >= box.health_expires_at:
        return STALE
    return ONLINE


def since(box: Box, state: str) -> float | None:
    """Since when ``box`` has been in ``state`` (wall time), as well as the messages tell.

    Online: since the recorder started (its snapshot's ``ts`` minus ``uptime_s``). Offline and
    stale: since its last sign of life (its last snapshot's ``ts``), else since the fleet view
    saw the status.
    """
    h = box.health or {}
    ts = _parse(h.get("ts"))
    if state == ONLINE and ts is not None and isinstance(h.get("uptime_s"), (int, float)):
        return ts - float(h["uptime_s"])
    if ts is not None:
        return ts
    return box.status_at if box.status_at is not None else box.first_seen


def _parse(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


def alarm_severity(code: str) -> str:
    """A code's severity from the catalogue; a code this version does not know counts as a warning."""
    s = CATALOGUE.get(code)
    return s.severity if s is not None else WARNING


def alarms_of(box: Box) -> list[str]:
    a = (box.health or {}).get("alarms")
    return sorted({c for c in a if isinstance(c, str)}) if isinstance(a, list) else []


def lines_of(box: Box) -> dict[str, str]:
    lines = (box.health or {}).get("lines")
    if not isinstance(lines, dict):
        return {}
    return {str(n): str(v.get("state")) for n, v in lines.items() if isinstance(v, dict)}


def _disk(box: Box, key: str) -> float | None:
    disk = (box.health or {}).get("disk")
    v = disk.get(key) if isinstance(disk, dict) else None
    return float(v) if isinstance(v, (int, float)) else None


def _archive_backlog(box: Box) -> int | None:
    a = (box.health or {}).get("archive")
    v = a.get("backlog") if isinstance(a, dict) else None
    return int(v) if isinstance(v, int) else None


def severity_rank(box: Box, now: float) -> int:
    """2 offline or a critical alarm, 1 stale or a warning, 0 fine: the box's own exit code."""
    state = box_state(box, now)
    sevs = {alarm_severity(c) for c in alarms_of(box)}
    if state == OFFLINE or CRITICAL in sevs:
        return EXIT_CRITICAL
    if state == STALE or WARNING in sevs:
        return EXIT_WARNING
    return EXIT_OK


def exit_code(boxes: Iterable[Box], now: float) -> int:
    """Nagios-style: 0 all online without critical alarm, 1 a warning or a stale box, 2 a box
    offline or in a critical alarm. (3, the broker unreachable, is decided before any box is seen.)"""
    return max((severity_rank(b, now) for b in boxes), default=EXIT_OK)


def worst_first(boxes: Iterable[Box], now: float) -> list[Box]:
    """Offline/critical first, then stale/warning, then fine; by id within each."""
    return sorted(boxes, key=lambda b: (-severity_rank(b, now), b.id))


def box_doc(box: Box, now: float) -> dict[str, Any]:
    """One entry of ``boxes`` in ``linetap fleet --json`` (docs/CONTRACT.md, "Fleet")."""
    state = box_state(box, now)
    t = since(box, state)
    return {
        "id": box.id,
        "state": state,
        "since": None if t is None else iso(t),
        "lines": lines_of(box),
        "alarms": alarms_of(box),
        "hours_left": _disk(box, "hours_left"),
        "archive_backlog": _archive_backlog(box),
        "last_call_at": box.last_call_at or _last_call_from_health(box),
        "checkpoint": box.checkpoint,
    }


def _last_call_from_health(box: Box) -> str | None:
    lc = (box.health or {}).get("last_call")
    v = lc.get("ended_at") if isinstance(lc, dict) else None
    return v if isinstance(v, str) else None


def fleet_doc(boxes: Iterable[Box], now: float) -> dict[str, Any]:
    """The whole ``--json`` document, worst box first."""
    return {"generated_at": iso(now), "boxes": [box_doc(b, now) for b in worst_first(boxes, now)]}


@dataclass(slots=True)
class Checkpoints:
    """Which checkpoint of each box was last written by ``--collect`` (so a retained one re-read
    after a reconnect, or the same one in a ``call_ended`` event, is appended once)."""

    last: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def is_new(self, box_id: str, checkpoint: dict[str, Any]) -> bool:
        key = (checkpoint.get("length"), checkpoint.get("head"))
        if self.last.get(box_id) == key:
            return False
        self.last[box_id] = key
        return True


# --- the terminal table --------------------------------------------------------------

_COLOURS = {EXIT_CRITICAL: "\x1b[31m", EXIT_WARNING: "\x1b[33m", EXIT_OK: ""}
_RESET = "\x1b[0m"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def render_table(boxes: Iterable[Box], now: float, *, colour: bool = False) -> str:
    """The live view: one row per box, worst first; plain ANSI colours when ``colour``."""
    header = ("BOX", "STATE", "SINCE", "LINES", "ALARMS", "HOURS LEFT", "BACKLOG", "LAST CALL", "CHECKPOINT")
    rows: list[tuple[int, tuple[str, ...]]] = []
    for b in worst_first(boxes, now):
        d = box_doc(b, now)
        t = since(b, d["state"])
        lines = " ".join(f"{n}:{s}" for n, s in d["lines"].items()) or "-"
        cp = d["checkpoint"]
        rows.append((severity_rank(b, now), (
            b.id, d["state"], _age(None if t is None else now - t), lines, ",".join(d["alarms"]) or "-",
            "-" if d["hours_left"] is None else f"{d['hours_left']:.0f}",
            "-" if d["archive_backlog"] is None else str(d["archive_backlog"]),
            d["last_call_at"] or "-",
            "-" if not cp else f"#{cp.get('length')} {str(cp.get('head'))[:12]}")))
    widths = [max([len(header[i])] + [len(r[i]) for _, r in rows]) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [fmt(header)]
    for rank, cells in rows:
        line = fmt(cells)
        out.append(f"{_COLOURS[rank]}{line}{_RESET}" if colour and rank else line)
    return "\n".join(out) + "\n"
