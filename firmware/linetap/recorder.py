"""The composition root: the one place that builds real adapters and wires them.

    capture (ALSA reader threads) --queue--> pipeline thread: detect (line health)
        -> calls (segmenter) -> store (files) + index (SQLite) -> events
    health thread (every 100 ms): no-device / stall checks, alarm hysteresis,
        LEDs, systemd watchdog, MQTT link and health publishing
    housekeeping thread (every second): heartbeat, status file, tamper-evidence
        chain, retention sweep, disk and clock checks

Threads only wait, loop, and catch at their top level. The capture threads wait
on ALSA and nothing else; everything slow (the chain, encryption, deletions,
the broker) happens on the housekeeping and health threads, never in the
pipeline. Time comes from the injected clock and from the audio itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .alarms.gaps import GapTracker
from .alarms.manager import Alarm, AlarmManager
from .calls.line import LineCalls
from .capture import Block, Run, SourceEvent, SourceFactory
from .capture.reader import BlockQueue, LineReader
from .clock import Clock, SystemClock, iso, parse_iso
from .config import Config, LineConfig
from .detect.dead import LineHealthDetector, StallWatch
from .health import system
from .health.sdnotify import Notifier, ProgressWatchdog
from .health.snapshot import DiskStatus, LineStatus, build_snapshot, line_states, significant_of, write_snapshot
from .index.db import Index, open_index
from .leds.patterns import led_patterns
from . import events
from .health.broker import BROKER_UNREACHABLE, broker_alarm
from .store.recordings import DIR_MODE, Recording, SyncBatch, salvage

logger = logging.getLogger(__name__)

HEALTH_TICK_S = 0.1
RUN_BLOCKS = 10  # a line's queued blocks handled as one run: at most 200 ms of its audio (GATHER_S)
GATHER_S = 0.2  # with little queued, the pipeline waits this long for more before a round
SLOW_CHECK_S = 10.0  # disk, clock, retention sweep
READY_TIMEOUT_S = 5.0  # READY=1 even if a line cannot be opened: it is alarmed, not fatal
STATUS_FILE = "status.json"


class Listeners:
    """Fan-out of recorder events (the contract's ``event`` documents) to subscribers.

    A failing listener is logged and skipped: it must never stop recording.
    """

    def __init__(self) -> None:
        self._subs: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._subs.append(fn)

    def emit(self, event: dict[str, Any]) -> None:
        for fn in self._subs:
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the pipeline
                logger.exception("event listener failed on %s", event.get("type"))


def runs(items: list[Block | SourceEvent], max_blocks: int) -> Iterator[Run | SourceEvent]:
    """Queued items as the pipeline handles them: each line's consecutive blocks (same stream,
    no sample lost, at most ``max_blocks``) joined into runs, in the order they came.

    A line's items keep their order (a source event comes after the line's blocks before it and
    before those after it); lines are interleaved as their runs began. A run's blocks are joined
    as it is taken, so a backlog is not copied all at once."""
    out: list[list[Block] | SourceEvent] = []
    open_runs: dict[str, list[Block]] = {}  # per line: its run still taking blocks
    for item in items:
        if isinstance(item, Block):
            blocks = open_runs.get(item.line)
            if blocks is not None:
                prev = blocks[-1]
                if (len(blocks) < max_blocks and item.stream == prev.stream and not item.overrun
                        and item.start_frame == prev.start_frame + len(prev.frames)):  # continues()
                    blocks.append(item)
                    continue
            open_runs[item.line] = blocks = [item]
            out.append(blocks)
        else:
            open_runs.pop(item.line, None)
            out.append(item)
    for x in out:
        yield Run.of(x) if isinstance(x, list) else x


def _alsa_factory() -> SourceFactory:
    from .capture.alsa import AlsaSource
    return AlsaSource


class _LineHealth:
    """What the recorder tracks per line for its alarms (owned by the recorder)."""

    def __init__(self, line: LineConfig, cfg: Config) -> None:
        h = cfg.health
        self.detector = LineHealthDetector(line.rate, line.channels, dead_after_ms=h.dead_after_ms,
                                           clipping_fraction=h.clipping_fraction,
                                           clipping_after_s=h.clipping_after_s)
        self.stall = StallWatch(h.stall_after_ms)
        self.audio_dead = False
        self.audio_dead_detail = ""
        self.stalled = False
        self.stall_detail = ""
        self.prev_end_t: float | None = None
        self.prev_stream = -1
        self.overruns_seen = 0
        self.dropped_seen = 0
        self.no_device = False
        self.outages_seen = 0


class Recorder:
    def __init__(self, cfg: Config, *, clock: Clock | None = None,
                 source_factory: SourceFactory | None = None, pin_factory: Any = None,
                 notifier: Notifier | None = None, mqtt: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.source_factory = source_factory or _alsa_factory()
        self.pin_factory = pin_factory
        self.notifier = notifier or Notifier()
        self.use_mqtt = mqtt
        self.data_dir = Path(cfg.recorder.data_dir)
        self.syncs = SyncBatch(self.data_dir)  # the recordings' periodic syncs, one per round
        self.listeners = Listeners()
        self.queue: BlockQueue = BlockQueue()
        self.lines: dict[str, LineCalls] = {}
        self.readers: dict[str, LineReader] = {}
        self.health: dict[str, _LineHealth] = {}
        self.index: Index | None = None
        self.alarms: AlarmManager | None = None
        self.gaps: GapTracker | None = None
        self.leds: Any = None
        self.link: Any = None
        self.sweeper: Any = None
        # A part that has not moved for half the systemd watchdog time (at most 10 s) is hung.
        wd = self.notifier.watchdog_interval_s()
        self.watchdog = ProgressWatchdog(self.clock, stale_after_s=min(10.0, wd / 2) if wd else 10.0,
                                         sources=("pipeline", "health"))
        self.disk: dict[str, Any] | None = None
        self.clock_synced: bool | None = None
        self._hooks: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._stop_worker = threading.Event()
        self._stop_timers = threading.Event()
        self._wake_health = threading.Event()
        self._to_finalize: queue.Queue[int] = queue.Queue()
        self._ready = False
        self._last_published: tuple[Any, ...] | None = None
        self.started_mono = self.clock.mono()
        self.started_wall = self.clock.wall()
        self.blocks_processed = 0
        self.pipeline_errors = 0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        os.umask(0o027)
        self.data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.index = index = open_index(self.data_dir)  # applies the schema (index/schema.py)
        self.alarms = AlarmManager(index, self.clock, clear_after_s=self.cfg.health.alarm_clear_s,
                                   listener=self)
        self.gaps = GapTracker(index, self.clock)
        self._start_outputs()  # first: the downtime alarm below is an event for the broker too
        self._account_for_downtime()
        for row in salvage(self.data_dir, index):
            logger.warning("call %s recovered after an unclean stop", row.get("id"))
        self._finalize_pending()
        for line in self.cfg.lines:
            if not line.enabled:
                continue
            hook = None
            if line.trigger == "offhook" and line.offhook_gpio is not None:
                from .gpio import HookInput
                h = HookInput(line.offhook_gpio, active_low=line.offhook_active_low,
                              pin_factory=self.pin_factory)
                self._hooks.append(h)
                hook = h
            self.lines[line.name] = LineCalls(line, open_recording=self._open_recording, hook=hook,
                                              listener=self)
            self.health[line.name] = _LineHealth(line, self.cfg)
        max_queued = max(50, int(self.cfg.recorder.queue_s * 50 * max(1, len(self.lines))))
        self._spawn("pipeline", self._work)
        for line in self.cfg.lines:
            if line.enabled:
                # A reader sleeping between drains must not look stalled: it wakes 4x per stall time.
                r = LineReader(line, self.queue, source_factory=self.source_factory, clock=self.clock,
                               max_queued=max_queued,
                               max_sleep_s=min(0.1, self.cfg.health.stall_after_ms / 4000))
                self.readers[line.name] = r
                r.start()
        self._spawn("health", self._health_loop)
        self._spawn("housekeeping", self._housekeeping_loop)
        logger.info("recording %d line(s) into %s", len(self.lines), self.data_dir)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _start_outputs(self) -> None:
        if self.cfg.leds is not None or any(ln.led is not None for ln in self.cfg.lines):
            from .leds.driver import LedPanel
            self.leds = LedPanel(self.cfg.leds, self.cfg.lines, pin_factory=self.pin_factory)
        if self.cfg.mqtt is not None and self.use_mqtt:
            from .mqtt.link import MqttLink
            self.link = MqttLink(self.cfg.mqtt, recorder_id=self.cfg.recorder.id, data_dir=self.data_dir,
                                 version=__version__, lines=[ln.name for ln in self.cfg.lines],
                                 clock=self.clock)
            self.listeners.subscribe(self._to_broker)
            self.link.start()
        from .retention.sweeper import Sweeper
        self.sweeper = Sweeper.from_config(self.index, self.cfg, clock=self.clock)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop capture, process what was captured, finalise open calls."""
        self.notifier.stopping()
        for r in self.readers.values():
            r.stop()
        # Readers blocked in a read (a stalled FIFO) cannot be interrupted; they are daemons.
        for r in self.readers.values():
            r.join(timeout=0.5)
        self._drain(drain_timeout_s)
        self._stop_worker.set()
        for t in self._threads[:1]:
            t.join(timeout=drain_timeout_s)
        for calls in self.lines.values():
            try:
                calls.shutdown()
            except Exception:  # noqa: BLE001 - finalise the others whatever happens to one
                logger.exception("line %s: could not finalise its open call", calls.line.name)
        self._stop_timers.set()
        self._wake_health.set()
        for t in self._threads[1:]:
            t.join(timeout=drain_timeout_s)
        self._finalize_queued()
        now = self.clock.wall()
        if self.gaps is not None:
            self.gaps.close_all(now)
        if self.alarms is not None:
            self.alarms.clear_all(now)
        self._heartbeat()
        if self.index is not None:
            try:
                self.index.set_meta("stopped", "clean")
            except Exception as e:  # noqa: BLE001
                logger.error("cannot record the clean stop: %s", e)
        self._write_status()
        if self.link is not None:
            self.link.stop()
        for h in self._hooks:
            h.close()
        if self.leds is not None:
            self.leds.close()
        if self.index is not None:
            self.index.close()
        self.notifier.close()

    def _drain(self, timeout_s: float) -> None:
        # Real time, not the injected clock: a test's fake clock may never move.
        deadline = threading.Event()
        timer = threading.Timer(timeout_s, deadline.set)
        timer.start()
        try:
            while not self.queue.empty() and not deadline.wait(0.01):
                pass
        finally:
            timer.cancel()

    # ------------------------------------------------------------------ start-up accounting
    def _account_for_downtime(self) -> None:
        """The previous run's last heartbeat to now is a gap on every line."""
        assert self.index is not None and self.gaps is not None and self.alarms is not None
        last = self.index.get_meta("heartbeat")
        clean = self.index.get_meta("stopped") == "clean"
        now = self.clock.wall()
        self.index.set_meta("started_at", iso(now))
        if self.index.get_meta("first_started_at") is None:
            self.index.set_meta("first_started_at", iso(now))
        self.index.set_meta("stopped", "")
        self._heartbeat()  # from now on a crash is accounted for, even one in the first second
        if not last:
            return
        try:
            since = parse_iso(last)
        except ValueError:
            logger.error("ignoring an unreadable heartbeat %r in the index", last)
            return
        self.gaps.close_stale(since)
        # Alarms a crashed run left raised end at its last heartbeat too (the rest of the
        # outage is the RECORDER_RESTARTED interval below; a fault still there is raised anew).
        self.index.alarms_clear_left_open(iso(since))
        # Every moment the recorder was not running is uncaptured time, a deliberate restart
        # included; only the last heartbeat's granularity (1 s) is uncertain after a crash.
        if now - since > 0.5:
            names = [ln.name for ln in self.cfg.lines if ln.enabled]
            self.gaps.recorder_down(names, since, now)
            how = "stopped cleanly" if clean else "crashed, was killed or lost power"
            self.alarms.record_interval("RECORDER_RESTARTED", None, since, now,
                                        f"the recorder {how} and was down for {now - since:.1f} s")

    def _finalize_pending(self) -> None:
        from .evidence.finalize import finalize_pending
        assert self.index is not None
        try:
            finalize_pending(self.index, self.data_dir, self.cfg.storage, clock=self.clock)
        except Exception:  # noqa: BLE001 - evidence work must not keep the recorder from starting
            logger.exception("could not finalize the recordings left by the previous run")

    # ------------------------------------------------------------------ the pipeline thread
    def _work(self) -> None:
        q = self.queue
        while not self._stop_worker.is_set():
            try:
                first = q.get(timeout=0.1)
            except queue.Empty:
                self.watchdog.progress("pipeline")
                continue
            if q.qsize() < RUN_BLOCKS * len(self.lines):
                # In real time a line's next block comes 20 ms later: let a few gather, so that
                # each line's are handled as a run (one numpy call, one write), not one by one.
                # (Fault onsets are dated from the samples; only the alarm comes this much later.)
                self._stop_worker.wait(GATHER_S)
            for item in runs([first, *q.take_all()], RUN_BLOCKS):
                self._handle(item)
                self.watchdog.progress("pipeline")
            self._sync()

    def _sync(self) -> None:
        """The round's due syncs, together (``SyncBatch``)."""
        try:
            self.syncs.flush()
        except Exception:  # noqa: BLE001 - a sync failure is the recording's, never the pipeline's end
            self.pipeline_errors += 1
            logger.exception("syncing the recordings failed")

    def _handle(self, item: Run | SourceEvent) -> None:
        try:
            if isinstance(item, Run):
                self._check_run(item)
                self.lines[item.line].on_block(item)
                self.blocks_processed += len(item.blocks)
            else:
                self._on_source_event(item)
        except Exception:  # noqa: BLE001 - one bad run must not stop every line
            self.pipeline_errors += 1
            if self.pipeline_errors <= 5 or self.pipeline_errors % 1000 == 0:
                logger.exception("pipeline error on line %s (%d so far)", item.line, self.pipeline_errors)

    def _check_run(self, run: Run) -> None:
        """Line health from the audio itself: dead/stuck/clipping, and lost samples.

        Samples can only be lost before a run's first block (a run is contiguous)."""
        first = run.blocks[0]
        lh = self.health[first.line]
        assert self.alarms is not None and self.gaps is not None
        if first.stream != lh.prev_stream:
            for ch in lh.detector.reset(first.t_wall):
                self._audio_change(first.line, lh, ch.code, ch.active, ch.at, ch.detail)
            lh.prev_stream = first.stream
            lh.prev_end_t = None
        else:
            # Samples lost between the previous block and this one: ALSA reported an overrun
            # (the reader re-anchored the clock), or the pipeline fell behind and dropped blocks.
            lost_s = first.t_wall - lh.prev_end_t if lh.prev_end_t is not None else 0.0
            if first.overrun or lost_s > 1.5 / 50:
                at = lh.prev_end_t if lh.prev_end_t is not None else first.t_wall
                if lost_s > 1.5 / 50:
                    self.gaps.open(first.line, "overrun", at)
                    self.gaps.close(first.line, first.t_wall)
                    detail = f"{round(lost_s * first.rate)} samples lost ({lost_s:.2f} s)"
                else:
                    detail = "ALSA reported an overrun: samples were lost"
                self.alarms.momentary("LINE_OVERRUN", first.line, detail, at=at)
        last = run.blocks[-1]
        lh.prev_end_t = last.t_wall + len(last.frames) / last.rate
        changes = (lh.detector.feed(first.frames, first.t_wall) if len(run.blocks) == 1 else
                   lh.detector.feed_blocks(run.blocks, run.frames, run.period))
        for ch in changes:
            self._audio_change(first.line, lh, ch.code, ch.active, ch.at, ch.detail)

    def _audio_change(self, line: str, lh: _LineHealth, code: str, active: bool, at: float,
                      detail: str) -> None:
        assert self.alarms is not None
        if code == "LINE_DEAD":
            lh.audio_dead, lh.audio_dead_detail = active, detail
            self._dead_state(line, lh, at)
        else:
            self.alarms.set(code, line, active, detail, at=at)

    def _dead_state(self, line: str, lh: _LineHealth, at: float) -> None:
        """LINE_DEAD is one alarm with two causes (the audio, a stall); a gap for either."""
        assert self.alarms is not None and self.gaps is not None
        dead = lh.audio_dead or lh.stalled
        detail = lh.audio_dead_detail if lh.audio_dead else lh.stall_detail
        self.alarms.set("LINE_DEAD", line, dead, detail, at=at)
        if dead:
            self.gaps.open(line, "dead" if lh.audio_dead else "stalled", at)
        elif self.gaps.is_open(line) in ("dead", "stalled"):
            self.gaps.close(line, at)

    def _on_source_event(self, ev: SourceEvent) -> None:
        calls = self.lines.get(ev.line)
        if calls is None:
            return
        if ev.kind == "lost":
            calls.source_lost()

    def _open_recording(self, line: LineConfig, started_at: float) -> Recording:
        assert self.index is not None
        name = line.name

        def on_error(detail: str | None, at: float) -> None:
            assert self.alarms is not None
            self.alarms.set("DISK_WRITE_FAILED", name, detail is not None, detail or "", at=at)

        return Recording(self.data_dir, self.index, line=name, codec=self.cfg.storage.codec,
                         rate=line.rate, channels=line.channels, started_at=started_at,
                         sync_interval_s=self.cfg.storage.sync_interval_s, on_error=on_error,
                         syncs=self.syncs)

    # --- call events (LineCalls' listener) ---
    def call_started(self, line: str, call_id: int, started_at: float) -> None:
        self.listeners.emit(events.call_started(call_id=call_id, line=line, started_at=started_at,
                                                ts=self.clock.wall()))
        self._wake_health.set()

    def call_ended(self, line: str, summary: dict[str, Any]) -> None:
        ev = events.call_ended(call_id=summary["id"], line=line, started_at=summary["started_at"],
                               ended_at=summary["ended_at"], duration_s=summary["duration_s"],
                               caller_number=summary.get("caller_number"),
                               end_reason=summary["end_reason"], ts=self.clock.wall())
        ev["caller_name"] = summary.get("caller_name")
        ev["dtmf"] = summary.get("dtmf")  # "*" per digit when the line masks DTMF
        ev["path"] = summary.get("path")
        self.listeners.emit(ev)
        self._to_finalize.put(summary["id"])
        self._wake_health.set()

    # --- alarm events (AlarmManager's listener) ---
    def alarm_raised(self, alarm: Alarm) -> None:
        self.listeners.emit(events.alarm_raised(code=alarm.code, severity=alarm.severity, line=alarm.line,
                                                detail=alarm.detail, raised_at=alarm.raised_at,
                                                ts=self.clock.wall()))
        self._wake_health.set()

    def alarm_cleared(self, alarm: Alarm) -> None:
        self.listeners.emit(events.alarm_cleared(code=alarm.code, severity=alarm.severity, line=alarm.line,
                                                 detail=alarm.detail, raised_at=alarm.raised_at,
                                                 cleared_at=alarm.cleared_at or self.clock.wall(),
                                                 ts=self.clock.wall()))
        self._wake_health.set()

    # ------------------------------------------------------------------ the health thread
    def _health_loop(self) -> None:
        next_ping = 0.0
        next_link = 0.0
        next_publish = 0.0
        interval = self.notifier.watchdog_interval_s()
        publish_every = self.cfg.mqtt.health_interval_s if self.cfg.mqtt else 30.0
        while not self._stop_timers.is_set():
            self._wake_health.wait(HEALTH_TICK_S)
            self._wake_health.clear()
            try:
                now_mono = self.clock.mono()
                self._check_readers()
                assert self.alarms is not None
                self.alarms.tick()
                # What the LEDs and "publish now?" need, without a whole document every tick.
                active = self.alarms.active()
                states = line_states(self._line_statuses(), active)
                if self.leds is not None:
                    self.leds.apply(self._led_patterns(states, active))
                self.watchdog.progress("health")
                self._maybe_ready()
                if interval and now_mono >= next_ping:
                    next_ping = now_mono + interval / 2
                    if self.watchdog.should_ping():
                        self.notifier.watchdog()
                    else:
                        logger.error("not feeding the watchdog: no progress from %s",
                                     ", ".join(self.watchdog.stale()))
                if self.link is not None:
                    if now_mono >= next_link:
                        next_link = now_mono + 0.5
                        self.link.tick()
                        self.alarms.set(BROKER_UNREACHABLE, None, *broker_alarm(
                            self.link.state(), now_mono, self.cfg.mqtt.unreachable_after_s))
                    sig = significant_of(states, active)
                    if sig != self._last_published or now_mono >= next_publish:
                        self._last_published = sig
                        next_publish = now_mono + publish_every
                        self.link.publish_health(self.snapshot())
            except Exception:  # noqa: BLE001 - the health thread must survive anything
                logger.exception("health check failed")

    def _check_readers(self) -> None:
        """Per line: can the PCM be opened (LINE_NO_DEVICE), do frames arrive (stall)."""
        assert self.alarms is not None and self.gaps is not None
        now_mono, now_wall = self.clock.mono(), self.clock.wall()
        for name, r in self.readers.items():
            lh = self.health[name]
            err, err_at = r.error, r.error_at
            if err is not None:
                if not lh.no_device:
                    lh.no_device = True
                    at = err_at if err_at is not None else now_wall
                    self.alarms.set("LINE_NO_DEVICE", name, True, err, at=at)
                    self.gaps.open(name, "no_device", at)
                    ch = lh.stall.reset(at)
                    if ch is not None or lh.stalled:
                        lh.stalled = False
                        self._dead_state(name, lh, at)
                continue
            if r.outages != lh.outages_seen and r.last_outage is not None:
                lh.outages_seen = r.outages
                start, end, why = r.last_outage
                if lh.no_device:
                    lh.no_device = False
                    self.alarms.set("LINE_NO_DEVICE", name, False, at=end)
                    if self.gaps.is_open(name) == "no_device":
                        self.gaps.close(name, end)
                else:
                    # Gone and back between two ticks (a USB glitch): still a fault, still a gap.
                    self.gaps.open(name, "no_device", start)
                    self.gaps.close(name, end)
                    self.alarms.record_interval("LINE_NO_DEVICE", name, start, end, why)
            if r.is_open:
                ch = lh.stall.check(r.last_frames_mono, now_mono, now_wall, since_mono=r.opened_mono)
                if ch is not None:
                    lh.stalled, lh.stall_detail = ch.active, ch.detail
                    self._dead_state(name, lh, ch.at)

    def _led_patterns(self, states: dict[str, tuple[str, tuple[str, ...]]], active: list[Alarm]) -> dict[str, str]:
        return led_patterns({name: st for name, (st, _) in states.items()}, active,
                            lines_with_led=self.leds.lines_with_led,
                            process_fault=bool(self.watchdog.stale()) and self._ready)

    def _maybe_ready(self) -> None:
        if self._ready:
            return
        opened = all(r.is_open for r in self.readers.values())
        if opened or self.clock.mono() - self.started_mono >= READY_TIMEOUT_S:
            self._ready = True
            down = [n for n, r in self.readers.items() if not r.is_open]
            status = (f"recording {len(self.readers)} line(s)" if not down
                      else f"recording; cannot open {', '.join(down)}")
            self.notifier.ready(status)

    def _to_broker(self, event: dict[str, Any]) -> None:
        self.link.publish_event(event)

    # ------------------------------------------------------------------ housekeeping thread
    def _housekeeping_loop(self) -> None:
        next_slow = 0.0
        while not self._stop_timers.wait(min(1.0, self.cfg.recorder.heartbeat_s)):
            try:
                self._finalize_queued()
                self._heartbeat()
                now_mono = self.clock.mono()
                if now_mono >= next_slow:
                    next_slow = now_mono + SLOW_CHECK_S
                    self.slow_checks()
                self._write_status()
            except Exception:  # noqa: BLE001
                logger.exception("housekeeping failed")

    def _heartbeat(self) -> None:
        if self.index is None:
            return
        try:
            self.index.set_meta("heartbeat", iso(self.clock.wall()))
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
            logger.error("cannot write the heartbeat: %s", e)

    def _finalize_queued(self) -> None:
        from .evidence.finalize import finalize_recording
        while True:
            try:
                call_id = self._to_finalize.get_nowait()
            except queue.Empty:
                return
            try:
                finalize_recording(self.index, self.data_dir, {"id": call_id}, self.cfg.storage,
                                   clock=self.clock)
            except Exception as e:  # noqa: BLE001 - retried at the next start (finalize_pending)
                logger.error("call %d: could not seal/chain its recording: %s", call_id, e)

    def slow_checks(self) -> None:
        """Disk (retention sweep, DISK_LOW) and clock (CLOCK_UNSYNCED): every 10 s."""
        assert self.alarms is not None
        try:
            res = self.sweeper.sweep()
        except Exception as e:  # noqa: BLE001
            logger.error("retention sweep failed: %s", e)
        else:
            self.disk = res.health()
            low = res.disk_low or (res.hours_left is not None
                                   and res.hours_left < self.cfg.health.disk_low_hours)
            detail = res.detail or (f"{res.hours_left:.1f} h of recording left" if res.hours_left is not None
                                    else "")
            self.alarms.set("DISK_LOW", None, low, detail)
        if self.cfg.health.check_clock:
            synced = system.clock_synchronized()
            self.clock_synced = synced
            if synced is not None:
                self.alarms.set("CLOCK_UNSYNCED", None, not synced,
                                "the system clock is not NTP-synchronised" if not synced else "")

    def _write_status(self) -> None:
        try:
            write_snapshot(self.data_dir / STATUS_FILE, self.snapshot())
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write %s: %s", STATUS_FILE, e)

    # ------------------------------------------------------------------ state for health / status
    def _line_statuses(self) -> list[LineStatus]:
        lines = []
        for line in self.cfg.lines:
            calls = self.lines.get(line.name)
            if calls is None:
                lines.append(LineStatus(line.name, enabled=False))
                continue
            lines.append(LineStatus(line.name, recording=calls.recording is not None,
                                    level_dbfs=calls.level_dbfs, last_audio_at=calls.last_block_t or None))
        return lines

    def snapshot(self) -> dict[str, Any]:
        disk = None
        if self.disk is not None:
            d = self.disk
            disk = DiskStatus(free_bytes=int(d["free_mb"] * 1024 * 1024), used_bytes=int(d["used_mb"] * 1024 * 1024),
                              recordings=d["recordings"], hours_left=d["hours_left"])
        return build_snapshot(recorder_id=self.cfg.recorder.id, version=__version__, now=self.clock.wall(),
                              started_at=self.started_wall, lines=self._line_statuses(),
                              alarms=self.alarms.active() if self.alarms else [], disk=disk,
                              clock_synced=self.clock_synced)
