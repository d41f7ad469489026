"""The housekeeping thread: the slow, I/O-bound chores, every second, off the pipeline.

Every ``heartbeat_s`` (at most 1 s): seal and chain the recordings that ended (their ids
come through ``to_seal``), carry out the erasures asked for on the web (evidence/erasure_requests.py),
sign a checkpoint if the chain grew (so one covering a call is
published about a second after it is chained, well within the contract's 10 s), write the
heartbeat (after a crash, the downtime is counted from it) and ``status.json`` if what it
says changed (a line's state, an alarm, the disk or clock figures; else every ``STATUS_EVERY_S``,
for the levels and times: ``status_due``). Every
``SLOW_CHECK_S``: the retention sweep and DISK_LOW, CLOCK_UNSYNCED, the last call and today's
count for the health document, the retries below, and a
step of the background evidence check (evidence/background.py) and the checkpoints' trusted
time-stamps (evidence/timestamps.py). At start-up, ``recover_previous_run`` salvages the
recordings an unclean stop left open and seals those the previous run did not.

Nothing is left weaker in silence: a recording that could not be sealed or chained (the
``encrypt_to`` key gone, a disk error) raises EVIDENCE_FAILED (critical) at once and is retried
every ``SLOW_CHECK_S`` until it is — the alarm clears with the backlog; a ``.part`` the start-up
salvage could not recover (disk full, I/O error) keeps DISK_WRITE_FAILED (critical) active and is
retried the same way (``store.recordings.salvage(parts=...)``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .alarms.gaps import GapTracker
from .alarms.manager import AlarmManager
from .clock import Clock, iso
from .config import HealthConfig, StorageConfig
from .health import system
from .health.board import StatusBoard
from .health.snapshot import significant, write_snapshot
from .index.db import Index
from .retention.sweeper import Sweeper
from .store.recordings import salvage, unsalvaged

if TYPE_CHECKING:
    from .evidence.checkpoint import Checkpointer

from .evidence.keywatch import EncryptionKey

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
                 to_seal: queue.Queue[int], heartbeat_s: float, checkpointer: Checkpointer | None = None,
                 evidence_steps: Sequence[Callable[[], object]] = (),
                 retry: Callable[[], None] | None = None, quick_retry: Callable[[], object] | None = None,
                 key: EncryptionKey | None = None) -> None:
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
        self.retry = retry  # the recorder's retry of what is not capture (MQTT link, LEDs)
        self.quick_retry = quick_retry  # every tick: a retry only if what failed changed (a stat or two)
        self.key = key  # storage.encrypt_to, watched every cycle (evidence/keywatch.py)
        self.interval_s = min(1.0, heartbeat_s)
        self.checkpointer = checkpointer
        self.evidence_steps = evidence_steps  # the background check, the time-stamps: every SLOW_CHECK_S
        self.stopping = threading.Event()
        self.unsealed: set[int] = set()  # calls whose sealing/chaining failed: retried, EVIDENCE_FAILED
        self.unsalvaged: list[Path] = []  # .part files the start-up salvage could not recover yet
        self._status_key: tuple[Any, ...] | None = None  # of the status.json last written
        self._status_mono: float | None = None  # when it was written

    def run(self) -> None:
        next_slow = 0.0
        while not self.stopping.wait(self.interval_s):
            try:
                self.watch_key()
                self.seal_finished()
                self.carry_out_erasures()
                self.sign_checkpoint()
                self.heartbeat()
                if self.quick_retry is not None:
                    try:
                        self.quick_retry()
                    except Exception:  # noqa: BLE001 - the tick's other work goes on
                        logger.exception("quick retry of the MQTT link failed")
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
        """Recordings an unclean stop left open are salvaged; any not yet sealed are sealed.

        Runs before any line opens, so every ``.part`` still on disk afterwards is one the
        salvage could not recover now, and every finished call not in the chain is one that
        could not be sealed or chained: both are alarms, retried by ``slow_checks``."""
        try:
            for row in salvage(self.data_dir, self.index):
                logger.warning("call %s recovered after an unclean stop", row.get("id"))
        except Exception:  # noqa: BLE001 - a failing disk must not keep the lines from recording
            logger.exception("could not salvage the recordings left by the previous run")
        self.unsalvaged = unsalvaged(self.data_dir)
        self._salvage_alarm()
        from .evidence.finalize import finalize_pending
        from .index.evidence import calls_unchained
        try:
            finalize_pending(self.index, self.data_dir, self.storage, clock=self.clock)
            self.unsealed = set(calls_unchained(self.index))
        except Exception:  # noqa: BLE001 - evidence work must not keep the recorder from starting
            logger.exception("could not finalize the recordings left by the previous run")
        self._evidence_alarm()

    def seal_finished(self) -> None:
        """Seal and chain every recording that ended since the last call (ids in ``to_seal``)."""
        while True:
            try:
                call_id = self.to_seal.get_nowait()
            except queue.Empty:
                return
            self._finalize(call_id)
            self._evidence_alarm()

    def _finalize(self, call_id: int) -> bool:
        """Seal and chain one call; a failure keeps it in ``unsealed`` (retried, EVIDENCE_FAILED)."""
        from .evidence.finalize import finalize_recording
        try:
            finalize_recording(self.index, self.data_dir, {"id": call_id}, self.storage, clock=self.clock)
        except LookupError:  # deleted meanwhile (erased): nothing left to seal
            self.unsealed.discard(call_id)
            return True
        except Exception as e:  # noqa: BLE001 - retried every SLOW_CHECK_S, and at the next start
            logger.error("call %d: could not seal/chain its recording: %s", call_id, e)
            self.unsealed.add(call_id)
            return False
        self.unsealed.discard(call_id)
        return True

    def retry_failed(self) -> None:
        """Retry what failed before: sealing/chaining (``unsealed``) and salvage (``unsalvaged``)."""
        for call_id in sorted(self.unsealed):
            if self._finalize(call_id):
                logger.warning("call %d: sealed and chained on a retry", call_id)
        self._evidence_alarm()
        if self.unsalvaged:
            try:
                for row in salvage(self.data_dir, self.index, parts=self.unsalvaged):
                    logger.warning("call %s recovered on a retry", row.get("id"))
                    if row.get("id") is not None:
                        self._finalize(int(row["id"]))
            except Exception:  # noqa: BLE001 - retried again
                logger.exception("salvage retry failed")
            self.unsalvaged = [p for p in self.unsalvaged if p.exists()]
            self._salvage_alarm()
            self._evidence_alarm()

    def carry_out_erasures(self, *, with_errors: bool = False) -> None:
        """Erasures an admin asked for on the web (evidence/erasure_requests.py): the web process may not
        delete audio, so it queues them in the index and this thread carries them out, every cycle (one
        indexed query when none is pending); one that failed is retried with the slow checks."""
        from .evidence.erasure_requests import carry_out_pending
        try:
            carry_out_pending(self.index, self.data_dir, clock=self.clock, with_errors=with_errors)
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk; retried next cycle
            logger.error("cannot carry out the erasures asked for on the web: %s", e)

    def watch_key(self) -> None:
        """The encryption key still loads (every cycle: a lost key is an alarm within one period).
        A key that is back seals the recordings its absence held (``unsealed``) in the same cycle,
        not at the next slow check 10 s on."""
        if self.key is not None and self.key.path is not None:
            before = self.key.problem
            self.key.check()
            if self.key.problem != before:
                if before and self.key.problem is None and self.unsealed:
                    self.retry_failed()  # raises or clears the alarm itself
                else:
                    self._evidence_alarm()

    def _evidence_alarm(self) -> None:
        n = len(self.unsealed)
        parts = [f"{n} recording(s) not sealed/chained (first: call {min(self.unsealed)}); "
                 f"retried every {SLOW_CHECK_S:g} s"] if n else []
        if self.key is not None and self.key.problem:
            parts.insert(0, self.key.problem)
        self.alarms.set("EVIDENCE_FAILED", None, bool(parts), "; ".join(parts))

    def _salvage_alarm(self) -> None:
        n = len(self.unsalvaged)
        self.alarms.set("DISK_WRITE_FAILED", None, n > 0,
                        f"{n} unfinished recording(s) from before the restart could not be recovered "
                        f"(disk full or I/O error); retried every {SLOW_CHECK_S:g} s" if n else "")

    def sign_checkpoint(self) -> None:
        """A signed checkpoint of the chain if it grew since the last (evidence/checkpoint.py)."""
        if self.checkpointer is None:
            return
        try:
            self.checkpointer.tick()
        except Exception as e:  # noqa: BLE001 - retried next second; recording goes on
            logger.error("cannot sign a checkpoint: %s", e)

    def close_the_books(self, gaps: GapTracker) -> None:
        """Clean stop, once the calls are finished and the threads stopped: the last calls sealed
        and a checkpoint covering them (while the MQTT link is still up), every open gap and alarm
        closed now, the last heartbeat, the clean-stop mark (the next start counts no downtime as
        a crash) and ``status.json``."""
        self.seal_finished()
        self.sign_checkpoint()
        now = self.clock.wall()
        gaps.close_all(now)
        self.alarms.clear_all(now)
        self.heartbeat()
        try:
            self.index.set_meta("stopped", "clean")
        except Exception as e:  # noqa: BLE001
            logger.error("cannot record the clean stop: %s", e)
        self.write_status()

    def heartbeat(self) -> None:
        try:
            self.index.set_meta("heartbeat", iso(self.clock.wall()))
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
            logger.error("cannot write the heartbeat: %s", e)

    def slow_checks(self) -> None:
        """Disk (retention sweep, DISK_LOW), clock (CLOCK_UNSYNCED) and the retries: every 10 s."""
        self.retry_failed()
        self.carry_out_erasures(with_errors=True)
        if self.retry is not None:
            try:
                self.retry()
            except Exception:  # noqa: BLE001
                logger.exception("retry of the MQTT link / LEDs / off-hook inputs failed")
        try:
            res = self.sweeper.sweep()
        except Exception as e:  # noqa: BLE001 - retried every SLOW_CHECK_S; recording goes on
            logger.error("retention sweep failed: %s", e)
            # Space is no longer being managed: the disk may fill. Said, not just logged.
            self.alarms.set("DISK_LOW", None, True,
                            f"retention sweep failed: {' '.join(str(e).split())}; retried every {SLOW_CHECK_S:g} s")
        else:
            self.board.disk = res.health()
            low = res.disk_low or (res.hours_left is not None and res.hours_left < self.health.disk_low_hours)
            detail = res.detail or (f"{res.hours_left:.1f} h of recording left" if res.hours_left is not None
                                    else "")
            # w-rebuild: a mass eviction for space is DISK_LOW too; deletions held back are DELETION_HELD.
            low, detail = low or bool(res.mass_eviction), detail or res.mass_eviction
            self.alarms.set("DISK_LOW", None, low, detail)
            self.alarms.set("DELETION_HELD", None, bool(res.held_back), res.held_back)
        try:
            self.board.calls = calls_summary(self.index, self.clock.wall())
        except Exception as e:  # noqa: BLE001 - the index may be on a failing disk
            logger.error("cannot count today's calls: %s", e)
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
        """``status.json`` when ``status_due`` (its ``status_key`` from the board, which does not
        make the document: ``StatusBoard.status_key``)."""
        try:
            key, now_mono = self.board.status_key(), self.clock.mono()
            if not status_due(key, self._status_key, now_mono, self._status_mono):
                return
            write_snapshot(self.data_dir / STATUS_FILE, self.board.snapshot())
            self._status_key, self._status_mono = key, now_mono
        except Exception as e:  # noqa: BLE001
            logger.error("cannot write %s: %s", STATUS_FILE, e)


def calls_summary(index: Index, now: float) -> dict[str, Any]:
    """``last_call`` (line, ended_at, duration_s, caller_number, caller_name, or None) and
    ``calls_today`` (calls started since local midnight) for the health document."""
    lt = time.localtime(now)
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    last = index.last_call()
    return {"last_call": None if last is None else {k: last.get(k) for k in (
                "line", "ended_at", "duration_s", "caller_number", "caller_name")},
            "calls_today": index.count_calls_since(iso(midnight))}
