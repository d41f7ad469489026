"""Alarm state with hysteresis: one raise and one clear per fault, however it flaps.

Detectors report conditions (``set(code, line, active)``) as often as they like;
the manager turns them into alarms:

- the first active report raises the alarm at once (an ``alarms`` row is
  written and the listener told), with ``raised_at`` = the onset time given;
- an inactive report starts a quiet period; only when the condition has stayed
  inactive for ``clear_after_s`` (measured on the injected clock's ``mono()``,
  checked by ``tick()`` and by every ``set()``) is the alarm cleared, with
  ``cleared_at`` = the time the condition *ended* (the first inactive report
  of that quiet period), so the row spans exactly the fault;
- an active report during the quiet period cancels it: the flap is part of
  the same alarm.

Thread-safe: the pipeline thread and the health timer thread both call it.
Listener calls happen outside the state lock (a listener may call ``active()``
or take its own locks) but are serialised, so they arrive in order; a thread
that finds another one delivering leaves its events to that one instead of
waiting. Listeners must be quick (queue, don't block): they may run on the
pipeline thread.
A failing listener or index is logged and never reaches the caller: an alarm
about a full disk must not crash the pipeline because the index is on that disk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..clock import Clock, iso
from .catalogue import LINE, spec

logger = logging.getLogger(__name__)


def one_line(e: BaseException) -> str:
    """An exception as one line for an alarm's detail (its type's name if it says nothing): the
    set-ups that are an alarm and a retry, never an exit (mqtt/uplink.py, leds/setup.py,
    calls/hook_inputs.py), say why in the same words."""
    return " ".join(str(e).split()) or type(e).__name__

AlarmKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Alarm:
    code: str
    severity: str
    line: str | None
    raised_at: float  # UTC epoch seconds of the onset
    cleared_at: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The alarm with ISO timestamps (for MQTT events and JSON output)."""
        return {"code": self.code, "severity": self.severity, "line": self.line,
                "raised_at": iso(self.raised_at),
                "cleared_at": None if self.cleared_at is None else iso(self.cleared_at),
                "detail": self.detail}


class AlarmListener(Protocol):
    def alarm_raised(self, alarm: Alarm) -> None: ...
    def alarm_cleared(self, alarm: Alarm) -> None: ...


class IndexLike(Protocol):
    def alarm_raised(self, code: str, severity: str, line: str | None, raised_at: str,
                     detail: str) -> int: ...
    def alarm_cleared(self, alarm_id: int, cleared_at: str) -> None: ...
    def alarm_detail(self, alarm_id: int, detail: str) -> None: ...


@dataclass(slots=True)
class _State:
    alarm: Alarm
    row_id: int | None
    condition: bool = True  # the condition is currently reported active
    inactive_since_mono: float | None = None
    ended_at: float | None = None  # wall time the condition ended (the future cleared_at)


class AlarmManager:
    def __init__(self, index: IndexLike | None, clock: Clock, *, clear_after_s: float,
                 listener: AlarmListener | None = None) -> None:
        self.index = index
        self.clock = clock
        self.clear_after_s = clear_after_s
        self.listener = listener
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._states: dict[AlarmKey, _State] = {}
        self._outbox: deque[tuple[str, Alarm]] = deque()

    # --- reporting conditions ---
    def set(self, code: str, line: str | None, active: bool, detail: str = "",
            at: float | None = None) -> None:
        """Report that a condition is (``active``) or is no longer present.

        ``at`` is the wall time of the onset (active) or end (inactive), e.g.
        from the audio's sample clock; it defaults to ``clock.wall()``.
        Cheap when nothing changes, so it may be called on every check.
        """
        s = spec(code)
        if s.scope == LINE and not line:
            raise ValueError(f"{code} is a line alarm and needs the line's name")
        key = (code, line)
        with self._lock:
            now_mono = self.clock.mono()
            st = self._states.get(key)
            if active:
                if st is None:
                    self._raise(key, s.severity, detail, self._at(at))
                else:
                    st.condition = True
                    st.inactive_since_mono = None
                    st.ended_at = None
                    if detail and detail != st.alarm.detail:
                        self._update_detail(st, detail)
            elif st is not None and st.condition:
                st.condition = False
                st.inactive_since_mono = now_mono
                st.ended_at = max(self._at(at), st.alarm.raised_at)
            self._due_clears(now_mono)
        self._emit()

    def momentary(self, code: str, line: str | None, detail: str = "", at: float | None = None) -> None:
        """A fault that is an event, not a state (an overrun, a dropped block):
        raise it (or extend it) and let it clear after ``clear_after_s`` without a repeat."""
        self.set(code, line, True, detail, at)
        self.set(code, line, False, at=at)

    def record_interval(self, code: str, line: str | None, started_at: float, ended_at: float,
                        detail: str = "") -> Alarm:
        """An alarm for a fault already over, e.g. RECORDER_RESTARTED for the time the
        recorder was down: written raised and cleared in one go, bypassing hysteresis."""
        s = spec(code)
        alarm = Alarm(code, s.severity, line, started_at, max(started_at, ended_at), detail)
        with self._lock:
            row_id = self._write_raise(alarm)
            self._write_clear(alarm, row_id)
            self._outbox.append(("raised", replace(alarm, cleared_at=None)))
            self._outbox.append(("cleared", alarm))
        logger.warning("alarm %s%s (%s) from %s to %s: %s", code, f" on {line}" if line else "",
                       s.severity, iso(alarm.raised_at), iso(alarm.cleared_at or ended_at), detail)
        self._emit()
        return alarm

    def tick(self) -> None:
        """Clear alarms whose condition has been quiet for ``clear_after_s``.
        Call it from a timer (the health thread's 100 ms tick)."""
        with self._lock:
            self._due_clears(self.clock.mono())
        self._emit()

    def clear_all(self, at: float | None = None) -> None:
        """Clear everything now (clean shutdown), ignoring hysteresis: rows must not
        stay open as if the fault went on while the recorder was stopped."""
        with self._lock:
            t = self._at(at)
            for key in list(self._states):
                st = self._states[key]
                self._clear(key, st.ended_at if st.ended_at is not None else t)
        self._emit()

    # --- queries ---
    def active(self) -> list[Alarm]:
        """Every raised, not yet cleared alarm (including ones in their quiet period),
        oldest first."""
        with self._lock:
            return sorted((st.alarm for st in self._states.values()), key=lambda a: a.raised_at)

    def active_codes(self, line: str | None = None) -> list[str]:
        """Sorted unique codes of active alarms, all of them or those of one line."""
        with self._lock:
            return sorted({c for (c, ln) in self._states if line is None or ln == line})

    def is_active(self, code: str, line: str | None = None) -> bool:
        with self._lock:
            return (code, line) in self._states

    # --- internals (called with self._lock held) ---
    def _at(self, at: float | None) -> float:
        return self.clock.wall() if at is None else at

    def _raise(self, key: AlarmKey, severity: str, detail: str, at: float) -> None:
        code, line = key
        alarm = Alarm(code, severity, line, at, None, detail)
        row_id = self._write_raise(alarm)
        self._states[key] = _State(alarm, row_id)
        self._outbox.append(("raised", alarm))
        log = logger.error if severity == "critical" else logger.warning
        log("alarm %s raised%s (%s): %s", code, f" on {line}" if line else "", severity, detail)

    def _clear(self, key: AlarmKey, at: float) -> None:
        st = self._states.pop(key)
        alarm = replace(st.alarm, cleared_at=max(at, st.alarm.raised_at))
        self._write_clear(alarm, st.row_id)
        self._outbox.append(("cleared", alarm))
        code, line = key
        logger.info("alarm %s cleared%s after %.1f s", code, f" on {line}" if line else "",
                    (alarm.cleared_at or at) - alarm.raised_at)

    def _due_clears(self, now_mono: float) -> None:
        for key, st in list(self._states.items()):
            if (not st.condition and st.inactive_since_mono is not None
                    and now_mono - st.inactive_since_mono >= self.clear_after_s):
                assert st.ended_at is not None
                self._clear(key, st.ended_at)

    def _update_detail(self, st: _State, detail: str) -> None:
        # The row keeps the latest detail (e.g. the growing count of lost samples);
        # it is not a new alarm, so the listener is not told.
        st.alarm = replace(st.alarm, detail=detail)
        if self.index is not None and st.row_id is not None:
            try:
                self.index.alarm_detail(st.row_id, detail)
            except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
                logger.warning("cannot update alarm %s in the index: %s", st.alarm.code, e)

    def _write_raise(self, alarm: Alarm) -> int | None:
        if self.index is None:
            return None
        try:
            return self.index.alarm_raised(alarm.code, alarm.severity, alarm.line,
                                           iso(alarm.raised_at), alarm.detail)
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
            logger.error("cannot write alarm %s to the index: %s (will retry when it clears)",
                         alarm.code, e)
            return None

    def _write_clear(self, alarm: Alarm, row_id: int | None) -> None:
        if self.index is None or alarm.cleared_at is None:
            return
        try:
            if row_id is None:
                # The raise could not be written (disk trouble): write the whole interval now.
                row_id = self.index.alarm_raised(alarm.code, alarm.severity, alarm.line,
                                                 iso(alarm.raised_at), alarm.detail)
            self.index.alarm_cleared(row_id, iso(alarm.cleared_at))
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write the clearing of alarm %s to the index: %s", alarm.code, e)

    # --- listener calls, outside the state lock, in order ---
    def _emit(self) -> None:
        if self.listener is None:
            with self._lock:
                self._outbox.clear()
            return
        while True:
            # Whoever holds the emit lock drains the outbox, our events included: the
            # pipeline thread never waits for a listener running on another thread.
            if not self._emit_lock.acquire(blocking=False):
                return
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        kind, alarm = self._outbox.popleft()
                    try:
                        if kind == "raised":
                            self.listener.alarm_raised(alarm)
                        else:
                            self.listener.alarm_cleared(alarm)
                    except Exception:  # noqa: BLE001 - a listener bug must not stop the pipeline
                        logger.exception("alarm listener failed on %s %s", kind, alarm.code)
            finally:
                self._emit_lock.release()
            # An event queued between our last look and the release would otherwise
            # wait for the next report: look once more.
            with self._lock:
                if not self._outbox:
                    return
