"""A line's call life cycle: level -> segmenter -> pre-roll ring -> recording.

``LineCalls.on_block`` runs on the pipeline thread for every block of its line.
It turns the segmenter's frame-exact decisions into file operations through an
injected ``open_recording`` (so tests can count what would be written).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Protocol

import numpy as np

from ..capture import Block
from ..config import LineConfig
from ..detect.level import FLOOR_DBFS, dbfs
from .segmenter import ContinuousSegmenter, End, OffhookSegmenter, Start, VoxSegmenter

logger = logging.getLogger(__name__)


class RecordingLike(Protocol):
    id: int
    frames: int
    caller_number: str | None
    caller_name: str | None
    dtmf: str

    def write(self, frames: np.ndarray) -> None: ...
    def finish(self, end_reason: str, status: str = "complete") -> dict[str, Any]: ...
    def discard(self) -> None: ...


class CallListener(Protocol):
    def call_started(self, line: str, call_id: int, started_at: float) -> None: ...
    def call_ended(self, line: str, summary: dict[str, Any]) -> None: ...


class NullListener:
    def call_started(self, line: str, call_id: int, started_at: float) -> None:
        pass

    def call_ended(self, line: str, summary: dict[str, Any]) -> None:
        pass


OpenRecording = Callable[[LineConfig, float], RecordingLike]


class LineCalls:
    def __init__(self, line: LineConfig, *, open_recording: OpenRecording,
                 hook: Callable[[], bool] | None = None, listener: CallListener | None = None) -> None:
        self.line = line
        self.open_recording = open_recording
        self.hook = hook
        self.listener = listener or NullListener()
        if line.trigger == "vox":
            self.segmenter: Any = VoxSegmenter(line)
        elif line.trigger == "offhook":
            self.segmenter = OffhookSegmenter(line)
        else:
            self.segmenter = ContinuousSegmenter(line)
        self.preroll_frames = int(line.preroll_s * line.rate)
        self._ring: deque[Block] = deque()
        self._ring_frames = 0
        self.recording: RecordingLike | None = None
        self._rec_started_at = 0.0
        self._written_to = 0
        self.stream = -1
        self.level_dbfs = FLOOR_DBFS
        self.last_block_t: float | None = None
        self.calls_recorded = 0
        self.frames_seen = 0  # every frame handled, for progress checks (watchdog, tests)

    @property
    def state(self) -> str:
        return "recording" if self.recording is not None else "idle"

    # --- the hot path: 50 times a second per line ---
    def on_block(self, block: Block) -> None:
        if block.stream != self.stream:
            self._new_stream(block.stream)
        self.level_dbfs = level = dbfs(block.frames)
        self.last_block_t = block.t_wall
        s, n = block.start_frame, len(block.frames)
        seg = self.segmenter
        if self.line.trigger == "vox":
            actions = seg.step(level, s, n)
        elif self.line.trigger == "offhook":
            actions = seg.step(bool(self.hook()) if self.hook else False, s, n)
        else:
            actions = seg.step(block.t_wall, s, n)
        for a in actions:
            if isinstance(a, End):
                self._write_until(block, a.frame)
                self._end(a.reason, discard=a.discard)
            elif isinstance(a, Start):
                self._start(block, a.frame, a.continuation)
        if self.recording is not None:
            self._write_until(block, s + n)
        self._remember(block)
        self.frames_seen += n

    def _start(self, block: Block, frame: int, continuation: bool) -> None:
        s = block.start_frame
        started_at = block.t_wall + (frame - s) / block.rate
        self.recording = rec = self.open_recording(self.line, started_at)
        self._rec_started_at = started_at
        self._written_to = frame
        if frame < s and not continuation:
            pre = self._ring_since(frame)
            if len(pre):
                rec.write(pre)
            self._written_to = s
        self.listener.call_started(self.line.name, rec.id, started_at)

    def _write_until(self, block: Block, frame: int) -> None:
        rec = self.recording
        if rec is None:
            return
        s = block.start_frame
        a, b = max(self._written_to, s) - s, min(frame, s + len(block.frames)) - s
        if b > a:
            rec.write(block.frames[a:b])
            self._written_to = s + b

    def _end(self, reason: str, *, discard: bool = False) -> dict[str, Any] | None:
        rec, self.recording = self.recording, None
        if rec is None:
            return None
        if discard:
            logger.info("line %s: %.1f s of sound was too short for a call; not kept",
                        self.line.name, rec.frames / self.line.rate)
            rec.discard()
            return None
        summary = rec.finish(reason)
        self.calls_recorded += 1
        logger.info("line %s: call %s ended (%s), %.1f s", self.line.name, rec.id, reason,
                    summary["duration_s"])
        self.listener.call_ended(self.line.name, summary)
        return summary

    def _remember(self, block: Block) -> None:
        if self.preroll_frames <= 0:
            return
        self._ring.append(block)
        self._ring_frames += len(block.frames)
        while self._ring and self._ring_frames - len(self._ring[0].frames) >= self.preroll_frames:
            self._ring_frames -= len(self._ring.popleft().frames)

    def _ring_since(self, frame: int) -> np.ndarray:
        parts = [b.frames[max(0, frame - b.start_frame):] for b in self._ring
                 if b.start_frame + len(b.frames) > frame]
        if not parts:
            return np.zeros((0, self.line.channels), dtype=np.int16)
        return np.concatenate(parts)

    def _new_stream(self, stream: int) -> None:
        # A reopened PCM starts counting frames from zero: nothing carries over.
        self.stream = stream
        self._ring.clear()
        self._ring_frames = 0
        if self.recording is not None:
            self._end("fault")
        self.segmenter.reset()

    # --- events from outside the audio ---
    def source_lost(self) -> None:
        """The PCM failed: end any open call (what was captured is kept)."""
        self._end("fault")
        self.segmenter.reset()
        self._ring.clear()
        self._ring_frames = 0
        self.level_dbfs = FLOOR_DBFS

    def shutdown(self) -> dict[str, Any] | None:
        return self._end("shutdown")
