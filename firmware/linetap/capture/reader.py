"""One reader per line, which opens its PCM; the reading waits on ALSA and on nothing else.

A sound card is read non-blocking (``alsa.py``): every period its buffer holds is taken, then
the card is left until a few more have gathered (``source.drain_s``, at most ``max_sleep_s``:
100 ms). In the recorder the cards are drained by two threads that wake anyway, on one 100 ms grid:
the pipeline at the start of each of its rounds (every 200 ms, ``CardDrainer.sweep``) and, between
two rounds, the ``CardDrainer``'s own thread, which then wakes 5 times a second for all the lines
(10 without a pipeline sweeping); the line's reader thread only opens the PCM and waits to reopen
it if it fails. Each period is still its own block, dated from the sample count; in the recorder
a drain's periods go on the queue as one ``Periods`` (``CardDrainer.queue_periods``) whose blocks
the pipeline makes only when it needs them (``capture.Run.of_periods``). A blocking source (the
ALSA ``file`` PCM of the tests and the demo, whose reads wait on their FIFO) is read by its own
reader thread, as it comes.

Blocks go to the shared queue without waiting (``BlockQueue.offer``); when the pipeline falls too
far behind (``max_queued`` blocks queued), blocks are dropped and counted (never waited for). A PCM that
fails is closed and reopened with exponential back-off; the reopened stream
resumes recording by itself.
"""

from __future__ import annotations

import _thread
import logging
import queue
import threading
import time
from typing import Callable

from ..clock import Clock
from ..config import LineConfig
from . import Block, Periods, Source, SourceError, SourceEvent, SourceFactory

logger = logging.getLogger(__name__)

PERIOD_MS = 20
SHARED_MIN_PERIODS = 2  # a source that gathers this many periods between drains may be drained by a CardDrainer


class BlockQueue(queue.Queue):
    """The readers' queue to the pipeline, which takes everything queued in one go.

    ``get`` per block costs the pipeline a lock round trip and a condition check 1,600 times
    a second at 32 lines; ``take_all`` is one. The readers queue with ``offer``; a card's drain
    in the recorder with ``offer_periods_each`` (one entry for each card's periods, all of a sweep's
    under one lock: ``CardDrainer.sweep``). The bound (``limit``) is
    in blocks: a ``Periods`` weighs its periods, anything else one (``weight``)."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.weight = 0  # blocks queued (a Periods' periods each), source events

    def _put(self, item: object) -> None:
        self.queue.append(item)
        self.weight += len(item.arrays) if isinstance(item, Periods) else 1

    def _get(self) -> object:
        item = self.queue.popleft()
        self.weight -= len(item.arrays) if isinstance(item, Periods) else 1
        return item

    def offer(self, item: object, limit: int) -> bool:
        """``put_nowait`` unless ``limit`` blocks are queued already (then False: not queued).

        One lock round trip per block where ``qsize()`` and ``put_nowait()`` took two; it
        never waits (the lock is only ever held for a list operation)."""
        with self.mutex:
            if self.weight >= limit:
                return False
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()
            return True

    def offer_all(self, items: list, limit: int) -> int:
        """``offer`` of each of ``items`` (blocks) in order, under one lock: how many were queued
        (the first ones; the rest found the queue full)."""
        with self.mutex:
            room = limit - self.weight
            if room < len(items):
                items = items[:max(0, room)]
            if items:
                self.queue.extend(items)
                self.weight += len(items)
                self.unfinished_tasks += len(items)
                self.not_empty.notify()
            return len(items)

    def offer_periods(self, item: Periods, limit: int) -> int:
        """``item`` queued as one entry, or as many of its first periods as ``limit`` leaves room
        for (then its ``arrays`` and ``end_frame`` are cut to them): how many periods were queued."""
        return self.offer_periods_each([(item, limit)])[0]

    def offer_periods_each(self, items: list[tuple[Periods, int]]) -> list[int]:
        """``offer_periods`` of each ``(item, limit)`` in order, under one lock (a sweep's drains,
        ``CardDrainer.sweep``: one lock round trip and one notify for all the cards, not one each):
        how many periods of each were queued."""
        counts = []
        with self.mutex:
            entries = 0
            for item, limit in items:
                room = limit - self.weight
                k = len(item.arrays)
                if room < k:
                    if room <= 0:
                        counts.append(0)
                        continue
                    item.arrays = item.arrays[:room]
                    item.end_frame = item.start_frame + sum(map(len, item.arrays))
                    k = room
                self.queue.append(item)
                self.weight += k
                entries += 1
                counts.append(k)
            if entries:
                self.unfinished_tasks += entries
                self.not_empty.notify(entries)
        return counts

    def take_all(self) -> list:
        """Everything queued now, oldest first (never blocks)."""
        return self.take_all_weighed()[0]

    def take_all_weighed(self) -> tuple[list, int]:
        """``take_all``, and how many blocks (and source events) that is."""
        with self.mutex:
            items, weight = list(self.queue), self.weight
            self.queue.clear()
            self.weight = 0
            if items:
                self.not_full.notify_all()
        return items, weight


class LineReader(threading.Thread):
    def __init__(self, line: LineConfig, out: BlockQueue, *, source_factory: SourceFactory,
                 clock: Clock, max_queued: int, backoff_s: tuple[float, float] = (0.1, 5.0),
                 max_sleep_s: float = 0.1, drainer: CardDrainer | None = None) -> None:
        super().__init__(name=f"capture-{line.name}", daemon=True)
        self.line = line
        self.out = out
        self.source_factory = source_factory
        self.clock = clock
        self.max_queued = max_queued
        self.backoff_s = backoff_s
        self.max_sleep_s = max_sleep_s  # between drains of a non-blocking source
        self.drainer = drainer  # drains a sound card on its shared thread (None: this one does)
        self._handed_back = threading.Event()  # the drainer gave the stream back, or stop()
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
        self._handed_back.set()

    def hand_back(self) -> None:
        """The drainer let go of this reader's stream (it failed: ``_Stream.error``): reopen it."""
        self._handed_back.set()

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
        """Read the open ``source`` until it fails (``SourceError``) or the reader stops.

        A source that gathers several periods between drains (a sound card read non-blocking)
        goes to the shared ``drainer`` when there is one: this thread then only waits for it to
        hand the stream back (failed) or for ``stop``. Otherwise it is read here: drained, then
        slept on for ``drain_s`` (at most ``max_sleep_s``), or read as it comes."""
        stream = _Stream(self, source)
        sleep_s = min(float(getattr(source, "drain_s", 0.0)), self.max_sleep_s)
        if self.drainer is not None and sleep_s >= SHARED_MIN_PERIODS * PERIOD_MS / 1000:
            self._handed_back.clear()
            if self.stopping.is_set():  # stop() came before the clear: its wake-up is gone
                return
            self.drainer.attach(stream, sleep_s)
            try:
                self._handed_back.wait()
            finally:
                self.drainer.detach(self)
            if stream.error is not None:
                raise stream.error
            return
        while not self.stopping.is_set():
            stream.drain()
            if sleep_s:
                # Non-blocking: the buffer is drained. It keeps what comes meanwhile.
                self.stopping.wait(sleep_s)


class _Stream:
    """One open stream of a reader, as it is dated and queued: whichever thread drains it."""

    __slots__ = ("reader", "source", "pending", "frames", "anchor_frame", "anchor_wall", "anchor_mono",
                 "overrun", "error", "name", "rate", "out", "limit")

    def __init__(self, reader: LineReader, source: Source) -> None:
        self.reader = reader
        self.source = source
        # The reader's, fixed for its life: what each drain queued looked up through it.
        self.name, self.rate, self.out, self.limit = reader.line.name, reader.line.rate, reader.out, reader.max_queued
        self.pending = getattr(source, "pending", None)
        self.frames = 0  # frames read since the stream opened
        self.anchor_frame = 0
        self.anchor_wall: float | None = None  # wall time of ``anchor_frame`` (None: date the next)
        self.anchor_mono = 0.0  # its monotonic time (blocks carry both: hook edges are monotonic)
        self.overrun = False  # samples were lost before the next block
        self.error: SourceError | None = None  # why the drainer handed the stream back

    def drain(self, together: bool = False) -> None:
        """Read until the source has nothing more now (a read found none), or the reader stops.
        Raises ``SourceError``. ``together``: the periods read are queued at the end, under one
        lock (a card's drain never waits; a self-paced source may never find nothing)."""
        if together and self.reader.drainer is not None and self.reader.drainer.queue_periods:
            self._drain_periods()
            return
        reader = self.reader
        read, stopping, clock, rate = self.source.read, reader.stopping, reader.clock, reader.line.rate
        out, name, stream, limit = reader.out, reader.line.name, reader.stream, reader.max_queued
        held: list[Block] = []
        try:
            while not stopping.is_set():
                r = read()
                if r.overrun:
                    # Samples were lost: the count since the anchor no longer tells the time.
                    # Re-anchor on the next block and flag it, so the gap shows.
                    reader.overruns += 1
                    self.overrun = True
                    self.anchor_wall = None
                    continue
                if r.frames is None or not len(r.frames):
                    return
                n = len(r.frames)
                frames = self.frames
                if self.anchor_wall is None:
                    # The block just returned ends now, less what the source captured since: its
                    # first frame was (n + pending)/rate ago.
                    behind = self.pending() if self.pending is not None else 0
                    self.anchor_wall = clock.wall() - (n + behind) / rate
                    self.anchor_mono = clock.mono() - (n + behind) / rate
                    self.anchor_frame = frames
                t = self.anchor_wall + (frames - self.anchor_frame) / rate
                if not together:  # (together: once, when the drain's blocks are queued)
                    reader.last_frames_mono = clock.mono()
                reader.frames_read += n
                block = Block(name, r.frames, frames, t, rate, self.overrun, stream,
                              self.anchor_mono + (frames - self.anchor_frame) / rate)
                if together:
                    held.append(block)
                    self.overrun = False
                elif out.offer(block, limit):
                    self.overrun = False
                else:
                    reader.dropped_blocks += 1
                self.frames = frames + n
        finally:
            if held:
                # A drain takes microseconds: one clock read dates all its periods' arrival.
                reader.last_frames_mono = clock.mono()
                queued = out.offer_all(held, limit)
                if queued < len(held):
                    reader.dropped_blocks += len(held) - queued
                    # The first block queued after these carries an overrun they carried.
                    self.overrun = self.overrun or any(b.overrun for b in held[queued:])

    def _drain_periods(self, held: list | None = None) -> None:
        """``drain(together=True)`` in the recorder (``CardDrainer.queue_periods``): what is read
        is queued as one ``Periods`` per anchor (one a drain, unless an overrun re-anchors the
        stream in it), not a ``Block`` per period: the loop only reads and keeps each period's
        samples (the recorder's 200 periods a second at 4 lines, 1,600 at 32). Each period is
        dated exactly as ``drain`` dates its block (``Periods``), when the pipeline asks.

        ``held`` (a sweep's): the drain's last ``Periods`` is added to it for the sweep to queue
        with the other cards' (``_queue_held``) instead of queued at once."""
        reader = self.reader
        read, is_stopping = self.source.read, reader.stopping.is_set
        got: list = []  # samples read since the anchor, in order
        first = frames = self.frames  # the stream's frame of got[0]; of the next period read
        try:
            while not is_stopping():
                r = read()
                if r.overrun:
                    # Samples were lost: the count since the anchor no longer tells the time.
                    # Re-anchor on the next period and flag it, so the gap shows.
                    if got:
                        self.frames = frames
                        if held:  # queued in the order read: the sweep's earlier drains first
                            _queue_held(held)
                            held.clear()
                        self._queue_periods(got, first)
                        got, first = [], frames
                    reader.overruns += 1
                    self.overrun = True
                    self.anchor_wall = None
                    continue
                x = r.frames
                if x is None:
                    return
                n = len(x)
                if not n:
                    return
                if self.anchor_wall is None:
                    # The period just returned ends now, less what the source captured since: its
                    # first frame was (n + pending)/rate ago.
                    clock, rate = reader.clock, self.rate
                    behind = self.pending() if self.pending is not None else 0
                    self.anchor_wall = clock.wall() - (n + behind) / rate
                    self.anchor_mono = clock.mono() - (n + behind) / rate
                    self.anchor_frame = frames
                got.append(x)  # (got empty: ``first`` is ``frames``)
                frames += n
        finally:
            self.frames = frames
            if got:
                self._queue_periods(got, first, held)

    def _queue_periods(self, got: list, first: int, held: list | None = None) -> None:
        """Queue the periods ``got`` (from the stream's frame ``first`` up to ``self.frames``, the
        current anchor) as one ``Periods``; what the queue has no room for is dropped and counted.
        ``held``: added to it, for the sweep to queue (``_queue_held``, then ``queued``)."""
        reader, end = self.reader, self.frames
        reader.frames_read += end - first
        # A drain takes microseconds: one clock read dates all its periods' arrival.
        reader.last_frames_mono = reader.clock.mono()
        item = Periods(self.name, got, first, end, (self.anchor_wall, self.anchor_mono, self.anchor_frame),
                       self.rate, self.overrun, reader.stream)
        if held is not None:
            held.append((self, item))
        else:
            self.queued(len(got), self.out.offer_periods(item, self.limit))

    def queued(self, k: int, queued: int) -> None:
        """``queued`` of the ``k`` periods of the stream's last ``Periods`` were queued: the rest are
        dropped and counted."""
        reader = self.reader
        if queued < k:
            reader.dropped_blocks += k - queued
            # The first period queued after these carries an overrun they carried.
            if queued:
                self.overrun = False
        else:
            self.overrun = False


def _queue_held(held: list[tuple[_Stream, Periods]]) -> None:
    """Queue what a sweep's drains read (``_Stream._queue_periods``), in order: under one lock for
    each run of streams sharing a queue (in the recorder, all of them)."""
    i = 0
    while i < len(held):
        out = held[i][0].out
        j = i + 1
        while j < len(held) and held[j][0].out is out:
            j += 1
        part = held[i:j]
        ks = [len(item.arrays) for _, item in part]  # (before the queue cuts an item it has no room for)
        for (stream, _), k, queued in zip(part, ks, out.offer_periods_each([(item, s.limit) for s, item in part])):
            stream.queued(k, queued)
        i = j


class Wake:
    """A timed sleep that another thread can cut short (``set``), for the threads that wake on a
    tick: ``threading.Event.wait`` with a timeout builds a ``Condition`` wait (a new lock, a
    waiter list, the condition's lock taken twice) around the same timed lock acquire. On this
    2-core VM a wake-up through ``Event.wait`` cost 88-108 us of CPU, through this 73-92 us
    (6 x 100 waits of 20 ms each, ``time.thread_time``): for the 15 wake-ups a second of the card
    drainer and the pipeline, about 0.02-0.03 % of a core whatever the number of lines.

    Unlike an ``Event`` it resets itself: a ``set`` wakes the one ``wait`` in progress, or else
    the next one, once."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held: no wake-up pending

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # released already: a wake-up is pending
            pass

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True if woken by ``set`` (the wake-up is then used up)."""
        return self._lock.acquire(timeout=max(0.0, timeout_s))


def next_tick_s(now_s: float, every_s: float) -> float:
    """The first multiple of ``every_s`` after ``now_s`` (monotonic seconds): a drainer that no
    pipeline sweeps for ticks on them, so that the pipeline's rounds (``pipeline.ROUND_PHASE_S``)
    keep their place between two drains however long a drain takes."""
    return now_s + every_s - (now_s % every_s)


def next_shared_tick_s(now_s: float, every_s: float, rounds: tuple[float, float]) -> float:
    """The drainer's next tick when the pipeline sweeps the cards at its rounds (``rounds``: every
    ``rounds[0]`` seconds, ``rounds[1]`` past a multiple of it): the first point after ``now_s`` of
    the ``every_s`` grid laid through the rounds that is not itself a round. At the defaults (100 ms
    drains, rounds every 200 ms) the drainer drains halfway between two rounds: the cards are still
    drained every 100 ms, and its thread wakes 5 times a second, not 10. If the pipeline's round is
    held up (a slow disk), its sweep waits with it; the drainer's do not: a card is then drained
    every 200 ms, well inside its 500 ms buffer (``alsa.BUFFER_PERIODS``)."""
    gather_s, phase_s = rounds
    t = now_s + every_s - ((now_s - phase_s) % every_s)
    if t - now_s < every_s / 100:  # on a point already (to the float's rounding): the next one
        t += every_s
    if every_s < gather_s:
        off = (t - phase_s) % gather_s
        if min(off, gather_s - off) < every_s / 100:  # a round's point: the pipeline sweeps there
            t += every_s
    return t


class CardDrainer:
    """One thread that drains every sound card, instead of a thread per line waking for its own.

    On this 2-core VM a Python thread's wake-up costs tens of microseconds of CPU, as much as
    the work of a drain: 32 lines' readers waking 10 times a second each took 1.1-1.4 % of a core,
    this one thread 0.5-0.6 % (``benchmarks/pipeline.py --realtime``, README: Benchmarks). Here every
    card is drained on one tick (the shortest ``interval_s`` of the streams attached, 100 ms by
    default): 10 wake-ups a second for all the lines. In the recorder the pipeline, which wakes
    every 200 ms anyway, sweeps the cards itself at the start of each round (``sweep``; ``rounds``
    says when), and this thread takes only the ticks in between (``next_shared_tick_s``): 5
    wake-ups a second. Its CPU went from 0.32-0.35 % of a core to 0.17-0.18 % at 4 lines and from
    1.21-1.43 % to 0.58-0.67 % at 32, with drains queued as ``Periods`` (``--realtime 40 --parts``,
    alternated with the 10-tick drainer, load 1.1-5.8); the rounds' part grew by about 0.06
    points at 4 lines (their sweep). A card read non-blocking never waits, so one slow line cannot hold the
    others up, and a sweep holds the lock only while it reads (the pipeline writes to the disk
    after it, never under it); a PCM that paces itself (a ``file`` PCM waits on its FIFO) is not
    attached and keeps its own thread.

    The thread starts with the first stream attached and ends when none is left. A stream whose
    read fails is detached and handed back to its reader (``_Stream.error``), which reopens it."""

    def __init__(self, name: str = "capture-cards", after_sweep: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.after_sweep = after_sweep  # after every sweep of its own (the recorder's: a StallWatch's check)
        # (every_s, phase_s) of the pipeline's rounds, which sweep too (None: this thread takes every tick)
        self.rounds: tuple[float, float] | None = None
        # Each drain queued as one ``Periods`` (the recorder's pipeline takes them), not a Block a period.
        self.queue_periods = False
        self._lock = threading.Lock()  # held for a sweep: detach waits until the stream is not read
        self._streams: dict[LineReader, tuple[_Stream, float]] = {}
        self._wake = Wake()
        self._thread: threading.Thread | None = None

    def attach(self, stream: _Stream, interval_s: float) -> None:
        """Drain ``stream`` at once, then every ``interval_s`` at most, until ``detach``."""
        with self._lock:
            self._streams[stream.reader] = (stream, interval_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()  # a new stream is dated from its first read: read it now

    def detach(self, reader: LineReader) -> None:
        with self._lock:
            self._streams.pop(reader, None)
            last = not self._streams
        if last:
            self._wake.set()  # the thread ends

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._streams:
                    self._thread = None
                    return
                interval_s = min(i for _, i in self._streams.values())
            rounds, now = self.rounds, time.monotonic()
            tick = next_tick_s(now, interval_s) if rounds is None else next_shared_tick_s(now, interval_s, rounds)
            self._wake.wait(tick - time.monotonic())
            self.sweep()
            try:
                self.after_sweep()  # outside the lock: it only reads the readers' plain attributes
            except Exception:  # noqa: BLE001 - never a reason to stop draining
                logger.exception("after the sweep")

    def sweep(self) -> None:
        """Drain every attached stream now (what they read queued under one lock at the end: in the
        recorder, ``queue_periods``; else each stream's under one lock); a stream
        whose read fails is detached and handed back to its reader. Never waits but for another
        sweep in progress (microseconds): the pipeline calls it at the start of each round."""
        with self._lock:
            if not self._streams:
                return
            # With ``queue_periods`` each drain's Periods is held and all are queued together at the
            # end (``_queue_held``), in the order read: one lock round trip for the cards, not one each.
            # With ``Read`` not frozen and ``_drain_periods`` called directly: a sweep of 32 cards of 5
            # periods each, 1.84 M -> 1.17 M instructions (callgrind); the drainer's thread at 32 lines
            # 0.43-0.46 -> 0.36-0.42 % of a core (``benchmarks/pipeline.py --one-rt 32 opus
            # --realtime 40 --parts``, alternated, 3 runs each).
            held: list | None = [] if self.queue_periods else None
            try:
                for reader, (stream, _) in list(self._streams.items()):
                    try:
                        if held is not None:
                            stream._drain_periods(held)  # what drain(together=True) calls then
                        else:
                            stream.drain(together=True)
                    except SourceError as e:
                        stream.error = e
                        del self._streams[reader]
                        reader.hand_back()
                    except Exception as e:  # noqa: BLE001 - one line's failure must not end the others'
                        stream.error = SourceError(f"{reader.line.pcm}: {e!r}")
                        logger.exception("line %s: draining failed", reader.line.name)
                        del self._streams[reader]
                        reader.hand_back()
            finally:
                if held:
                    _queue_held(held)
