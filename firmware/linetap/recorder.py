"""The composition root: the one place that builds real adapters and wires them.

Everything is built in ``Recorder.__init__``; ``start`` starts the parts in dependency order
(start-up accounting, evidence, capture, health and housekeeping threads, the MQTT uplink, the
archive thread) and ``stop`` stops them in reverse. Each concern is its own object: ``Capture``
(capture/service.py: the lines' readers feeding the ``Pipeline``, pipeline.py) -> ``LineSupervisor``
(supervisor.py) and ``LineCalls`` (calls/line.py: a ``RecordingOpener``, store/opener.py, makes
each call's file); ``HookInputs`` (calls/hook_inputs.py: off-hook inputs, VOX while one fails),
``Uplink`` (mqtt/uplink.py), ``PanelSetup`` (leds/setup.py), ``EvidenceService``
(evidence/service.py), ``RunMarks`` (rollback.py); the threads ``HealthLoop`` (health/loop.py) and
``Housekeeping`` (housekeeping.py). README "Architecture" follows one call and one alarm.
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
from .calls.hook_inputs import HookInputs
from .calls.line import LineCalls, shutdown_all
from .capture import SourceFactory
from .capture.reader import BlockQueue
from .capture.service import Capture, join
from .clock import Clock, SystemClock
from .config import Config
from .events_fanout import EventRelay, Listeners
from .evidence.keywatch import EncryptionKey
from .evidence.service import EvidenceService
from .health.board import StatusBoard
from .health.loop import HealthLoop, StallWatch
from .health.system import clock_synchronized
from .health.sdnotify import Notifier, ProgressWatchdog
from .housekeeping import SLOW_CHECK_S, STATUS_FILE, Housekeeping
from .index.rebuild import open_or_rebuild
from .leds.setup import PanelSetup
from .mqtt.uplink import Uplink
from .pipeline import GATHER_S, ROUND_PHASE_S, Pipeline
from .retention.sweeper import Sweeper
from .store.opener import RecordingOpener
from .store.recordings import DIR_MODE, SyncBatch
from .supervisor import LineSupervisor, account_for_downtime

if TYPE_CHECKING:  # built only when configured (gpiozero behind it)
    from .leds.driver import LedPanel

logger = logging.getLogger(__name__)

__all__ = ["Recorder", "STATUS_FILE"]


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
            # A corrupt or lost index is rebuilt from the recordings (index/rebuild.py); INDEX_REBUILT in start().
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
            # encrypt_to: a key that does not load is an alarm, never a reason not to record (evidence/keywatch.py)
            self.key = EncryptionKey(Path(cfg.storage.encrypt_to) if cfg.storage.encrypt_to else None)
            # An off-hook input that cannot be built: GPIO_FAILED, the line records by VOX until it can.
            self.hooks = HookInputs(enabled, pin_factory=pin_factory, clock=clock, alarms=self.alarms,
                                    retry_s=SLOW_CHECK_S)
            built.callback(self.hooks.close)
            open_recording = RecordingOpener(self.data_dir, self.index, cfg.storage, syncs=self.syncs, key=self.key,
                                             alarms=self.alarms)
            self.line_calls = {line.name: LineCalls(self.hooks.running_as(line), open_recording=open_recording,
                                                    hook=self.hooks.hook(line.name), listener=self.events)
                               for line in enabled}
            self.supervisor = LineSupervisor(enabled, cfg.health, alarms=self.alarms, gaps=self.gaps)
            # A part that has not moved for half the systemd watchdog time (at most 10 s) is hung.
            wd_s = self.notifier.watchdog_interval_s()
            self.watchdog = ProgressWatchdog(clock, stale_after_s=min(10.0, wd_s / 2) if wd_s else 10.0,
                                             sources=("pipeline", "health"))
            self.board = StatusBoard(recorder_id=cfg.recorder.id, lines=cfg.lines, line_calls=self.line_calls,
                                     alarms=self.alarms, clock=clock)
            blocks = BlockQueue()
            self.pipeline = Pipeline(blocks, self.line_calls, supervisor=self.supervisor, syncs=self.syncs,
                                     watchdog=self.watchdog, on_source_event=self.wake_health.set)
            self.capture = Capture(enabled, blocks, consumer=self.pipeline, clock=clock, queue_s=cfg.recorder.queue_s,
                                   stall_after_ms=cfg.health.stall_after_ms, source_factory=source_factory)
            self.readers = self.capture.readers
            # The pipeline drains the cards at each round, the drainer's thread between rounds only.
            self.pipeline.sweep = self.capture.drainer.sweep
            self.capture.drainer.rounds = (GATHER_S, ROUND_PHASE_S)
            self.capture.drainer.queue_periods = True  # a drain is one queue entry, its blocks made in runs()
            # A line whose frames stop coming wakes the health thread, seen by the threads that wake
            # anyway (one watch each): the health thread need not tick twice a second to find out.
            stall_after_s = cfg.health.stall_after_ms / 1000
            self.pipeline.after_round = StallWatch(self.readers, stall_after_s=stall_after_s,
                                                   wake=self.wake_health.set, clock=clock).check
            self.capture.drainer.after_sweep = StallWatch(self.readers, stall_after_s=stall_after_s,
                                                          wake=self.wake_health.set, clock=clock).check
            self.health_loop = HealthLoop(clock=clock, readers=self.readers, supervisor=self.supervisor,
                                          alarms=self.alarms, board=self.board, leds=None, link=None,
                                          notifier=self.notifier, watchdog=self.watchdog, wake=self.wake_health,
                                          publish_every_s=cfg.mqtt.health_interval_s if cfg.mqtt else 30.0,
                                          stall_after_s=stall_after_s)
            self.evidence = EvidenceService(cfg, index=self.index, data_dir=self.data_dir, alarms=self.alarms,
                                            board=self.board, clock=clock, step_s=SLOW_CHECK_S,
                                            publish_checkpoint=lambda doc: self.uplink.publish_checkpoint(doc))
            # Not capture: a problem with them is an alarm and a retry, never a reason not to record.
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
            self.housekeeping = Housekeeping(
                index=self.index, data_dir=self.data_dir, storage=cfg.storage, health=cfg.health, clock=clock,
                alarms=self.alarms, sweeper=sweeper, board=self.board, to_seal=self.to_seal,
                heartbeat_s=cfg.recorder.heartbeat_s, checkpointer=self.evidence.checkpointer,
                evidence_steps=self.evidence.steps, retry=self._retry_setup,
                quick_retry=self.uplink.retry_if_files_changed, key=self.key)
            self.archiver = None
            if cfg.archive is not None:  # [archive]: its own thread; recording never waits for it
                from .archive.uploader import Archiver
                self.archiver = Archiver(index=self.index, data_dir=self.data_dir, cfg=cfg.archive,
                                         recorder_id=cfg.recorder.id, alarms=self.alarms, clock=clock)
                self.board.archive_status = self.archiver.status
            # The config's story (rolled back, rejected, why the last start failed) and its good mark.
            self.run_marks = rollback.RunMarks(cfg.source, self.data_dir, mono=clock.mono)
            self._closers = built.pop_all()  # LEDs, link, hooks, index, notifier: closed last in stop()
        # Built here, so that events from the start-up accounting already go to the MQTT outbox;
        # a failure is retried by housekeeping.
        self.uplink.build()
        self.panel.build()
        self._started = False

    @property  # the tests watch the LEDs through the recorder
    def leds(self) -> LedPanel | None:
        return self.panel.leds

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        account_for_downtime(self.index, gaps=self.gaps, alarms=self.alarms, lines=list(self.readers),
                             now=self.clock.wall())
        if self.rebuilt is not None:  # this run only: the chain's ``rebuild`` entry and the alarms table keep it
            self.alarms.set("INDEX_REBUILT", None, True, self.rebuilt.detail())
        self.housekeeping.recover_previous_run()
        self.evidence.start()
        self.housekeeping.sign_checkpoint()
        self.capture.start()  # the pipeline, then the lines' readers
        # Disk, clock and call figures before the first health document (else HA shows "unknown"
        # until the housekeeping thread's first slow check, up to 10 s later).
        self.housekeeping.slow_checks()
        self.health_loop.start()
        self.housekeeping.start()
        self.uplink.start()  # after the lines: the events before it wait in the outbox
        self._raise_setup_alarms()
        self.run_marks.raise_alarms(self.alarms, self.board)
        self.run_marks.started()
        self._started = True
        if self.archiver is not None:
            self.archiver.start()
        logger.info("recording %d line(s) into %s", len(self.line_calls), self.data_dir)

    def _retry_setup(self) -> None:
        """Housekeeping's retry (every ``SLOW_CHECK_S``) of an MQTT link, LED panel or off-hook
        input that failed; and the moment the config counts as good."""
        self.run_marks.mark_good_when_due()
        self.uplink.retry()
        self.panel.retry()
        self.hooks.retry(self.line_calls)
        self._raise_setup_alarms()

    def _raise_setup_alarms(self) -> None:
        for part in (self.uplink, self.panel, self.hooks):
            part.raise_alarms()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop capture, process what was captured, finalise open calls,
        close the books (gaps, alarms, the clean-stop mark), then the adapters."""
        self.notifier.stopping()
        try:
            if self.capture.stop(drain_timeout_s):  # the readers, then what they queued, then the pipeline
                shutdown_all(self.line_calls.values())  # (not under a pipeline still writing: Capture.stop)
            loops = [self.health_loop, self.housekeeping, *([self.archiver] if self.archiver else [])]
            for loop in loops:
                loop.stop()
            for loop in loops:
                join(loop, drain_timeout_s)
            self.housekeeping.close_the_books(self.gaps)
            if self._started:
                self.run_marks.mark_good_when_due(clean_stop=True)
        finally:
            self._closers.close()

    def snapshot(self) -> dict[str, Any]:
        """The health document now (as published on MQTT and written to ``status.json``)."""
        return self.board.snapshot()
