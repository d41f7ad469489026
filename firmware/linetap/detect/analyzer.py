"""What the line says, for the recording pipeline: caller ID, DTMF, call-progress tones, masking.

One :class:`LineAnalyzer` per line sits between the capture blocks and the recording. It is fed
every block (``push``) and does two jobs:

* **Analysis in batches.** The detectors cost little per second of audio but a lot per call
  (numpy overhead): fed every 20 ms block they would cost about half as much CPU as the Opus
  encoder, fed ~1 s batches under 5 % (``benchmarks/dsp.py``). So blocks are collected and
  analysed ``batch_s`` at a time; events (:class:`~linetap.detect.callerid.CallerId`,
  :class:`~linetap.detect.dtmf.DtmfDigit`, :class:`~linetap.detect.tones.ToneEvent`) carry
  stream frame numbers, so their late arrival does not blur where they belong.
* **The audio on its way to disk.** It keeps the line's recent audio in the form it is to be
  stored (``audio(a, b)``, which also serves the pre-roll) and says how far it may be written:

  - ``ready_to``: without masking, raw audio is final at once (no added delay: a power cut loses
    no more than before). With ``mask_dtmf`` only audio that went through the
    :class:`~linetap.detect.dtmf.DtmfMasker` is released, so nothing unmasked ever reaches the
    disk; the recording then lags the line by up to ``batch_s`` + the masker's 80 ms.
  - ``released_to``: ``ready_to``, but held back at the start of a call-progress tone that is in
    progress and not yet confirmed (busy needs two cadence cycles, 2 s). When it is confirmed
    the call can end where the tone began instead of seconds into it. The hold lasts at most
    ``max_hold_s``; with no masking it can only stop what the batch before had not yet seen, so
    a recording ended by a tone runs on at most ``batch_s`` past the tone's start.

On-hook caller ID cannot arrive on an answered line, so the owner sets ``callerid_paused`` once a
call is established (LineCalls: 10 s after its onset, until it ends); the FSK decoder then rests,
which saves a fifth of the analysis while the codec runs too. Only a call-waiting alert (CAS,
2130 + 2750 Hz, :class:`~linetap.detect.callerid.CasDetector`) wakes it meanwhile: the FSK decoder
then hears the ``CW_LISTEN_S`` after the alert (the phone's acknowledgement and the FSK follow
within about 1 s, Telcordia GR-30), and what it decodes there is reported with ``kind =
"waiting"``: a second caller on the call in progress, not the call's own caller.

In a call's first 10 s the decoder still hears everything (a caller ID sent just before the call
began may end inside it), and the owner says where the call began (``call_onset``): the alert
detector runs alongside, and a call set-up that starts within ``CW_LISTEN_S`` after an alert that
ended at least ``CW_MIN_INTO_CALL_S`` into the call is call waiting too. An alert closer to the
onset (BT's DT-AS before on-hook caller ID, which under VOX is itself what starts the recording)
leaves the caller ID the call's own.

``drain`` analyses what is pending and flushes the masker (at a call's end: every frame of the
call is then released and every digit in it reported).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..config import LineConfig
from .callerid import CallerId, CallerIdDecoder, CasDetector, DtmfCallerIdParser
from .dtmf import DtmfDetector, DtmfDigit, DtmfMasker
from .tones import ToneDetector, ToneEvent

__all__ = ["BATCH_S", "CW_LISTEN_S", "CW_MIN_INTO_CALL_S", "ENDING_TONES", "Event", "LineAnalyzer"]

logger = logging.getLogger(__name__)

BATCH_S = 1.0
MAX_HOLD_S = 5.0  # longest confirmation (UK congestion, 3 s) + a batch + margin
ENDING_TONES = frozenset({"dial", "busy", "reorder", "sit"})  # "sit": the call failed (an announcement follows)
CW_LISTEN_S = 2.5  # after a CAS: ack <= 160 ms + 65 ms, FSK 50-500 ms later, ~0.5 s long (GR-30)
# An alert ending this soon after a call's onset is the on-hook alert that began it (BT's DT-AS is
# 100 ms, its FSK follows 45-500 ms later, SIN 227), not call waiting (which needs a call under way).
CW_MIN_INTO_CALL_S = 1.0

Event = CallerId | DtmfDigit | ToneEvent


class LineAnalyzer:
    """Batched detectors and the stored-form audio ring of one line (see the module docstring).

    Not thread-safe: owned by the pipeline thread, like the line's ``LineCalls``.
    """

    def __init__(self, line: LineConfig, *, batch_s: float = BATCH_S, max_hold_s: float = MAX_HOLD_S,
                 hold_for_tones: bool | None = None) -> None:
        self.line = line
        self.rate = rate = line.rate
        self.channels = line.channels
        self.mask = line.mask_dtmf
        self.batch_frames = max(1, int(batch_s * rate))
        self.max_hold_frames = int(max_hold_s * rate)
        if hold_for_tones is None:
            hold_for_tones = line.end_on_tone and line.trigger != "continuous"
        self.hold_for_tones = hold_for_tones
        # Enough for the pre-roll of a call that starts while audio is held or not yet masked.
        self.keep_frames = int((line.preroll_s + max_hold_s + 2 * batch_s + 1.0) * rate)
        self._fsk_standards = tuple(s for s in line.callerid if s != "dtmf")
        self.callerid_paused = False
        self.call_onset: int | None = None  # set by the owner: where the call in progress began
        self._dtmf_cid = "dtmf" in line.callerid
        self.reset()

    # -- feeding ------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new stream (the PCM was reopened and counts from zero): nothing carries over."""
        rate = self.rate
        self.masker = DtmfMasker(rate, channels=self.channels) if self.mask else None
        self.dtmf = None if self.mask else DtmfDetector(rate)
        self.fsk = CallerIdDecoder(rate, self._fsk_standards) if self._fsk_standards else None
        self.cid_parser = DtmfCallerIdParser(rate) if self._dtmf_cid else None
        self.cas = CasDetector(rate) if self._fsk_standards else None
        self._cw_from = self._cw_until = 0  # frames where the FSK decoder listens for call waiting
        self.tones = ToneDetector(rate, self.line.tone_set)
        self._batch: list[np.ndarray] = []
        self._batch_start = 0
        self._batch_frames = 0
        self._ring: deque[tuple[int, np.ndarray]] = deque()  # (first frame, (n, channels) int16)
        self.pushed_to: int | None = None
        self.ready_to = 0
        self._hold_from: int | None = None

    def push(self, frames: np.ndarray, start_frame: int) -> Sequence[Event]:
        """One capture block or several consecutive ones, ``(n, channels)`` int16; returns the
        events of any batch analysed.

        This runs up to 50 times a second per line: it only files the audio (the work is in
        _analyze).
        """
        n = len(frames)
        end = start_frame + n
        events: Sequence[Event] = ()
        if self._batch_frames:
            if start_frame != self._batch_start + self._batch_frames:
                events = self._analyze()  # blocks were dropped: a batch is contiguous audio
                self._batch_start = start_frame
        else:
            self._batch_start = start_frame
        if not self.mask:
            self._ring.append((start_frame, frames))  # raw audio is final at once
            self.ready_to = end
        self._batch.append(frames)
        self._batch_frames += n
        self.pushed_to = end
        if self._batch_frames >= self.batch_frames:
            events = [*events, *self._analyze()]
        return events

    def drain(self) -> list[Event]:
        """Analyse what is pending and flush the DTMF detection/masking: all pushed audio is then
        ready and every digit in it reported. Detection goes on with the next block."""
        events = self._analyze()
        if self.masker is not None:
            out, out_start, digits = self.masker.flush()
            self._keep(out, out_start)
        else:
            assert self.dtmf is not None
            digits = self.dtmf.flush()
        events += self._digits(digits)
        if self.pushed_to is not None:
            self.ready_to = self.pushed_to
        return events

    def follows(self, start_frame: int) -> bool:
        """A push at ``start_frame`` continues the pending batch (or there is none): it analyses
        nothing unless it completes the batch."""
        return not self._batch_frames or start_frame == self._batch_start + self._batch_frames

    @property
    def frames_to_batch(self) -> int:
        """Frames still to push before the pending batch is analysed: the push that reaches this
        many analyses it (a push of a longer piece would analyse a longer batch)."""
        return self.batch_frames - self._batch_frames

    # -- what may be written -------------------------------------------------------------------
    @property
    def released_to(self) -> int:
        """Frames before this may be written now (see the module docstring)."""
        ready = self.ready_to
        hold = self._hold_from
        if hold is not None and self.pushed_to is not None and self.pushed_to - hold <= self.max_hold_frames:
            return min(ready, hold)
        return ready

    @property
    def tone_active(self) -> bool:
        """A dial, busy or reorder tone (or a SIT, up to 1.5 s after it) was confirmed and is still going on."""
        return bool(self.tones.active_kinds & ENDING_TONES)

    def audio(self, a: int, b: int) -> np.ndarray:
        """The stored-form audio of frames ``[a, b)`` still kept (gaps in the stream are skipped)."""
        parts: list[np.ndarray] = []
        for start, x in reversed(self._ring):
            end = start + len(x)
            if end <= a:
                break
            if start < b:
                parts.append(x[max(0, a - start): min(len(x), b - start)])
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.zeros((0, self.channels), dtype=np.int16)
        return np.concatenate(parts[::-1])

    # -- internals ----------------------------------------------------------------------------
    def _keep(self, x: np.ndarray, start: int) -> None:
        """Masked audio released by the masker."""
        if len(x):
            self._ring.append((start, x.reshape(len(x), self.channels)))
            self.ready_to = start + len(x)

    def _trim(self) -> None:
        horizon = (self.pushed_to or 0) - self.keep_frames
        ring = self._ring
        while ring and ring[0][0] + len(ring[0][1]) < horizon:
            ring.popleft()

    def _analyze(self) -> list[Event]:
        if not self._batch:
            return []
        x = self._batch[0] if len(self._batch) == 1 else np.concatenate(self._batch)
        start = self._batch_start
        self._batch = []
        self._batch_frames = 0
        self._trim()
        if self.channels == 1:
            mono = x[:, 0]
        else:
            # Caller ID and tones come from the line, whichever channel carries it: the mix.
            mono = x.astype(np.int32).sum(axis=1) // self.channels
        if self.masker is not None:
            out, out_start, digits = self.masker.process(mono if self.channels == 1 else x, start)
            self._keep(out, out_start)
        else:
            assert self.dtmf is not None
            digits = self.dtmf.feed(mono, start)
        events: list[Event] = []
        events += self._digits(digits)
        if self.fsk is not None and not self.callerid_paused:
            if self._cw_until and self.call_onset is None:
                # the call ended while listening for call waiting: finish that first
                events += self._call_waiting(mono[:0], start, stop=True)
            if self.call_onset is not None:
                events += self._early_call_waiting(mono, start)
            else:
                events += self.fsk.feed(mono, start)
        elif self.fsk is not None:
            events += self._call_waiting(mono, start)
        events += self.tones.feed(mono, start)
        self._hold_from = self.tones.pending_start(ENDING_TONES) if self.hold_for_tones else None
        return events

    def _call_waiting(self, mono: np.ndarray, start: int, *, stop: bool = False) -> list[Event]:
        """While caller ID rests: listen for a CAS, and after one let the FSK decoder hear the
        next ``CW_LISTEN_S``; call set-up messages heard there are call waiting."""
        assert self.fsk is not None and self.cas is not None
        end = start + len(mono)
        ends = self.cas.feed(mono, start) if len(mono) else []
        if ends:
            self._cw_from, self._cw_until = ends[0], ends[-1] + int(CW_LISTEN_S * self.rate)
        found: list[CallerId] = []
        a, b = max(start, self._cw_from), min(end, self._cw_until)
        if a < b:
            found += self.fsk.feed(mono[a - start : b - start], a)
        if self._cw_until and (stop or end >= self._cw_until):
            found += self.fsk.flush()
            self._cw_from = self._cw_until = 0
        return [replace(c, kind="waiting") if c.kind == "call" else c for c in found]

    def _early_call_waiting(self, mono: np.ndarray, start: int) -> list[Event]:
        """A call's first seconds (caller ID not paused): the FSK decoder hears everything, the
        alert detector runs too, and a call set-up starting after an alert well into the call is
        call waiting (see the module docstring)."""
        assert self.fsk is not None and self.cas is not None and self.call_onset is not None
        for end in self.cas.feed(mono, start):
            if end - self.call_onset >= CW_MIN_INTO_CALL_S * self.rate:
                self._cw_from, self._cw_until = end, end + int(CW_LISTEN_S * self.rate)
        found = self.fsk.feed(mono, start)
        return [replace(c, kind="waiting") if c.kind == "call" and self._cw_from <= c.start_frame < self._cw_until
                else c for c in found]

    def _digits(self, digits: list[DtmfDigit]) -> list[Event]:
        events: list[Event] = list(digits)
        if self.cid_parser is not None and digits:
            events += self.cid_parser.feed_digits(digits)
        return events
