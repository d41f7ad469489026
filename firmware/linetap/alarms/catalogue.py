"""The alarm catalogue: every code the contract names, its severity and scope.

Codes and severities are part of the outside contract (MQTT events, the
``alarms`` table, ``linetap fleet``), so they live in one table here and
nowhere else.

Severity decisions:

- ``critical`` means audio is being lost or evidence is compromised *now*:
  a line that cannot be opened (LINE_NO_DEVICE), a line that delivers no
  real audio (LINE_DEAD), recordings that cannot be written
  (DISK_WRITE_FAILED), and RECORDER_RESTARTED, because the interval the
  recorder was down is audio that was never captured on any line.
- ``warning`` means recording continues but someone should look: a short
  loss (LINE_OVERRUN), degraded audio (LINE_CLIPPING), space running out
  (DISK_LOW), timestamps that may be wrong (CLOCK_UNSYNCED), and no
  monitoring link (BROKER_UNREACHABLE; recordings are unaffected).

Scope: ``line`` alarms are about one line and are always raised with that
line's name; ``system`` alarms are about the box (they may still name a line,
e.g. DISK_WRITE_FAILED on the file of line1, but LEDs treat them as a system
fault).
"""

from __future__ import annotations

from dataclasses import dataclass

CRITICAL = "critical"
WARNING = "warning"

LINE = "line"
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    code: str
    severity: str  # critical | warning
    scope: str  # line | system
    meaning: str


_SPECS = (
    AlarmSpec("LINE_NO_DEVICE", CRITICAL, LINE,
              "the line's PCM cannot be opened or vanished; cleared when reopening succeeds"),
    AlarmSpec("LINE_DEAD", CRITICAL, LINE,
              "the line delivers digital silence, a stuck sample value, or no frames at all"),
    AlarmSpec("LINE_OVERRUN", WARNING, LINE,
              "capture fell behind and samples were lost (detail: how many)"),
    AlarmSpec("LINE_CLIPPING", WARNING, LINE,
              "sustained clipping: the input level is too high for the converter"),
    AlarmSpec("DISK_LOW", WARNING, SYSTEM,
              "free space is below storage.keep_free_mb or under health.disk_low_hours of recording"),
    AlarmSpec("DISK_WRITE_FAILED", CRITICAL, SYSTEM,
              "a recording or the index could not be written"),
    AlarmSpec("CLOCK_UNSYNCED", WARNING, SYSTEM,
              "the system clock is not NTP-synchronised; timestamps may be wrong"),
    AlarmSpec("BROKER_UNREACHABLE", WARNING, SYSTEM,
              "the MQTT broker cannot be reached; recording continues, events are queued"),
    AlarmSpec("ARCHIVE_BEHIND", WARNING, SYSTEM,
              "a recording that ended more than archive.behind_after_h ago is not archived yet (remote "
              "unreachable, credentials, bandwidth too low); with archive.required the disk may fill"),
    AlarmSpec("RECORDER_RESTARTED", CRITICAL, SYSTEM,
              "the recorder was down (from its last heartbeat to its restart); no line was captured"),
)

CATALOGUE: dict[str, AlarmSpec] = {s.code: s for s in _SPECS}
CODES: tuple[str, ...] = tuple(CATALOGUE)


def spec(code: str) -> AlarmSpec:
    """The catalogue entry for ``code``; ValueError for a code the contract does not know."""
    try:
        return CATALOGUE[code]
    except KeyError:
        raise ValueError(f"unknown alarm code {code!r}; known: {', '.join(CODES)}") from None


def severity(code: str) -> str:
    return spec(code).severity


def is_system(code: str) -> bool:
    return spec(code).scope == SYSTEM
