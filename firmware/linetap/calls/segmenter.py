"""Call segmentation as pure state machines: idle -> in_call -> idle.

A segmenter is stepped once per block with values only (level, hook state,
wall time, frame counts) and answers with what to do: start a recording at a
frame (which may lie in the pre-roll, before the block), end one, or discard
one too short to be a call. It never touches files or clocks, so the tests
are exact.

Frames are counted on the line's stream; a recording's boundaries are frames
on that stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import LineConfig
from ..detect.level import Threshold


@dataclass(frozen=True, slots=True)
class Start:
    frame: int          # first frame of the recording (pre-roll included)
    continuation: bool = False  # split of a longer call/segment: no pre-roll, contiguous


@dataclass(frozen=True, slots=True)
class End:
    frame: int          # end of the recording (exclusive)
    reason: str         # vox_timeout | onhook | max_length | ...
    discard: bool = False  # shorter than the minimum: not a call


Action = Start | End


class VoxSegmenter:
    """Voice-operated: start above ``start_dbfs`` held for ``attack``, end after ``hang`` below ``stop_dbfs``.

    Hysteresis: once in a call, anything at or above the (lower) stop threshold
    keeps it alive. The recording includes the pre-roll before the onset and the
    hang time after the last voice, so its audio is continuous evidence.
    """

    pending_end = None  # no end waits on a debounce (see OffhookSegmenter)

    def __init__(self, line: LineConfig) -> None:
        r = line.rate
        self.start_dbfs = line.vox_start_dbfs
        self.stop_dbfs = line.vox_stop_dbfs
        self.attack_frames = int(line.vox_attack_ms * r / 1000)
        self.hang_frames = int(line.vox_hang_s * r)
        self.preroll_frames = int(line.preroll_s * r)
        self.min_call_frames = int(line.min_call_s * r)
        self.max_call_frames = int(line.max_call_s * r)
        self.in_call = False
        self._loud_since: int | None = None
        self._rec_start = 0
        self._onset = 0
        self._last_voice_end = 0
        self._thresholds: dict[int, tuple[Threshold, Threshold]] = {}  # block size -> (start, stop)

    def step(self, level_dbfs: float, start_frame: int, n: int) -> list[Action]:
        end_frame = start_frame + n
        actions: list[Action] = []
        if not self.in_call:
            if level_dbfs > self.start_dbfs:
                if self._loud_since is None:
                    self._loud_since = start_frame
                if end_frame - self._loud_since >= max(self.attack_frames, 1):
                    self.in_call = True
                    self._onset = self._loud_since
                    self._rec_start = max(0, self._onset - self.preroll_frames)
                    self._last_voice_end = end_frame
                    actions.append(Start(self._rec_start))
            else:
                self._loud_since = None
            return actions
        if level_dbfs >= self.stop_dbfs:
            self._last_voice_end = end_frame
        elif end_frame - self._last_voice_end >= self.hang_frames:
            voiced = self._last_voice_end - self._onset
            actions.append(End(end_frame, "vox_timeout", discard=voiced < self.min_call_frames))
            self.in_call = False
            self._loud_since = None
            return actions
        if end_frame - self._rec_start >= self.max_call_frames:
            actions.append(End(end_frame, "max_length"))
            actions.append(Start(end_frame, continuation=True))
            self._rec_start = end_frame
            self._onset = min(self._onset, end_frame)
        return actions

    def skip(self, levels: list[float], start_frame: int, n: int, period: int = 0, *, size: int = 0) -> bool:
        """Step through consecutive blocks (``levels``, ``n`` frames in all from ``start_frame``;
        ``period``: frames in each, 0 if they differ) if none of them would start or end a call:
        True, and the state is what ``step`` on each would leave. False, and nothing changed,
        if one might (then ``step`` them one by one). With ``size`` (samples in each block),
        ``levels`` are the blocks' sums of squares (``detect.level.block_energies``), tested
        against the thresholds as their levels would be (``Threshold``): no logarithm per block.

        Most of a line's blocks are quiet while idle or voiced while in a call: the pipeline
        then spends one call on a run of blocks instead of one each. Speech has pauses: a run
        with blocks under ``stop_dbfs`` cannot end the call either while even its end is less
        than the hang time after the last voice before it (the hang only restarts in it)."""
        if size:
            start, stop = self._thresholds.get(size) or self._thresholds_for(size)
            loud = start.any_above(levels) if not self.in_call else False
            all_voiced = stop.all_at_or_above(levels) if self.in_call else False
            voiced = stop.at_or_above
        else:
            loud = not self.in_call and max(levels) > self.start_dbfs
            all_voiced = self.in_call and min(levels) >= self.stop_dbfs
            voiced = self.stop_dbfs.__le__
        if not self.in_call:
            if loud:
                return False
            self._loud_since = None
            return True
        end_frame = start_frame + n
        if end_frame - self._rec_start >= self.max_call_frames:
            return False
        if all_voiced:
            self._last_voice_end = end_frame
            return True
        if not period or end_frame - self._last_voice_end >= self.hang_frames:
            return False
        for k in range(len(levels) - 1, -1, -1):
            if voiced(levels[k]):  # the last voiced block: the hang restarts at its end
                self._last_voice_end = start_frame + (k + 1) * period
                break
        return True

    def _thresholds_for(self, size: int) -> tuple[Threshold, Threshold]:
        self._thresholds[size] = pair = (Threshold(self.start_dbfs, size), Threshold(self.stop_dbfs, size))
        return pair

    def reset(self) -> None:
        """The stream broke (device lost): any call has been ended by the caller."""
        self.in_call = False
        self._loud_since = None


class OffhookSegmenter:
    """Loop current: off-hook starts a call, on-hook ends it, each debounced in audio time.

    The hook state is given per block with the frame it changed at (``since_frame``: the edge,
    stamped when it happened; default the block's first frame). A change counts once it has
    held ``offhook_debounce_ms``; the call then starts (with its pre-roll) or ends *at the
    edge*, not where the debounce ran out: a hang-up cuts the call where the phone was put
    down. While an on-hook edge is being debounced, ``pending_end`` is its frame, so the
    caller writes no audio past it until it is known to be a bounce or the end."""

    def __init__(self, line: LineConfig) -> None:
        r = line.rate
        self.debounce_frames = int(line.offhook_debounce_ms * r / 1000)
        self.preroll_frames = int(line.preroll_s * r)
        self.min_call_frames = int(line.min_call_s * r)
        self.max_call_frames = int(line.max_call_s * r)
        self.in_call = False
        self._raw: bool | None = None
        self._raw_since = 0
        self._rec_start = 0
        self._offhook_at = 0

    def step(self, offhook: bool, start_frame: int, n: int, since_frame: int | None = None) -> list[Action]:
        end_frame = start_frame + n
        if offhook != self._raw:
            self._raw = offhook
            # An edge stamped before this block (the pin's callback, or a late block) is still
            # where it happened; never before the stream or after this block.
            self._raw_since = start_frame if since_frame is None else max(0, min(since_frame, end_frame))
        stable = end_frame - self._raw_since >= max(self.debounce_frames, 1)
        actions: list[Action] = []
        if stable and offhook and not self.in_call:
            self.in_call = True
            self._offhook_at = self._raw_since
            self._rec_start = max(0, self._raw_since - self.preroll_frames)
            actions.append(Start(self._rec_start))
        elif stable and not offhook and self.in_call:
            self.in_call = False
            held = self._raw_since - self._offhook_at
            actions.append(End(max(self._raw_since, self._rec_start), "onhook", discard=held < self.min_call_frames))
        elif self.in_call and end_frame - self._rec_start >= self.max_call_frames:
            actions += [End(end_frame, "max_length"), Start(end_frame, continuation=True)]
            self._rec_start = end_frame
        return actions

    @property
    def pending_end(self) -> int | None:
        """The frame of an on-hook edge still being debounced during a call, else None."""
        return self._raw_since if self.in_call and self._raw is False else None

    def reset(self) -> None:
        self.in_call = False


class ContinuousSegmenter:
    """Broadcast-logger mode: always recording, cut at wall-clock multiples of ``segment_s``."""

    pending_end = None  # no end waits on a debounce (see OffhookSegmenter)

    def __init__(self, line: LineConfig) -> None:
        self.rate = line.rate
        self.segment_s = line.segment_s
        self.in_call = False
        self._boundary = math.inf

    def step(self, t_wall: float, start_frame: int, n: int) -> list[Action]:
        if not self.in_call:
            self.in_call = True
            self._boundary = (math.floor(t_wall / self.segment_s) + 1) * self.segment_s
            return [Start(start_frame)]
        t_end = t_wall + n / self.rate
        if t_end >= self._boundary:
            # Cut inside this block, at the frame nearest the boundary.
            cut = start_frame + min(n, max(0, round((self._boundary - t_wall) * self.rate)))
            self._boundary += self.segment_s
            return [End(cut, "max_length"), Start(cut, continuation=True)]
        return []

    def reset(self) -> None:
        self.in_call = False
