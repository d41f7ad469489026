"""The recorder's events (the contract's ``event`` documents) and who hears them.

``EventRelay`` is the listener of every line's ``LineCalls`` (a call started or ended)
and of the ``AlarmManager`` (an alarm raised or cleared): it turns each into an event
document and hands it to ``Listeners``, whose subscribers are the MQTT link (and tests,
the demo, the benchmarks). Every event also wakes the health thread, so the LEDs and
the retained health document follow at once; a call's end also queues its recording
for sealing on the housekeeping thread. (The way back from the MQTT link is its state:
``health/loop.py`` asks it each link tick and ``health/broker.py`` decides BROKER_UNREACHABLE.)
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from . import events
from .alarms.manager import Alarm
from .clock import Clock

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class Listeners:
    """Fan-out of recorder events (the contract's ``event`` documents) to subscribers.

    A failing listener is logged and skipped: it must never stop recording.
    """

    def __init__(self) -> None:
        self._subs: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subs.append(fn)

    def emit(self, event: Event) -> None:
        for fn in self._subs:
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the pipeline
                logger.exception("event listener failed on %s", event.get("type"))


class EventRelay:
    """Call and alarm happenings -> event documents -> ``listeners``; ``wake`` on each,
    ``seal(call_id)`` when a call ends (a ``CallListener`` and an ``AlarmListener``)."""

    def __init__(self, listeners: Listeners, *, clock: Clock, wake: Callable[[], None],
                 seal: Callable[[int], None],
                 checkpoint: Callable[[], dict[str, Any] | None] = lambda: None,
                 publish_dtmf: bool = False) -> None:
        self.listeners = listeners
        self.publish_dtmf = publish_dtmf  # mqtt.publish_dtmf: digits unmasked only when asked for
        self.clock = clock
        self.wake = wake
        self.seal = seal
        self.checkpoint = checkpoint  # the newest signed checkpoint (w-evidence: evidence/checkpoint.py)

    # --- LineCalls' listener (pipeline thread) ---
    def call_started(self, line: str, call_id: int, started_at: float) -> None:
        self.listeners.emit(events.call_started(call_id=call_id, line=line, started_at=started_at,
                                                ts=self.clock.wall()))
        self.wake()

    def call_ended(self, line: str, summary: dict[str, Any]) -> None:
        ev = events.call_ended(call_id=summary["id"], line=line, started_at=summary["started_at"],
                               ended_at=summary["ended_at"], duration_s=summary["duration_s"],
                               caller_number=summary.get("caller_number"),
                               caller_name=summary.get("caller_name"), dtmf=summary.get("dtmf"),
                               caller_redirected_from=summary.get("caller_redirected_from"),
                               waiting_callers=summary.get("waiting_callers"),
                               end_reason=summary["end_reason"], publish_dtmf=self.publish_dtmf,
                               ts=self.clock.wall())
        # The newest checkpoint at the call's end: it covers the chain *before* this call (which is
        # chained after the event); the one covering it follows on the checkpoint topic within 10 s.
        ev["checkpoint"] = self.checkpoint()
        self.listeners.emit(ev)
        self.seal(summary["id"])
        self.wake()

    # --- AlarmManager's listener (any thread that sets an alarm) ---
    def alarm_raised(self, alarm: Alarm) -> None:
        self.listeners.emit(events.alarm_raised(code=alarm.code, severity=alarm.severity, line=alarm.line,
                                                detail=alarm.detail, raised_at=alarm.raised_at,
                                                ts=self.clock.wall()))
        self.wake()

    def alarm_cleared(self, alarm: Alarm) -> None:
        self.listeners.emit(events.alarm_cleared(code=alarm.code, severity=alarm.severity, line=alarm.line,
                                                 detail=alarm.detail, raised_at=alarm.raised_at,
                                                 cleared_at=alarm.cleared_at or self.clock.wall(),
                                                 ts=self.clock.wall()))
        self.wake()

