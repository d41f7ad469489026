"""Time, injected: the recorder never calls time.time() directly outside this module.

``Clock.wall()`` is UTC seconds since the epoch (for timestamps that are evidence),
``Clock.mono()`` a monotonic reading (for timeouts and latency). Tests use
``FakeClock`` and advance it instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float: ...
    def mono(self) -> float: ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, wall: float = 1_795_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()

    def wall(self) -> float:
        with self._lock:
            return self._wall

    def mono(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds
            self._mono += seconds


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, as the contract fixes: 2026-11-28T15:30:00.125Z."""
    dt = datetime.fromtimestamp(round(ts, 3), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 time (date only, naive = UTC, or with offset/Z) to epoch seconds."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
