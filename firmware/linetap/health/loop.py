"""The health thread: the box's outward signs of health, at once when woken, else when due.

Each tick: the capture readers' snapshots go to the line supervisor (LINE_NO_DEVICE, a
stalled PCM), the alarms' hysteresis runs, the LEDs show the lines' states, the systemd
watchdog is fed while every part makes progress, READY=1 is sent once, and the MQTT link
is ticked and given the health snapshot when a line state or alarm changed (and every
``publish_every_s`` regardless). Anything that changes what the LEDs or the broker should
show (an alarm, a call starting or ending, a PCM lost or reopened) sets ``wake``, so the tick
comes at once; so does a line whose frames stop coming (``StallWatch``, run by the threads that
wake anyway: the card drainer and the pipeline). Between events it ticks when something is due
(``tick_wait_s``): at most every 100 ms, at least every second (every 500 ms with an MQTT link).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..alarms.manager import Alarm, AlarmManager
from ..capture.reader import LineReader
from ..clock import Clock
from ..leds.patterns import AlarmKey, buzzer_silenced, critical_keys, led_patterns, muted_after
from ..supervisor import LineSupervisor, ReaderSnapshot
from .broker import BROKER_UNREACHABLE, broker_alarm
from .board import StatusBoard
from .sdnotify import Notifier, ProgressWatchdog
from .snapshot import line_states, significant_of

if TYPE_CHECKING:  # both are built only when configured (gpiozero, paho behind them)
    from ..leds.driver import LedPanel
    from ..mqtt.link import MqttLink

logger = logging.getLogger(__name__)

HEALTH_TICK_S = 0.1  # the fastest tick: while starting up, and while a line is overdue for frames
IDLE_TICK_S = 1.0  # the slowest: what nothing wakes (an alarm's clear after its hysteresis) is seen this late
# A line's stall is scheduled by the health thread once it is this close (frames at least 0.16 s
# old at the default 500 ms: a card drained every 100 ms is 0-0.1 s behind, so never). Until then
# ``StallWatch`` wakes the thread, at 0.3 s from the stall (``WATCH_EARLY_S`` inside the look-ahead,
# so the thread, reading its clock a moment later, counts it): checked every pipeline round
# (200 ms), that leaves the thread 0.1-0.3 s to sleep until the stall's exact time.
STALL_LOOKAHEAD_S = 0.35
WATCH_EARLY_S = 0.05
STALL_MARGIN_S = 0.01  # tick just after a stall could be declared, not just before
LINK_TICK_S = 0.5  # the MQTT link's reconnect / outbox work (with a link configured: 2 ticks a second)
READY_TIMEOUT_S = 5.0  # READY=1 even if a line cannot be opened: it is alarmed, not fatal


def tick_wait_s(now_mono: float, *, ready: bool, due_mono: Iterable[float], stalls_mono: Iterable[float] = ()) -> float:
    """How long the health thread sleeps before its next tick, unless something wakes it.

    Whatever must show at once wakes it (an alarm raised or cleared, a call starting or
    ending: ``EventRelay``). What nothing announces has a time it is due (``due_mono``):
    the MQTT link's next tick, and for each open line the moment it could be declared
    stalled (its last frames, or its opening, plus the stall time: ``stall_due_mono``). The
    thread ticks at the earliest of them, at most every ``HEALTH_TICK_S`` and at least every
    ``IDLE_TICK_S``. Of the lines' stall times (``stalls_mono``) only those within
    ``STALL_LOOKAHEAD_S`` count: a line whose frames come every 100 ms is never closer than 0.4 s
    to stalling, so a healthy box ticks once a second (it ticked twice, on the stall dues that
    the next frames always moved, and 10 times before that), and a stall is still seen within
    10 ms of its threshold: ``StallWatch`` wakes the thread while it is 0.1-0.3 s away. Until
    READY=1: every ``HEALTH_TICK_S``."""
    if not ready:
        return HEALTH_TICK_S
    wait = IDLE_TICK_S
    for t in due_mono:
        wait = min(wait, t - now_mono)
    for t in stalls_mono:
        if t - now_mono <= STALL_LOOKAHEAD_S:  # the farther ones: StallWatch wakes the thread
            wait = min(wait, t - now_mono)
    return max(HEALTH_TICK_S, wait)


def stall_due_mono(r: ReaderSnapshot | LineReader, stall_after_s: float) -> float | None:
    """When an open reader with no new frames could be declared stalled (``detect.dead.stall_check``
    measures from the later of its last frames and its opening), or None."""
    refs = [t for t in (r.last_frames_mono, r.opened_mono) if t is not None]
    if not r.is_open or not refs:
        return None
    return max(refs) + stall_after_s + STALL_MARGIN_S


class StallWatch:
    """Wakes the health thread when a line's frames stop coming, so that it need not tick to find
    out: called by a thread that wakes anyway (``check``: the card drainer after each sweep, the
    pipeline after each round), it sets ``wake`` once when an open line's stall (from its newest
    frames or its opening, ``stall_due_mono``) is ``STALL_LOOKAHEAD_S - WATCH_EARLY_S`` away or
    less (frames 0.21 s old at the default 500 ms), and again only after new frames.

    Each calling thread has its own watch (its state is the set of lines it reported). The
    drainer's never waits on the disk, so a slow ``syncfs`` in the pipeline's round does not delay
    the wake-up for a sound card; a ``file`` PCM's reader thread has no drainer: the pipeline's
    rounds (every 200 ms) watch it. Costs a comparison per line, no wake-up."""

    __slots__ = ("readers", "stall_after_s", "wake", "clock", "_reported")

    def __init__(self, readers: Mapping[str, LineReader], *, stall_after_s: float, wake: Any, clock: Clock) -> None:
        self.readers = readers
        self.stall_after_s = stall_after_s
        self.wake = wake  # a callable: ``threading.Event.set`` of the health thread's wake
        self.clock = clock
        self._reported: set[str] = set()

    def check(self) -> None:
        # its stall (``stall_due_mono``) within the look-ahead, less WATCH_EARLY_S: 0.21 s at 500 ms
        soon = self.clock.mono() + STALL_LOOKAHEAD_S - WATCH_EARLY_S
        for name, r in self.readers.items():
            due = stall_due_mono(r, self.stall_after_s)
            if due is not None and due <= soon:
                if name not in self._reported:
                    self._reported.add(name)
                    self.wake()
            elif self._reported:
                self._reported.discard(name)


def reader_snapshot(r: LineReader) -> ReaderSnapshot:
    """A reader's fields as the supervisor reads them (each a plain, atomic attribute store)."""
    return ReaderSnapshot(error=r.error, error_at=r.error_at, outages=r.outages, last_outage=r.last_outage,
                          is_open=r.is_open, last_frames_mono=r.last_frames_mono, opened_mono=r.opened_mono)


class HealthLoop(threading.Thread):
    def __init__(self, *, clock: Clock, readers: Mapping[str, LineReader], supervisor: LineSupervisor,
                 alarms: AlarmManager, board: StatusBoard, leds: LedPanel | None, link: MqttLink | None,
                 notifier: Notifier, watchdog: ProgressWatchdog, wake: threading.Event,
                 publish_every_s: float, stall_after_s: float) -> None:
        super().__init__(name="health", daemon=True)
        self.clock = clock
        self.readers = readers
        self.supervisor = supervisor
        self.alarms = alarms
        self.board = board
        self.leds = leds
        self.link = link
        self.notifier = notifier
        self.watchdog = watchdog
        self.wake = wake
        self.publish_every_s = publish_every_s
        self.stall_after_s = stall_after_s
        self.stopping = threading.Event()
        self.late_s = 0.0  # how late the current tick ran (0 when ticked directly)
        self.ready = False
        self.started_mono = clock.mono()
        self._ping_every_s = notifier.watchdog_interval_s() / 2 if notifier.watchdog_interval_s() else None
        self._next_ping = 0.0
        self._next_link = 0.0
        self._next_publish = 0.0
        self._last_published: tuple[Any, ...] | None = None
        self._muted: frozenset[AlarmKey] = frozenset()  # critical alarms the mute button silenced
        if leds is not None:
            leds.on_mute = wake.set  # a press silences the buzzer at once, not at the next tick

    def run(self) -> None:
        wait_s = HEALTH_TICK_S
        while not self.stopping.is_set():
            planned_mono = self.clock.mono() + wait_s
            self.wake.wait(wait_s)
            self.wake.clear()
            # A tick long past its planned time says the process was starved (supervisor.starved).
            self.late_s = max(0.0, self.clock.mono() - planned_mono)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the health thread must survive anything
                logger.exception("health check failed")
            wait_s = self._next_wait_s()

    def _next_wait_s(self) -> float:
        try:
            due = [self._next_link] if self.link is not None else []
            stalls = [t for r in self.readers.values()
                      if (t := stall_due_mono(reader_snapshot(r), self.stall_after_s)) is not None]
            return tick_wait_s(self.clock.mono(), ready=self.ready, due_mono=due, stalls_mono=stalls)
        except Exception:  # noqa: BLE001 - never a reason to stop ticking
            logger.exception("cannot tell when to tick next")
            return HEALTH_TICK_S

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def tick(self) -> None:
        now_mono = self.clock.mono()
        self.check_readers()
        self.alarms.tick()
        # What the LEDs and "publish now?" need, without a whole document every tick.
        active = self.alarms.active()
        states = line_states(self.board.line_statuses(), active)
        if self.leds is not None:
            self.leds.apply(self._led_patterns(self.leds, states, active))
        self.watchdog.progress("health")
        self._maybe_ready()
        if self._ping_every_s is not None and now_mono >= self._next_ping:
            self._next_ping = now_mono + self._ping_every_s
            if self.watchdog.should_ping():
                self.notifier.watchdog()
            else:
                logger.error("not feeding the watchdog: no progress from %s", ", ".join(self.watchdog.stale()))
        if self.link is not None:
            if now_mono >= self._next_link:
                self._next_link = now_mono + LINK_TICK_S
                self.link.tick()
                # The link reports its state; whether that is an alarm is decided here.
                self.alarms.set(BROKER_UNREACHABLE, None,
                                *broker_alarm(self.link.state(), now_mono, self.link.cfg.unreachable_after_s))
            sig = significant_of(states, active)
            if sig != self._last_published or now_mono >= self._next_publish:
                self._last_published = sig
                self._next_publish = now_mono + self.publish_every_s
                self.link.publish_health(self.board.snapshot())

    def check_readers(self) -> None:
        """Per line: can the PCM be opened (LINE_NO_DEVICE), do frames arrive (a stall)."""
        now_mono, now_wall = self.clock.mono(), self.clock.wall()
        for name, r in self.readers.items():
            self.supervisor.check_reader(name, reader_snapshot(r), now_mono, now_wall, late_s=self.late_s)

    def _led_patterns(self, leds: LedPanel, states: dict[str, tuple[str, tuple[str, ...]]],
                      active: list[Alarm]) -> dict[str, str]:
        critical = critical_keys(active)
        pressed = leds.take_press()
        self._muted = muted_after(self._muted, critical, pressed=pressed)
        if pressed:
            logger.info("buzzer muted until a new critical alarm (silenced: %s)",
                        ", ".join(f"{c}/{ln or '-'}" for c, ln in sorted(critical, key=str)) or "nothing")
        return led_patterns({name: st for name, (st, _) in states.items()}, active,
                            lines_with_led=leds.lines_with_led,
                            process_fault=bool(self.watchdog.stale()) and self.ready,
                            buzzer_muted=buzzer_silenced(self._muted, critical, config_muted=leds.config_muted))

    def _maybe_ready(self) -> None:
        if self.ready:
            return
        opened = all(r.is_open for r in self.readers.values())
        if opened or self.clock.mono() - self.started_mono >= READY_TIMEOUT_S:
            self.ready = True
            down = [n for n, r in self.readers.items() if not r.is_open]
            status = (f"recording {len(self.readers)} line(s)" if not down
                      else f"recording; cannot open {', '.join(down)}")
            self.notifier.ready(status)
