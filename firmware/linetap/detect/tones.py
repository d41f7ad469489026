"""Call-progress tone detection (dial, busy, reorder/congestion, ringback) with cadence checking.

A tone is reported once, when its frequencies *and* its cadence have been confirmed, and again only
after it stopped and started again. Tone plans per ``tone_set``:

* ``"us"`` — North American precise tones (ANSI T1.401 / Telcordia LSSGR): dial 350+440 Hz
  continuous; busy 480+620 Hz 0.5 s on / 0.5 s off; reorder 480+620 Hz 0.25/0.25; ringback
  440+480 Hz 2 s on / 4 s off.
* ``"uk"`` — BT (SIN 350): dial 350+440 Hz continuous; busy 400 Hz 0.375/0.375; congestion 400 Hz
  0.4 on 0.35 off 0.225 on 0.525 off; ringback 400+450 Hz 0.4 on 0.2 off 0.4 on 2.0 off.
* ``"eu"`` — CEPT/ETSI common tones (ETSI TR 101 041, ITU-T E.180 Suppl. 2): dial 425 Hz continuous;
  busy 425 Hz 0.5/0.5; congestion 425 Hz 0.25/0.25 (0.2/0.2 variants are accepted); ringback 425 Hz
  1 s on / 4 s off.

The kind vocabulary is the same for every tone set: ``"dial"``, ``"busy"``, ``"reorder"`` (called
*congestion* in the UK and in CEPT documents) and ``"ringback"``.

How it works: the audio is cut into 40 ms rectangular-window frames every 20 ms; one matrix product
per call gives, for every frame, the DFT at the tone set's frequencies and on the orthogonal bin
grid (25 Hz) around them. A frame is "on" for a frequency signature (e.g. 480+620 Hz) when the
signature's band (its frequencies +-3 % +-50 Hz) holds >= 80 % of the frame's DC-free energy,
every component is above -50 dBFS and, for a dual tone, each holds >= 12 % of the pair (a single
tone must hold >= 70 % of its band: UK busy 400 Hz vs ringback 400+450 Hz). Changes of state must
last two frames; only they are handled in Python. Each edge is placed from the frame that caught
it part-way (with a rectangular window its amplitude is proportional to the covered share), so
run lengths are accurate to ~5 ms and matched against each kind's cadence with a tolerance of
20 % (at least 70 ms). Busy and reorder are confirmed after two cycles, ringback after one cycle
(at the start of the next "on"), continuous dial tone after 1 s (1.5 s in the EU set, where
ringback's "on" is 1 s of the same 425 Hz).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "TONE_PLANS", "TONE_SETS", "ToneDetector", "ToneEvent", "ToneSpec"]

TONE_SETS = ("us", "uk", "eu")
KINDS = ("dial", "busy", "reorder", "ringback")


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """One call-progress tone: its frequencies and its cadence (on, off, on, off, ... seconds).

    An empty cadence means a continuous tone. ``alt_cadences`` lists tolerated national variants.
    """

    freqs_hz: tuple[float, ...]
    cadence_s: tuple[float, ...]
    alt_cadences: tuple[tuple[float, ...], ...] = ()


TONE_PLANS: dict[str, dict[str, ToneSpec]] = {
    "us": {
        "dial": ToneSpec((350.0, 440.0), ()),
        "busy": ToneSpec((480.0, 620.0), (0.5, 0.5)),
        "reorder": ToneSpec((480.0, 620.0), (0.25, 0.25)),
        "ringback": ToneSpec((440.0, 480.0), (2.0, 4.0)),
    },
    "uk": {
        "dial": ToneSpec((350.0, 440.0), ()),
        "busy": ToneSpec((400.0,), (0.375, 0.375)),
        "reorder": ToneSpec((400.0,), (0.4, 0.35, 0.225, 0.525)),
        "ringback": ToneSpec((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
    },
    "eu": {
        "dial": ToneSpec((425.0,), ()),
        "busy": ToneSpec((425.0,), (0.5, 0.5)),
        "reorder": ToneSpec((425.0,), (0.25, 0.25), alt_cadences=((0.2, 0.2),)),
        "ringback": ToneSpec((425.0,), (1.0, 4.0)),
    },
}


@dataclass(frozen=True, slots=True)
class ToneEvent:
    """A call-progress tone whose cadence was confirmed.

    ``start_frame`` is the sample index where the confirmed tone pattern began, ``confirmed_frame``
    the sample index at which the cadence was confirmed (both in the line's stream).
    """

    kind: str
    start_frame: int
    confirmed_frame: int


# Detection parameters. Levels are dBFS where a full-scale sine is 0 dBFS.
_FRAME_S = 0.040
_MIN_LEVEL_DBFS = -50.0  # weakest tone component accepted
_PURITY = 0.80  # share of the frame's (DC-free) energy in the signature's band
_SINGLE_SHARE = 0.70  # a single tone holds >= 70 % of its band's energy
_MIN_COMPONENT_SHARE = 0.12  # each component of a dual tone holds >= 12 % of the pair (~8.5 dB twist)
_REL_TOL = 0.20
_ABS_TOL_S = 0.070
_CONTINUOUS_MIN_S = 1.0
_CONTINUOUS_GAP_S = 0.2  # a continuous tone off for this long has stopped
_DEBOUNCE_FRAMES = 2  # a change of state must hold for 2 frames (40 ms) to count
_CADENCE_CYCLES = {"busy": 2, "reorder": 2, "ringback": 1}
_HISTORY = 12  # segments kept per signature


def _ratio(power: float, ref: float) -> float:
    return min(1.0, math.sqrt(power / ref)) if ref > 0 else 1.0


def _tol(want_s: float) -> float:
    return max(_REL_TOL * want_s, _ABS_TOL_S)


def _cadence_matches(durations: list[float], pattern: tuple[float, ...], first_is_on: bool) -> bool:
    """Whether consecutive on/off durations fit the cyclic pattern at some phase."""
    n = len(pattern)
    for phase in range(n):
        if (phase % 2 == 0) != first_is_on:  # even pattern positions are "on"
            continue
        if all(abs(d - pattern[(phase + i) % n]) <= _tol(pattern[(phase + i) % n]) for i, d in enumerate(durations)):
            return True
    return False


class _Signature:
    """On/off history of one frequency signature and the cadence state of its kinds."""

    __slots__ = ("freqs", "bins", "kinds", "recent", "on", "pending", "pending_pos", "pending_count", "segments",
                 "seg_start", "active", "continuous_confirm_s")

    def __init__(self, freqs: tuple[float, ...], bins: list[int], kinds: list[str]) -> None:
        self.freqs = freqs
        self.bins = bins
        self.kinds = kinds
        self.recent: deque[tuple[int, float]] = deque(maxlen=6)  # (frame start, tone power)
        self.on = False  # debounced state
        self.pending: bool | None = None  # raw state waiting to be confirmed
        self.pending_pos = 0
        self.pending_count = 0
        self.segments: list[tuple[bool, float, int]] = []  # completed (on, duration_s, start), oldest first
        self.seg_start: int | None = None  # start of the current segment (None before the first "on")
        self.active: dict[str, bool] = {k: False for k in kinds}
        self.continuous_confirm_s = _CONTINUOUS_MIN_S


class ToneDetector:
    """Streaming call-progress tone detector for one line.

    ``feed`` takes a mono block (int16, or float with full scale 1.0) of any length together with
    the absolute sample index of its first sample, and returns the tones confirmed in this call.
    A gap in the sample index restarts the cadence tracking.
    """

    def __init__(self, rate: int, tone_set: str) -> None:
        if tone_set not in TONE_PLANS:
            raise ValueError(f"tone_set must be one of {', '.join(TONE_SETS)}, not {tone_set!r}")
        if rate < 4000:
            raise ValueError(f"rate must be at least 4000 Hz, not {rate}")
        self.rate = int(rate)
        self.tone_set = tone_set
        self._plan = TONE_PLANS[tone_set]
        hop = int(round(rate * _FRAME_S / 2))
        n = 2 * hop
        self._hop = hop
        self._n = n
        freqs = sorted({f for spec in self._plan.values() for f in spec.freqs_hz})
        index = {f: i for i, f in enumerate(freqs)}
        by_freqs: dict[tuple[float, ...], list[str]] = {}
        for kind, spec in self._plan.items():
            by_freqs.setdefault(spec.freqs_hz, []).append(kind)
        self._sigs = [_Signature(f, [index[x] for x in f], k) for f, k in by_freqs.items()]
        for sig in self._sigs:
            # A continuous tone must outlast every "on" of a cadenced tone with the same frequencies
            # (EU ringback is 1 s of the same 425 Hz as dial tone).
            longest_on = max((max(self._plan[k].cadence_s[0::2]) for k in sig.kinds if self._plan[k].cadence_s),
                             default=0.0)
            sig.continuous_confirm_s = max(_CONTINUOUS_MIN_S, 1.5 * longest_on)
        # Rectangular-window DFT of each 2-hop frame as the sum of two half-frame projections, at
        # the tone frequencies and on the orthogonal bin grid (rate / n) around them. The grid bins
        # measure each signature's band energy (Parseval), which does not depend on exactly where
        # in the band two close tones (440 + 480 Hz) fall; the exact bins tell the components apart.
        step = rate / n
        lo = min(freqs) * (1 - 0.03) - 2 * step
        hi = max(freqs) * (1 + 0.03) + 2 * step
        grid = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
        allf = np.concatenate((np.array(freqs), grid))
        t = np.arange(n)
        ang = 2 * math.pi * allf[None, :] / rate * t[:, None]
        amp = math.sqrt(2.0) / n
        basis = np.hstack((amp * np.cos(ang), -amp * np.sin(ang), np.full((n, 1), 1.0 / n)))
        self._k = len(freqs)
        self._nf = len(allf)
        self._ncol = basis.shape[1]
        band = np.zeros((len(grid), len(self._sigs)))
        for j, sig in enumerate(self._sigs):
            f_lo = min(sig.freqs) * (1 - 0.03) - 2 * step
            f_hi = max(sig.freqs) * (1 + 0.03) + 2 * step
            band[(grid >= f_lo) & (grid <= f_hi), j] = 1.0
        self._band = band
        self._sig_sum = np.zeros((self._k, len(self._sigs)))
        for j, sig in enumerate(self._sigs):
            self._sig_sum[sig.bins, j] = 1.0
        self._first = np.array([sig.bins[0] for sig in self._sigs])
        self._second = np.array([sig.bins[-1] for sig in self._sigs])
        dual = np.array([len(sig.bins) > 1 for sig in self._sigs])
        self._share = np.where(dual, _MIN_COMPONENT_SHARE, 0.0)
        self._single = np.where(dual, 0.0, _SINGLE_SHARE)
        split = np.hstack((basis[:hop], basis[hop:]))
        self._bases = {True: split / 32768.0, False: split}
        self._escale = {True: 1.0 / (n * 32768.0**2), False: 1.0 / n}
        self._min_power = 0.5 * 10 ** (_MIN_LEVEL_DBFS / 10)
        self._quiet_peak = 0.9 * 10 ** (_MIN_LEVEL_DBFS / 20)
        self._buf = np.zeros(0)
        self._buf_start: int | None = None
        self._int_units = True

    # -- public -------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray, start_frame: int) -> list[ToneEvent]:
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError("samples must be a mono (1-D) block")
        is_int = x.dtype.kind in "iu"
        if self._buf_start is None or start_frame != self._buf_start + len(self._buf):
            self._restart(start_frame, is_int)
        if is_int != self._int_units:
            x = x * (32768.0 if self._int_units else 1.0 / 32768.0)
        if len(x) == 0:
            return []
        buf = np.concatenate((self._buf, x))
        hop = self._hop
        m = len(buf) // hop
        if m < 2:
            self._buf = buf
            return []
        keep = (m - 1) * hop
        pos0 = self._buf_start
        assert pos0 is not None
        self._buf = buf[keep:]
        self._buf_start = pos0 + keep
        scale = 32768.0 if self._int_units else 1.0
        idle = not any(sig.on or sig.pending is not None for sig in self._sigs)
        if idle and self._quiet_peak * scale > max(float(x.max()), -float(x.min())):
            on = pw = None  # quiet: every signature is off in every frame
            nf = m - 1
        else:
            rows = buf[: m * hop].reshape(m, hop)
            proj = rows @ self._bases[self._int_units]
            s = proj[:-1, : self._ncol] + proj[1:, self._ncol :]
            e = np.einsum("ij,ij->i", rows, rows) * self._escale[self._int_units]
            dc = s[:, -1]
            total = e[:-1] + e[1:] - dc * dc
            nfq = self._nf
            p = s[:, :nfq] ** 2 + s[:, nfq : 2 * nfq] ** 2
            nf = len(total)
            res = self._classify(p, total)
            on, pw = res if res is not None else (None, None)
        events: list[ToneEvent] = []
        for j, sig in enumerate(self._sigs):
            col = None if on is None else on[:, j]
            if col is not None and pw is not None and sig.on and sig.pending is None and col.all():
                # Steady "on": nothing to track; remember the level for placing the coming edge.
                k0 = max(0, nf - sig.recent.maxlen)  # type: ignore[operator]
                sig.recent.extend((pos0 + i * hop, float(pw[i, j])) for i in range(k0, nf))
                self._check_running(sig, pos0 + nf * hop, events)
                continue
            if (col is None or not col.any()) and not sig.on and sig.pending is None:
                self._check_running(sig, pos0 + nf * hop, events)  # steady "off"
                continue
            self._track(sig, col, None if pw is None else pw[:, j], pos0, nf, events)
            self._check_running(sig, pos0 + nf * hop, events)
        return events

    @property
    def active_kinds(self) -> set[str]:
        """Kinds confirmed and still going on (as of the audio fed so far)."""
        return {k for sig in self._sigs for k, on in sig.active.items() if on}

    def pending_start(self, kinds: Collection[str]) -> int | None:
        """Start of the earliest tone of ``kinds`` that is in progress but not yet confirmed.

        A tone is in progress while the on/off segments since one of its "on"s fit a prefix of its
        cadence (a continuous tone: while it is on). The recorder holds back the audio from here
        on, so that when the tone is confirmed the recording can end where the tone began. None
        when nothing that could become one of ``kinds`` is going on.
        """
        best: int | None = None
        now = self._buf_start
        if now is None:
            return None
        for sig in self._sigs:
            wanted = [k for k in sig.kinds if k in kinds]
            if not wanted or any(sig.active.values()):
                continue
            start = self._pending_in(sig, wanted, now)
            if start is not None and (best is None or start < best):
                best = start
        return best

    def _pending_in(self, sig: _Signature, kinds: list[str], now: int) -> int | None:
        # A rise still waiting for its debounce may be the start of one.
        earliest: int | None = sig.pending_pos if sig.pending and not sig.on else None
        if sig.seg_start is None:
            return earliest
        run_s = (now - sig.seg_start) / self.rate
        segs = sig.segments
        for kind in kinds:
            spec = self._plan[kind]
            if not spec.cadence_s:
                if sig.on:
                    earliest = sig.seg_start if earliest is None else min(earliest, sig.seg_start)
                continue
            for pat in (spec.cadence_s, *spec.alt_cadences):
                same = pat[0::2] if sig.on else pat[1::2]
                if run_s > max(same) + _tol(max(same)):
                    continue  # the running segment is already too long for this cadence
                for i, (on, _d, st) in enumerate(segs):
                    if on and _cadence_matches([d for _on, d, _st in segs[i:]], pat, True):
                        earliest = st if earliest is None else min(earliest, st)
                        break
                else:
                    if sig.on:  # the running "on" may be the first of the cadence
                        earliest = sig.seg_start if earliest is None else min(earliest, sig.seg_start)
        return earliest

    # -- internals ----------------------------------------------------------------------------
    def _restart(self, start_frame: int, is_int: bool) -> None:
        """Start a new contiguous stream (first call or a gap in the sample index)."""
        for sig in self._sigs:
            sig.on = False
            sig.pending = None
            sig.segments.clear()
            sig.seg_start = None
            for k in sig.kinds:
                sig.active[k] = False
        self._buf = np.zeros(0)
        self._buf_start = start_frame
        self._int_units = is_int

    def _classify(self, p_all: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per frame and signature: is it on? Also the signatures' component powers (F, S)."""
        p = p_all[:, : self._k]
        first = p[:, self._first]
        low = np.minimum(first, p[:, self._second])  # weakest component of each signature
        if not (low >= self._min_power).any():
            return None
        ref = total[:, None]
        pair = p @ self._sig_sum
        band = p_all[:, self._k :] @ self._band  # energy in each signature's band
        on = (band >= _PURITY * ref) & (low >= np.maximum(self._min_power, self._share * pair))
        on &= pair >= self._single * band  # a single tone is alone in its band (UK 400 vs 400 + 450)
        return on, pair

    def _track(
        self, sig: _Signature, col: np.ndarray | None, pw: np.ndarray | None, pos0: int, nf: int,
        events: list[ToneEvent],
    ) -> None:
        """Debounce the raw per-frame states and hand committed changes to the cadence logic."""
        hop = self._hop
        for i in range(nf):
            pos = pos0 + i * hop
            sig.recent.append((pos, 0.0 if pw is None else float(pw[i])))
            raw = bool(col[i]) if col is not None else False
            if raw == sig.on:
                sig.pending = None
                continue
            if sig.pending is None:
                sig.pending, sig.pending_count, sig.pending_pos = raw, 0, pos
            sig.pending_count += 1
            if sig.pending_count >= _DEBOUNCE_FRAMES:
                self._commit(sig, raw, self._edge(sig, raw, sig.pending_pos), events)
                sig.pending = None

    def _edge(self, sig: _Signature, rising: bool, first_pos: int) -> int:
        """Where the tone started (rising) or stopped, from frames that caught the edge part-way.

        With a rectangular window the amplitude is proportional to the share of the frame the tone
        covers, so a frame at ``pos`` with amplitude ratio c puts the edge at ``pos + (1 - c) n``
        (start) or ``pos + c n`` (end).
        """
        n = self._n
        frames = list(sig.recent)
        if rising:
            after = [p for q, p in frames if q >= first_pos]
            ref = max(after, default=0.0)
            first = [p for q, p in frames if q == first_pos]
            return int(round(first_pos + (1 - _ratio(first[0], ref)) * n)) if first else first_pos
        before = [p for q, p in frames if q < first_pos - self._hop]
        ref = max(before, default=0.0)
        cands = [pos + _ratio(p, ref) * n for pos, p in frames if first_pos - self._hop <= pos <= first_pos]
        return int(round(max(cands))) if cands else first_pos

    def _commit(self, sig: _Signature, now_on: bool, pos: int, events: list[ToneEvent]) -> None:
        if sig.seg_start is not None:
            sig.segments.append((sig.on, (pos - sig.seg_start) / self.rate, sig.seg_start))
            del sig.segments[:-_HISTORY]
        sig.on = now_on
        if sig.seg_start is None and not now_on:
            return
        sig.seg_start = pos
        self._evaluate(sig, pos, events)

    def _check_running(self, sig: _Signature, now: int, events: list[ToneEvent]) -> None:
        """Time-based checks between transitions: continuous tones, and tones that stopped."""
        if sig.seg_start is None:
            return
        run_s = (now - sig.seg_start) / self.rate
        for kind in sig.kinds:
            spec = self._plan[kind]
            if not spec.cadence_s:
                if sig.on and not sig.active[kind] and run_s >= sig.continuous_confirm_s:
                    sig.active[kind] = True
                    confirmed = sig.seg_start + int(sig.continuous_confirm_s * self.rate)
                    events.append(ToneEvent(kind, sig.seg_start, confirmed))
                elif sig.active[kind] and not sig.on and run_s >= _CONTINUOUS_GAP_S:
                    sig.active[kind] = False
            elif sig.active[kind]:
                durations = spec.cadence_s[0::2] if sig.on else spec.cadence_s[1::2]
                longest = max(durations)
                if run_s > longest + _tol(longest):
                    sig.active[kind] = False  # held on or off too long: the cadence stopped

    def _evaluate(self, sig: _Signature, pos: int, events: list[ToneEvent]) -> None:
        """At each committed change: continue, end or confirm each cadenced kind."""
        done = sig.segments
        for kind in sig.kinds:
            spec = self._plan[kind]
            if not spec.cadence_s:
                if sig.active[kind] and done and done[-1][0] and done[-1][1] < sig.continuous_confirm_s:
                    sig.active[kind] = False
                continue
            patterns = (spec.cadence_s, *spec.alt_cadences)
            if sig.active[kind]:
                tail = done[-len(spec.cadence_s):]
                if tail and not any(_cadence_matches([s[1] for s in tail], pat, tail[0][0]) for pat in patterns):
                    sig.active[kind] = False
                continue
            need = max(2, len(spec.cadence_s) * _CADENCE_CYCLES[kind])
            # Confirm at the start of an "on", over completed segments that begin with an "on".
            if not sig.on or len(done) < need:
                continue
            tail = done[-need:]
            if not tail[0][0]:
                continue
            if any(_cadence_matches([s[1] for s in tail], pat, True) for pat in patterns):
                sig.active[kind] = True
                events.append(ToneEvent(kind, tail[0][2], pos))
