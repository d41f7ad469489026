"""What goes where on the broker: topic names and event payloads (pure, no paho).

The contract (docs/CONTRACT.md, "MQTT") fixes the topics; this module is the one place that
spells them, so the link, the discovery document, ``linetap fleet`` and the tests agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from linetap.clock import iso

ONLINE = "online"
OFFLINE = "offline"

CALL_STARTED = "call_started"
CALL_ENDED = "call_ended"
ALARM_RAISED = "alarm_raised"
ALARM_CLEARED = "alarm_cleared"
EVENT_TYPES = (CALL_STARTED, CALL_ENDED, ALARM_RAISED, ALARM_CLEARED)


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic one recorder publishes to or listens on."""

    status: str      # retained online/offline, also the Last Will
    health: str      # retained JSON snapshot
    event: str       # non-retained JSON events, QoS 1
    discovery: str   # retained Home Assistant device discovery document
    ha_status: str   # Home Assistant's birth/will topic (the only subscription)

    @classmethod
    def build(cls, *, prefix: str, recorder_id: str, discovery_prefix: str = "homeassistant") -> Topics:
        base = f"{prefix}/{recorder_id}"
        return cls(status=f"{base}/status", health=f"{base}/health", event=f"{base}/event",
                   discovery=f"{discovery_prefix}/device/{recorder_id}/config",
                   ha_status=f"{discovery_prefix}/status")


def client_id_for(recorder_id: str) -> str:
    """The MQTT client id of a recorder: stable, so a box reconnecting replaces its old session."""
    return f"linetap-{recorder_id}"


# --- payloads -------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (``-inf`` dBFS of digital silence, NaN) replaced by None.

    ``json.dumps`` would write ``-Infinity``, which is not JSON and breaks Home Assistant and jq.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(doc: Any) -> bytes:
    """Compact, strict JSON (UTF-8) as published on every JSON topic."""
    return json.dumps(json_safe(doc), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def event_payload(event: dict[str, Any], *, seq: int, recorder_id: str, now: float) -> bytes:
    """The bytes of one event: ``type``, ``ts``, ``seq``, ``id`` first, then the event's own fields.

    ``seq`` is the outbox's persisted, strictly increasing number: a consumer that sees a ``seq``
    it has already seen from this ``id`` has a duplicate (QoS 1 is at-least-once), a jump means
    events were dropped by the outbox's overflow policy.
    """
    etype = event.get("type")
    if not isinstance(etype, str) or not etype:
        raise ValueError(f"event needs a non-empty string 'type', got {etype!r}")
    doc: dict[str, Any] = {"type": etype, "ts": event.get("ts") or iso(now), "seq": seq, "id": recorder_id}
    for k, v in event.items():
        if k not in doc:
            doc[k] = v
    return dumps(doc)


def _when(t: float | str | None) -> str | None:
    if t is None or isinstance(t, str):
        return t
    return iso(t)


def call_started(*, call_id: int, line: str, started_at: float | str, ts: float | None = None) -> dict[str, Any]:
    """A ``call_started`` event (times as epoch seconds or ready ISO strings)."""
    return _event(CALL_STARTED, ts, call_id=call_id, line=line, started_at=_when(started_at))


def call_ended(*, call_id: int, line: str, started_at: float | str, ended_at: float | str, duration_s: float,
               caller_number: str | None = None, end_reason: str | None = None,
               ts: float | None = None) -> dict[str, Any]:
    return _event(CALL_ENDED, ts, call_id=call_id, line=line, started_at=_when(started_at),
                  ended_at=_when(ended_at), duration_s=round(float(duration_s), 3),
                  caller_number=caller_number, end_reason=end_reason)


def alarm_raised(*, code: str, severity: str, line: str | None = None, detail: str = "",
                 raised_at: float | str, ts: float | None = None) -> dict[str, Any]:
    return _event(ALARM_RAISED, ts, code=code, severity=severity, line=line, detail=detail,
                  raised_at=_when(raised_at))


def alarm_cleared(*, code: str, severity: str, line: str | None = None, detail: str = "",
                  raised_at: float | str | None = None, cleared_at: float | str,
                  ts: float | None = None) -> dict[str, Any]:
    return _event(ALARM_CLEARED, ts, code=code, severity=severity, line=line, detail=detail,
                  raised_at=_when(raised_at), cleared_at=_when(cleared_at))


def _event(etype: str, ts: float | None, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": etype}
    if ts is not None:
        doc["ts"] = iso(ts)
    doc.update(fields)
    return doc
