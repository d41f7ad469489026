"""Status LEDs and buzzer: patterns (pure) and the gpiozero-backed panel."""

from .driver import FAST_BLINK_S, SLOW_PULSE_S, LedPanel
from .patterns import BUZZER, FAST_BLINK, OFF, PATTERNS, SLOW_PULSE, STATUS, STEADY, led_patterns

__all__ = ["FAST_BLINK_S", "SLOW_PULSE_S", "LedPanel", "BUZZER", "FAST_BLINK", "OFF", "PATTERNS",
           "SLOW_PULSE", "STATUS", "STEADY", "led_patterns"]
