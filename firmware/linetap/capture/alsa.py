"""The ALSA adapter: the only module that imports ``alsaaudio`` (pyalsaaudio >= 0.11).

Opens a capture PCM in S16_LE with a 20 ms period and turns libasound's
answers into the capture API: samples, an overrun flag (-EPIPE), or a
``SourceError``/``DeviceGone``.

PCMs are opened non-blocking with a buffer of ``BUFFER_PERIODS`` periods (500 ms asked; the
card may give less). On a sound card (``card_no`` >= 0) the reader then sleeps between drains
(``drain_s``, a quarter of the buffer it got, at most 100 ms) and dates a stream from the frames
still buffered (``pending``: ``snd_pcm_avail``). A PCM with no card behind it (the ``file``
plugin of the tests and the demo, reading a FIFO) paces itself: its reads wait on the FIFO even
when non-blocking, and its ``avail`` says nothing about the FIFO, so it is read as it comes.
"""

from __future__ import annotations

import errno

import alsaaudio
import numpy as np

from . import DeviceGone, Read, SourceError

_GONE_WORDS = ("No such device", "No such file or directory", "Unknown PCM", "No such card")
BUFFER_PERIODS = 25  # 500 ms of 20 ms periods: room for a drain every 100 ms, and a late one
DRAIN_MAX_S = 0.1


def drain_interval(card_no: int, period_s: float, buffer_s: float) -> float:
    """How long a reader may sleep when a read found no period ready.

    On a card: a quarter of the buffer it gave (so a late wake-up still finds room), between one
    period and ``DRAIN_MAX_S``. With no card (a plugin that paces itself): one period, which
    only matters if such a PCM ever has nothing to give."""
    if card_no < 0:
        return period_s
    return max(period_s, min(DRAIN_MAX_S, buffer_s / 4))


def _error(e: Exception, pcm: str) -> SourceError:
    text = str(e)
    if any(w in text for w in _GONE_WORDS):
        return DeviceGone(f"{pcm}: {text}")
    return SourceError(f"{pcm}: {text}")


class AlsaSource:
    """A non-blocking capture stream on one ALSA PCM (see the module's docstring)."""

    def __init__(self, pcm: str, rate: int, channels: int, period_frames: int) -> None:
        self.pcm_name = pcm
        self.channels = channels
        try:
            self._pcm = alsaaudio.PCM(alsaaudio.PCM_CAPTURE, alsaaudio.PCM_NONBLOCK, device=pcm,
                                      rate=rate, channels=channels,
                                      format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period_frames,
                                      periods=BUFFER_PERIODS)
        except alsaaudio.ALSAAudioError as e:
            raise _error(e, pcm) from None
        got = self._pcm.info()
        if got.get("rate") != rate or got.get("channels") != channels:
            self._pcm.close()
            raise SourceError(f"{pcm}: device gives {got.get('rate')} Hz x {got.get('channels')} ch, "
                              f"not the configured {rate} Hz x {channels} ch")
        self.card_no = int(got.get("card_no", -1))
        period_s = got.get("period_size", period_frames) / rate
        self.buffer_s = got.get("buffer_size", period_frames * BUFFER_PERIODS) / rate
        self.drain_s = drain_interval(self.card_no, period_s, self.buffer_s)

    def pending(self) -> int:
        """Frames the card has captured that no read has taken yet (0 with no card behind)."""
        if self.card_no < 0:
            return 0
        try:
            return max(0, int(self._pcm.avail()))
        except alsaaudio.ALSAAudioError:
            return 0

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
