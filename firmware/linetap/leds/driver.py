"""Drive the status LED, the per-line LEDs and the buzzer from pattern names.

``LedPanel.apply`` is cheap to call often (the health timer calls it every
tick): a device is touched only when its pattern changes, so a blink keeps its
rhythm instead of restarting on every call. gpiozero starts a new pattern at
once (a blink turns the LED on before its thread first waits), so the LED shows
a new fault within a few milliseconds of ``apply``.

GPIO trouble never stops recording: an LED that cannot be set up is logged,
listed in ``errors`` (for ``linetap check``) and left out.

The mute button (``leds.mute_button``) is here too: a press is counted on
gpiozero's pin thread and taken by the health thread (``take_press``), which
decides what it silences (``patterns.muted_after``); ``on_mute`` wakes it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping

from ..config import LedsConfig, LineConfig
from ..gpio import Buzzer, Led, MuteButton
from .patterns import (BUZZER, FAST_BLINK, FAST_BLINK_S, HEARTBEAT, HEARTBEAT_STEP_S, OFF, SLOW_PULSE,
                       SLOW_PULSE_S, STATUS, STEADY, heartbeat_steps)

logger = logging.getLogger(__name__)

__all__ = ["FAST_BLINK_S", "SLOW_PULSE_S", "LedPanel"]

HEARTBEAT_LEVELS = heartbeat_steps()  # 30 steps of 50 ms: on, off, on, then off for 1.2 s


class LedPanel:
    def __init__(self, leds_cfg: LedsConfig | None, lines: Iterable[LineConfig], *,
                 pin_factory: Any = None) -> None:
        self._lock = threading.Lock()
        self.devices: dict[str, Any] = {}
        self.errors: list[str] = []
        self._current: dict[str, str] = {}
        active_high = leds_cfg.active_high if leds_cfg else True
        wanted: list[tuple[str, int, type]] = []
        if leds_cfg is not None and leds_cfg.status is not None:
            wanted.append((STATUS, leds_cfg.status, Led))
        for line in lines:
            if line.led is not None:
                wanted.append((line.name, line.led, Led))
        if leds_cfg is not None and leds_cfg.buzzer is not None:
            wanted.append((BUZZER, leds_cfg.buzzer, Buzzer))
        for key, pin, kind in wanted:
            try:
                self.devices[key] = kind(pin, active_high=active_high, pin_factory=pin_factory)
            except Exception as e:  # noqa: BLE001 - no GPIO must not mean no recording
                msg = f"{key} on GPIO {pin}: {e}"
                logger.error("LED unavailable: %s", msg)
                self.errors.append(msg)
        self.config_muted = bool(leds_cfg is not None and leds_cfg.buzzer_muted)
        self.on_mute: Callable[[], None] | None = None  # called on each press (the health loop's wake)
        self.button: MuteButton | None = None
        self._presses = 0
        self._presses_taken = 0
        if leds_cfg is not None and leds_cfg.mute_button is not None:
            try:
                self.button = MuteButton(leds_cfg.mute_button, self._pressed, pin_factory=pin_factory)
            except Exception as e:  # noqa: BLE001
                msg = f"mute button on GPIO {leds_cfg.mute_button}: {e}"
                logger.error("mute button unavailable: %s", msg)
                self.errors.append(msg)

    def _pressed(self) -> None:
        """On gpiozero's pin thread: count the press (an int store is atomic) and wake the taker."""
        self._presses += 1
        logger.info("mute button pressed")
        if self.on_mute is not None:
            self.on_mute()

    def take_press(self) -> bool:
        """Was the mute button pressed since the last call? (The health thread asks each tick.)"""
        presses = self._presses
        pressed = presses != self._presses_taken
        self._presses_taken = presses
        return pressed

    @property
    def lines_with_led(self) -> set[str]:
        """The lines that have a working LED (for ``led_patterns(lines_with_led=…)``)."""
        return set(self.devices) - {STATUS, BUZZER}

    def apply(self, patterns: Mapping[str, str]) -> None:
        """Show ``patterns`` (key -> steady | slow_pulse | fast_blink | heartbeat | off); keys
        without a device are ignored, devices without a key keep their pattern."""
        with self._lock:
            for key, pattern in patterns.items():
                dev = self.devices.get(key)
                if dev is None or self._current.get(key) == pattern:
                    continue
                try:
                    _show(dev, pattern)
                except Exception as e:  # noqa: BLE001
                    logger.error("cannot set %s to %s: %s", key, pattern, e)
                    continue
                self._current[key] = pattern

    def pattern(self, key: str) -> str | None:
        with self._lock:
            return self._current.get(key)

    def close(self) -> None:
        """Everything off and released (at shutdown, in reverse of creation)."""
        if self.button is not None:
            self.button.close()
            self.button = None
        with self._lock:
            for key in reversed(list(self.devices)):
                dev = self.devices.pop(key)
                try:
                    dev.off()
                    dev.close()
                except Exception as e:  # noqa: BLE001
                    logger.warning("cannot release %s: %s", key, e)
            self._current.clear()


def _show(dev: Any, pattern: str) -> None:
    if pattern == STEADY:
        dev.on()
    elif pattern == OFF:
        dev.off()
    elif pattern == FAST_BLINK:
        dev.blink(*FAST_BLINK_S)
    elif pattern == SLOW_PULSE:
        dev.pulse(*SLOW_PULSE_S)
    elif pattern == HEARTBEAT:
        dev.play(HEARTBEAT_LEVELS, HEARTBEAT_STEP_S)
    else:
        raise ValueError(f"unknown LED pattern {pattern!r}")
