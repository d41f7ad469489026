"""The status board: what the recorder knows about itself, as the health snapshot document.

The lines' live state comes from their ``LineCalls`` (recording? level, last audio),
the alarms from the ``AlarmManager``; the disk and clock figures are what the
housekeeping thread's slow checks last found (``disk``, ``clock_synced``, written
every 10 s by that one thread). The health thread publishes the snapshot over MQTT,
the housekeeping thread writes it to ``status.json`` (at once when a line's state or an
alarm changes, else every 5 s: ``housekeeping.status_due``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .. import __version__
from ..alarms.manager import AlarmManager
from ..calls.line import LineCalls
from ..clock import Clock
from ..config import LineConfig
from .snapshot import DiskStatus, LineStatus, build_snapshot

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

    def snapshot(self) -> dict[str, Any]:
        """The health document (contract: the MQTT ``health`` topic, ``linetap status``)."""
        disk = None
        if self.disk is not None:
            d = self.disk
            disk = DiskStatus(free_bytes=int(d["free_mb"] * MiB), used_bytes=int(d["used_mb"] * MiB),
                              recordings=d["recordings"], hours_left=d["hours_left"])
        return build_snapshot(recorder_id=self.recorder_id, version=__version__, now=self.clock.wall(),
                              started_at=self.started_wall, lines=self.line_statuses(),
                              alarms=self.alarms.active(), disk=disk, clock_synced=self.clock_synced)
