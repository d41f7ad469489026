"""What each LED shows: a pure function from line states and active alarms to patterns.

Two kinds of trouble look different (see PATTERNS.md for the owner's table):

- **critical** (recording at risk: LINE_NO_DEVICE, LINE_DEAD, DISK_WRITE_FAILED,
  RECORDER_RESTARTED, or the recorder itself unwell): ``fast_blink``;
- **warning** (monitoring or time degraded, recording goes on: BROKER_UNREACHABLE,
  CLOCK_UNSYNCED, DISK_LOW, LINE_OVERRUN, LINE_CLIPPING): the status LED's ``heartbeat``
  (a double blink every 1.5 s); warnings never change a line LED, so a box with no
  network at all (CLOCK_UNSYNCED and BROKER_UNREACHABLE forever) still shows its lines.

Patterns:

- per-line LED: ``steady`` recording, ``slow_pulse`` idle, ``fast_blink`` a critical alarm
  on this line (its state is ``fault``) or a critical *system* alarm (every LED blinks fast:
  all lines are at risk), ``off`` disabled;
- status LED: ``fast_blink`` on a critical system alarm, a process fault, or a critical
  alarm on a line that has no LED of its own (so no critical fault is ever invisible);
  else ``heartbeat`` while any warning is active; else ``steady`` while any line records,
  else ``slow_pulse``;
- buzzer: ``steady`` while a critical alarm is active, unless muted (``buzzer_silenced``).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from ..alarms.catalogue import CRITICAL, SYSTEM, spec

STEADY = "steady"
SLOW_PULSE = "slow_pulse"
FAST_BLINK = "fast_blink"
HEARTBEAT = "heartbeat"
OFF = "off"
PATTERNS = (STEADY, SLOW_PULSE, FAST_BLINK, HEARTBEAT, OFF)

STATUS = "status"  # key of the system status LED
BUZZER = "buzzer"  # key of the buzzer

# One cycle of each pattern as (brightness 0..1 at the end of the step, seconds): the driver
# plays these and ``leds/diagram.py`` draws them. A ramp (``slow_pulse``) is drawn as a fade.
FAST_BLINK_S = (0.1, 0.1)  # on, off: 5 Hz, unmistakably "look at me"
SLOW_PULSE_S = (1.0, 1.0)  # fade in, fade out (or on, off without PWM): a 2 s breath
# On 0.1 s, off 0.1 s, on 0.1 s, off 1.2 s: a double blink every 1.5 s, like a heartbeat. Its
# steps are multiples of HEARTBEAT_STEP_S, the rate the driver plays it at.
HEARTBEAT_S = (0.1, 0.1, 0.1, 1.2)
HEARTBEAT_STEP_S = 0.05


class AlarmLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def line(self) -> str | None: ...


AlarmKey = tuple[str, str | None]  # (code, line): what the mute button silences


def heartbeat_steps() -> list[int]:
    """The heartbeat as pin levels, one per ``HEARTBEAT_STEP_S`` (the driver cycles through them)."""
    out: list[int] = []
    for k, seconds in enumerate(HEARTBEAT_S):
        out += [1 if k % 2 == 0 else 0] * round(seconds / HEARTBEAT_STEP_S)
    return out


def critical_keys(alarms: Iterable[AlarmLike]) -> frozenset[AlarmKey]:
    """The active critical alarms, as the mute button sees them."""
    return frozenset((a.code, a.line) for a in alarms if spec(a.code).severity == CRITICAL)


def muted_after(muted: frozenset[AlarmKey], critical: frozenset[AlarmKey], *,
                pressed: bool) -> frozenset[AlarmKey]:
    """The critical alarms the buzzer stays silent for, after a tick.

    A press of the mute button silences the critical alarms active now; an alarm that clears
    is forgotten, so the same fault coming back sounds again, and any critical alarm not in
    the set (a new one) sounds: the mute ends when a new critical alarm arrives."""
    return critical if pressed else muted & critical


def buzzer_silenced(muted: frozenset[AlarmKey], critical: frozenset[AlarmKey], *,
                    config_muted: bool = False) -> bool:
    """The buzzer stays off: muted in the config, or every active critical alarm was muted."""
    return config_muted or critical <= muted


def led_patterns(line_states: Mapping[str, str], alarms: Iterable[AlarmLike], *,
                 lines_with_led: Iterable[str] | None = None, process_fault: bool = False,
                 buzzer_muted: bool = False) -> dict[str, str]:
    """Patterns for ``status``, every line in ``line_states`` and ``buzzer``.

    ``line_states``: line name -> ``idle`` | ``recording`` | ``fault`` | ``disabled``
    (the snapshot's states: ``fault`` is a critical alarm on the line). ``alarms``: the
    active alarms (``AlarmManager.active()``). ``lines_with_led``: the lines that have an
    LED of their own (default: all). ``process_fault``: the recorder itself is unwell
    (e.g. the pipeline is stale). ``buzzer_muted``: keep the buzzer off.
    """
    system_critical = process_fault
    faulty: set[str] = set()
    critical = False  # the buzzer is for alarms (a process fault has no alarm to mute)
    warning = False
    for a in alarms:
        s = spec(a.code)
        if s.severity == CRITICAL:
            critical = True
            if s.scope == SYSTEM:
                system_critical = True
            elif a.line is not None:
                faulty.add(a.line)
        else:
            warning = True
    faulty |= {name for name, state in line_states.items() if state == "fault"}
    with_led = set(line_states) if lines_with_led is None else set(lines_with_led)

    out: dict[str, str] = {}
    for name, state in line_states.items():
        if state == "disabled":
            out[name] = OFF
        elif system_critical or name in faulty:
            out[name] = FAST_BLINK
        elif state == "recording":
            out[name] = STEADY
        else:
            out[name] = SLOW_PULSE
    unseen_fault = any(name not in with_led for name in faulty)
    if system_critical or unseen_fault:
        out[STATUS] = FAST_BLINK
    elif warning:
        out[STATUS] = HEARTBEAT
    elif any(state == "recording" for state in line_states.values()):
        out[STATUS] = STEADY
    else:
        out[STATUS] = SLOW_PULSE
    out[BUZZER] = STEADY if critical and not buzzer_muted else OFF
    return out
