"""The LED panel's set-up and its retry: pins it could not take are GPIO_FAILED, never a reason not to record.

A panel that could not take all its pins (busy, no GPIO chip) is built afresh on housekeeping's retry
(every ``SLOW_CHECK_S``, housekeeping.py) until it has them all (README "Alarms"). ``leds.driver``
(gpiozero behind it) is imported only when a panel is configured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..alarms.manager import one_line

if TYPE_CHECKING:
    from ..alarms.manager import AlarmManager
    from ..config import Config
    from ..health.loop import HealthLoop
    from .driver import LedPanel

logger = logging.getLogger(__name__)

__all__ = ["PanelSetup"]


class PanelSetup:
    """Owns the ``LedPanel`` (handed to the health loop, which drives it) and why it is incomplete."""

    def __init__(self, cfg: Config, *, alarms: AlarmManager, health_loop: HealthLoop, pin_factory: Any,
                 retry_s: float) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.health_loop = health_loop
        self.pin_factory = pin_factory
        self.retry_s = retry_s  # only said in the log: housekeeping does the retrying
        self.leds: LedPanel | None = None
        self.problem: str | None = None
        self._logged: set[str] = set()

    def build(self) -> None:
        """The LED panel; pins it could not take are in ``problem`` and the panel is built afresh
        on the retry until it has them all."""
        if self.cfg.leds is None and all(ln.led is None for ln in self.cfg.lines):
            return
        old = self.leds
        if old is not None:
            if not old.errors:
                return
            self.health_loop.leds = None  # released first: the new panel needs its pins
            old.close()
        try:
            from .driver import LedPanel
            leds = LedPanel(self.cfg.leds, self.cfg.lines, pin_factory=self.pin_factory)
        except Exception as e:  # noqa: BLE001 - GPIO missing altogether: the lines still record
            self.leds = None
            self.problem = one_line(e)
            return
        self.problem = "; ".join(leds.errors) or None
        self.leds = leds
        self.health_loop.leds = leds

    def retry(self) -> None:
        if self.problem is not None:
            self.build()

    def raise_alarms(self) -> None:
        """GPIO_FAILED while a pin is missing; each distinct problem logged once, not every retry."""
        if self.problem is not None and self.problem not in self._logged:
            self._logged.add(self.problem)
            logger.error("LEDs not available: %s (recording continues; retried every %g s)",
                         self.problem, self.retry_s)
        self.alarms.set("GPIO_FAILED", None, self.problem is not None,
                        f"LEDs: {self.problem}" if self.problem else "")

    def close(self) -> None:
        if self.leds is not None:
            self.leds.close()
