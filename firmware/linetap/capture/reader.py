"""One reader thread per line: it waits on ALSA and on nothing else.

A sound card is read non-blocking (``alsa.py``): the reader takes every period its buffer holds,
then sleeps until a few more have gathered (``source.drain_s``, at most ``max_sleep_s``: 100 ms),
so it wakes 10 times a second instead of once per 20 ms period. Each period is still its own
block, dated from the sample count. A blocking source (the ALSA ``file`` PCM of the tests and
the demo, whose reads wait on their FIFO) is read one period per wake-up, as it comes.

Blocks go to the shared queue with ``put_nowait``; when the pipeline falls too
far behind, blocks are dropped and counted (never waited for). A PCM that
fails is closed and reopened with exponential back-off; the reopened stream
resumes recording by itself.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..clock import Clock
from ..config import LineConfig
from . import Block, SourceError, SourceEvent, SourceFactory

logger = logging.getLogger(__name__)

PERIOD_MS = 20


class BlockQueue(queue.Queue):
    """The readers' queue to the pipeline, which takes everything queued in one go.

    ``get`` per block costs the pipeline a lock round trip and a condition check 1,600 times
    a second at 32 lines; ``take_all`` is one. The readers queue with ``offer``.
    """

    def offer(self, item: object, limit: int) -> bool:
        """``put_nowait`` unless ``limit`` items are queued already (then False: not queued).

        One lock round trip per block where ``qsize()`` and ``put_nowait()`` took two; it
        never waits (the lock is only ever held for a list operation)."""
        with self.mutex:
            if self._qsize() >= limit:
                return False
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()
            return True

    def take_all(self) -> list:
        """Everything queued now, oldest first (never blocks)."""
        with self.mutex:
            items = list(self.queue)
            self.queue.clear()
            if items:
                self.not_full.notify_all()
        return items


class LineReader(threading.Thread):
    def __init__(self, line: LineConfig, out: BlockQueue, *, source_factory: SourceFactory,
                 clock: Clock, max_queued: int, backoff_s: tuple[float, float] = (0.1, 5.0),
                 max_sleep_s: float = 0.1) -> None:
        super().__init__(name=f"capture-{line.name}", daemon=True)
        self.line = line
        self.out = out
        self.source_factory = source_factory
        self.clock = clock
        self.max_queued = max_queued
        self.backoff_s = backoff_s
        self.max_sleep_s = max_sleep_s  # between drains of a non-blocking source
        self.period_frames = line.rate * PERIOD_MS // 1000
        self.stopping = threading.Event()
        # Read by the health monitor from other threads (plain attribute stores are atomic).
        self.is_open = False
        self.last_frames_mono: float | None = None
        self.frames_read = 0
        self.overruns = 0
        self.dropped_blocks = 0
        self.stream = 0
        self.opened_mono: float | None = None  # when the current stream opened (stall reference)
        self.error: str | None = None  # why the PCM is not open (None while it is)
        self.error_at: float | None = None  # wall time the PCM failed
        # Every outage, however short: (count, (failed at, reopened at, why) of the last one).
        self.outages = 0
        self.last_outage: tuple[float, float, str] | None = None

    def stop(self) -> None:
        self.stopping.set()

    def _event(self, kind: str, detail: str = "") -> None:
        self.out.put_nowait(SourceEvent(self.line.name, kind, self.clock.wall(), detail, self.stream))

    def run(self) -> None:
        delay = self.backoff_s[0]
        last_error = ""
        while not self.stopping.is_set():
            try:
                source = self.source_factory(self.line.pcm, self.line.rate, self.line.channels,
                                             self.period_frames)
            except SourceError as e:
                if self.error is None:
                    self.error_at = self.clock.wall()
                self.error = str(e)
                if str(e) != last_error:
                    logger.warning("line %s: cannot open %s: %s (retrying)", self.line.name, self.line.pcm, e)
                    self._event("lost", str(e))
                    last_error = str(e)
                self.stopping.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            if self.stopping.is_set():
                source.close()
                break
            self.stream += 1
            delay = self.backoff_s[0]
            last_error = ""
            logger.info("line %s: capturing from %s", self.line.name, self.line.pcm)
            self.opened_mono = self.clock.mono()
            self.last_frames_mono = None
            if self.error is not None and self.error_at is not None:
                self.last_outage = (self.error_at, self.clock.wall(), self.error)
                self.outages += 1
            self.is_open = True
            self.error = None
            self.error_at = None
            self._event("opened")
            try:
                self._pump(source)
            except SourceError as e:
                logger.warning("line %s: capture failed: %s (reopening)", self.line.name, e)
                last_error = str(e)
                self.is_open = False
                self.error_at = self.clock.wall()
                self.error = str(e)
                self._event("lost", str(e))
            finally:
                self.is_open = False
                source.close()

    def _pump(self, source) -> None:
        rate = self.line.rate
        frames = 0
        anchor_frame = 0
        anchor_wall: float | None = None
        anchor_mono = 0.0
        overrun = False
        out, name, stream = self.out, self.line.name, self.stream
        sleep_s = min(float(getattr(source, "drain_s", 0.0)), self.max_sleep_s)
        pending = getattr(source, "pending", None)
        while not self.stopping.is_set():
            r = source.read()
            if r.overrun:
                # Samples were lost: the count since the anchor no longer tells the time.
                # Re-anchor on the next block and flag it, so the gap shows.
                self.overruns += 1
                overrun = True
                anchor_wall = None
                continue
            if r.frames is None or not len(r.frames):
                if sleep_s:
                    # Non-blocking: the buffer is drained. It keeps what comes meanwhile.
                    self.stopping.wait(sleep_s)
                continue
            n = len(r.frames)
            if anchor_wall is None:
                # The block just returned ends now, less what the source captured since: its
                # first frame was (n + pending)/rate ago.
                behind = pending() if pending is not None else 0
                anchor_wall = self.clock.wall() - (n + behind) / rate
                anchor_mono = self.clock.mono() - (n + behind) / rate
                anchor_frame = frames
            t = anchor_wall + (frames - anchor_frame) / rate
            self.last_frames_mono = self.clock.mono()
            self.frames_read += n
            if out.offer(Block(name, r.frames, frames, t, rate, overrun, stream,
                               anchor_mono + (frames - anchor_frame) / rate), self.max_queued):
                overrun = False
            else:
                self.dropped_blocks += 1
            frames += n
