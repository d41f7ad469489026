"""The recorder's events: what happened, as plain dicts (pure; no MQTT in here).

The recorder emits these to its listeners (the MQTT link among them); the link adds ``seq`` and
``id`` and encodes them (``mqtt/topics.py``). The field names are the contract's ("MQTT" in
README.md, ``mqtt/TOPICS.md``), so a consumer reads them the same whichever way they travel.
"""

from __future__ import annotations

from typing import Any

from linetap.clock import iso

CALL_STARTED = "call_started"
CALL_ENDED = "call_ended"
ALARM_RAISED = "alarm_raised"
ALARM_CLEARED = "alarm_cleared"
EVENT_TYPES = (CALL_STARTED, CALL_ENDED, ALARM_RAISED, ALARM_CLEARED)


def _when(t: float | str | None) -> str | None:
    if t is None or isinstance(t, str):
        return t
    return iso(t)


def call_started(*, call_id: int, line: str, started_at: float | str, ts: float | None = None) -> dict[str, Any]:
    """A ``call_started`` event (times as epoch seconds or ready ISO strings)."""
    return _event(CALL_STARTED, ts, call_id=call_id, line=line, started_at=_when(started_at))


def call_ended(*, call_id: int, line: str, started_at: float | str, ended_at: float | str, duration_s: float,
               caller_number: str | None = None, caller_name: str | None = None, dtmf: str | None = None,
               end_reason: str | None = None, publish_dtmf: bool = False,
               caller_redirected_from: str | None = None, waiting_callers: list[dict[str, Any]] | None = None,
               ts: float | None = None) -> dict[str, Any]:
    """A ``call_ended`` event; ``duration_s`` is rounded to the millisecond.

    Exactly the documented fields (``mqtt/TOPICS.md``), nothing the recorder happens to know
    (never the file's path). ``dtmf`` is masked, one ``*`` per digit, unless ``publish_dtmf``:
    digits dialled during a call are often card numbers or PINs, and an event leaves the box.
    ``caller_redirected_from``: the number a forwarded call was first meant for (or None);
    ``waiting_callers``: the second callers announced during the call (``number``, ``name``,
    ``at_s`` seconds into the recording), ``[]`` for none."""
    return _event(CALL_ENDED, ts, call_id=call_id, line=line, started_at=_when(started_at),
                  ended_at=_when(ended_at), duration_s=round(float(duration_s), 3),
                  caller_number=caller_number, caller_name=caller_name,
                  caller_redirected_from=caller_redirected_from,
                  waiting_callers=[{"number": w.get("number"), "name": w.get("name"), "at_s": w.get("at_s")}
                                   for w in waiting_callers or ()],
                  dtmf=dtmf if publish_dtmf else mask_dtmf(dtmf), end_reason=end_reason)


def mask_dtmf(digits: str | None) -> str | None:
    """``"1234#"`` -> ``"*****"``: how many keys were pressed, not which (None stays None)."""
    return None if digits is None else "*" * len(digits)


def alarm_raised(*, code: str, severity: str, line: str | None = None, detail: str = "",
                 raised_at: float | str, ts: float | None = None) -> dict[str, Any]:
    """An ``alarm_raised`` event (``line`` None for an alarm of the whole box)."""
    return _event(ALARM_RAISED, ts, code=code, severity=severity, line=line, detail=detail,
                  raised_at=_when(raised_at))


def alarm_cleared(*, code: str, severity: str, line: str | None = None, detail: str = "",
                  raised_at: float | str | None = None, cleared_at: float | str,
                  ts: float | None = None) -> dict[str, Any]:
    """An ``alarm_cleared`` event."""
    return _event(ALARM_CLEARED, ts, code=code, severity=severity, line=line, detail=detail,
                  raised_at=_when(raised_at), cleared_at=_when(cleared_at))


CALLER_FIELDS = ("caller_number", "caller_name", "caller_redirected_from", "waiting_callers", "dtmf")


def without_caller(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with the caller's number, name and dialled digits nulled (the keys stay, so the
    document keeps its shape): what ``[mqtt] publish_caller_id = false`` sends to the broker. The
    number a forwarded call came from and the call-waiting callers (numbers and names too) are
    withheld with them: null, where ``waiting_callers`` is otherwise a list."""
    if not any(event.get(k) is not None for k in CALLER_FIELDS):
        return event
    return {**event, **{k: None for k in CALLER_FIELDS if k in event}}


def _event(etype: str, ts: float | None, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": etype}
    if ts is not None:
        doc["ts"] = iso(ts)
    doc.update(fields)
    return doc
