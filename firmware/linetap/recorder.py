"""The composition root: the one place that builds real adapters and wires them.

Everything is built in ``Recorder.__init__``; ``start`` starts the parts in dependency order
(MQTT link, start-up accounting, pipeline, capture readers, health and housekeeping threads)
and ``stop`` stops them in reverse. The threads, each in its own module: one ``LineReader``
per line (capture/reader.py) -> ``Pipeline`` (pipeline.py) -> ``LineSupervisor``
(supervisor.py) and ``LineCalls`` (calls/line.py); ``HealthLoop`` (health/loop.py);
``Housekeeping`` (housekeeping.py). README "Architecture" follows one call and one alarm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__, sign
from .alarms.gaps import GapTracker
from .alarms.manager import AlarmManager
from .calls.line import LineCalls
from .capture import SourceFactory
from .capture.reader import BlockQueue, LineReader
from .clock import Clock, SystemClock
from .config import Config, LineConfig
from .events_fanout import EventRelay, Listeners
from .evidence.background import BackgroundCheck
from .evidence.checkpoint import Checkpoint, Checkpointer
from .evidence.timestamps import Stamper
from .health.board import StatusBoard
from .health.loop import HealthLoop
from .health.snapshot import EvidenceStatus
from .health.sdnotify import Notifier, ProgressWatchdog
from .housekeeping import SLOW_CHECK_S, STATUS_FILE, Housekeeping
from .index.db import open_index
from .pipeline import Pipeline
from .retention.sweeper import Sweeper
from .store.recordings import DIR_MODE, Recording, SyncBatch
from .supervisor import LineSupervisor, account_for_downtime

if TYPE_CHECKING:  # built only when configured (gpiozero, paho behind them)
    from .gpio import HookInput
    from .leds.driver import LedPanel
    from .mqtt.link import MqttLink

logger = logging.getLogger(__name__)

__all__ = ["Recorder", "STATUS_FILE"]


def _alsa_factory(capture_gain_db: float | None = None) -> SourceFactory:
    """ALSA sources for one line; its ``capture_gain_db`` is set on the card at every open."""
    from .capture.alsa import AlsaSource
    if capture_gain_db is None:
        return AlsaSource

    def factory(pcm: str, rate: int, channels: int, period_frames: int) -> AlsaSource:
        return AlsaSource(pcm, rate, channels, period_frames, capture_gain_db=capture_gain_db)
    return factory


class Recorder:
    def __init__(self, cfg: Config, *, clock: Clock | None = None,
                 source_factory: SourceFactory | None = None, pin_factory: Any = None,
                 notifier: Notifier | None = None, mqtt: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock = clock or SystemClock()
        self.data_dir = Path(cfg.recorder.data_dir)
        enabled = [line for line in cfg.lines if line.enabled]
        with contextlib.ExitStack() as built:  # closed again if building a later part fails
            self.notifier = notifier or Notifier()
            built.callback(self.notifier.close)
            os.umask(0o027)
            self.data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            self.index = open_index(self.data_dir)
            built.callback(self.index.close)
            self.listeners = Listeners()
            self.wake_health = threading.Event()
            self.to_seal: queue.Queue[int] = queue.Queue()  # ended calls' ids, for the housekeeping thread
            self.device_key = sign.load_or_create(self.data_dir)  # made here if first boot did not
            self.events = EventRelay(self.listeners, clock=clock, wake=self.wake_health.set, seal=self.to_seal.put,
                                     checkpoint=lambda: self.board.checkpoint)
            self.alarms = AlarmManager(self.index, clock, clear_after_s=cfg.health.alarm_clear_s,
                                       listener=self.events)
            self.gaps = GapTracker(self.index, clock)
            self.leds: LedPanel | None = None
            if cfg.leds is not None or any(ln.led is not None for ln in cfg.lines):
                from .leds.driver import LedPanel
                self.leds = LedPanel(cfg.leds, cfg.lines, pin_factory=pin_factory)
                built.callback(self.leds.close)
            self.syncs = SyncBatch(self.data_dir)  # the recordings' periodic syncs, one per round
            self.line_calls: dict[str, LineCalls] = {}
            for line in enabled:
                hook = _hook_input(line, pin_factory, built, clock)
                self.line_calls[line.name] = LineCalls(line, open_recording=self._open_recording, hook=hook,
                                                       listener=self.events)
            self.link: MqttLink | None = None
            if cfg.mqtt is not None and mqtt:
                from .mqtt.link import MqttLink
                self.link = MqttLink(cfg.mqtt, recorder_id=cfg.recorder.id, data_dir=self.data_dir,
                                     version=__version__, lines=[ln.name for ln in cfg.lines], clock=clock,
                                     key_fingerprint=self.device_key.fingerprint)
                built.callback(self.link.stop)
                self.listeners.subscribe(self.link.publish_event)
            self.supervisor = LineSupervisor(enabled, cfg.health, alarms=self.alarms, gaps=self.gaps)
            self.blocks = BlockQueue()
            max_queued = max(50, int(cfg.recorder.queue_s * 50 * max(1, len(enabled))))
            # A reader sleeping between drains must not look stalled: it wakes 4x per stall time.
            self.readers = {line.name: LineReader(line, self.blocks,
                                                  source_factory=source_factory or _alsa_factory(line.capture_gain_db),
                                                  clock=clock, max_queued=max_queued,
                                                  max_sleep_s=min(0.1, cfg.health.stall_after_ms / 4000))
                            for line in enabled}
            # A part that has not moved for half the systemd watchdog time (at most 10 s) is hung.
            wd_s = self.notifier.watchdog_interval_s()
            self.watchdog = ProgressWatchdog(clock, stale_after_s=min(10.0, wd_s / 2) if wd_s else 10.0,
                                             sources=("pipeline", "health"))
            self.board = StatusBoard(recorder_id=cfg.recorder.id, lines=cfg.lines, line_calls=self.line_calls,
                                     alarms=self.alarms, clock=clock)
            self.pipeline = Pipeline(self.blocks, self.line_calls, supervisor=self.supervisor, syncs=self.syncs,
                                     watchdog=self.watchdog, on_source_event=self.wake_health.set)
            self.health_loop = HealthLoop(clock=clock, readers=self.readers, supervisor=self.supervisor,
                                          alarms=self.alarms, board=self.board, leds=self.leds, link=self.link,
                                          notifier=self.notifier, watchdog=self.watchdog, wake=self.wake_health,
                                          publish_every_s=cfg.mqtt.health_interval_s if cfg.mqtt else 30.0,
                                          stall_after_s=cfg.health.stall_after_ms / 1000)
            self.checkpointer = Checkpointer(self.index, self.device_key, recorder_id=cfg.recorder.id, clock=clock,
                                             publish=self._checkpoint_signed)
            self.background = BackgroundCheck(self.index, self.data_dir, alarms=self.alarms, clock=clock,
                                              step_s=SLOW_CHECK_S, key_fingerprint=self.device_key.fingerprint,
                                              on_status=self._evidence_status)
            self.board.evidence = self.background.status()
            steps: list[Callable[[], object]] = [self.background.step]
            if cfg.evidence.tsa_url:
                steps.append(Stamper(self.index, self.data_dir, url=cfg.evidence.tsa_url,
                                     timeout_s=cfg.evidence.tsa_timeout_s,
                                     latest=lambda: self.checkpointer.latest).step)
            self.housekeeping = Housekeeping(index=self.index, data_dir=self.data_dir, storage=cfg.storage,
                                             health=cfg.health, clock=clock, alarms=self.alarms,
                                             sweeper=Sweeper.from_config(self.index, cfg, clock=clock),
                                             board=self.board, to_seal=self.to_seal,
                                             heartbeat_s=cfg.recorder.heartbeat_s, checkpointer=self.checkpointer,
                                             evidence_steps=steps)
            self._closers = built.pop_all()  # link, hooks, LEDs, index, notifier: closed last in stop()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        if self.link is not None:
            self.link.start()  # first: the downtime alarm below is an event for the broker too
        account_for_downtime(self.index, gaps=self.gaps, alarms=self.alarms, lines=list(self.readers),
                             now=self.clock.wall())
        self.housekeeping.recover_previous_run()
        self._chain_config()
        if self.checkpointer.latest is not None:  # the newest one again, for a broker that lost it
            self._checkpoint_signed(self.checkpointer.latest)
        self.housekeeping.sign_checkpoint()
        self.pipeline.start()
        for reader in self.readers.values():
            reader.start()
        self.health_loop.start()
        self.housekeeping.start()
        logger.info("recording %d line(s) into %s", len(self.line_calls), self.data_dir)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop capture, process what was captured, finalise open calls,
        close the books (gaps, alarms, the clean-stop mark), then the adapters."""
        self.notifier.stopping()
        try:
            self._stop_capture(drain_timeout_s)
            self._finish_calls()
            for loop in (self.health_loop, self.housekeeping):
                loop.stop()
            for loop in (self.health_loop, self.housekeeping):
                _join(loop, drain_timeout_s)
            self._close_the_books()
        finally:
            self._closers.close()

    def _stop_capture(self, drain_timeout_s: float) -> None:
        for reader in self.readers.values():
            reader.stop()
        # Readers blocked in a read (a stalled FIFO) cannot be interrupted; they are daemons.
        for reader in self.readers.values():
            _join(reader, 0.5)
        if self.pipeline.is_alive():
            self.pipeline.drain(drain_timeout_s)
        self.pipeline.stop()
        _join(self.pipeline, drain_timeout_s)

    def _finish_calls(self) -> None:
        for calls in self.line_calls.values():
            try:
                calls.shutdown()
            except Exception:  # noqa: BLE001 - finalise the others whatever happens to one
                logger.exception("line %s: could not finalise its open call", calls.line.name)

    def _close_the_books(self) -> None:
        self.housekeeping.seal_finished()
        self.housekeeping.sign_checkpoint()  # covering the calls just finished, while the link is still up
        now = self.clock.wall()
        self.gaps.close_all(now)
        self.alarms.clear_all(now)
        self.housekeeping.heartbeat()
        try:
            self.index.set_meta("stopped", "clean")
        except Exception as e:  # noqa: BLE001
            logger.error("cannot record the clean stop: %s", e)
        self.housekeeping.write_status()

    def _chain_config(self) -> None:
        """The configuration this run applies, in the evidence chain if it changed since the last run."""
        from .evidence import audit, chain
        try:
            chain.config_applied(self.index, dataclasses.asdict(self.cfg), source=self.cfg.source,
                                 by=audit.current_user(), at=self.clock.wall())
        except Exception:  # noqa: BLE001 - evidence work must not keep the recorder from starting
            logger.exception("could not record the configuration in the evidence chain")

    def _checkpoint_signed(self, cp: Checkpoint) -> None:
        """A new signed checkpoint: into status.json and call_ended events, retained on MQTT."""
        doc = cp.as_dict()
        self.board.checkpoint = doc
        if self.link is not None:
            self.link.publish_checkpoint(doc)

    def _evidence_status(self, status: EvidenceStatus) -> None:
        self.board.evidence = status

    def _open_recording(self, line: LineConfig, started_at: float) -> Recording:
        """A new recording for ``LineCalls``; a write failure is the line's DISK_WRITE_FAILED."""
        name = line.name

        def on_error(detail: str | None, at: float) -> None:
            self.alarms.set("DISK_WRITE_FAILED", name, detail is not None, detail or "", at=at)

        return Recording(self.data_dir, self.index, line=name, codec=self.cfg.storage.codec,
                         rate=line.rate, channels=line.channels, started_at=started_at,
                         sync_interval_s=self.cfg.storage.sync_interval_s, on_error=on_error,
                         syncs=self.syncs)

    def snapshot(self) -> dict[str, Any]:
        """The health document now (as published on MQTT and written to ``status.json``)."""
        return self.board.snapshot()


def _hook_input(line: LineConfig, pin_factory: Any, closers: contextlib.ExitStack,
                clock: Clock) -> HookInput | None:
    """The off-hook detector of an ``offhook`` line (a GPIO input), closed with the recorder;
    its edges are stamped with the clock the readers stamp blocks with (w-leds: exact hang-ups)."""
    if line.trigger != "offhook" or line.offhook_gpio is None:
        return None
    from .gpio import HookInput
    hook = HookInput(line.offhook_gpio, active_low=line.offhook_active_low, pin_factory=pin_factory,
                     mono=clock.mono)
    closers.callback(hook.close)
    return hook


def _join(thread: threading.Thread, timeout_s: float) -> None:
    """Join a thread that was started (``stop`` after a failed ``start`` must still close all)."""
    if thread.ident is not None:
        thread.join(timeout=timeout_s)
