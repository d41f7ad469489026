"""Line health from the audio itself: dead lines, clipping, stalled PCMs.

A *dead* line delivers samples that are all one value for ``dead_after_ms``:
exact zeros (digital silence: a muted or unplugged codec, a broken USB stream)
or any other constant (stuck samples). A quiet but live analog line never does
that: its noise floor (about -70 dBFS, a few LSB) changes from sample to sample,
so however long an idle line is quiet it is not dead. The test is therefore
exact, not a level threshold: ``min == max`` per block, which costs two numpy
reductions and no float maths (it runs 50 times a second on every line).

*Clipping* is the fraction of samples at full scale (>= 32767 or <= -32767)
over a sliding window (``min(1 s, clipping_after_s / 2)``, long enough to bridge
the pauses between words); the alarm is raised when that fraction has stayed
above ``clipping_fraction`` for ``clipping_after_s``, so a brief burst (a
click, a ring) never raises it. Its onset is the block at which the window's
fraction first passed the threshold; it ends when the fraction falls back.

A *stalled* PCM delivers no frames at all, so nothing reaches ``feed``; the
capture reader's ``last_frames_mono`` is checked from a timer instead
(``stall_check`` / ``StallWatch``), because a blocked ``read()`` cannot report.

Times: ``feed`` takes the wall time of the block's first frame (``Block.t_wall``,
from the sample count), and every ``Change.at`` is the sample-exact time of the
onset or end, so alarm latency can be measured from the real onset.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .level import block_stats

FULL_SCALE = 32767
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_RAIL_ENERGY = float(FULL_SCALE * FULL_SCALE)  # a block with a sample at the rails has at least this
_EXACT_PERIOD = 2048  # n * energy and sum ** 2 of n int16 samples stay below 2**53 (exact) up to here


@dataclass(frozen=True, slots=True)
class Change:
    """A line-health condition started (``active``) or ended, at wall time ``at``."""

    code: str  # LINE_DEAD | LINE_CLIPPING
    active: bool
    at: float
    detail: str = ""


class TimedBlock(Protocol):
    """What ``feed_blocks`` needs of a block (``linetap.capture.Block`` is one)."""

    frames: np.ndarray
    t_wall: float


def _describe_constant(value: int, channel: int, channels: int) -> str:
    what = "digital silence" if value == 0 else f"stuck at {value}"
    return what if channels == 1 else f"{what} on channel {channel + 1}"


class LineHealthDetector:
    """Per-line, per-block analysis; fed by the pipeline thread with every block of one line.

    Not thread-safe (one instance per line, one thread). It keeps a reference
    to the previous block (no copy) to date the onset of a constant run to the
    sample; blocks must not be mutated after they are fed.
    """

    def __init__(self, rate: int, channels: int, *, dead_after_ms: int = 500,
                 clipping_fraction: float = 0.01, clipping_after_s: float = 2.0) -> None:
        self.rate = rate
        self.channels = channels
        self.dead_after_s = dead_after_ms / 1000.0
        self.clipping_fraction = clipping_fraction
        self.clipping_after_s = clipping_after_s
        self.clip_window_s = min(1.0, clipping_after_s / 2.0)
        self._window_samples = max(1.0, self.clip_window_s * rate * channels)
        self.dead = False
        self.clipping = False
        self._reset_state()

    def _reset_state(self) -> None:
        self._run_value: list[int | None] = [None] * self.channels
        self._run_start: list[float] = [0.0] * self.channels
        self._dead_channel = -1
        self._prev: np.ndarray | None = None
        self._prev_t = 0.0
        self._prev_end = 0.0
        self._clips: deque[tuple[float, int]] = deque()  # (block end, clipped samples)
        self._clip_sum = 0
        self._over_since: float | None = None

    def reset(self, at: float) -> list[Change]:
        """Forget the past (the stream was reopened: its samples do not continue the
        old ones); ends any active condition at ``at``."""
        changes = []
        if self.dead:
            changes.append(Change("LINE_DEAD", False, at))
        if self.clipping:
            changes.append(Change("LINE_CLIPPING", False, at))
        self.dead = self.clipping = False
        self._reset_state()
        return changes

    def feed(self, frames: np.ndarray, t_wall: float) -> list[Change]:
        """Analyse one block (int16, shape (n, channels)) whose first frame is at ``t_wall``.
        Returns the conditions that started or ended in it (usually none)."""
        n = len(frames)
        if n == 0:
            return []
        rate = self.rate
        t_end = t_wall + n / rate
        if self.channels == 1:
            mins = [int(frames.min())]
            maxs = [int(frames.max())]
        else:
            mins = frames.min(axis=0).tolist()
            maxs = frames.max(axis=0).tolist()
        changes: list[Change] | None = None
        contiguous = self._prev is not None and abs(t_wall - self._prev_end) * rate < 2.0

        # --- dead: a run of one constant value ---
        constant = 0  # channels that are one value throughout this block
        for c in range(self.channels):
            lo = mins[c]
            if lo == maxs[c]:
                constant += 1
                if self._run_value[c] != lo:
                    self._run_value[c] = lo
                    self._run_start[c] = self._onset(c, lo, t_wall, contiguous)
            elif self._run_value[c] is not None:
                v = self._run_value[c]
                self._run_value[c] = None
                if self.dead and c == self._dead_channel:
                    # The run ends at the first sample that differs from it.
                    col = frames[:, c] if frames.ndim == 2 else frames
                    k = int(np.flatnonzero(col != v)[0])
                    changes = changes or []
                    changes.extend(self._dead_ended(t_wall + k / rate, t_end))
        if constant and not self.dead:
            for c in range(self.channels):
                v = self._run_value[c]
                if v is not None and t_end - self._run_start[c] >= self.dead_after_s - 0.5 / rate:
                    self.dead = True
                    self._dead_channel = c
                    changes = changes or []
                    changes.append(Change("LINE_DEAD", True, self._run_start[c],
                                          _describe_constant(v, c, self.channels)))
                    break

        # --- clipping: counted only when the block touches the rails (rare) and is not
        # stuck there (a constant 32767 is a dead line, not a loud one) ---
        clipped = 0
        if constant < self.channels and (max(maxs) >= FULL_SCALE or min(mins) <= -FULL_SCALE):
            clipped = int(np.count_nonzero((frames >= FULL_SCALE) | (frames <= -FULL_SCALE)))
        if clipped or self._clips:
            change = self._clip_step(clipped, t_wall, t_end)
            if change is not None:
                changes = changes or []
                changes.append(change)

        self._prev, self._prev_t, self._prev_end = frames, t_wall, t_end
        return changes or []

    def feed_blocks(self, blocks: Sequence[TimedBlock], whole: np.ndarray, period: int) -> list[Change]:
        """``feed`` of consecutive blocks (``.frames``, ``.t_wall``) of ``period`` frames each (0:
        not all the same), whose frames, concatenated, are ``whole``; the same changes as feeding
        them one by one.

        The pipeline hands over several 20 ms blocks of a line at once. On a live line nothing
        happens in them (no block is one value, none touches the rails, no clipping is being
        tracked, the line is not dead): that is told from all the blocks' minima and maxima in
        two numpy calls, and only the last block is kept (to date a constant run that starts in
        the next). Anything else goes block by block through ``feed``, so onsets and ends stay
        sample-exact."""
        k = len(blocks)
        if k > 1 and period and not self.dead and not self._clips:
            if self.channels == 1 and period <= _EXACT_PERIOD and len(whole) == k * period:
                # From the blocks' sums and sums of squares (``block_stats``), which the line's levels
                # use too: a block is one value exactly when ``n * energy == sum ** 2`` (Cauchy-Schwarz,
                # exact in float64 for these sizes), and no sample is at the rails (|x| >= 32767) while
                # every energy is under 32767 ** 2. Only a run that loud is looked at sample by sample.
                sums, energies = block_stats(whole, k)
                live = (max(energies) < _RAIL_ENERGY
                        or (int(_MAX(whole, axis=None)) < FULL_SCALE and int(_MIN(whole, axis=None)) > -FULL_SCALE))
                if live:
                    n = float(period)
                    live = all([n * e != s * s for s, e in zip(sums, energies)])
            else:
                # The ufuncs' reduce, not ``ndarray.min``/``max``: those go through a Python wrapper
                # (numpy's ``_methods``), a quarter of their cost on a run of ten 20 ms blocks.
                x = whole.reshape(k, period, self.channels)
                mins, maxs = _MIN(x, axis=1).ravel().tolist(), _MAX(x, axis=1).ravel().tolist()
                live = max(maxs) < FULL_SCALE and min(mins) > -FULL_SCALE and all(map(int.__lt__, mins, maxs))
            if live:
                # Every channel varies in every block: any constant run ended in the first one.
                self._run_value = [None] * self.channels
                last = blocks[-1]
                self._prev, self._prev_t = last.frames, last.t_wall
                self._prev_end = last.t_wall + period / self.rate
                return []
        changes: list[Change] = []
        for b in blocks:
            changes += self.feed(b.frames, b.t_wall)
        return changes

    def _onset(self, c: int, value: int, t_wall: float, contiguous: bool) -> float:
        """Where a constant run that fills this block began: possibly inside the previous block."""
        prev = self._prev
        if prev is None or not contiguous:
            return t_wall
        col = prev[:, c] if prev.ndim == 2 else prev
        if int(col[-1]) != value:
            return t_wall
        differ = np.flatnonzero(col != value)
        k = int(differ[-1]) + 1 if differ.size else 0
        return self._prev_t + k / self.rate

    def _dead_ended(self, at: float, t_end: float) -> list[Change]:
        # Another channel may still be dead on its own (stereo): then the alarm goes on.
        for c in range(self.channels):
            v = self._run_value[c]
            if v is not None and t_end - self._run_start[c] >= self.dead_after_s:
                self._dead_channel = c
                return []
        self.dead = False
        self._dead_channel = -1
        return [Change("LINE_DEAD", False, at)]

    def _clip_step(self, clipped: int, t_wall: float, t_end: float) -> Change | None:
        if clipped:
            self._clips.append((t_end, clipped))
            self._clip_sum += clipped
        horizon = t_end - self.clip_window_s
        while self._clips and self._clips[0][0] <= horizon:
            self._clip_sum -= self._clips.popleft()[1]
        fraction = self._clip_sum / self._window_samples
        if fraction > self.clipping_fraction:
            if self._over_since is None:
                self._over_since = t_wall
            if not self.clipping and t_end - self._over_since >= self.clipping_after_s:
                self.clipping = True
                return Change("LINE_CLIPPING", True, self._over_since,
                              f"{fraction:.1%} of samples at full scale")
            return None
        self._over_since = None
        if self.clipping:
            self.clipping = False
            return Change("LINE_CLIPPING", False, t_wall)
        return None


# --- stalled PCM: checked from a timer, not from the audio ---------------------

def stall_check(last_frames_mono: float | None, now_mono: float, stall_after_ms: float, *,
                since_mono: float | None = None) -> bool:
    """True when no frames have arrived for longer than ``stall_after_ms``.

    The reference is the later of the last frames and ``since_mono`` (when the
    stream was opened), so a PCM that opens and never delivers is stalled too.
    With neither known there is nothing to measure from: False.
    """
    refs = [t for t in (last_frames_mono, since_mono) if t is not None]
    if not refs:
        return False
    return (now_mono - max(refs)) * 1000.0 > stall_after_ms


class StallWatch:
    """``stall_check`` with memory: reports a LINE_DEAD change only on transitions,
    dated at the last frame (onset) and at the frames' return (end).
    One per line; called from the health timer (every 100 ms)."""

    def __init__(self, stall_after_ms: float) -> None:
        self.stall_after_ms = stall_after_ms
        self.stalled = False

    def check(self, last_frames_mono: float | None, now_mono: float, now_wall: float, *,
              since_mono: float | None = None) -> Change | None:
        stalled = stall_check(last_frames_mono, now_mono, self.stall_after_ms, since_mono=since_mono)
        if stalled == self.stalled:
            return None
        self.stalled = stalled
        refs = [t for t in (last_frames_mono, since_mono) if t is not None]
        # Mono readings are turned into wall times by their distance from now.
        at = now_wall - (now_mono - max(refs))
        if stalled:
            return Change("LINE_DEAD", True, at,
                          f"no frames for {now_mono - max(refs):.1f} s (stalled PCM)")
        return Change("LINE_DEAD", False, at)

    def reset(self, at: float) -> Change | None:
        """The stream closed (or reopened): a stall in progress ends here."""
        if not self.stalled:
            return None
        self.stalled = False
        return Change("LINE_DEAD", False, at)
