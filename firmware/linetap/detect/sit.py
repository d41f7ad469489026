"""Special information tones (SIT): three tones in a row before an announcement that a call failed.

Two families are in use:

* **ITU-T Q.35 / E.180** (every plan but Australia's, North America's too): 950, 1400 and 1800 Hz (+-50 Hz), each
  330 +- 70 ms, gaps of up to 30 ms, then 1 s of silence; Austria 950/1450/1850 Hz. One meaning.
* **North America** (Telcordia/Bellcore encoded SIT, the table in :data:`NA_SIT_CODES`): the first
  tone is 913.8 Hz ("low") or 985.2 Hz ("high"), the second 1370.6 or 1428.5 Hz, the third always
  1776.7 Hz; the first two are 274 ms ("short") or 380 ms ("long"), the third 380 ms, with no gaps.
  The frequency and duration of the first two carry the code: intercept (IC), vacant code (VC),
  reorder (RO), no circuit (NC), ineffective other (IO).

**How, and why it costs almost nothing.** The call-progress tone detector's per-frame DFT covers
only the plan's own frequencies (350-620 Hz for North America): stretching it to 1850 Hz would
multiply its bins by about eight. Instead a gate says, per 40 ms frame, whether the frame is one
steady tone between the SIT's lowest and highest frequency, from three autocorrelation lags (a pure
tone is predicted exactly by ``x[n] = 2 cos(w) x[n-1] - x[n-2]``; :data:`_GATE_RESIDUAL` is the
largest prediction residual, as a share of the frame's energy, that passes: a tone at 15 dB SNR
leaves 0.08-0.16, speech 0.9 in the median and below 0.3 in about 1 % of its frames). That is two
products per sample on top of the energy the tone detector computes anyway. Only a run of gated
frames is kept (its samples), and only when it ends is its frequency measured, by an FFT of the
whole run (250-380 ms: a few Hz of resolution), and its duration taken from the frames.

**Recognition.** Three consecutive runs (gaps under :data:`_MAX_GAP_S`) are compared with each SIT
code of the plan. With the sample clock up to 1.5 % off, North America's two "low"/"high" second
tones (1370.6 and 1428.5 Hz) are only 16 Hz apart at the extremes, so they are told apart by their
ratio to the third tone (always 1776.7 Hz), which the clock error does not change (0.7714 vs 0.8040;
the first tones 0.5143 vs 0.5545). Q.35 tones are checked against their published frequency with
the standard's +-50 Hz and the clock error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NA_SIT_CODES", "Q35_SEGMENTS", "SitCode", "SitTracker", "sit_codes_for"]


@dataclass(frozen=True, slots=True)
class SitCode:
    """One SIT: its three (Hz, seconds) segments; ``relative``: told apart by frequency ratios."""

    name: str | None  # the variant reported (None for the one-meaning Q.35 SIT)
    meaning: str
    segments: tuple[tuple[float, float], ...]
    relative: bool


_LO1, _HI1, _LO2, _HI2, _F3 = 913.8, 985.2, 1370.6, 1428.5, 1776.7
_S, _L = 0.274, 0.380

# Telcordia (Bellcore) SIT encoding, as tabulated by the US operators' announcement-equipment
# manuals and by IBM's Blueworx tone tables (SIT1 RO', SIT2 VC, SIT3 NC', SIT4 IC).
NA_SIT_CODES: tuple[SitCode, ...] = (
    SitCode("IC", "intercept (number changed or not in service)", ((_LO1, _S), (_LO2, _S), (_F3, _L)), True),
    SitCode("VC", "vacant code (unassigned number)", ((_HI1, _L), (_LO2, _S), (_F3, _L)), True),
    SitCode("RO'", "reorder, intra-LATA (system busy)", ((_LO1, _S), (_HI2, _L), (_F3, _L)), True),
    SitCode("RO''", "reorder, inter-LATA (system busy)", ((_HI1, _S), (_LO2, _L), (_F3, _L)), True),
    SitCode("NC'", "no circuit, intra-LATA", ((_HI1, _L), (_HI2, _L), (_F3, _L)), True),
    SitCode("NC''", "no circuit, inter-LATA", ((_LO1, _L), (_LO2, _L), (_F3, _L)), True),
    SitCode("IO", "ineffective other", ((_LO1, _L), (_HI2, _S), (_F3, _L)), True),
    SitCode("reserved", "reserved for future use", ((_HI1, _S), (_HI2, _S), (_F3, _L)), True),
)

Q35_SEGMENTS = ((950.0, 0.33), (1400.0, 0.33), (1800.0, 0.33))

# Tolerances. Durations are measured from 20 ms-spaced frames, so +-40 ms of slack on top of the
# standard's: Q.35 says 330 +- 70 ms; North America's short and long (274/380 ms) are 106 ms apart.
_Q35_F_TOL_HZ = 50.0  # Q.35: +-50 Hz
_Q35_D_TOL_S = 0.070 + 0.040
_NA_RATIO_TOL = 0.013  # the two NA variants' ratios to the third tone are 4.1 % (2nd) and 7.5 % (1st) apart
_NA_D_TOL_S = 0.050
_CLOCK_TOL = 0.02  # the line's sample clock: 1.5 % and a margin
_MAX_GAP_S = 0.10  # Q.35 allows 30 ms between the tones, NA none; the frames around an edge add ~40 ms
_GATE_RESIDUAL = 0.30  # see the module docstring
_MIN_RUN_S = 0.15  # shorter runs are not SIT tones (the shortest is 274 - 70 ms)
_MAX_RUN_S = 0.60  # longer steady tones are something else (a 1400 Hz recorder warning tone is 0.5 s)
_ACTIVE_S = 1.5  # a SIT is "going on" this long after its last tone (Q.35 repeats after 1 s of silence)


def sit_codes_for(segments_q35: tuple[tuple[float, float], ...] | None, north_american: bool) -> tuple[SitCode, ...]:
    """The SIT codes a plan's detector looks for, most specific first.

    North America's plan looks for its encoded SITs and then for the Q.35 SIT (which PBXs there
    send: Asterisk's ``[us]`` zone plays 950/1400/1800 Hz); its codes are matched first because
    they also lie within the Q.35 tolerances."""
    q35 = () if segments_q35 is None else (SitCode(None, "special information tone (ITU-T Q.35)", segments_q35, False),)
    if north_american:
        return NA_SIT_CODES + (SitCode(None, "special information tone (ITU-T Q.35)", Q35_SEGMENTS, False),)
    return q35


@dataclass(slots=True)
class _Run:
    start: int  # sample index of the first gated frame
    end: int  # end of the last gated frame
    parts: list[np.ndarray]
    f_est: list[float]
    f_sum: float = 0.0
    too_long: bool = False


class SitTracker:
    """Gated SIT recognition on the tone detector's frames (see the module docstring)."""

    def __init__(self, rate: int, hop: int, codes: tuple[SitCode, ...]) -> None:
        self.rate = rate
        self.hop = hop
        self.codes = codes
        freqs = [f for c in codes for f, _d in c.segments]
        self.f_lo = min(freqs) * (1 - _CLOCK_TOL) - 60.0
        self.f_hi = max(freqs) * (1 + _CLOCK_TOL) + 60.0
        self._run: _Run | None = None
        self._segs: list[tuple[int, int, float]] = []  # completed runs: (start, end, Hz), newest last
        self._last_sit_end: int | None = None
        self._max_samples = int(_MAX_RUN_S * rate)
        self._c_lo = math.cos(2 * math.pi * self.f_lo / rate)
        self._c_hi = math.cos(2 * math.pi * min(self.f_hi, 0.49 * rate) / rate)
        self._min_frames = max(1, int(_MIN_RUN_S * rate / hop) - 2)  # a run of k frames spans (k + 1) hops

    @property
    def busy(self) -> bool:
        """A run is open (the next frames are needed even if they look quiet)."""
        return self._run is not None

    def active(self, now: int) -> bool:
        return self._last_sit_end is not None and now - self._last_sit_end < _ACTIVE_S * self.rate

    def reset(self) -> None:
        self._run = None
        self._segs.clear()
        self._last_sit_end = None

    def gate(self, buf: np.ndarray, m: int, r0: np.ndarray, dc: np.ndarray, escale: float,
             min_power: float) -> tuple[np.ndarray, np.ndarray]:
        """Per frame (``m - 1`` frames of ``2 hop`` samples over ``buf``): steady single tone in the
        SIT band? And the lag-1 autocorrelation over the energy (cos w for a pure tone). ``r0`` is
        each frame's DC-free mean square (mean square - dc^2, as the tone detector has it)."""
        hop = self.hop
        k = (m - 1) * hop
        # Lag products per half-frame on contiguous views of the audio (no copies); the last
        # half-frame's from its own samples (the 1 or 2 pairs past its end made up for by scaling).
        # Lag 1 first: a frame can be a SIT tone only if its lag-1 correlation puts its frequency
        # in the SIT band and it is loud enough; speech rarely is in a whole batch's frames, and
        # then the lag-2 products and the residual test are not computed (about half the gate's
        # cost: each numpy call on these 50-frame arrays costs ~1 us, the products ~6 us a lag).
        x0, last = buf[:k].reshape(m - 1, hop), buf[k : k + hop]
        h1 = np.empty(m)
        h1[:-1] = np.einsum("ij,ij->i", x0, buf[1 : k + 1].reshape(m - 1, hop))
        h1[-1] = float(last[1:] @ last[:-1]) * hop / (hop - 1)
        h1 *= escale
        dc2 = dc * dc
        r1 = h1[:-1] + h1[1:] - dc2
        g = (r1 <= self._c_lo * r0) & (r1 >= self._c_hi * r0) & (r0 >= min_power)
        if not np.count_nonzero(g):
            return g, r1
        if not self._runs(np.flatnonzero(g).tolist(), m - 1):
            # No run of these frames is one :meth:`frames` would look at, and the lag-2 test only
            # removes frames (shorter runs, none new): it would look at none either.
            g[:] = False
            return g, r1
        h2 = np.empty(m)
        h2[:-1] = np.einsum("ij,ij->i", x0, buf[2 : k + 2].reshape(m - 1, hop))
        h2[-1] = float(last[2:] @ last[:-2]) * hop / (hop - 2)
        h2 *= escale
        r2 = h2[:-1] + h2[1:] - dc2
        # residual / r0 = 2 - 4 c^2 + 2 r2 / r0 with c = r1 / r0, and the frequency range as a
        # range of c (cos w falls as w rises), without a division or arccos per frame.
        g &= (2.0 - _GATE_RESIDUAL) * r0 * r0 + 2.0 * r2 * r0 < 4.0 * r1 * r1
        return g, r1 / np.maximum(r0, 1e-30)

    def frames(self, rows: np.ndarray | None, g: np.ndarray | None, c: np.ndarray | None, pos0: int,
               nf: int) -> list[tuple[int, int, str | None]]:
        """Feed ``nf`` frames (frame i = rows i and i+1, at ``pos0 + i hop``; ``g`` and ``c`` from
        :meth:`gate`); SITs recognised:
        (start, confirmed, variant). Python looks only at runs of gated frames long enough to be a
        SIT tone, or touching the block's ends (speech passes the gate in short, scattered runs)."""
        found: list[tuple[int, int, str | None]] = []
        hop = self.hop
        idx: list[int] = np.flatnonzero(g[:nf]).tolist() if g is not None else []
        if not idx or idx[0] != 0:
            if self._run is not None:  # the open run ended with the last block
                found += self._close(rows[0] if rows is not None else None, pos0)
        if not idx:
            return found
        assert c is not None
        runs = self._runs(idx, nf)
        if not runs:
            return found
        kept = np.array([i for a, b in runs for i in range(a, b + 1)])
        fa = np.zeros(nf)
        fa[kept] = np.arccos(np.minimum(1.0, np.maximum(-1.0, c[kept]))) * (self.rate / (2 * math.pi))
        f: list[float] = fa.tolist()  # Python floats below: no numpy call per frame
        for a, b in runs:
            for i in range(a, b + 1):
                pos = pos0 + i * hop
                run = self._run
                if run is not None and abs(f[i] - run.f_sum / len(run.f_est)) > 0.06 * f[i]:
                    found += self._close(rows[i] if rows is not None else None, pos)  # the tone changed
                    run = None
                if run is None:
                    run = self._run = _Run(pos, pos + 2 * hop, [], [])
                run.end = pos + 2 * hop
                run.f_est.append(f[i])
                run.f_sum += f[i]
                if run.end - run.start > self._max_samples:
                    run.too_long = True
                    run.parts.clear()
                elif rows is not None:
                    run.parts.append(rows[i])
            if b < nf - 1 and self._run is not None:
                found += self._close(rows[b + 1] if rows is not None else None, pos0 + (b + 1) * hop)
        return found

    def _runs(self, idx: list[int], nf: int) -> list[tuple[int, int]]:
        """Runs ``(first, last)`` of consecutive gated frames ``idx`` (of ``nf``), without those too
        short to be a SIT tone and wholly inside the block. (A few dozen indices: plain Python is
        quicker than numpy.)"""
        runs: list[tuple[int, int]] = []
        if not idx:
            return runs
        a = b = idx[0]
        for i in idx[1:] + [nf + 1]:
            if i == b + 1:
                b = i
                continue
            if b - a + 1 >= self._min_frames or a == 0 or b >= nf - 1:
                runs.append((a, b))
            a = b = i
        return runs

    def pending_start(self, now: int) -> int | None:
        """Start of a SIT that may be in progress (a run open, or one or two tones just heard)."""
        gap = _MAX_GAP_S * self.rate
        run = self._run
        head = run.start if run is not None and not run.too_long else None
        ref = now if head is None else head
        start = head
        for seg_start, seg_end, _hz in reversed(self._segs[-2:]):
            if ref - seg_end > gap:
                break
            start = ref = seg_start
        return start

    # -- internals ----------------------------------------------------------------------------
    def _close(self, last_half: np.ndarray | None, pos: int) -> list[tuple[int, int, str | None]]:
        run = self._run
        self._run = None
        assert run is not None
        dur = (run.end - run.start) / self.rate
        if run.too_long:
            self._segs.clear()
            return []
        if dur < _MIN_RUN_S or not run.parts:
            return []  # a frame or two across the change from one tone to the next
        parts = run.parts + ([last_half] if last_half is not None else [])
        hz = self._frequency(np.concatenate(parts).astype(np.float64))
        gap = _MAX_GAP_S * self.rate
        if self._segs and run.start - self._segs[-1][1] > gap:
            self._segs.clear()
        self._segs.append((run.start, run.end, hz))
        del self._segs[:-3]
        if len(self._segs) < 3:
            return []
        variant = self._match(self._segs)
        if variant is False:
            return []
        start = self._segs[0][0]
        self._segs.clear()
        again = self._last_sit_end is not None and start - self._last_sit_end < _ACTIVE_S * self.rate
        self._last_sit_end = run.end
        return [] if again else [(start, pos + self.hop, variant)]  # type: ignore[list-item]

    def _frequency(self, x: np.ndarray) -> float:
        """The run's frequency: the peak of a Hann-windowed, zero-padded FFT, parabolically interpolated."""
        hop = self.hop
        if len(x) > 4 * hop:
            x = x[hop:-hop]  # the frames at either end may hold a part of the neighbouring tone
        x = x - x.mean()
        nfft = 1 << max(12, int(math.ceil(math.log2(len(x) * 4))))
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
        df = self.rate / nfft
        a, b = int(self.f_lo / df), min(len(spec) - 2, int(self.f_hi / df) + 1)
        k = a + int(np.argmax(spec[a:b]))
        y0, y1, y2 = np.log(spec[k - 1 : k + 2] + 1e-12)
        den = y0 - 2 * y1 + y2
        delta = 0.5 * (y0 - y2) / den if den < 0 else 0.0
        return (k + delta) * df

    def _match(self, segs: list[tuple[int, int, float]]) -> str | None | bool:
        """The variant of the SIT code these three tones are, or False."""
        rate = self.rate
        durs = [(e - s) / rate for s, e, _f in segs]
        hz = [f for _s, _e, f in segs]
        for code in self.codes:
            want_f = [f for f, _d in code.segments]
            want_d = [d for _f, d in code.segments]
            if code.relative:
                k = hz[-1] / want_f[-1]
                if abs(k - 1) > _CLOCK_TOL:
                    continue
                if any(abs(h / hz[-1] - w / want_f[-1]) > _NA_RATIO_TOL * w / want_f[-1]
                       for h, w in zip(hz[:-1], want_f[:-1])):
                    continue
                d_tol = _NA_D_TOL_S
            else:
                if any(abs(h - w) > _Q35_F_TOL_HZ + 0.015 * w for h, w in zip(hz, want_f)):
                    continue
                d_tol = _Q35_D_TOL_S
            if all(abs(d - w) <= d_tol for d, w in zip(durs, want_d)):
                return code.name
        return False
