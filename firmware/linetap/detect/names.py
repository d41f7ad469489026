"""The names the config accepts for the detectors, without importing them (w-web).

``linetap.config`` needs only these names; importing :mod:`.callerid` and :mod:`.tones` for them
would load numpy (17 MB) into every process that reads the config, the web interface included
(its target: < 60 MB on a Pi Zero 2 W). ``tests/test_web_memory.py`` checks they equal the
detectors' own ``STANDARDS`` and ``TONE_SETS``.
"""

from __future__ import annotations

CALLERID_STANDARDS: tuple[str, ...] = ("bell202", "v23", "dtmf")
TONE_SETS: tuple[str, ...] = ("us", "ca", "mx", "br", "gb", "ie", "de", "fr", "it", "es", "pt", "nl", "be", "ch",
                              "at", "se", "no", "dk", "fi", "pl", "au", "nz", "jp", "in", "za", "sg", "uk", "eu")
