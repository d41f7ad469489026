"""The status board: what the recorder knows about itself, as the health snapshot document.

The lines' live state comes from their ``LineCalls`` (recording? level, last audio),
the alarms from the ``AlarmManager``; the disk and clock figures are what the
housekeeping thread's slow checks last found (``disk``, ``clock_synced``, written
every 10 s by that one thread). The health thread publishes the snapshot over MQTT,
the housekeeping thread writes it to ``status.json`` (at once when a line's state or an
alarm changes, else every 5 s: ``housekeeping.status_due``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .. import __version__
from ..alarms.manager import AlarmManager
from ..calls.line import LineCalls
from ..clock import Clock
from ..config import LineConfig
from .snapshot import DiskStatus, EvidenceStatus, LineStatus, build_snapshot, disk_doc, line_states, significant_of

MiB = 1024 * 1024


class StatusBoard:
    def __init__(self, *, recorder_id: str, lines: Sequence[LineConfig],
                 line_calls: Mapping[str, LineCalls], alarms: AlarmManager, clock: Clock) -> None:
        self.recorder_id = recorder_id
        self.lines = lines
        self.line_calls = line_calls
        self.alarms = alarms
        self.clock = clock
        self.started_wall = clock.wall()
        self.disk: dict[str, Any] | None = None  # the ``disk`` object of the last sweep (Sweeper.health)
        self.clock_synced: bool | None = None  # None: not checked, or cannot tell
        # Written by the housekeeping thread (evidence): the newest signed checkpoint, the background check.
        self.checkpoint: dict[str, Any] | None = None
        self.evidence: EvidenceStatus | None = None
        # Why the previous start failed ({"at", "reason", ...}; rollback.py), shown until it runs well.
        self.last_start_failure: dict[str, Any] | None = None
        # ``last_call`` and ``calls_today`` of the last slow check (housekeeping.calls_summary), for
        # Home Assistant's last-call and calls-today sensors; None until the first check.
        self.calls: dict[str, Any] | None = None
        # The archive thread's figures (Archiver.status: backlog, oldest_unarchived_s, ...), with [archive].
        self.archive_status: Callable[[], dict[str, Any]] | None = None

    def line_statuses(self) -> list[LineStatus]:
        statuses = []
        for line in self.lines:
            calls = self.line_calls.get(line.name)
            if calls is None:
                statuses.append(LineStatus(line.name, enabled=False))
                continue
            statuses.append(LineStatus(line.name, recording=calls.recording is not None,
                                       level_dbfs=calls.level_dbfs, last_audio_at=calls.last_block_t or None))
        return statuses

    def _disk_status(self) -> DiskStatus | None:
        if self.disk is None:
            return None
        d = self.disk
        return DiskStatus(free_bytes=int(d["free_mb"] * MiB), used_bytes=int(d["used_mb"] * MiB),
                          recordings=d["recordings"], hours_left=d["hours_left"])

    def status_key(self) -> tuple[Any, ...]:
        """``housekeeping.status_key`` of ``snapshot()``, without making the document: the lines'
        states and alarms (``significant_of``), the disk and clock figures. The housekeeping thread
        asks every second whether ``status.json`` is due, and writes it every 5 s at most when
        nothing changed: building the whole document to find out was about a quarter of that
        thread's CPU (cProfile, README: Benchmarks)."""
        active = self.alarms.active()
        return (significant_of(line_states(self.line_statuses(), active), active),
                tuple(sorted(disk_doc(self._disk_status()).items())), self.clock_synced)

    def snapshot(self) -> dict[str, Any]:
        """The health document (contract: the MQTT ``health`` topic, ``linetap status``)."""
        doc = build_snapshot(recorder_id=self.recorder_id, version=__version__, now=self.clock.wall(),
                             started_at=self.started_wall, lines=self.line_statuses(),
                             alarms=self.alarms.active(), disk=self._disk_status(), clock_synced=self.clock_synced,
                             checkpoint=self.checkpoint, evidence=self.evidence)
        if self.last_start_failure:
            doc["last_start_failure"] = {k: self.last_start_failure.get(k) for k in ("at", "reason")}
        if self.calls is not None:
            doc.update(self.calls)
        if self.archive_status is not None:
            doc["archive"] = self.archive_status()
        return doc
