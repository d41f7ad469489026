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

Capture gain (``line.capture_gain_db``): the box has no login to run ``alsamixer``, so at every
open the line's card gets its capture volume set through the card's mixer: the control is chosen
by :func:`decide_capture_gain` (a pure function: "Capture", else "Mic", "Line", "ADC", else the
first control with a capture volume in dB), the value clamped to the control's range. ALSA gives
dB values in hundredths of a dB, and pyalsaaudio passes them through (``VOLUME_UNITS_DB``). A
failure is a logged warning (kept in ``gain_problem``), never a reason not to record. No test
machine has a sound card: the mixer calls themselves are exercised on a box only; the decision
is tested with values.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import alsaaudio
import numpy as np

from . import DeviceGone, Read, SourceError

logger = logging.getLogger(__name__)

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


# Capture controls by the names USB and HAT codecs give them, most specific to the card's input first.
PREFERRED_CAPTURE_CONTROLS = ("Capture", "Mic", "Line", "ADC")


@dataclass(frozen=True, slots=True)
class MixerControl:
    """One simple mixer control of a card: its name and its capture range in hundredths of a dB
    (None: it has no capture volume, or none in dB)."""

    name: str
    capture_range_cdb: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class GainDecision:
    control: str | None  # None: nothing to set
    value_cdb: int | None
    problem: str | None  # a warning for the log: no control, or the value was clamped


def decide_capture_gain(controls: Sequence[MixerControl], gain_db: float) -> GainDecision:
    """Which control of the card to set, and to what (clamped to its range)."""
    usable = [c for c in controls if c.capture_range_cdb is not None and
              c.capture_range_cdb[0] < c.capture_range_cdb[1]]
    if not usable:
        names = ", ".join(c.name for c in controls) or "none"
        return GainDecision(None, None, f"the card has no capture volume control in dB (controls: {names}); "
                                        f"capture_gain_db = {gain_db:g} not applied")
    by_name = {c.name: c for c in usable}
    chosen = next((by_name[n] for n in PREFERRED_CAPTURE_CONTROLS if n in by_name), usable[0])
    assert chosen.capture_range_cdb is not None
    lo, hi = chosen.capture_range_cdb
    want = round(gain_db * 100)
    value = min(max(want, lo), hi)
    problem = None
    if value != want:
        problem = (f"capture_gain_db = {gain_db:g} is outside {chosen.name!r}'s range "
                   f"{lo / 100:g}..{hi / 100:g} dB; set to {value / 100:g} dB")
    return GainDecision(chosen.name, value, problem)


def _card_controls(card_no: int) -> list[MixerControl]:
    out = []
    for name in alsaaudio.mixers(cardindex=card_no):
        try:
            mixer = alsaaudio.Mixer(name, cardindex=card_no)
        except alsaaudio.ALSAAudioError:
            continue
        try:
            caps = mixer.volumecap()
            rng = None
            if "Capture Volume" in caps or "Joined Capture Volume" in caps:
                lo, hi = mixer.getrange(pcmtype=alsaaudio.PCM_CAPTURE, units=alsaaudio.VOLUME_UNITS_DB)
                rng = (int(lo), int(hi))
        except alsaaudio.ALSAAudioError:
            rng = None
        finally:
            mixer.close()
        out.append(MixerControl(name, rng))
    return out


def set_capture_gain(card_no: int, gain_db: float) -> str | None:
    """Set the capture volume of card ``card_no``; None when done, else the warning (also logged)."""
    try:
        decision = decide_capture_gain(_card_controls(card_no), gain_db)
        if decision.control is not None and decision.value_cdb is not None:
            mixer = alsaaudio.Mixer(decision.control, cardindex=card_no)
            try:
                mixer.setvolume(decision.value_cdb, pcmtype=alsaaudio.PCM_CAPTURE, units=alsaaudio.VOLUME_UNITS_DB)
            finally:
                mixer.close()
            logger.info("card %d: capture volume %r set to %g dB", card_no, decision.control,
                        decision.value_cdb / 100)
        problem = decision.problem
    except alsaaudio.ALSAAudioError as e:
        problem = f"cannot set the capture volume: {e}"
    if problem:
        logger.warning("card %d: %s", card_no, problem)
    return problem


def _error(e: Exception, pcm: str) -> SourceError:
    text = str(e)
    if any(w in text for w in _GONE_WORDS):
        return DeviceGone(f"{pcm}: {text}")
    return SourceError(f"{pcm}: {text}")


class AlsaSource:
    """A non-blocking capture stream on one ALSA PCM (see the module's docstring)."""

    def __init__(self, pcm: str, rate: int, channels: int, period_frames: int, *,
                 capture_gain_db: float | None = None) -> None:
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
        self.gain_problem: str | None = None
        if capture_gain_db is not None:
            self.gain_problem = (set_capture_gain(self.card_no, capture_gain_db) if self.card_no >= 0 else
                                 f"{pcm} has no sound card behind it; capture_gain_db not applied")

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
