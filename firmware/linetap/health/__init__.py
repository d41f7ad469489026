"""System health: the clock check, the health snapshot, systemd notification."""

from .sdnotify import Notifier, ProgressWatchdog
from .snapshot import (DiskStatus, LineStatus, build_snapshot, line_state, line_states, read_snapshot,
                       significant, significant_of, write_snapshot)
from .system import clock_synchronized

__all__ = [
    "Notifier", "ProgressWatchdog",
    "DiskStatus", "LineStatus", "build_snapshot", "line_state", "line_states", "read_snapshot",
    "significant", "significant_of", "write_snapshot",
    "clock_synchronized",
]
