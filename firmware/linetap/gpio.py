"""The GPIO adapter: the only module that imports ``gpiozero``.

Every device takes a keyword-only ``pin_factory`` (gpiozero's own seam), so
tests run on ``gpiozero.pins.mock.MockFactory`` and a Pi on lgpio.
"""

from __future__ import annotations

import logging
from typing import Any

from gpiozero import LED, PWMLED, Buzzer as _Buzzer, DigitalInputDevice
from gpiozero.exc import PinPWMUnsupported

logger = logging.getLogger(__name__)


class HookInput:
    """A loop-current (off-hook) detector on a GPIO input.

    Debouncing is done by the call segmenter in audio time; this only reads the pin.
    """

    def __init__(self, pin: int, *, active_low: bool = False, pin_factory: Any = None) -> None:
        self._dev = DigitalInputDevice(pin, pull_up=None, active_state=not active_low,
                                       pin_factory=pin_factory)

    def __call__(self) -> bool:
        return bool(self._dev.value)

    def close(self) -> None:
        self._dev.close()


class _Output:
    """What an LED and a buzzer share: gpiozero's output device behind on/off/blink."""

    _dev: Any
    pwm = False

    def on(self) -> None:
        self._dev.on()

    def off(self) -> None:
        self._dev.off()

    def blink(self, on_time: float, off_time: float) -> None:
        self._dev.blink(on_time=on_time, off_time=off_time)

    def pulse(self, fade_in_time: float, fade_out_time: float) -> None:
        """Fade in and out with PWM; without it, a blink with the same on/off times."""
        if self.pwm:
            self._dev.pulse(fade_in_time=fade_in_time, fade_out_time=fade_out_time)
        else:
            self._dev.blink(on_time=fade_in_time, off_time=fade_out_time)

    @property
    def value(self) -> float:
        return float(self._dev.value)

    def close(self) -> None:
        self._dev.close()


class Led(_Output):
    """An LED that can be on, off, blink, or pulse (fade in and out).

    Pulsing needs PWM: a ``PWMLED`` is used when the pin factory offers PWM
    (lgpio's software PWM on a Pi; ``MockFactory(pin_class=MockPWMPin)`` in
    tests). Without PWM it falls back to a plain ``LED`` and ``pulse`` becomes
    a blink with the same on/off times, which is still slow and still distinct.
    Blinking and pulsing run on gpiozero's own background thread per LED.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self.pin_number = pin
        try:
            self._dev = PWMLED(pin, active_high=active_high, pin_factory=pin_factory)
            self.pwm = True
        except PinPWMUnsupported:
            # PWMLED closes itself (and frees the pin) before raising.
            self._dev = LED(pin, active_high=active_high, pin_factory=pin_factory)
            self.pwm = False
            logger.info("GPIO %d has no PWM: its slow pulse is a slow blink", pin)


class Buzzer(_Output):
    """An active buzzer (sounds while its pin is driven; "pulse" is a blink)."""

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self.pin_number = pin
        self._dev = _Buzzer(pin, active_high=active_high, pin_factory=pin_factory)


def mock_factory(*, pwm: bool = False) -> Any:
    """gpiozero's MockFactory (for tests and for the demo without a Pi);
    ``pwm=True`` gives pins that support PWM (so LEDs can pulse)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin
    return MockFactory(pin_class=MockPWMPin) if pwm else MockFactory()
