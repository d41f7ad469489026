"""Gaps: every interval in which a line was not captured, and coverage over a window.

``GapTracker`` writes one ``gaps`` row per interval. The row is inserted when
the gap *opens* (``ended_at`` null while it lasts) and completed when it
closes, so a crash in the middle of a gap still leaves its start on record;
``close_stale`` completes such rows on the next start-up.

Reasons (the ``reason`` column): ``no_device``, ``dead``, ``stalled``,
``overrun``, ``recorder_down``, ``disk_write_failed``, ``queue_overflow``.

``coverage`` and ``coverage_report`` are pure: they take rows as dicts (what
``Index.gaps_overlapping`` returns) so ``linetap coverage`` and the tests need nothing else.
The report's text and JSON are ``linetap.cli.render``'s.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from ..clock import Clock, iso, parse_iso

logger = logging.getLogger(__name__)

REASONS = ("no_device", "dead", "stalled", "overrun", "recorder_down", "disk_write_failed",
           "queue_overflow")


class GapIndex(Protocol):
    def gap(self, line: str, started_at: str, ended_at: str | None, reason: str) -> int: ...
    def gap_closed(self, gap_id: int, ended_at: str) -> None: ...
    def gaps_close_left_open(self, at: str) -> int: ...
    def gaps_overlapping(self, since: str, until: str, line: str | None = None) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class _Open:
    reason: str
    started_at: float
    row_id: int | None


class GapTracker:
    """Open and close the gaps of each line; thread-safe (pipeline and health timer)."""

    def __init__(self, index: GapIndex | None, clock: Clock) -> None:
        self.index = index
        self.clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}

    def open(self, line: str, reason: str, at: float | None = None) -> None:
        """The line stops being captured at ``at`` (wall time; default now).

        Already open with the same reason: nothing changes (the earlier start
        stands). Open with another reason: the first gap ends at ``at`` and a
        new one starts, so each interval carries the reason that applied.
        """
        t = self.clock.wall() if at is None else at
        with self._lock:
            cur = self._open.get(line)
            if cur is not None:
                if cur.reason == reason:
                    return
                self._close(line, t)
            row_id = self._insert(line, t, reason)
            self._open[line] = _Open(reason, t, row_id)
        logger.warning("line %s: not captured from %s (%s)", line, iso(t), reason)

    def close(self, line: str, at: float | None = None) -> None:
        """The line is captured again from ``at``. No-op if no gap is open."""
        t = self.clock.wall() if at is None else at
        with self._lock:
            if line in self._open:
                self._close(line, t)

    def close_all(self, at: float | None = None) -> None:
        """At shutdown: every gap still open ends now (the recorder-down gap of the
        next start-up takes over from the last heartbeat)."""
        t = self.clock.wall() if at is None else at
        with self._lock:
            for line in list(self._open):
                self._close(line, t)

    def is_open(self, line: str) -> str | None:
        """The reason of the line's open gap, or None."""
        with self._lock:
            cur = self._open.get(line)
            return cur.reason if cur else None

    def recorder_down(self, lines: Iterable[str], since: float, until: float) -> None:
        """At start-up: the recorder was down from its last heartbeat (``since``)
        to now (``until``): one closed ``recorder_down`` gap per line."""
        if until <= since or self.index is None:
            return
        for line in lines:
            try:
                self.index.gap(line, iso(since), iso(until), "recorder_down")
            except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
                logger.error("cannot write the recorder-down gap of line %s: %s", line, e)

    def close_stale(self, at: float) -> int:
        """At start-up: complete rows a crashed run left open, at ``at`` (its last
        heartbeat; never before the gap's own start). Returns how many."""
        if self.index is None:
            return 0
        n = self.index.gaps_close_left_open(iso(at))
        if n:
            logger.warning("closed %d gap(s) left open by the previous run at %s", n, iso(at))
        return n

    # --- with self._lock held ---
    def _insert(self, line: str, t: float, reason: str) -> int | None:
        if self.index is None:
            return None
        try:
            # ended_at stays null while the gap lasts (see the module docstring).
            return self.index.gap(line, iso(t), None, reason)
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write a gap of line %s to the index: %s (will retry when it closes)",
                         line, e)
            return None

    def _close(self, line: str, t: float) -> None:
        cur = self._open.pop(line)
        end = max(t, cur.started_at)
        logger.info("line %s: captured again from %s after %.1f s (%s)", line, iso(end),
                    end - cur.started_at, cur.reason)
        if self.index is None:
            return
        try:
            if cur.row_id is None:
                self.index.gap(line, iso(cur.started_at), iso(end), cur.reason)
            else:
                self.index.gap_closed(cur.row_id, iso(end))
        except Exception as e:  # noqa: BLE001
            logger.error("cannot complete the gap of line %s in the index: %s", line, e)


# --- coverage: pure ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Gap:
    line: str
    start: float
    end: float
    reason: str  # merged gaps join their reasons: "dead, no_device"

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class LineCoverage:
    line: str
    since: float
    until: float
    covered_fraction: float
    gaps: tuple[Gap, ...]

    @property
    def missing_s(self) -> float:
        return sum(g.duration_s for g in self.gaps)


def coverage(gaps: list[dict[str, Any]], since: float, until: float, line: str) -> tuple[float, list[Gap]]:
    """The fraction of [since, until) in which ``line`` was captured, and its gaps
    clipped to that window, merged where they overlap or touch.

    ``gaps`` are rows of the ``gaps`` table (ISO times); a row with ``ended_at``
    null is still open and counts up to ``until``. An empty window is fully covered.
    """
    spans: list[tuple[float, float, str]] = []
    for row in gaps:
        if row.get("line") != line:
            continue
        start = parse_iso(row["started_at"])
        end = parse_iso(row["ended_at"]) if row.get("ended_at") else until
        start, end = max(start, since), min(end, until)
        if end > start:
            spans.append((start, end, str(row.get("reason") or "unknown")))
    spans.sort()
    merged: list[tuple[float, float, list[str]]] = []
    for start, end, reason in spans:
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            reasons = last[2] if reason in last[2] else [*last[2], reason]
            merged[-1] = (last[0], max(last[1], end), reasons)
        else:
            merged.append((start, end, [reason]))
    out = [Gap(line, s, e, ", ".join(r)) for s, e, r in merged]
    window = until - since
    if window <= 0:
        return 1.0, out
    missing = sum(g.duration_s for g in out)
    return max(0.0, 1.0 - missing / window), out


def load_gaps(index: GapIndex, since: float, until: float, line: str | None = None) -> list[dict[str, Any]]:
    """Rows of the ``gaps`` table that overlap [since, until)."""
    return index.gaps_overlapping(iso(since), iso(until), line)


def coverage_report(gaps: list[dict[str, Any]], lines: Iterable[str], since: float,
                    until: float) -> list[LineCoverage]:
    """``coverage`` for each of ``lines`` (the configured ones, so a line without
    any gap still shows as 100 %)."""
    report = []
    for name in lines:
        fraction, line_gaps = coverage(gaps, since, until, name)
        report.append(LineCoverage(name, since, until, fraction, tuple(line_gaps)))
    return report
