"""What each LED shows: a pure function from line states and active alarms to patterns.

Patterns (see PATTERNS.md for the owner's table):

- per-line LED: ``steady`` recording, ``slow_pulse`` idle and healthy,
  ``fast_blink`` any alarm on this line (or the line in ``fault``), ``off`` disabled;
- status LED: ``fast_blink`` on a system fault (any system alarm: disk, clock,
  broker, restart; or ``process_fault``) *or* on a fault of a line that has no
  LED of its own (so no fault is ever invisible), else ``steady`` while any line
  records, else ``slow_pulse``;
- a system fault makes *every* LED blink fast ("all-fast"), which tells it apart
  from a line fault (the status LED and that one line's LED);
- buzzer: ``steady`` while any critical alarm is active, unless muted.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from ..alarms.catalogue import CRITICAL, spec

STEADY = "steady"
SLOW_PULSE = "slow_pulse"
FAST_BLINK = "fast_blink"
OFF = "off"
PATTERNS = (STEADY, SLOW_PULSE, FAST_BLINK, OFF)

STATUS = "status"  # key of the system status LED
BUZZER = "buzzer"  # key of the buzzer


class AlarmLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def line(self) -> str | None: ...


def led_patterns(line_states: Mapping[str, str], alarms: Iterable[AlarmLike], *,
                 lines_with_led: Iterable[str] | None = None, process_fault: bool = False,
                 buzzer_muted: bool = False) -> dict[str, str]:
    """Patterns for ``status``, every line in ``line_states`` and ``buzzer``.

    ``line_states``: line name -> ``idle`` | ``recording`` | ``fault`` | ``disabled``
    (the snapshot's states). ``alarms``: the active alarms (``AlarmManager.active()``).
    ``lines_with_led``: the lines that have an LED of their own (default: all).
    ``process_fault``: the recorder itself is unwell (e.g. the pipeline is stale).
    """
    system_fault = process_fault
    faulty: set[str] = set()
    critical = False
    for a in alarms:
        s = spec(a.code)
        critical = critical or s.severity == CRITICAL
        if s.scope == "system":
            system_fault = True
        elif a.line is not None:
            faulty.add(a.line)
    faulty |= {name for name, state in line_states.items() if state == "fault"}
    with_led = set(line_states) if lines_with_led is None else set(lines_with_led)

    out: dict[str, str] = {}
    for name, state in line_states.items():
        if state == "disabled":
            out[name] = OFF
        elif system_fault or name in faulty:
            out[name] = FAST_BLINK
        elif state == "recording":
            out[name] = STEADY
        else:
            out[name] = SLOW_PULSE
    unseen_fault = any(name not in with_led for name in faulty)
    if system_fault or unseen_fault:
        out[STATUS] = FAST_BLINK
    elif any(state == "recording" for state in line_states.values()):
        out[STATUS] = STEADY
    else:
        out[STATUS] = SLOW_PULSE
    out[BUZZER] = STEADY if critical and not buzzer_muted else OFF
    return out
