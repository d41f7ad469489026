"""Status LEDs and buzzer: ``patterns`` (pure decisions) and ``driver`` (``LedPanel``, on gpiozero).

Nothing is re-exported here, so importing the patterns never loads gpiozero.
"""
