"""The off-hook inputs of the ``offhook`` lines: an input that cannot be built is GPIO_FAILED and
recording by voice activity, never a line that does not record (README "Alarms").

gpiozero can fail to build an input: no pin factory on the machine, the pin taken by another HAT's
driver, a pin the board does not have. That line then records by VOX (its ``vox_*`` keys, which
every line has) and GPIO_FAILED names it with the reason ("off-hook input on GPIO17 failed: ...;
recording by voice activity"). Housekeeping's retry (every ``SLOW_CHECK_S``, housekeeping.py)
builds the input again; once it is built the line goes back to off-hook triggering at its next
call boundary (``LineCalls.switch_trigger``: a call is never cut by the change), and the alarm
clears then. ``gpio`` (gpiozero behind it) is imported only when an input is built.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..alarms.manager import one_line
from ..config import LineConfig

if TYPE_CHECKING:
    from ..alarms.manager import AlarmManager
    from ..clock import Clock
    from ..gpio import HookInput
    from .line import LineCalls

logger = logging.getLogger(__name__)

__all__ = ["HookInputs"]


class HookInputs:
    """Owns every off-hook input (closed with the recorder) and the lines recording by voice
    activity meanwhile (``fallback``: line name -> why)."""

    def __init__(self, lines: Iterable[LineConfig], *, pin_factory: Any, clock: Clock, alarms: AlarmManager,
                 retry_s: float) -> None:
        self.lines = {ln.name: ln for ln in lines if ln.trigger == "offhook"}
        self.pin_factory = pin_factory
        self.clock = clock
        self.alarms = alarms
        self.retry_s = retry_s  # only said in the log: housekeeping does the retrying
        self.inputs: dict[str, HookInput] = {}
        self.fallback: dict[str, str] = {}  # lines recording by voice activity, and why
        self._lock = threading.Lock()  # the retry and its alarms: housekeeping's thread, or a caller's
        for line in self.lines.values():
            self._build(line)

    def _build(self, line: LineConfig) -> bool:
        """The line's input, stamped with the clock the readers stamp blocks with (exact hang-ups,
        calls/hook.py); False, and the reason in ``fallback``, if it cannot be built."""
        try:
            if line.offhook_gpio is None:
                raise ValueError("no offhook_gpio configured")
            from ..gpio import HookInput
            self.inputs[line.name] = HookInput(line.offhook_gpio, active_low=line.offhook_active_low,
                                               pin_factory=self.pin_factory, mono=self.clock.mono)
        except Exception as e:  # noqa: BLE001 - gpiozero's errors are many; the line records anyway
            why = (f"off-hook input on GPIO{line.offhook_gpio} failed: {one_line(e)}; "
                   "recording by voice activity")
            if self.fallback.get(line.name) != why:
                logger.error("line %s: %s (retried every %g s)", line.name, why, self.retry_s)
            self.fallback[line.name] = why
            return False
        return True

    def running_as(self, line: LineConfig) -> LineConfig:
        """The config a line's ``LineCalls`` runs with: its own, or by voice activity while its
        off-hook input is missing."""
        return dataclasses.replace(line, trigger="vox") if line.name in self.fallback else line

    def hook(self, name: str) -> HookInput | None:
        return self.inputs.get(name)

    def retry(self, line_calls: Mapping[str, LineCalls]) -> None:
        """Housekeeping's retry: build each missing input; a line whose input now works goes back
        to off-hook triggering at its next call boundary, and its alarm clears then."""
        with self._lock:
            for name in list(self.fallback):
                if name in self.inputs or name not in line_calls:
                    continue
                line = self.lines[name]
                if self._build(line):
                    logger.info("line %s: off-hook input on GPIO%s works; off-hook triggering from the next "
                                "call boundary", name, line.offhook_gpio)
                    line_calls[name].switch_trigger(line, self.inputs[name], then=lambda n=name: self._back(n))

    def _back(self, name: str) -> None:
        """On the pipeline thread: the line runs by its hook input again."""
        self.fallback.pop(name, None)
        self.alarms.set("GPIO_FAILED", name, False)

    def raise_alarms(self) -> None:
        """GPIO_FAILED for each line recording by voice activity whose input is still missing (one
        built again is cleared by ``_back`` once the line runs by it: never raised again from a
        stale reason, as ``retry`` holds the same lock)."""
        with self._lock:
            for name, why in list(self.fallback.items()):
                if name not in self.inputs:
                    self.alarms.set("GPIO_FAILED", name, True, why)

    def close(self) -> None:
        for hook in self.inputs.values():
            hook.close()
