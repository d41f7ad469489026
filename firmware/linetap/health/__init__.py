"""System health: disk and clock checks, the health snapshot, systemd notification."""

from .sdnotify import Notifier, ProgressWatchdog
from .snapshot import (DiskStatus, LineStatus, build_snapshot, line_state, line_states, read_snapshot,
                       significant, significant_of, write_snapshot)
from .system import RateMeter, clock_synchronized, disk_low, disk_usage, hours_left

__all__ = [
    "Notifier", "ProgressWatchdog",
    "DiskStatus", "LineStatus", "build_snapshot", "line_state", "line_states", "read_snapshot",
    "significant", "significant_of", "write_snapshot",
    "RateMeter", "clock_synchronized", "disk_low", "disk_usage", "hours_left",
]
