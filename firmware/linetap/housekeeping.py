"""The housekeeping thread: the slow, I/O-bound chores, every second, off the pipeline.

Every ``heartbeat_s`` (at most 1 s): seal and chain the recordings that ended (their ids
come through ``to_seal``), write the heartbeat (after a crash, the downtime is counted
from it) and ``status.json`` if what it says changed (a line's state, an alarm, the disk or
clock figures; else every ``STATUS_EVERY_S``, for the levels and times: ``status_due``). Every ``SLOW_CHECK_S``: the retention sweep and DISK_LOW,
and CLOCK_UNSYNCED. At start-up, ``recover_previous_run`` salvages the recordings an
unclean stop left open and seals those the previous run did not.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from .alarms.manager import AlarmManager
from .clock import Clock, iso
from .config import HealthConfig, StorageConfig
from .health import system
from .health.board import StatusBoard
from .health.snapshot import significant, write_snapshot
from .index.db import Index
from .retention.sweeper import Sweeper
from .store.recordings import salvage

logger = logging.getLogger(__name__)

SLOW_CHECK_S = 10.0  # disk, clock, retention sweep
STATUS_FILE = "status.json"
# status.json with nothing significant changed: its levels and times are rewritten this often
# (``linetap status`` calls a snapshot older than 10 s stale). Writing it costs ~0.25 ms of CPU
# (JSON, a temporary file, a rename): a quarter of the housekeeping thread's CPU at 4 lines.
STATUS_EVERY_S = 5.0


def status_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What in a snapshot makes ``status.json`` worth rewriting at once: the lines' states and
    alarms (``significant``), the disk and the clock figures; not the levels, times or uptime."""
    return (significant(doc), tuple(sorted(doc["disk"].items())), doc["clock_synced"])


def status_due(key: tuple[Any, ...], last_key: tuple[Any, ...] | None, now_mono: float,
               last_written_mono: float | None, every_s: float = STATUS_EVERY_S) -> bool:
    """Whether to write ``status.json`` now: never written, its ``status_key`` changed, or
    ``every_s`` since it was last written."""
    return (last_written_mono is None or key != last_key
            or now_mono - last_written_mono >= every_s)


class Housekeeping(threading.Thread):
    def __init__(self, *, index: Index, data_dir: Path, storage: StorageConfig, health: HealthConfig,
                 clock: Clock, alarms: AlarmManager, sweeper: Sweeper, board: StatusBoard,
                 to_seal: queue.Queue[int], heartbeat_s: float) -> None:
        super().__init__(name="housekeeping", daemon=True)
        self.index = index
        self.data_dir = data_dir
        self.storage = storage
        self.health = health
        self.clock = clock
        self.alarms = alarms
        self.sweeper = sweeper
        self.board = board
        self.to_seal = to_seal
        self.interval_s = min(1.0, heartbeat_s)
        self.stopping = threading.Event()
        self._status_key: tuple[Any, ...] | None = None  # of the status.json last written
        self._status_mono: float | None = None  # when it was written

    def run(self) -> None:
        next_slow = 0.0
        while not self.stopping.wait(self.interval_s):
            try:
                self.seal_finished()
                self.heartbeat()
                now_mono = self.clock.mono()
                if now_mono >= next_slow:
                    next_slow = now_mono + SLOW_CHECK_S
                    self.slow_checks()
                self.write_status()
            except Exception:  # noqa: BLE001
                logger.exception("housekeeping failed")

    def stop(self) -> None:
        self.stopping.set()

    def recover_previous_run(self) -> None:
        """Recordings an unclean stop left open are salvaged; any not yet sealed are sealed."""
        for row in salvage(self.data_dir, self.index):
            logger.warning("call %s recovered after an unclean stop", row.get("id"))
        from .evidence.finalize import finalize_pending
        try:
            finalize_pending(self.index, self.data_dir, self.storage, clock=self.clock)
        except Exception:  # noqa: BLE001 - evidence work must not keep the recorder from starting
            logger.exception("could not finalize the recordings left by the previous run")

    def seal_finished(self) -> None:
        """Seal and chain every recording that ended since the last call (ids in ``to_seal``)."""
        from .evidence.finalize import finalize_recording
        while True:
            try:
                call_id = self.to_seal.get_nowait()
            except queue.Empty:
                return
            try:
                finalize_recording(self.index, self.data_dir, {"id": call_id}, self.storage, clock=self.clock)
            except Exception as e:  # noqa: BLE001 - retried at the next start (finalize_pending)
                logger.error("call %d: could not seal/chain its recording: %s", call_id, e)

    def heartbeat(self) -> None:
        try:
            self.index.set_meta("heartbeat", iso(self.clock.wall()))
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
            logger.error("cannot write the heartbeat: %s", e)

    def slow_checks(self) -> None:
        """Disk (retention sweep, DISK_LOW) and clock (CLOCK_UNSYNCED): every 10 s."""
        try:
            res = self.sweeper.sweep()
        except Exception as e:  # noqa: BLE001
            logger.error("retention sweep failed: %s", e)
        else:
            self.board.disk = res.health()
            low = res.disk_low or (res.hours_left is not None and res.hours_left < self.health.disk_low_hours)
            detail = res.detail or (f"{res.hours_left:.1f} h of recording left" if res.hours_left is not None
                                    else "")
            self.alarms.set("DISK_LOW", None, low, detail)
        if self.health.check_clock:
            synced = system.clock_synchronized()
            self.board.clock_synced = synced
            if synced is not None:
                self.alarms.set("CLOCK_UNSYNCED", None, not synced,
                                "the system clock is not NTP-synchronised" if not synced else "")

    def write_status(self) -> None:
        """``status.json`` when ``status_due``."""
        try:
            doc = self.board.snapshot()
            key, now_mono = status_key(doc), self.clock.mono()
            if not status_due(key, self._status_key, now_mono, self._status_mono):
                return
            write_snapshot(self.data_dir / STATUS_FILE, doc)
            self._status_key, self._status_mono = key, now_mono
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write %s: %s", STATUS_FILE, e)
