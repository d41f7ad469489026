"""A simulated phone line: realistic audio fed to a FIFO behind an ALSA ``file`` PCM.

Used by the demo (``linetap demo``), the tests and the benchmarks. The audio
goes through the real capture path: pyalsaaudio -> libasound -> the ``file``
plugin reading the FIFO; only the hardware is absent.
"""
