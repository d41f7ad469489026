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

from . import __version__, rollback, sign
from .alarms.gaps import GapTracker
from .alarms.manager import AlarmManager
from .calls.line import LineCalls
from .capture import SourceFactory
from .capture.reader import BlockQueue, CardDrainer, LineReader
from .clock import Clock, SystemClock
from .config import Config, LineConfig
from .events import without_caller
from .events_fanout import EventRelay, Listeners
from .evidence.keywatch import EncryptionKey
from .evidence.background import BackgroundCheck
from .evidence.checkpoint import Checkpoint, Checkpointer
from .evidence.timestamps import Stamper
from .health.board import StatusBoard
from .health.loop import HealthLoop
from .health.snapshot import EvidenceStatus
from .health.sdnotify import Notifier, ProgressWatchdog
from .housekeeping import SLOW_CHECK_S, STATUS_FILE, Housekeeping
from .index.rebuild import RebuildReport, open_or_rebuild
from .pipeline import Pipeline
from .retention.sweeper import Sweeper
from .store.recordings import DIR_MODE, Recording, SyncBatch
from .supervisor import LineSupervisor, account_for_downtime

if TYPE_CHECKING:  # built only when configured (gpiozero, paho behind them)
    from .gpio import HookInput
    from .leds.driver import LedPanel
    from .mqtt.link import MqttLink
    from .mqtt.outbox import EventSpool

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
            self.device_key = sign.load_or_create(self.data_dir)  # made here if first boot did not
            self.events = EventRelay(self.listeners, clock=clock, wake=self.wake_health.set, seal=self.to_seal.put,
                                     checkpoint=lambda: self.board.checkpoint,
                                     publish_dtmf=cfg.mqtt is not None and cfg.mqtt.publish_dtmf)
            self.alarms = AlarmManager(self.index, clock, clear_after_s=cfg.health.alarm_clear_s,
                                       listener=self.events)
            self.gaps = GapTracker(self.index, clock)
            self._pin_factory = pin_factory
            self.leds: LedPanel | None = None
            self._leds_problem: str | None = None
            self.syncs = SyncBatch(self.data_dir)  # the recordings' periodic syncs, one per round
            # [storage] encrypt_to: recordings encrypted as written; a key that does not load is an
            # alarm, never a reason not to record (evidence/keywatch.py)
            self.key = EncryptionKey(Path(cfg.storage.encrypt_to) if cfg.storage.encrypt_to else None)
            self.line_calls: dict[str, LineCalls] = {}
            for line in enabled:
                hook = _hook_input(line, pin_factory, built, clock)
                self.line_calls[line.name] = LineCalls(line, open_recording=self._open_recording, hook=hook,
                                                       listener=self.events)
            self.link: MqttLink | None = None
            self._want_mqtt = cfg.mqtt is not None and mqtt
            self._mqtt_problem: str | None = None
            self._spool: EventSpool | None = None  # the outbox, while the link cannot be built
            self._logged: set[str] = set()  # setup problems already logged
            if self._want_mqtt:
                self.listeners.subscribe(self._to_mqtt)
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
                                             sweeper=Sweeper.from_config(self.index, cfg, clock=clock,
                                                                         clock_synced=_clock_check(cfg)),
                                             board=self.board, to_seal=self.to_seal,
                                             heartbeat_s=cfg.recorder.heartbeat_s, checkpointer=self.checkpointer,
                                             evidence_steps=steps, retry=self._set_up_peripherals,
                                             key=self.key)
            self.archiver = None
            if cfg.archive is not None:  # [archive]: its own thread; recording never waits for it
                from .archive.uploader import Archiver
                self.archiver = Archiver(index=self.index, data_dir=self.data_dir, cfg=cfg.archive,
                                         recorder_id=cfg.recorder.id, alarms=self.alarms, clock=clock)
                self.board.archive_status = self.archiver.status
            self._closers = built.pop_all()  # link, hooks, LEDs, index, notifier: closed last in stop()
        # Monitoring and LEDs are not capture: a problem with them is an alarm and a retry, never a
        # reason not to record (README "Alarms"). Built here, so that events from the start-up
        # accounting already go to the MQTT outbox; a failure is retried by housekeeping.
        self._build_link()
        self._build_leds()
        # The config's own story (rollback.py): rolled back, rejected by first boot, or why the
        # previous start failed; and when this one counts as good.
        self._config_sha256 = rollback.sha256(_read_bytes(Path(cfg.source)))
        self._good_at_mono: float | None = None
        self._started = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        account_for_downtime(self.index, gaps=self.gaps, alarms=self.alarms, lines=list(self.readers),
                             now=self.clock.wall())
        _report_rebuild(self.rebuilt, self.alarms)
        self.housekeeping.recover_previous_run()
        self._chain_config()
        if self.checkpointer.latest is not None:  # the newest one again, for a broker that lost it
            self._checkpoint_signed(self.checkpointer.latest)
        self.housekeeping.sign_checkpoint()
        self.pipeline.start()
        for reader in self.readers.values():
            reader.start()
        # Disk, clock and call figures before the first health document (else HA shows "unknown"
        # until the housekeeping thread's first slow check, up to 10 s later).
        self.housekeeping.slow_checks()
        self.health_loop.start()
        self.housekeeping.start()
        self._start_link()  # after the lines: the events before it wait in the outbox
        self._raise_setup_alarms()
        self._raise_config_alarms()
        self._good_at_mono = self.clock.mono() + rollback.GOOD_AFTER_S
        self._started = True
        if self.archiver is not None:
            self.archiver.start()
        logger.info("recording %d line(s) into %s", len(self.line_calls), self.data_dir)

    # ------------------------------------------------------------------ monitoring and LEDs
    def _build_link(self) -> None:
        """The MQTT link; an unusable setting (password or CA file missing or unreadable, the
        outbox not openable) leaves it None and says why in ``_mqtt_problem``."""
        if not self._want_mqtt or self.link is not None:
            return
        from .mqtt.link import MqttLink
        assert self.cfg.mqtt is not None
        try:
            link = MqttLink(self.cfg.mqtt, recorder_id=self.cfg.recorder.id, data_dir=self.data_dir,
                            version=__version__, lines=[ln.name for ln in self.cfg.lines], clock=self.clock,
                            key_fingerprint=self.device_key.fingerprint, archive=self.cfg.archive is not None)
        except Exception as e:  # noqa: BLE001 - ConfigError, OSError, sqlite3.Error: never fatal
            self._mqtt_problem = _one_line(e)
            self._open_spool()
            return
        self._mqtt_problem = None
        self._closers.callback(link.stop)
        self.link = link

    def _open_spool(self) -> None:
        """Keep the events for the broker in its outbox meanwhile (delivered once the link is up)."""
        if self._spool is not None or self.cfg.mqtt is None:
            return
        from .mqtt.outbox import OUTBOX_FILE, EventSpool
        from .mqtt.topics import Topics
        topics = Topics.build(prefix=self.cfg.mqtt.topic_prefix, recorder_id=self.cfg.recorder.id,
                              discovery_prefix=self.cfg.mqtt.discovery_prefix)
        try:
            self._spool = EventSpool(self.data_dir / OUTBOX_FILE, max_rows=self.cfg.mqtt.outbox_max,
                                     topic=topics.event, recorder_id=self.cfg.recorder.id, now=self.clock.wall)
        except Exception as e:  # noqa: BLE001 - the events are in the index anyway
            logger.error("cannot keep MQTT events while the link is down: %s", e)
            return
        self._closers.callback(self._spool.close)

    def _to_mqtt(self, event: dict[str, Any]) -> None:
        """Listener: each event to the MQTT link, or to its outbox while the link cannot be built.
        Without ``mqtt.publish_caller_id`` the caller's identity stays on the box (README: "what
        stays in clear")."""
        if self.cfg.mqtt is not None and not self.cfg.mqtt.publish_caller_id:
            event = without_caller(event)
        link = self.link
        if link is not None:
            link.publish_event(event)
        elif self._spool is not None:
            self._spool.publish_event(event)

    def _start_link(self) -> None:
        if self.link is None:
            return
        try:
            self.link.start()
        except Exception as e:  # noqa: BLE001 - e.g. TLS files that do not load
            self._mqtt_problem = _one_line(e)
            link, self.link = self.link, None  # built afresh on the retry (start() runs once per link)
            with contextlib.suppress(Exception):
                link.stop()
            self._open_spool()
            return
        self.health_loop.link = self.link  # from now on the health side judges BROKER_UNREACHABLE

    def _build_leds(self) -> None:
        """The LED panel; pins it could not take (busy, no GPIO chip) are in ``_leds_problem``
        and the panel is built afresh on the retry until it has them all."""
        if self.cfg.leds is None and all(ln.led is None for ln in self.cfg.lines):
            return
        old = self.leds
        if old is not None:
            if not old.errors:
                return
            self.health_loop.leds = None  # released first: the new panel needs its pins
            old.close()
        try:
            from .leds.driver import LedPanel
            leds = LedPanel(self.cfg.leds, self.cfg.lines, pin_factory=self._pin_factory)
        except Exception as e:  # noqa: BLE001 - GPIO missing altogether: the lines still record
            self.leds = None
            self._leds_problem = _one_line(e)
            return
        self._leds_problem = "; ".join(leds.errors) or None
        self._closers.callback(leds.close)
        self.leds = leds
        self.health_loop.leds = leds

    def _raise_setup_alarms(self) -> None:
        if self._mqtt_problem is not None and self._mqtt_problem not in self._logged:
            self._logged.add(self._mqtt_problem)  # once per distinct problem, not every retry
            logger.error("MQTT not started: %s (recording continues; retried every %g s)",
                         self._mqtt_problem, SLOW_CHECK_S)
        if self._want_mqtt and self.health_loop.link is None:
            self.alarms.set("BROKER_UNREACHABLE", None, True,
                            f"MQTT not started: {self._mqtt_problem}; retried every {SLOW_CHECK_S:g} s")
        if self._leds_problem is not None and self._leds_problem not in self._logged:
            self._logged.add(self._leds_problem)
            logger.error("LEDs not available: %s (recording continues; retried every %g s)",
                         self._leds_problem, SLOW_CHECK_S)
        self.alarms.set("GPIO_FAILED", None, self._leds_problem is not None,
                        f"LEDs: {self._leds_problem}" if self._leds_problem else "")

    def _raise_config_alarms(self) -> None:
        try:
            marks = rollback.read_marks(self.cfg.source, self.data_dir)
        except Exception:  # noqa: BLE001 - reading the markers must not stop a start
            logger.exception("cannot read the config's rollback/rejection markers")
            return
        self.alarms.set("CONFIG_ROLLED_BACK", None, marks.rolled_back is not None, marks.rolled_back or "")
        self.alarms.set("CONFIG_REJECTED", None, marks.rejected is not None, marks.rejected or "")
        if marks.last_start_failure:
            self.board.last_start_failure = marks.last_start_failure
            logger.warning("the previous start failed at %s: %s", marks.last_start_failure.get("at"),
                           marks.last_start_failure.get("reason"))

    def _mark_good_when_due(self, *, clean_stop: bool = False) -> None:
        """The config is known to work once the recorder ran ``GOOD_AFTER_S`` (or stopped cleanly)."""
        if self._good_at_mono is None or not (clean_stop or self.clock.mono() >= self._good_at_mono):
            return
        if rollback.mark_good(self.data_dir, self._config_sha256):
            self._good_at_mono = None

    def _set_up_peripherals(self) -> None:
        """Housekeeping's retry (every ``SLOW_CHECK_S``) of an MQTT link or LED panel that failed;
        and the moment the config counts as good."""
        self._mark_good_when_due()
        if self._want_mqtt and self.health_loop.link is None:
            self._build_link()
            self._start_link()
        if self._leds_problem is not None:
            self._build_leds()
        self._raise_setup_alarms()

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
                self._mark_good_when_due(clean_stop=True)
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
                         syncs=self.syncs, encrypt=self.key.opener)

    def snapshot(self) -> dict[str, Any]:
        """The health document now (as published on MQTT and written to ``status.json``)."""
        return self.board.snapshot()


def _clock_check(cfg: Config) -> Callable[[], bool | None] | None:
    """What tells retention whether the clock is synchronised (retention/plan.py ``retention_wait``)."""
    if not cfg.health.check_clock:
        return None
    from .health.system import clock_synchronized
    return clock_synchronized


def _report_rebuild(report: RebuildReport | None, alarms: AlarmManager) -> None:
    """INDEX_REBUILT for the run that rebuilt the index (the chain's ``rebuild`` entry and the
    alarms table keep it after that)."""
    if report is not None:
        alarms.set("INDEX_REBUILT", None, True, report.detail())


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


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
