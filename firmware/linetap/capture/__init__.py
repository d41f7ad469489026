"""Capture: one reader thread per line, pulling 20 ms periods from ALSA.

The API (``Source``, ``Block``, ``SourceEvent``; what the pipeline takes: ``Periods``, ``Run``)
is defined here apart from the ALSA implementation in ``alsa.py``, so tests and the pipeline can
use a fake source at the same seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Iterator, Protocol, overload

import numpy as np


class SourceError(OSError):
    """A PCM failed (vanished, cannot be opened, I/O error)."""


class DeviceGone(SourceError):
    """The device is not there (ENODEV / no such PCM / no such card)."""


@dataclass(slots=True)
class Read:
    """What one read of a source returned: samples, or an overrun (lost samples).

    Read-only by convention, not ``frozen`` (as ``Block``): a frozen dataclass is built through
    ``object.__setattr__``, 0.54 us a ``Read`` on this VM against 0.18 us, and a source makes
    one per read: 1,920 a second at 32 lines (50 periods and about 10 empty reads per line)."""

    frames: np.ndarray | None  # int16, shape (n, channels)
    overrun: bool = False


class Source(Protocol):
    """A capture stream for one line: ``read`` returns one period, or ``Read(None)`` when none is
    ready yet.

    A *blocking* source's ``read`` waits for the period itself. A *non-blocking* one (a sound
    card opened non-blocking, see ``alsa.py``) returns at once; it also has these, which the
    reader looks for (sources without them are taken as blocking):

    - ``drain_s``: how long the reader may sleep after a read found nothing: the card's buffer
      keeps the periods meanwhile, and the reader then reads all that gathered (a few periods
      per wake-up instead of one). A source whose ``drain_s`` is two periods or more is read
      by the recorder's one ``CardDrainer`` thread with the other cards, so its reads must
      never wait;
    - ``pending()``: frames captured but not yet read, just after a read: the reader dates the
      stream from it (the period it just read is older than "now" by that much).
    """

    def read(self) -> Read: ...
    def close(self) -> None: ...


class SourceFactory(Protocol):
    def __call__(self, pcm: str, rate: int, channels: int, period_frames: int) -> Source: ...


@dataclass(slots=True)
class Block:
    """One period of audio from a line, stamped from its sample count (read-only by convention:
    not ``frozen``, because a frozen dataclass is built through ``object.__setattr__`` and costs
    four times as much, and a reader makes 50 of these a second per line; for a sound card in the
    recorder the pipeline makes them, when it needs them: ``Periods``, ``LazyBlocks``).

    ``start_frame`` counts frames since the line's stream was (re)opened;
    ``t_wall`` is the UTC time of the first frame: the stream's anchor plus
    ``frames / rate``. ``overrun`` marks that samples were lost just before it.
    ``t_mono`` is the same instant on the monotonic clock (anchored with ``t_wall``, and
    immune to clock steps): what hook edges are mapped to frames by.
    """

    line: str
    frames: np.ndarray
    start_frame: int
    t_wall: float
    rate: int
    overrun: bool = False
    stream: int = 0  # increments on every reopen
    t_mono: float | None = None


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A change in a line's capture: ``opened``, ``lost`` (with the error), ``stalled``."""

    line: str
    kind: str
    t_wall: float
    detail: str = ""
    stream: int = 0


@dataclass(slots=True)
class Periods:
    """Consecutive periods of one line's stream that one drain of its card read, all dated from
    one anchor: what the recorder's card drains queue instead of a ``Block`` per period (one
    object and one queue entry per line and drain, not five; ``runs`` joins them into runs whose
    blocks are made only when asked for, ``Run.of_periods``).

    Period ``i`` is the block ``Block(line, arrays[i], s, aw + (s - af) / rate, rate, overrun and
    i == 0, stream, am + (s - af) / rate)`` with ``s`` its first frame and ``(aw, am, af) =
    anchor``: the same numbers, computed the same way, as the block a drain queues one by one."""

    line: str
    arrays: list[np.ndarray]  # each period's samples, as read: int16, shape (n, channels)
    start_frame: int  # of the first
    end_frame: int  # one past the last
    anchor: tuple[float, float, int]  # (wall time, monotonic time, frame) the stream is dated from
    rate: int
    overrun: bool  # samples were lost just before the first
    stream: int


_join = bytearray().join  # (a bytearray: the joined samples stay writable, as a concatenation's)


class Run:
    """Consecutive blocks of one line's stream with no sample lost between them, handled as one.

    The pipeline takes what a line has queued (up to ``RUN_BLOCKS`` periods) as a run: work
    that only needs the blocks' values (levels, minima and maxima) is done for all of them in
    one numpy call, and the audio goes to the codec in one write. Each block keeps its own
    ``start_frame`` and ``t_wall``, so every decision is still taken, and dated, per block.
    Only the first block may carry ``overrun`` (see ``runs`` in the recorder).

    ``blocks`` is a sequence of ``Block``: the blocks queued one by one (``Run.of``), or, for a
    run made of card drains (``Run.of_periods``), made as they are asked for (``LazyBlocks``): a
    quiet run is mostly handled from its first and last blocks and ``frames`` alone.
    """

    __slots__ = ("blocks", "frames", "period", "line", "stream", "start_frame")

    def __init__(self, blocks: Sequence[Block], frames: np.ndarray, period: int) -> None:
        self.blocks = blocks
        self.frames = frames  # the blocks' frames, concatenated: (sum of n, channels) int16
        self.period = period  # frames in each block when they all hold as many (the rule), else 0
        first = blocks[0]
        self.line, self.stream, self.start_frame = first.line, first.stream, first.start_frame

    def __repr__(self) -> str:
        return (f"Run(line={self.line!r}, stream={self.stream}, start_frame={self.start_frame}, "
                f"blocks={len(self.blocks)}, period={self.period})")

    @staticmethod
    def of(blocks: Sequence[Block]) -> Run:
        parts = [b.frames for b in blocks]
        n = len(parts[0])
        if len(parts) == 1:
            return Run(tuple(blocks), parts[0], n)
        whole = np.concatenate(parts)
        uniform = len(whole) == n * len(parts) and all(map(n.__eq__, map(len, parts)))  # no frame per block
        return Run(tuple(blocks), whole, n if uniform else 0)

    @staticmethod
    def of_periods(p: Periods) -> Run:
        """The run of the consecutive periods of ``p`` (one anchor), its blocks made when asked for."""
        arrays = p.arrays
        k = len(arrays)
        if k == 1:
            whole = arrays[0]
            period = len(whole)
        else:
            first = arrays[0]
            try:
                # The samples joined as bytes: what ``np.concatenate`` makes (the periods are one
                # stream's, of one dtype and shape), in 1.9-2.2 us for ten 20 ms periods, not 3.7-4.4.
                whole = np.frombuffer(_join(arrays), first.dtype).reshape((-1,) + first.shape[1:])
            except (TypeError, ValueError):  # a period not contiguous in memory: no bytes to join
                whole = np.concatenate(arrays)
            n = len(first)
            period = n if [*map(len, arrays)].count(n) == k else 0  # (half the cost of all(map(n.__eq__, ...)))
        run = Run.__new__(Run)
        run.blocks, run.frames, run.period = LazyBlocks(p, whole, k, period), whole, period
        run.line, run.stream, run.start_frame = p.line, p.stream, p.start_frame
        return run


class LazyBlocks(Sequence):
    """The blocks of a run of card periods (``Run.of_periods``), each made on first access as the
    drain would have made it (``Periods``); its ``frames`` a view of the run's."""

    __slots__ = ("p", "whole", "count", "period", "_made")

    def __init__(self, p: Periods, whole: np.ndarray, count: int, period: int) -> None:
        self.p, self.whole, self.count, self.period = p, whole, count, period  # period 0: sizes differ
        self._made: list[Block | None] = [None] * count

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, i: int) -> Block: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Block, ...]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(self.count)))
        b = self._made[i]  # (an IndexError out of range)
        if b is not None:
            return b
        if i < 0:
            i += self.count
        p, period = self.p, self.period
        if period:
            a = i * period
            e = a + period
        else:
            a = sum(map(len, p.arrays[:i]))
            e = a + len(p.arrays[i])
        s = p.start_frame + a
        aw, am, af = p.anchor
        rate = p.rate
        d = (s - af) / rate  # (the same float in both times: the drain's expressions)
        b = self._made[i] = Block(p.line, self.whole[a:e], s, aw + d, rate, p.overrun and i == 0, p.stream, am + d)
        return b

    def __iter__(self) -> Iterator[Block]:
        for i in range(self.count):
            yield self[i]

