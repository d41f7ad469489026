"""The alarm catalogue: every code the contract names, its severity and scope.

Codes and severities are part of the outside contract (MQTT events, the
``alarms`` table, ``linetap fleet``), so they live in one table here and
nowhere else.

Severity decisions:

- ``critical`` means audio is being lost or evidence is compromised *now*:
  a line that cannot be opened (LINE_NO_DEVICE), a line that delivers no
  real audio (LINE_DEAD), recordings that cannot be written
  (DISK_WRITE_FAILED), and RECORDER_RESTARTED, because the interval the
  recorder was down is audio that was never captured on any line. INDEX_REBUILT is
  critical because evidence was compromised: the chain before the rebuild is gone, and
  whatever the index knew that no sidecar did (alarms, gaps, the audit) with it. And
  EVIDENCE_FAILED, because a recording left unsealed and unchained is
  weaker evidence (plaintext on the card, not in the tamper-evident chain)
  than the owner configured, which must never happen in silence.
- ``warning`` means recording continues but someone should look: a short
  loss (LINE_OVERRUN), degraded audio (LINE_CLIPPING), space running out
  (DISK_LOW), timestamps that may be wrong (CLOCK_UNSYNCED), and no
  monitoring link (BROKER_UNREACHABLE; recordings are unaffected), deletions
  held back until someone confirms them (DELETION_HELD: recordings are kept
  longer, none is lost; space eviction, which keeps recording possible, goes on),
  and a configuration the box did not take: CONFIG_REJECTED (first boot refused a
  new ``linetap.toml``; the old one runs) and CONFIG_ROLLED_BACK (a new one
  made the recorder fail to start, so the last one that ran was restored).
  GPIO_FAILED (the LEDs could not be driven: the box records but cannot
  show it locally; MQTT still can; or an ``offhook`` line's input could not be
  built, so that line records by voice activity: every call is still recorded,
  only its boundaries come from the audio instead of the hook). CONFIG_* both mean "the box records, but not as you asked": an installer must look,
  yet no audio is being lost, so they must not hide the line LEDs.

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
    AlarmSpec("INDEX_REBUILT", CRITICAL, SYSTEM,
              "the index was corrupt or missing and was rebuilt from the recordings and their sidecars "
              "(detail: counts, the file kept aside); call ids may differ, the chain records the break"),
    AlarmSpec("DELETION_HELD", WARNING, SYSTEM,
              "deletions that would remove many recordings at once wait: a config change not confirmed "
              "with storage.confirm_deletion, or retention while the clock is unsynchronised or just stepped "
              "(detail: how many and the value that allows it); space eviction goes on"),
    AlarmSpec("EVIDENCE_FAILED", CRITICAL, SYSTEM,
              "a finished recording could not be sealed (storage.encrypt_to) or chained; retried every "
              "10 s, cleared when the backlog is sealed"),
    AlarmSpec("CONFIG_REJECTED", WARNING, SYSTEM,
              "first boot rejected the new linetap.toml (reason in linetap-error.txt on the card); "
              "the previous config runs; cleared when a later config is applied"),
    AlarmSpec("CONFIG_ROLLED_BACK", WARNING, SYSTEM,
              "a new config made the recorder fail to start repeatedly; the last-known-good config "
              "was restored (detail: why the start failed)"),
    AlarmSpec("GPIO_FAILED", WARNING, SYSTEM,
              "the LEDs (or buzzer) could not be set up, or (naming the line) an off-hook input could not "
              "be built and that line records by voice activity; recording continues, retried every 10 s"),
    AlarmSpec("ARCHIVE_BEHIND", WARNING, SYSTEM,
              "a recording that ended more than archive.behind_after_h ago is not archived yet (remote "
              "unreachable, credentials, bandwidth too low); with archive.required the disk may fill"),
    AlarmSpec("RECORDER_RESTARTED", CRITICAL, SYSTEM,
              "the recorder was down (from its last heartbeat to its restart); no line was captured"),
    AlarmSpec("EVIDENCE_INTEGRITY", CRITICAL, SYSTEM,
              "the background check found a recording or the evidence chain changed (detail: what broke)"),
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
