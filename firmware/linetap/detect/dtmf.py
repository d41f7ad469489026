"""Streaming DTMF detection (ITU-T Q.23/Q.24, Telcordia LSSGR acceptance) and DTMF masking.

Acceptance targets: frequency error <= 1.5 % accepted, >= 3.5 % rejected; tones >= 40 ms accepted,
< 20 ms rejected; twist accepted up to 8 dB with the low group louder ("normal") and 4 dB with the
high group louder ("reverse"); pauses >= 40 ms separate repeated digits; no digits from speech.

How it works
------------
Analysis frames of 12.75 ms (102 samples at 8 kHz, 204 at 16 kHz) with a Hamming window advance
by half a frame (6.4 ms). One matrix product per call evaluates, for every frame, the DFT at the
eight DTMF frequencies, the windowed energy and the DC term; blocks whose peak is below the weakest
acceptable tone skip even that. A cheap screen (the strongest row and column bins hold most of the
frame's energy above the noise floor) passes a few frames of speech a second; only those are
classified, with their second harmonics projected then (one by one in Python floats when they are
few, as numpy's per-call overhead would cost more than the arithmetic; vectorised when they are
many, as in a key press). A frame is a *hit* for a digit when, for the strongest row and the
strongest column bin:

* both tones are above -52 dBFS and the twist is within the limits + 3 dB (the digit's median
  twist over its frames must then be within the limits + 0.75 dB);
* each tone is 2.5 % or closer to its nominal frequency. The frequency is measured from the phase
  advance of the bin between consecutive frames (hop H): ``angle(X_t conj(X_{t-1}) e^{-jwH}) / H``.
  This is exact to about a hertz, so the 1.5 %/3.5 % limits do not depend on bin widths;
* the row bin beats the other row bins by 3 dB and the column bin the other columns by 10 dB
  (the worst case for a valid tone is 4.2 and 14 dB);
* the two tones hold >= 95 % of the frame's energy above the line's noise floor (DC removed, the
  tone powers corrected for the window's response at the measured offset). The floor is the
  lowest frame energy of the last 1.6 s, so white noise does not count against a tone but the
  other harmonics of a voice do: this is what keeps speech out;
* the second harmonic of each tone is >= 12 dB below it (skipped for a row tone whose harmonic
  falls within two bins of the column tone, 2 x 697 = 1394 Hz is next to 1336 Hz).

A run of hits of one digit ends after five frames without it: interruptions up to ~15 ms are
bridged, pauses from ~25 ms separate repeated digits (Q.24: <= 10 ms bridged, >= 40 ms separate).
The run is a digit when at least four of its frames are within 3 dB of its strongest frame: only
fully covered frames pass the 95 % test, so this needs about 30 ms of tone (20 ms is always
rejected) and a 38 ms tone always has four. Start and end come from the frame that caught the
edge part-way: with the known window shape its amplitude tells where the edge lies, to a few
samples.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["DtmfDetector", "DtmfDigit", "DtmfMasker", "mask_dtmf"]

ROWS_HZ = (697.0, 770.0, 852.0, 941.0)
COLS_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = "123A456B789C*0#D"

_FRAME_S = 0.01275
_MIN_TONE_DBFS = -52.0
_NORMAL_TWIST_DB = 8.0  # low group louder
_REVERSE_TWIST_DB = 4.0  # high group louder
_TWIST_FRAME_MARGIN_DB = 3.0  # per frame; the digit's median twist gets _TWIST_RUN_MARGIN_DB
_TWIST_RUN_MARGIN_DB = 0.75
_FREQ_TOL = 0.025
_ROW_DOMINANCE_DB = 3.0
_COL_DOMINANCE_DB = 10.0
_PURITY = 0.95
_FLOOR_SEGMENT_FRAMES = 16  # noise floor: minimum frame power over 16 segments of 16 frames (1.6 s)
_FLOOR_SEGMENTS = 16
_HARMONIC_DB = 12.0
_MISSES_TO_END = 5
_GOOD_FRAMES = 4
_GOOD_DB = 3.0
_MASK_MIN_HITS = 2
_EDGE_FRAMES = 6
_STATS_FRAMES = 500
# Up to this many screened frames are classified one by one in Python (about 3 us a frame) rather
# than by the vectorised test (some 35 numpy calls, ~150-250 us whatever the count): speech leaves
# 0-10 frames a second through the screen, a key press 50-80 (benchmarks/dsp.py).
_SCALAR_FRAMES = 16


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A detected DTMF digit; frames are sample indices in the line's stream, ``[start, end)``."""

    digit: str
    start_frame: int
    end_frame: int


class _Run:
    """Consecutive hits of one digit, plus what is needed to place its edges."""

    __slots__ = (
        "digit", "row", "col", "hits", "misses", "powers", "twists", "head", "tail", "first_hit", "last_hit",
    )

    def __init__(self, digit: int, pre: tuple[int, float] | None) -> None:
        self.digit = digit
        self.row = digit // 4
        self.col = digit % 4
        self.hits = 0
        self.misses = 0
        # Raw tone-pair power and high/low power ratio of the first _STATS_FRAMES hit frames (3 s:
        # plenty to judge a digit, and a key held for an hour costs no memory).
        self.powers: list[float] = []
        self.twists: list[float] = []
        self.head: list[tuple[int, float]] = [pre] if pre else []  # (frame start, raw pair power)
        self.tail: deque[tuple[int, float]] = deque(maxlen=_EDGE_FRAMES + _MISSES_TO_END)
        self.first_hit = -1
        self.last_hit = -1


class DtmfDetector:
    """Streaming DTMF detector for one line (see the module docstring for the method).

    ``feed`` takes a mono block (int16, or float with full scale 1.0) of any length and the sample
    index of its first sample; it returns the digits whose end was detected during this call. A gap
    in the sample index ends any digit in progress at the last sample seen.
    """

    _buf_start: int | None  # stream index of _buf[0]; None before the first block of a stream
    _buf: np.ndarray
    _prev_s: np.ndarray | None  # bins of the previous frame (phase reference)
    _prev_pf: np.ndarray | None  # tone powers of the previous frame (8 bins)
    _run: _Run | None
    _floor_mins: deque[float]

    def __init__(self, rate: int) -> None:
        if rate < 8000:
            raise ValueError(f"rate must be at least 8000 Hz, not {rate}")
        self.rate = int(rate)
        hop = int(round(rate * _FRAME_S / 2))
        n = 2 * hop
        self._hop = hop
        self._n = n
        w = np.hamming(n)
        fund = np.array(ROWS_HZ + COLS_HZ)
        freqs = np.concatenate((fund, 2 * fund))
        t = np.arange(n)
        sum_w = float(w.sum())
        sum_w2 = float((w * w).sum())
        # Columns: cos of the 8 tones, sin of the 8 tones, DC estimate. Scaled so that c^2 + s^2 is
        # the tone power A^2/2 and the DC column is the window-weighted mean. The second harmonics
        # (cos, sin) are a basis of their own, projected only for the frames that pass the screen
        # (a handful a second in speech): half the columns of every frame's product.
        amp = math.sqrt(2.0) / sum_w
        ang = 2 * math.pi * freqs[None, :] / rate * t[:, None]
        cos_b, sin_b = amp * w[:, None] * np.cos(ang), -amp * w[:, None] * np.sin(ang)
        basis = np.hstack((cos_b[:, :8], sin_b[:, :8], (w * w / sum_w2)[:, None]))
        harmonics = np.hstack((cos_b[:, 8:], sin_b[:, 8:]))
        self._ncol = basis.shape[1]
        split = np.hstack((basis[:hop], basis[hop:]))
        w2 = np.stack((w[:hop] ** 2, w[hop:] ** 2), axis=1) / sum_w2
        # Raw int16 samples are projected directly; the 1/32768 scale lives in the matrices.
        # float32 matrices and buffer: BLAS projects in about half the time of float64; int16
        # samples are exact in float32 and the products keep ~7 significant digits, far below the
        # line's noise. The results are taken on in float64.
        self._bases = {True: ((split / 32768.0).astype(np.float32), (w2 / 32768.0**2).astype(np.float32)),
                       False: (split.astype(np.float32), w2.astype(np.float32))}
        self._harm_bases = {True: (harmonics / 32768.0).astype(np.float32), False: harmonics.astype(np.float32)}
        self._rot = np.exp(-2j * math.pi * fund * hop / rate)
        self._hz_per_rad = rate / (2 * math.pi * hop)
        self._fund = fund
        self._sum_w = sum_w
        # Power response of the window vs frequency offset, to correct tone powers.
        grid = np.linspace(-rate / (2 * hop), rate / (2 * hop), 401)
        resp = np.abs(np.exp(2j * math.pi * grid[:, None] / rate * t[None, :]) @ w) ** 2 / sum_w**2
        self._gain_grid = grid
        self._gain = resp
        self._gain_grid_l: list[float] = grid.tolist()
        self._gain_l: list[float] = resp.tolist()
        self._rot_l: list[complex] = self._rot.tolist()
        self._freq_tol_hz: list[float] = (_FREQ_TOL * fund).tolist()
        # Share of the window's weight before / after sample k, to place tone edges.
        before = np.concatenate(([0.0], np.cumsum(w))) / sum_w
        self._before_w = before
        self._before_k = np.arange(n + 1, dtype=np.float64)
        self._after_w = (1.0 - before)[::-1].copy()
        self._after_k = self._before_k[::-1].copy()
        self._min_power = 0.5 * 10 ** (_MIN_TONE_DBFS / 10)
        # A block whose peak stays below this cannot hold a tone of -52 dBFS: skip the analysis.
        self._quiet_peak = 0.9 * 10 ** (_MIN_TONE_DBFS / 20)
        bin_hz = rate / n
        self._row_harm_ok = np.array(
            [[abs(2 * r - c) > 2.2 * bin_hz for c in COLS_HZ] for r in ROWS_HZ]
        )  # (4, 4): can the row's 2nd harmonic be checked next to this column?
        self._row_harm_ok_l: list[list[bool]] = self._row_harm_ok.tolist()
        self._spans: list[tuple[int, int]] = []
        self._reset_stream(None)

    # -- public -------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray, start_frame: int) -> list[DtmfDigit]:
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError("samples must be a mono (1-D) block")
        is_int = x.dtype.kind in "iu"
        digits: list[DtmfDigit] = []
        if self._buf_start is None:
            self._start_stream(start_frame, is_int)
        elif start_frame != self._buf_start + len(self._buf):
            digits.extend(self._end_stream())
            self._start_stream(start_frame, is_int)
        if is_int != self._int_units:  # keep one unit per stream
            x = x * (32768.0 if self._int_units else 1.0 / 32768.0)
        if len(x) == 0:
            return digits
        buf = np.concatenate((self._buf, x), dtype=np.float32)
        hop = self._hop
        m = len(buf) // hop
        if m < 2:
            self._buf = buf
            return digits
        keep = (m - 1) * hop  # the last full hop is carried: it is the first half of the next frame
        pos0 = self._buf_start
        assert pos0 is not None
        self._buf = buf[keep:]
        self._buf_start = pos0 + keep
        if self._run is None and self._quiet_peak * self._peak_scale > max(float(x.max()), -float(x.min())):
            # Quiet block: nothing can be a tone. The phase reference is lost, the noise floor is 0.
            self._prev_s = self._prev_pf = None
            self._floor_cur = 0.0
            return digits
        rows = buf[: m * hop].reshape(m, hop)
        basis, w2 = self._bases[self._int_units]
        proj = (rows @ basis).astype(np.float64)
        e2 = ((rows * rows) @ w2).astype(np.float64)
        ncol = self._ncol
        s = proj[:-1, :ncol] + proj[1:, ncol:]
        dc = s[:, 16]
        total = e2[:-1, 0] + e2[1:, 1] - dc * dc
        digits.extend(self._frames(s, total, pos0, rows))
        return digits

    def flush(self) -> list[DtmfDigit]:
        """End of stream: finish a digit in progress. The detector can then be fed a new stream."""
        out = self._end_stream()
        self._reset_stream(None)
        return out

    # -- internals (also used by DtmfMasker) --------------------------------------------------
    @property
    def open_span_start(self) -> int | None:
        """Estimated start of a tone in progress that already has enough hits to be masked."""
        run = self._run
        if run is None or run.hits < _MASK_MIN_HITS:
            return None
        ref = math.sqrt(max(run.powers))
        return self._edge_start(run, ref)

    def take_spans(self) -> list[tuple[int, int]]:
        """Spans ``[start, end)`` of finished tone runs worth masking since the last call."""
        spans, self._spans = self._spans, []
        return spans

    def _start_stream(self, start: int, is_int: bool) -> None:
        self._reset_stream(start)
        self._int_units = is_int
        self._peak_scale = 32768.0 if is_int else 1.0

    def _reset_stream(self, start: int | None) -> None:
        self._buf_start = start
        self._buf = np.zeros(0, dtype=np.float32)
        self._int_units = True
        self._peak_scale = 32768.0
        self._prev_s = None
        self._prev_pf = None
        self._run = None
        self._floor_mins = deque(maxlen=_FLOOR_SEGMENTS)
        self._floor_cur = math.inf
        self._floor_count = 0

    def _noise_floor(self, total: np.ndarray) -> float:
        mins = self._floor_mins
        low = float(total.min())
        self._floor_cur = min(self._floor_cur, low)
        self._floor_count += len(total)
        floor = min(min(mins, default=low), self._floor_cur)
        if self._floor_count >= _FLOOR_SEGMENT_FRAMES:
            mins.append(self._floor_cur)
            self._floor_cur = math.inf
            self._floor_count = 0
        return floor

    def _end_stream(self) -> list[DtmfDigit]:
        if self._run is None:
            return []
        return self._close(self._run)

    def _frames(self, s: np.ndarray, total: np.ndarray, pos0: int, rows: np.ndarray) -> list[DtmfDigit]:
        """Classify frames (vectorised) and run the per-digit state machine where needed. ``rows``
        are the half-frames (frame i is rows i and i + 1), for the harmonics of screened frames."""
        # Purity is judged against the energy above the line's noise floor (the minimum frame power
        # of the last ~1.6 s), so white noise does not count against a tone but speech does.
        floor = self._noise_floor(total)
        pf = s[:, :8] ** 2 + s[:, 8:16] ** 2  # tone powers of the 8 fundamentals
        prev_s, prev_pf = self._prev_s, self._prev_pf
        self._prev_s = s[-1]
        self._prev_pf = pf[-1]
        nf = s.shape[0]
        # Cheap screen first: most frames of speech and noise stop here. The strongest row and
        # column power of every frame by two pairwise maxima (a reduction over rows of 4 costs
        # numpy's buffered iterator more than the arithmetic).
        pairs = np.maximum(pf[:, 0::2], pf[:, 1::2])
        peaks = np.maximum(pairs[:, 0::2], pairs[:, 1::2])  # (nf, 2): row, column
        # (Raw powers are at least 0.65 of the window-corrected ones within the 2.5 % tolerance.)
        cand = peaks[:, 0] + peaks[:, 1] >= np.maximum(0.6 * (total - floor), 2 * self._min_power)
        any_cand = np.count_nonzero(cand) > 0  # (cheaper than .any(), a reduction)
        if self._run is None and not any_cand:
            return []
        if any_cand:
            # At most 3/4 of a frame's energy is discounted as noise, so noise alone never looks pure.
            total = np.maximum(total - floor, 0.25 * total)
            hits, ratio, hit_at = self._classify(s, prev_s, pf, total, cand, rows)
        else:
            hits, ratio, hit_at = [-1] * nf, [1.0] * nf, []
        out: list[DtmfDigit] = []
        hop = self._hop
        k = 0  # next entry of hit_at
        i = 0 if self._run is not None else (hit_at[0] if hit_at else nf)
        while i < nf:
            # Visit every frame while a run is open, otherwise jump to the next hit.
            if self._run is None:
                while k < len(hit_at) and hit_at[k] < i:
                    k += 1
                if k == len(hit_at):
                    break
                i = hit_at[k]
            j, i = i, i + 1
            h = hits[j]
            run = self._run
            pos = pos0 + j * hop
            if run is not None and h != run.digit:
                run.misses += 1
                run.tail.append((pos, pf.item(j, run.row) + pf.item(j, 4 + run.col)))  # Python floats: no ufunc call
                if h < 0 and run.misses < _MISSES_TO_END:
                    continue
                out.extend(self._close(run))
                run = None
                if h < 0:
                    continue
            if run is None:
                pre_pf = prev_pf if j == 0 else pf[j - 1]
                pre = None
                if pre_pf is not None:
                    pre = (pos - hop, pre_pf.item(h // 4) + pre_pf.item(4 + h % 4))
                run = self._run = _Run(h, pre)
                run.first_hit = pos
            pair = pf.item(j, run.row) + pf.item(j, 4 + run.col)
            run.hits += 1
            run.misses = 0
            if len(run.powers) < _STATS_FRAMES:
                run.powers.append(pair)
                run.twists.append(ratio[j])
            run.last_hit = pos
            if len(run.head) < _EDGE_FRAMES + 1:
                run.head.append((pos, pair))
            run.tail.append((pos, pair))
        return out

    def _classify(
        self, s: np.ndarray, prev_s: np.ndarray | None, pf: np.ndarray, total: np.ndarray, screen: np.ndarray,
        rows: np.ndarray,
    ) -> tuple[list[int], list[float], list[int]]:
        """Digit index per frame (row * 4 + col) or -1, the power ratio high/low group (1.0 where
        no digit), and the frames with a digit.

        Only the frames that passed the cheap screen are examined (speech leaves few: they are
        taken one by one, :meth:`_classify_few`; more, as in a key press, at once).
        """
        nf = s.shape[0]
        hits = [-1] * nf
        ratios = [1.0] * nf
        sel = np.flatnonzero(screen)
        if prev_s is None:
            sel = sel[sel > 0]  # no phase reference for the first frame of a stream
        if len(sel) == 0:
            return hits, ratios, []
        # The second harmonics of the selected frames (cos 8, sin 8).
        hs = (np.concatenate((rows[sel], rows[sel + 1]), axis=1) @ self._harm_bases[self._int_units]).astype(np.float64)
        if len(sel) <= _SCALAR_FRAMES:
            frames = sel.tolist()
            s_rows = s[sel].tolist()
            prev_rows = s[sel - 1].tolist()  # sel 0 (only with a phase reference) wraps to s[-1]: replaced
            if frames[0] == 0:
                assert prev_s is not None
                prev_rows[0] = prev_s.tolist()
            found = self._classify_few(s_rows, prev_rows, pf[sel].tolist(), total[sel].tolist(), hs.tolist())
            hit_at = []
            for j, (h, q) in zip(frames, found, strict=True):
                if h >= 0:
                    hits[j] = h
                    ratios[j] = q
                    hit_at.append(j)
            return hits, ratios, hit_at
        prev_rows_a = np.vstack((prev_s[None, :] if prev_s is not None else s[:1], s[:-1]))[sel]
        found_a, ratio_a = self._classify_rows(s[sel], prev_rows_a, pf[sel], total[sel], hs)
        keep = found_a >= 0
        hit_at = sel[keep].tolist()
        for j, h, q in zip(hit_at, found_a[keep].tolist(), ratio_a[keep].tolist(), strict=True):
            hits[j] = h
            ratios[j] = q
        return hits, ratios, hit_at

    def _classify_few(
        self, s: list[list[float]], prev_s: list[list[float]], pf: list[list[float]], total: list[float],
        hs: list[list[float]],
    ) -> list[tuple[int, float]]:
        """:meth:`_classify_rows` frame by frame in Python floats: the same tests in the same order
        with the same arithmetic (``np.angle`` is ``atan2``, ``np.interp`` is done as numpy does it),
        for a handful of frames where numpy's per-call overhead would cost fifty times more.
        (digit or -1, power ratio) per frame. tests/test_dtmf.py checks both agree."""
        min_power = self._min_power
        row_dom = 10 ** (_ROW_DOMINANCE_DB / 10)
        col_dom = 10 ** (_COL_DOMINANCE_DB / 10)
        twist_hi = 10 ** ((_REVERSE_TWIST_DB + _TWIST_FRAME_MARGIN_DB) / 10)
        twist_lo = 10 ** (-(_NORMAL_TWIST_DB + _TWIST_FRAME_MARGIN_DB) / 10)
        harm = 10 ** (-_HARMONIC_DB / 10)
        rot, tol, hz_per_rad = self._rot_l, self._freq_tol_hz, self._hz_per_rad
        out: list[tuple[int, float]] = []
        for si, pi, p, tot, hi in zip(s, prev_s, pf, total, hs, strict=True):
            rows, cols = p[:4], p[4:]
            pr, pc = max(rows), max(cols)
            r, c = rows.index(pr), cols.index(pc)  # the first maximum, as np.argmax
            if not (pr >= min_power and pc >= min_power):
                out.append((-1, 1.0))
                continue
            if not (sorted(rows)[2] * row_dom <= pr and sorted(cols)[2] * col_dom <= pc):
                out.append((-1, 1.0))
                continue
            k = 4 + c
            d_r = complex(si[r], si[8 + r]) * complex(pi[r], pi[8 + r]).conjugate() * rot[r]
            d_c = complex(si[k], si[8 + k]) * complex(pi[k], pi[8 + k]).conjugate() * rot[k]
            dr = math.atan2(d_r.imag, d_r.real) * hz_per_rad
            dcol = math.atan2(d_c.imag, d_c.real) * hz_per_rad
            if not (abs(dr) <= tol[r] and abs(dcol) <= tol[k]):
                out.append((-1, 1.0))
                continue
            pr_c = pr / self._interp_gain(dr)
            pc_c = pc / self._interp_gain(dcol)
            ratio = pc_c / max(pr_c, 1e-30)
            ok = twist_lo <= ratio <= twist_hi and pr_c + pc_c >= _PURITY * tot
            ok = ok and hi[k] ** 2 + hi[8 + k] ** 2 <= harm * pc_c
            ok = ok and (not self._row_harm_ok_l[r][c] or hi[r] ** 2 + hi[8 + r] ** 2 <= harm * pr_c)
            out.append((r * 4 + c if ok else -1, ratio))
        return out

    def _interp_gain(self, x: float) -> float:
        """``np.interp(x, self._gain_grid, self._gain)`` for one value, computed as numpy does."""
        xp, fp = self._gain_grid_l, self._gain_l
        j = bisect_right(xp, x) - 1
        if j < 0:
            return fp[0]
        if j == len(xp) - 1 or xp[j] == x:
            return fp[j]
        slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
        return slope * (x - xp[j]) + fp[j]

    def _classify_rows(
        self, s: np.ndarray, prev_s: np.ndarray, pf: np.ndarray, total: np.ndarray, hs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        nf = s.shape[0]
        idx = np.arange(nf)
        r = np.argmax(pf[:, :4], axis=1)
        c = np.argmax(pf[:, 4:], axis=1)
        pr = pf[idx, r]
        pc = pf[idx, 4 + c]
        cand = (pr >= self._min_power) & (pc >= self._min_power)
        # Relative peaks (raw powers).
        rows_sorted = np.sort(pf[:, :4], axis=1)
        cols_sorted = np.sort(pf[:, 4:], axis=1)
        cand &= rows_sorted[:, 2] * 10 ** (_ROW_DOMINANCE_DB / 10) <= pr
        cand &= cols_sorted[:, 2] * 10 ** (_COL_DOMINANCE_DB / 10) <= pc
        # Frequency from the phase advance since the previous frame.
        fx = s[:, :8] + 1j * s[:, 8:16]
        prev_x = prev_s[:, :8] + 1j * prev_s[:, 8:16]
        d = fx * np.conj(prev_x) * self._rot[None, :]
        dr = np.angle(d[idx, r]) * self._hz_per_rad
        dcol = np.angle(d[idx, 4 + c]) * self._hz_per_rad
        cand &= (np.abs(dr) <= _FREQ_TOL * self._fund[r]) & (np.abs(dcol) <= _FREQ_TOL * self._fund[4 + c])
        # Window-corrected tone powers, then twist and purity.
        pr_c = pr / np.interp(dr, self._gain_grid, self._gain)
        pc_c = pc / np.interp(dcol, self._gain_grid, self._gain)
        ratio = pc_c / np.maximum(pr_c, 1e-30)
        cand &= ratio <= 10 ** ((_REVERSE_TWIST_DB + _TWIST_FRAME_MARGIN_DB) / 10)
        cand &= ratio >= 10 ** (-(_NORMAL_TWIST_DB + _TWIST_FRAME_MARGIN_DB) / 10)
        cand &= pr_c + pc_c >= _PURITY * total
        # Second harmonics.
        ph = hs[:, :8] ** 2 + hs[:, 8:] ** 2
        harm = 10 ** (-_HARMONIC_DB / 10)
        cand &= ph[idx, 4 + c] <= harm * pc_c
        cand &= ~self._row_harm_ok[r, c] | (ph[idx, r] <= harm * pr_c)
        return np.where(cand, r * 4 + c, -1), ratio

    def _edge_start(self, run: _Run, ref_amp: float) -> int:
        """Tone start from the frame that caught it part-way (the window shape is known)."""
        best = _partial_frame(run.head, ref_amp)
        if best is not None:
            pos, ratio = best
            return int(round(pos + np.interp(ratio, self._after_w, self._after_k)))
        # No frame caught the edge part-way: the first loud frame we know bounds the start.
        loud = [pos for pos, pw in run.head if math.sqrt(pw) >= 0.5 * ref_amp]
        return loud[0] if loud else run.first_hit

    def _edge_end(self, run: _Run, ref_amp: float) -> int:
        frames = list(run.tail)
        best = _partial_frame(frames[len(frames) // 2 :], ref_amp)
        if best is not None:
            pos, ratio = best
            return int(round(pos + np.interp(ratio, self._before_w, self._before_k)))
        loud = [pos for pos, pw in frames if math.sqrt(pw) >= 0.5 * ref_amp]
        return (loud[-1] if loud else run.last_hit) + self._n

    def _close(self, run: _Run) -> list[DtmfDigit]:
        self._run = None
        peak = max(run.powers)
        floor = peak * 10 ** (-_GOOD_DB / 10)
        good = [p for p in run.powers if p >= floor]
        ref = math.sqrt(statistics.median(good))
        start = self._edge_start(run, ref)
        end = max(self._edge_end(run, ref), start + 1)
        if run.hits >= _MASK_MIN_HITS:
            self._spans.append((start, end))
        if len(good) < _GOOD_FRAMES:
            return []
        # Twist over the whole digit: per-frame estimates are noisy, their median is not.
        twists = [t for t, p in zip(run.twists, run.powers, strict=True) if p >= floor]
        twist_db = 10 * math.log10(statistics.median(twists))
        if not -(_NORMAL_TWIST_DB + _TWIST_RUN_MARGIN_DB) <= twist_db <= _REVERSE_TWIST_DB + _TWIST_RUN_MARGIN_DB:
            return []
        return [DtmfDigit(KEYS[run.digit], start, end)]


def _partial_frame(frames: list[tuple[int, float]], ref_amp: float) -> tuple[int, float] | None:
    """The frame whose amplitude is nearest half the tone's, if one caught the edge part-way."""
    best: tuple[int, float] | None = None
    for pos, pw in frames:
        ratio = math.sqrt(pw) / ref_amp
        if 0.05 <= ratio <= 0.95 and (best is None or abs(ratio - 0.5) < abs(best[1] - 0.5)):
            best = (pos, ratio)
    return best


def _ramp_mask(n: int, spans: list[tuple[int, int]], offset: int, ramp: int) -> np.ndarray | None:
    """Gain per sample (0 in spans, raised-cosine ramps of ``ramp`` samples inside their edges)."""
    gain = None
    for a, b in spans:
        lo, hi = a - offset, b - offset
        if hi <= 0 or lo >= n:
            continue
        if gain is None:
            gain = np.ones(n)
        k = np.arange(max(lo, 0), min(hi, n))
        g = np.zeros(len(k))
        if ramp > 0:
            up = k - lo  # distance from the span's start
            down = hi - 1 - k  # distance from its end
            edge = np.minimum(up, down)
            inside = edge < ramp
            g[inside] = 0.5 + 0.5 * np.cos(math.pi * (edge[inside] + 1) / (ramp + 1))
        gain[k] = np.minimum(gain[k], g)
    return gain


def mask_dtmf(
    samples: np.ndarray,
    digits: list[DtmfDigit] | list[tuple[int, int]],
    start_frame: int,
    guard_ms: float = 20.0,
    *,
    rate: int,
) -> np.ndarray:
    """A copy of ``samples`` with each tone span (plus ``guard_ms`` each side) replaced by silence.

    ``digits`` are :class:`DtmfDigit` (or ``(start, end)`` spans) in stream sample indices;
    ``start_frame`` is the index of ``samples[0]``; ``rate`` converts the guard to samples. The
    outermost 2 ms of each guard fade out and in, so that no click is written. Speech is touched
    only within ``guard_ms`` of a tone (plus the error of its edges, a few ms).
    """
    x = np.array(samples, copy=True)
    guard = int(round(guard_ms * rate / 1000))
    spans = [(d.start_frame, d.end_frame) if isinstance(d, DtmfDigit) else (int(d[0]), int(d[1])) for d in digits]
    spans = [(a - guard, b + guard) for a, b in spans]
    gain = _ramp_mask(len(x), spans, start_frame, int(round(0.002 * rate)))
    if gain is not None:
        if x.dtype.kind in "iu":
            x[:] = np.round(x * gain).astype(x.dtype)
        else:
            x *= gain
    return x


class DtmfMasker:
    """Streaming DTMF blanking with a fixed delay, for audio on its way to disk.

    ``process`` returns ``(out, out_start_frame, digits)``: the audio released by this call (the
    input delayed by ``delay_ms``, with tone spans plus ``guard_ms`` silenced), the stream index of
    ``out[0]``, and the digits whose end was detected. The first calls release fewer samples than
    they receive (the delay fills up); :meth:`flush` releases the rest at the end of the stream.

    A tone is blanked from its estimated start as soon as it has two hits (about 20-25 ms after its
    start), which is why the delay must exceed that plus the guard: the default 80 ms leaves a
    margin of about 35 ms. Tone runs too short to be reported as digits are blanked as well: it
    is better to lose 50 ms of a word than to keep half a card digit. A gap in ``start_frame``
    (an overrun) is handled: everything before the gap is released by that call and the new
    samples are kept for the next one, so ``out_start_frame`` jumps just as the input did.

    With ``channels`` > 1, blocks are ``(frames, channels)``; every channel is watched and a tone
    on any of them is blanked on all (the other direction carries its echo and sidetone). A digit
    heard on several channels at once is reported once.
    """

    def __init__(self, rate: int, delay_ms: float = 80.0, guard_ms: float = 20.0, *, channels: int = 1) -> None:
        self.rate = int(rate)
        self.channels = int(channels)
        self.delay = int(round(delay_ms * rate / 1000))
        self.guard = int(round(guard_ms * rate / 1000))
        if self.delay < int(0.045 * rate) + self.guard:
            raise ValueError("delay_ms must be at least 45 ms more than guard_ms")
        if self.channels < 1:
            raise ValueError(f"channels must be at least 1, not {channels}")
        self.detectors = [DtmfDetector(rate) for _ in range(self.channels)]
        self._ramp = int(round(0.002 * rate))
        self._pending = np.zeros((0,) if self.channels == 1 else (0, self.channels))
        self._pending_start: int | None = None
        self._dtype: np.dtype | None = None
        self._spans: list[tuple[int, int]] = []  # guarded spans still affecting pending audio
        self._reported: deque[DtmfDigit] = deque(maxlen=8)  # to report a digit heard twice once

    @property
    def detector(self) -> DtmfDetector:
        """The detector of the first (or only) channel."""
        return self.detectors[0]

    def process(self, samples: np.ndarray, start_frame: int) -> tuple[np.ndarray, int, list[DtmfDigit]]:
        x = np.asarray(samples)
        want = (1,) if self.channels == 1 else (2, self.channels)
        if x.ndim != want[0] or (self.channels > 1 and x.shape[1] != self.channels):
            shape = "a mono (1-D) block" if self.channels == 1 else f"a (frames, {self.channels}) block"
            raise ValueError(f"samples must be {shape}")
        if self._dtype is None:
            self._dtype = x.dtype
        if self._pending_start is not None and start_frame != self._pending_start + len(self._pending):
            out, out_start, digits = self.flush()
            digits += self._detect(x, start_frame)
            self._pending = x.copy()
            self._pending_start = start_frame
            return out, out_start, digits
        if self._pending_start is None:
            self._pending_start = start_frame
        digits = self._detect(x, start_frame)
        self._pending = np.concatenate((self._pending, x)) if len(self._pending) else x.copy()
        end = self._pending_start + len(self._pending)
        return (*self._release(end - self.delay), digits)

    def flush(self) -> tuple[np.ndarray, int, list[DtmfDigit]]:
        """Release everything held (end of stream); the masker can then start a new stream."""
        digits = self._once(d for det in self.detectors for d in det.flush())
        self._collect_spans()
        if self._pending_start is None:
            empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), dtype=self._dtype or np.int16)
            return empty, 0, digits
        out, start = self._release(self._pending_start + len(self._pending))
        self._pending_start = None
        self._pending = self._pending[:0]
        self._spans.clear()
        return out, start, digits

    def _detect(self, x: np.ndarray, start_frame: int) -> list[DtmfDigit]:
        if self.channels == 1:
            digits = self.detectors[0].feed(x, start_frame)
        else:
            digits = self._once(d for c, det in enumerate(self.detectors) for d in det.feed(x[:, c], start_frame))
        self._collect_spans()
        return digits

    def _once(self, digits: Iterable[DtmfDigit]) -> list[DtmfDigit]:
        """Digits in order of their end, without those already reported from another channel."""
        out = []
        for d in sorted(digits, key=lambda d: d.end_frame):
            if any(r.digit == d.digit and r.start_frame < d.end_frame and d.start_frame < r.end_frame
                   for r in self._reported):
                continue
            self._reported.append(d)
            out.append(d)
        return out

    def _collect_spans(self) -> None:
        for det in self.detectors:
            for a, b in det.take_spans():
                self._spans.append((a - self.guard, b + self.guard))

    def _release(self, release_to: int) -> tuple[np.ndarray, int]:
        start = self._pending_start
        assert start is not None
        n = max(0, min(release_to - start, len(self._pending)))
        spans = list(self._spans)
        for det in self.detectors:
            open_start = det.open_span_start
            if open_start is not None:
                spans.append((open_start - self.guard, start + len(self._pending) + self.rate))
        out = self._pending[:n].copy()
        gain = _ramp_mask(n, spans, start, self._ramp)
        if gain is not None:
            if self.channels > 1:
                gain = gain[:, None]
            if out.dtype.kind in "iu":
                out = np.round(out * gain).astype(out.dtype)
            else:
                out = out * gain
        self._pending = self._pending[n:]
        self._pending_start = start + n
        self._spans = [s for s in self._spans if s[1] > self._pending_start]
        return out, start
