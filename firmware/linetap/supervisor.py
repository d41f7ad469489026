"""The line-health rules: when a line is dead, missing, overrun, and when the recorder was down.

Decisions only, no threads and no ALSA: the pipeline hands each run of audio to
``LineSupervisor.check_run``; the health thread hands a ``ReaderSnapshot`` of each
capture reader to ``check_reader`` every tick; ``account_for_downtime`` runs once at
start-up. The supervisor applies its decisions to the ``AlarmManager`` and
``GapTracker`` it is given (both write the index), so its tests run with a real
SQLite index, a fake clock and hand-made runs and snapshots.

The rules:
- LINE_DEAD has two causes, the audio itself (``LineHealthDetector``: digital silence,
  stuck samples) and frames that stop coming (``StallWatch``); it is one alarm, and
  either cause opens a gap (``dead`` or ``stalled``).
- LINE_OVERRUN is momentary: samples lost before a run (ALSA said so, or more than
  1.5 periods of 20 ms are missing between two runs of the same stream); a loss of
  more than 1.5 periods is also a gap (``overrun``).
- LINE_NO_DEVICE while the reader cannot open the PCM (a ``no_device`` gap); an
  outage shorter than one health tick is still an alarm interval and a gap.
- RECORDER_RESTARTED: the time between the previous run's last heartbeat and this
  start is a gap on every line, clean stop or not.
- A starved process is not a stalled PCM: a health tick that ran more than half the
  stall time late (``starved``: on 2 busy cores the reader thread had no more chance to
  run than the health thread) judges no stall; frames missing from then on count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Protocol

from .clock import iso, parse_iso
from .capture import Run
from .config import HealthConfig, LineConfig
from .detect.dead import LineHealthDetector, StallWatch

logger = logging.getLogger(__name__)

LOST_PERIODS = 1.5  # more than this many 20 ms periods missing between two runs is lost audio
PERIOD_S = 1 / 50
_LOST_S = LOST_PERIODS * PERIOD_S
STARVED_FRACTION = 0.5  # a tick later than this share of the stall time: the process did not run


def starved(late_s: float, stall_after_s: float) -> bool:
    """Was the whole process starved, as a health tick ``late_s`` past its planned time says?

    Frames missing while nothing ran prove nothing about the PCM (the reader simply did not
    read), so such a tick judges no stall. Half the stall time (250 ms of the default 500):
    a tick is planned 10 ms after a stall could be declared, so an on-time tick sees a real
    stall at once, and a stall is still alarmed within one stall time after the process
    runs again (``benchmarks/detection.py``: alarm within 1 s)."""
    return late_s > STARVED_FRACTION * stall_after_s


class Alarms(Protocol):
    """What the supervisor needs of ``alarms.manager.AlarmManager``."""

    def set(self, code: str, line: str | None, active: bool, detail: str = "",
            at: float | None = None) -> None: ...
    def momentary(self, code: str, line: str | None, detail: str = "", at: float | None = None) -> None: ...
    def record_interval(self, code: str, line: str | None, started_at: float, ended_at: float,
                        detail: str = "") -> object: ...


class Gaps(Protocol):
    """What the supervisor needs of ``alarms.gaps.GapTracker``."""

    def open(self, line: str, reason: str, at: float | None = None) -> None: ...
    def close(self, line: str, at: float | None = None) -> None: ...
    def is_open(self, line: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ReaderSnapshot:
    """A capture reader's state as the health thread reads it (``capture.reader.LineReader``).

    ``error``/``error_at``: why and since when (wall) the PCM is not open, None while it is;
    ``outages``/``last_outage``: how many outages so far and the last one's (failed at,
    reopened at, why); ``last_frames_mono``/``opened_mono``: when frames last came and when
    the stream opened (monotonic clock), the stall references."""

    error: str | None = None
    error_at: float | None = None
    outages: int = 0
    last_outage: tuple[float, float, str] | None = None
    is_open: bool = False
    last_frames_mono: float | None = None
    opened_mono: float | None = None


class _LineWatch:
    """What the supervisor remembers of one line between runs and ticks."""

    def __init__(self, line: LineConfig, health: HealthConfig) -> None:
        self.detector = LineHealthDetector(line.rate, line.channels, dead_after_ms=health.dead_after_ms,
                                           clipping_fraction=health.clipping_fraction,
                                           clipping_after_s=health.clipping_after_s)
        self.stall = StallWatch(health.stall_after_ms)
        self.audio_dead = False
        self.audio_dead_detail = ""
        self.stalled = False
        self.stall_detail = ""
        self.prev_end_t: float | None = None
        self.prev_stream = -1
        self.no_device = False
        self.outages_seen = 0
        self.resumed_mono: float | None = None  # the last starved tick: frames missing before it do not count


class LineSupervisor:
    """The line-health rules for every enabled line, applied to ``alarms`` and ``gaps``.

    ``check_run`` is called from the pipeline thread and ``check_reader`` from the health
    thread; they share only the LINE_DEAD state of a line, whose two causes are separate
    fields (each written by one thread), so no lock is needed."""

    def __init__(self, lines: Iterable[LineConfig], health: HealthConfig, *, alarms: Alarms,
                 gaps: Gaps) -> None:
        self.alarms = alarms
        self.gaps = gaps
        self._watch = {line.name: _LineWatch(line, health) for line in lines}

    # --- from the audio (pipeline thread) ---
    def check_run(self, run: Run) -> None:
        """Line health from the audio itself: dead/stuck/clipping, and lost samples.

        Samples can only be lost before a run's first block (a run is contiguous)."""
        blocks = run.blocks
        first = blocks[0]
        lw = self._watch[first.line]
        t = first.t_wall
        prev_end = lw.prev_end_t
        if first.stream != lw.prev_stream:
            for ch in lw.detector.reset(t):
                self._audio_change(first.line, lw, ch.code, ch.active, ch.at, ch.detail)
            lw.prev_stream = first.stream
        else:
            # Samples lost between the previous block and this one: ALSA reported an overrun
            # (the reader re-anchored the clock), or the pipeline fell behind and dropped blocks.
            lost_s = t - prev_end if prev_end is not None else 0.0
            if first.overrun or lost_s > _LOST_S:
                at = prev_end if prev_end is not None else t
                if lost_s > _LOST_S:
                    self.gaps.open(first.line, "overrun", at)
                    self.gaps.close(first.line, t)
                    detail = f"{round(lost_s * first.rate)} samples lost ({lost_s:.2f} s)"
                else:
                    detail = "ALSA reported an overrun: samples were lost"
                self.alarms.momentary("LINE_OVERRUN", first.line, detail, at=at)
        if len(blocks) == 1:
            lw.prev_end_t = t + len(first.frames) / first.rate
            changes = lw.detector.feed(first.frames, t)
        else:
            last = blocks[-1]
            lw.prev_end_t = last.t_wall + len(last.frames) / last.rate
            changes = lw.detector.feed_blocks(blocks, run.frames, run.period)
        for ch in changes:
            self._audio_change(first.line, lw, ch.code, ch.active, ch.at, ch.detail)

    # --- from the capture reader (health thread) ---
    def check_reader(self, line: str, reader: ReaderSnapshot, now_mono: float, now_wall: float, *,
                     late_s: float = 0.0) -> None:
        """Can the PCM be opened (LINE_NO_DEVICE), do frames arrive (a stall: LINE_DEAD).

        ``late_s``: how late the health tick calling this ran (``starved``)."""
        lw = self._watch[line]
        if starved(late_s, lw.stall.stall_after_ms / 1000):
            logger.info("line %s: health check %.2f s late (the process was starved): no stall judged",
                        line, late_s)
            lw.resumed_mono = now_mono
        if reader.error is not None:
            if not lw.no_device:
                lw.no_device = True
                at = reader.error_at if reader.error_at is not None else now_wall
                self.alarms.set("LINE_NO_DEVICE", line, True, reader.error, at=at)
                self.gaps.open(line, "no_device", at)
                ch = lw.stall.reset(at)
                if ch is not None or lw.stalled:
                    lw.stalled = False
                    self._dead_state(line, lw, at)
            return
        if reader.outages != lw.outages_seen and reader.last_outage is not None:
            lw.outages_seen = reader.outages
            start, end, why = reader.last_outage
            if lw.no_device:
                lw.no_device = False
                self.alarms.set("LINE_NO_DEVICE", line, False, at=end)
                if self.gaps.is_open(line) == "no_device":
                    self.gaps.close(line, end)
            else:
                # Gone and back between two ticks (a USB glitch): still a fault, still a gap.
                self.gaps.open(line, "no_device", start)
                self.gaps.close(line, end)
                self.alarms.record_interval("LINE_NO_DEVICE", line, start, end, why)
        if reader.is_open:
            since = reader.opened_mono
            if lw.resumed_mono is not None and not lw.stall.stalled:
                # Measured from when the process ran again, not across the time it was starved
                # (a stall already raised is not undone by it).
                since = lw.resumed_mono if since is None else max(since, lw.resumed_mono)
            ch = lw.stall.check(reader.last_frames_mono, now_mono, now_wall, since_mono=since)
            if ch is not None:
                lw.stalled, lw.stall_detail = ch.active, ch.detail
                self._dead_state(line, lw, ch.at)

    def _audio_change(self, line: str, lw: _LineWatch, code: str, active: bool, at: float,
                      detail: str) -> None:
        if code == "LINE_DEAD":
            lw.audio_dead, lw.audio_dead_detail = active, detail
            self._dead_state(line, lw, at)
        else:
            self.alarms.set(code, line, active, detail, at=at)

    def _dead_state(self, line: str, lw: _LineWatch, at: float) -> None:
        """LINE_DEAD is one alarm with two causes (the audio, a stall); a gap for either."""
        dead = lw.audio_dead or lw.stalled
        detail = lw.audio_dead_detail if lw.audio_dead else lw.stall_detail
        self.alarms.set("LINE_DEAD", line, dead, detail, at=at)
        if dead:
            self.gaps.open(line, "dead" if lw.audio_dead else "stalled", at)
        elif self.gaps.is_open(line) in ("dead", "stalled"):
            self.gaps.close(line, at)


class Meta(Protocol):
    """The index's key/value table and raw SQL (``index.Index``)."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def alarms_clear_left_open(self, at_iso: str) -> int: ...


class DowntimeGaps(Protocol):
    def close_stale(self, at: float) -> int: ...
    def recorder_down(self, lines: Iterable[str], since: float, until: float) -> None: ...


DOWN_AFTER_S = 0.5  # a restart quicker than this is not a gap (the heartbeat's own write time)


def account_for_downtime(index: Meta, *, gaps: DowntimeGaps, alarms: Alarms, lines: Iterable[str],
                         now: float) -> None:
    """The previous run's last heartbeat to ``now`` is a gap on every line (RECORDER_RESTARTED).

    Also marks this start in the index (``started_at``, ``first_started_at``, ``stopped``
    cleared, a heartbeat), so from here on a crash is accounted for, even one in the
    first second."""
    last = index.get_meta("heartbeat")
    clean = index.get_meta("stopped") == "clean"
    index.set_meta("started_at", iso(now))
    if index.get_meta("first_started_at") is None:
        index.set_meta("first_started_at", iso(now))
    index.set_meta("stopped", "")
    try:
        index.set_meta("heartbeat", iso(now))
    except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
        logger.error("cannot write the heartbeat: %s", e)
    if not last:
        return
    try:
        since = parse_iso(last)
    except ValueError:
        logger.error("ignoring an unreadable heartbeat %r in the index", last)
        return
    gaps.close_stale(since)
    # Alarms a crashed run left raised end at its last heartbeat too (the rest of the
    # outage is the RECORDER_RESTARTED interval below; a fault still there is raised anew).
    index.alarms_clear_left_open(iso(since))
    # Every moment the recorder was not running is uncaptured time, a deliberate restart
    # included; only the last heartbeat's granularity (1 s) is uncertain after a crash.
    if now - since > DOWN_AFTER_S:
        names = list(lines)
        gaps.recorder_down(names, since, now)
        how = "stopped cleanly" if clean else "crashed, was killed or lost power"
        alarms.record_interval("RECORDER_RESTARTED", None, since, now,
                               f"the recorder {how} and was down for {now - since:.1f} s")
