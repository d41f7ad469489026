"""The housekeeping thread: the slow, I/O-bound chores, every second, off the pipeline.

Every ``heartbeat_s`` (at most 1 s): seal and chain the recordings that ended (their ids
come through ``to_seal``), sign a checkpoint if the chain grew (so one covering a call is
published about a second after it is chained, well within the contract's 10 s), write the
heartbeat (after a crash, the downtime is counted from it) and ``status.json``. Every
``SLOW_CHECK_S``: the retention sweep and DISK_LOW, CLOCK_UNSYNCED, and a step of the
background evidence check (evidence/background.py) and the checkpoints' trusted time-stamps
(evidence/timestamps.py). At start-up, ``recover_previous_run`` salvages the recordings an
unclean stop left open and seals those the previous run did not.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .alarms.manager import AlarmManager
from .clock import Clock, iso
from .config import HealthConfig, StorageConfig
from .health import system
from .health.board import StatusBoard
from .health.snapshot import write_snapshot
from .index.db import Index
from .retention.sweeper import Sweeper
from .store.recordings import salvage

if TYPE_CHECKING:
    from .evidence.checkpoint import Checkpointer

logger = logging.getLogger(__name__)

SLOW_CHECK_S = 10.0  # disk, clock, retention sweep
STATUS_FILE = "status.json"


class Housekeeping(threading.Thread):
    def __init__(self, *, index: Index, data_dir: Path, storage: StorageConfig, health: HealthConfig,
                 clock: Clock, alarms: AlarmManager, sweeper: Sweeper, board: StatusBoard,
                 to_seal: queue.Queue[int], heartbeat_s: float, checkpointer: Checkpointer | None = None,
                 evidence_steps: Sequence[Callable[[], object]] = ()) -> None:
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
        self.checkpointer = checkpointer
        self.evidence_steps = evidence_steps  # the background check, the time-stamps: every SLOW_CHECK_S
        self.stopping = threading.Event()

    def run(self) -> None:
        next_slow = 0.0
        while not self.stopping.wait(self.interval_s):
            try:
                self.seal_finished()
                self.sign_checkpoint()
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

    def sign_checkpoint(self) -> None:
        """A signed checkpoint of the chain if it grew since the last (evidence/checkpoint.py)."""
        if self.checkpointer is None:
            return
        try:
            self.checkpointer.tick()
        except Exception as e:  # noqa: BLE001 - retried next second; recording goes on
            logger.error("cannot sign a checkpoint: %s", e)

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
            # w-rebuild: a mass eviction for space is DISK_LOW too; deletions held back are DELETION_HELD.
            low, detail = low or bool(res.mass_eviction), detail or res.mass_eviction
            self.alarms.set("DISK_LOW", None, low, detail)
            self.alarms.set("DELETION_HELD", None, bool(res.held_back), res.held_back)
        if self.health.check_clock:
            synced = system.clock_synchronized()
            self.board.clock_synced = synced
            if synced is not None:
                self.alarms.set("CLOCK_UNSYNCED", None, not synced,
                                "the system clock is not NTP-synchronised" if not synced else "")
        for step in self.evidence_steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - the next slow check tries again
                logger.error("evidence step %s failed: %s", getattr(step, "__qualname__", step), e)

    def write_status(self) -> None:
        try:
            write_snapshot(self.data_dir / STATUS_FILE, self.board.snapshot())
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write %s: %s", STATUS_FILE, e)
