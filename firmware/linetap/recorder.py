"""The composition root: the one place that builds real adapters and wires them.

Everything is built in ``Recorder.__init__``; ``start`` starts the parts in dependency order
(start-up accounting, evidence, pipeline, capture readers, health and housekeeping threads, the
MQTT uplink, the archive thread) and ``stop`` stops them in reverse. Each concern is its own
object: ``Uplink`` (mqtt/uplink.py: the link's build, start, retry, outbox), ``PanelSetup``
(leds/setup.py: the LED panel and its retry), ``EvidenceService`` (evidence/service.py: device
key, checkpoints, self-check, time-stamps), ``RunMarks`` (rollback.py: config alarms, the good
mark). The threads, each in its own module: one ``LineReader`` per line (capture/reader.py) ->
``Pipeline`` (pipeline.py) -> ``LineSupervisor`` (supervisor.py) and ``LineCalls``
(calls/line.py); ``HealthLoop`` (health/loop.py); ``Housekeeping`` (housekeeping.py). README
"Architecture" follows one call and one alarm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rollback
from .alarms.gaps import GapTracker
from .alarms.manager import AlarmManager
from .calls.line import LineCalls
from .capture import SourceFactory
from .capture.reader import BlockQueue, CardDrainer, LineReader
from .clock import Clock, SystemClock
from .config import Config, LineConfig
from .events_fanout import EventRelay, Listeners
from .evidence.checkpoint import Checkpointer
from .evidence.keywatch import EncryptionKey
from .evidence.service import EvidenceService
from .health.board import StatusBoard
from .health.loop import HealthLoop
from .health.system import clock_synchronized
from .health.sdnotify import Notifier, ProgressWatchdog
from .housekeeping import SLOW_CHECK_S, STATUS_FILE, Housekeeping
from .index.rebuild import open_or_rebuild
from .leds.setup import PanelSetup
from .mqtt.uplink import Uplink
from .pipeline import Pipeline
from .retention.sweeper import Sweeper
from .store.recordings import DIR_MODE, Recording, SyncBatch
from .supervisor import LineSupervisor, account_for_downtime

if TYPE_CHECKING:  # built only when configured (gpiozero, paho behind them)
    from .gpio import HookInput
    from .leds.driver import LedPanel
    from .mqtt.link import MqttLink
    from .sign import DeviceKey

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
            # A corrupt index is moved aside and a lost one rebuilt from the recordings (index/rebuild.py):
            # the recorder keeps recording; INDEX_REBUILT is raised in start(), once the link listens.
            self.index, self.rebuilt = open_or_rebuild(self.data_dir, clock=clock)
            built.callback(self.index.close)
            self.listeners = Listeners()
            self.wake_health = threading.Event()
            self.to_seal: queue.Queue[int] = queue.Queue()  # ended calls' ids, for the housekeeping thread
            self.events = EventRelay(self.listeners, clock=clock, wake=self.wake_health.set, seal=self.to_seal.put,
                                     checkpoint=lambda: self.board.checkpoint,
                                     publish_dtmf=cfg.mqtt is not None and cfg.mqtt.publish_dtmf)
            self.alarms = AlarmManager(self.index, clock, clear_after_s=cfg.health.alarm_clear_s,
                                       listener=self.events)
            self.gaps = GapTracker(self.index, clock)
            self.syncs = SyncBatch(self.data_dir)  # the recordings' periodic syncs, one per round
            # [storage] encrypt_to: recordings encrypted as written; a key that does not load is an
            # alarm, never a reason not to record (evidence/keywatch.py)
            self.key = EncryptionKey(Path(cfg.storage.encrypt_to) if cfg.storage.encrypt_to else None)
            self.line_calls: dict[str, LineCalls] = {}
            for line in enabled:
                hook = _hook_input(line, pin_factory, built, clock)
                self.line_calls[line.name] = LineCalls(line, open_recording=self._open_recording, hook=hook,
                                                       listener=self.events)
            self.supervisor = LineSupervisor(enabled, cfg.health, alarms=self.alarms, gaps=self.gaps)
            self.blocks = BlockQueue()
            max_queued = max(50, int(cfg.recorder.queue_s * 50 * max(1, len(enabled))))
            # A card left between drains must not look stalled: drained 4x per stall time. Every
            # card is drained by one thread (CardDrainer: one wake-up per tick for all the lines).
            drainer = CardDrainer()
            self.readers = {line.name: LineReader(line, self.blocks,
                                                  source_factory=source_factory or _alsa_factory(line.capture_gain_db),
                                                  clock=clock, max_queued=max_queued,
                                                  max_sleep_s=min(0.1, cfg.health.stall_after_ms / 4000),
                                                  drainer=drainer)
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
                                          alarms=self.alarms, board=self.board, leds=None, link=None,
                                          notifier=self.notifier, watchdog=self.watchdog, wake=self.wake_health,
                                          publish_every_s=cfg.mqtt.health_interval_s if cfg.mqtt else 30.0,
                                          stall_after_s=cfg.health.stall_after_ms / 1000)
            self.evidence = EvidenceService(cfg, index=self.index, data_dir=self.data_dir, alarms=self.alarms,
                                            board=self.board, clock=clock, step_s=SLOW_CHECK_S,
                                            publish_checkpoint=lambda doc: self.uplink.publish_checkpoint(doc))
            # Monitoring and LEDs are not capture: a problem with them is an alarm and a retry, never a
            # reason not to record (README "Alarms"); mqtt/uplink.py, leds/setup.py.
            self.uplink = Uplink(cfg, data_dir=self.data_dir, clock=clock, alarms=self.alarms,
                                 health_loop=self.health_loop, key_fingerprint=self.evidence.device_key.fingerprint,
                                 retry_s=SLOW_CHECK_S, wanted=mqtt)
            if self.uplink.wanted:
                self.listeners.subscribe(self.uplink.to_mqtt)
            built.callback(self.uplink.close)
            self.panel = PanelSetup(cfg, alarms=self.alarms, health_loop=self.health_loop, pin_factory=pin_factory,
                                    retry_s=SLOW_CHECK_S)
            built.callback(self.panel.close)  # before the link: closed in reverse
            # Retention waits for a synchronised clock (retention/plan.py ``retention_wait``).
            sweeper = Sweeper.from_config(self.index, cfg, clock=clock,
                                          clock_synced=clock_synchronized if cfg.health.check_clock else None)
            self.housekeeping = Housekeeping(index=self.index, data_dir=self.data_dir, storage=cfg.storage,
                                             health=cfg.health, clock=clock, alarms=self.alarms, sweeper=sweeper,
                                             board=self.board, to_seal=self.to_seal,
                                             heartbeat_s=cfg.recorder.heartbeat_s,
                                             checkpointer=self.evidence.checkpointer,
                                             evidence_steps=self.evidence.steps, retry=self._retry_setup,
                                             key=self.key)
            self.archiver = None
            if cfg.archive is not None:  # [archive]: its own thread; recording never waits for it
                from .archive.uploader import Archiver
                self.archiver = Archiver(index=self.index, data_dir=self.data_dir, cfg=cfg.archive,
                                         recorder_id=cfg.recorder.id, alarms=self.alarms, clock=clock)
                self.board.archive_status = self.archiver.status
            # The config's own story (rollback.py): rolled back, rejected by first boot, or why the
            # previous start failed; and when this one counts as good.
            self.run_marks = rollback.RunMarks(cfg.source, self.data_dir, mono=clock.mono)
            self._closers = built.pop_all()  # LEDs, link, hooks, index, notifier: closed last in stop()
        # Built here, so that events from the start-up accounting already go to the MQTT outbox;
        # a failure is retried by housekeeping.
        self.uplink.build()
        self.panel.build()
        self._started = False

    # Parts the tests and tools reach through the recorder.
    @property
    def link(self) -> MqttLink | None:
        return self.uplink.link

    @property
    def leds(self) -> LedPanel | None:
        return self.panel.leds

    @property
    def device_key(self) -> DeviceKey:
        return self.evidence.device_key

    @property
    def checkpointer(self) -> Checkpointer:
        return self.evidence.checkpointer

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        account_for_downtime(self.index, gaps=self.gaps, alarms=self.alarms, lines=list(self.readers),
                             now=self.clock.wall())
        if self.rebuilt is not None:  # this run only: the chain's ``rebuild`` entry and the alarms table keep it
            self.alarms.set("INDEX_REBUILT", None, True, self.rebuilt.detail())
        self.housekeeping.recover_previous_run()
        self.evidence.start()
        self.housekeeping.sign_checkpoint()
        self.pipeline.start()
        for reader in self.readers.values():
            reader.start()
        # Disk, clock and call figures before the first health document (else HA shows "unknown"
        # until the housekeeping thread's first slow check, up to 10 s later).
        self.housekeeping.slow_checks()
        self.health_loop.start()
        self.housekeeping.start()
        self.uplink.start()  # after the lines: the events before it wait in the outbox
        self.uplink.raise_alarms()
        self.panel.raise_alarms()
        self.run_marks.raise_alarms(self.alarms, self.board)
        self.run_marks.started()
        self._started = True
        if self.archiver is not None:
            self.archiver.start()
        logger.info("recording %d line(s) into %s", len(self.line_calls), self.data_dir)

    def _retry_setup(self) -> None:
        """Housekeeping's retry (every ``SLOW_CHECK_S``) of an MQTT link or LED panel that failed;
        and the moment the config counts as good."""
        self.run_marks.mark_good_when_due()
        self.uplink.retry()
        self.panel.retry()
        self.uplink.raise_alarms()
        self.panel.raise_alarms()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop capture, process what was captured, finalise open calls,
        close the books (gaps, alarms, the clean-stop mark), then the adapters."""
        self.notifier.stopping()
        try:
            self._stop_capture(drain_timeout_s)
            self._finish_calls()
            loops = [self.health_loop, self.housekeeping, *([self.archiver] if self.archiver else [])]
            for loop in loops:
                loop.stop()
            for loop in loops:
                _join(loop, drain_timeout_s)
            self._close_the_books()
            if self._started:
                self.run_marks.mark_good_when_due(clean_stop=True)
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

    def _open_recording(self, line: LineConfig, started_at: float) -> Recording:
        """A new recording for ``LineCalls``; a write failure is the line's DISK_WRITE_FAILED."""
        name = line.name

        def on_error(detail: str | None, at: float) -> None:
            self.alarms.set("DISK_WRITE_FAILED", name, detail is not None, detail or "", at=at)

        return Recording(self.data_dir, self.index, line=name, codec=self.cfg.storage.codec,
                         rate=line.rate, channels=line.channels, started_at=started_at,
                         sync_interval_s=self.cfg.storage.sync_interval_s, on_error=on_error,
                         syncs=self.syncs, encrypt=self.key.opener)

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
