"""The GPIO adapter: the only module that imports ``gpiozero``.

Every device takes a keyword-only ``pin_factory`` (gpiozero's own seam), so
tests run on ``gpiozero.pins.mock.MockFactory`` and a Pi on lgpio.
"""

from __future__ import annotations

import logging
import time
from itertools import cycle
from typing import Any, Callable, Sequence

from gpiozero import LED, PWMLED, Button, Buzzer as _Buzzer, DigitalInputDevice
from gpiozero.exc import PinPWMUnsupported

from .calls.hook import HookEdges

logger = logging.getLogger(__name__)


class HookInput:
    """A loop-current (off-hook) detector on a GPIO input, its edges stamped when they happen.

    gpiozero calls ``when_activated``/``when_deactivated`` on its pin thread at the edge; the
    edge is stamped there with ``mono`` (the recorder's monotonic clock, the one the capture
    readers stamp blocks with) and kept in ``edges`` (``calls.hook.HookEdges``), so the
    pipeline maps it to the sample it happened at, whatever its own delay. Debouncing is done
    by the call segmenter in audio time; calling the input reads the pin now.
    """

    def __init__(self, pin: int, *, active_low: bool = False, pin_factory: Any = None,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self._dev = DigitalInputDevice(pin, pull_up=None, active_state=not active_low,
                                       pin_factory=pin_factory)
        self._mono = mono
        self.edges = HookEdges(bool(self._dev.value))
        self._dev.when_activated = lambda: self.edges.add(self._mono(), True)
        self._dev.when_deactivated = lambda: self.edges.add(self._mono(), False)

    def __call__(self) -> bool:
        return bool(self._dev.value)

    def at(self, t_mono: float) -> tuple[bool, float | None]:
        """The hook state at ``t_mono`` and when it last changed (``calls.hook.TimedHook``)."""
        return self.edges.at(t_mono)

    def close(self) -> None:
        self._dev.close()


class MuteButton:
    """A push button that mutes the buzzer (``leds.mute_button``): ``on_press`` runs on
    gpiozero's pin thread at each press. Wired to ground with the Pi's pull-up, so pressed
    is low; gpiozero's ``bounce_time`` (50 ms) keeps one press one press."""

    BOUNCE_S = 0.05

    def __init__(self, pin: int, on_press: Callable[[], None], *, pin_factory: Any = None) -> None:
        self.pin_number = pin
        self._dev = Button(pin, pull_up=True, bounce_time=self.BOUNCE_S, pin_factory=pin_factory)
        self._dev.when_pressed = on_press

    def close(self) -> None:
        self._dev.close()


class _Output:
    """What an LED and a buzzer share: gpiozero's output device behind on/off/blink."""

    _dev: Any
    pwm = False

    def on(self) -> None:
        self._dev.source = None
        self._dev.on()

    def off(self) -> None:
        self._dev.source = None
        self._dev.off()

    def blink(self, on_time: float, off_time: float) -> None:
        self._dev.source = None
        self._dev.blink(on_time=on_time, off_time=off_time)

    def play(self, levels: Sequence[int], step_s: float) -> None:
        """Repeat ``levels`` (0/1), one every ``step_s``, on gpiozero's source thread (a pattern
        that ``blink`` cannot make, e.g. a double blink)."""
        self._dev.off()  # stops a blink or a pulse
        self._dev.source_delay = step_s
        self._dev.source = cycle(levels)

    def pulse(self, fade_in_time: float, fade_out_time: float) -> None:
        """Fade in and out with PWM; without it, a blink with the same on/off times."""
        self._dev.source = None
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
