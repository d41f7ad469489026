"""The ALSA adapter: the only module that imports ``alsaaudio`` (pyalsaaudio >= 0.11).

Opens a capture PCM in S16_LE with a 20 ms period and turns libasound's
answers into the capture API: samples, an overrun flag (-EPIPE), or a
``SourceError``/``DeviceGone``.
"""

from __future__ import annotations

import errno

import alsaaudio
import numpy as np

from . import DeviceGone, Read, SourceError

_GONE_WORDS = ("No such device", "No such file or directory", "Unknown PCM", "No such card")


def _error(e: Exception, pcm: str) -> SourceError:
    text = str(e)
    if any(w in text for w in _GONE_WORDS):
        return DeviceGone(f"{pcm}: {text}")
    return SourceError(f"{pcm}: {text}")


class AlsaSource:
    """A blocking capture stream on one ALSA PCM."""

    def __init__(self, pcm: str, rate: int, channels: int, period_frames: int) -> None:
        self.pcm_name = pcm
        self.channels = channels
        try:
            self._pcm = alsaaudio.PCM(alsaaudio.PCM_CAPTURE, alsaaudio.PCM_NORMAL, device=pcm,
                                      rate=rate, channels=channels,
                                      format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period_frames)
        except alsaaudio.ALSAAudioError as e:
            raise _error(e, pcm) from None
        got = self._pcm.info()
        if got.get("rate") != rate or got.get("channels") != channels:
            self._pcm.close()
            raise SourceError(f"{pcm}: device gives {got.get('rate')} Hz x {got.get('channels')} ch, "
                              f"not the configured {rate} Hz x {channels} ch")

    def read(self) -> Read:
        try:
            n, data = self._pcm.read()
        except alsaaudio.ALSAAudioError as e:
            raise _error(e, self.pcm_name) from None
        if n == -errno.EPIPE:
            return Read(None, overrun=True)
        if n == -errno.ENODEV:
            raise DeviceGone(f"{self.pcm_name}: device vanished")
        if n < 0:
            raise SourceError(f"{self.pcm_name}: read failed ({n})")
        if n == 0:
            return Read(None)
        frames = np.frombuffer(data, dtype="<i2", count=n * self.channels).reshape(n, self.channels)
        return Read(frames)

    def close(self) -> None:
        try:
            self._pcm.close()
        except alsaaudio.ALSAAudioError:
            pass


def probe(pcm: str, rate: int, channels: int) -> str | None:
    """Open and close a PCM; None if it works, else why not (for ``linetap check``)."""
    try:
        AlsaSource(pcm, rate, channels, rate // 50).close()
    except SourceError as e:
        return str(e)
    return None
