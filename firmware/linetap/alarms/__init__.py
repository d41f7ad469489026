"""Alarms and gaps: the contract's alarm codes, raise/clear with hysteresis,
and the record of every interval a line was not captured."""

from .catalogue import CATALOGUE, CODES, CRITICAL, WARNING, AlarmSpec, is_system, severity, spec
from .gaps import REASONS, Gap, GapTracker, LineCoverage, coverage, coverage_report, load_gaps
from .manager import Alarm, AlarmListener, AlarmManager

__all__ = [
    "CATALOGUE", "CODES", "CRITICAL", "WARNING", "AlarmSpec", "is_system", "severity", "spec",
    "REASONS", "Gap", "GapTracker", "LineCoverage", "coverage", "coverage_report", "load_gaps",
    "Alarm", "AlarmListener", "AlarmManager",
]
