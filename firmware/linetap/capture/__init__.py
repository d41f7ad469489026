"""Capture: one reader thread per line, pulling 20 ms periods from ALSA.

The API (``Source``, ``Block``, ``SourceEvent``) is defined here apart from the
ALSA implementation in ``alsa.py``, so tests and the pipeline can use a fake
source at the same seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SourceError(OSError):
    """A PCM failed (vanished, cannot be opened, I/O error)."""


class DeviceGone(SourceError):
    """The device is not there (ENODEV / no such PCM / no such card)."""


@dataclass(frozen=True, slots=True)
class Read:
    """What one read of a source returned: samples, or an overrun (lost samples)."""

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
    four times as much, and a reader makes 50 of these a second per line).

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


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive blocks of one line's stream with no sample lost between them, handled as one.

    The pipeline takes what a line has queued (up to ``RUN_BLOCKS`` periods) as a run: work
    that only needs the blocks' values (levels, minima and maxima) is done for all of them in
    one numpy call, and the audio goes to the codec in one write. Each block keeps its own
    ``start_frame`` and ``t_wall``, so every decision is still taken, and dated, per block.
    Only the first block may carry ``overrun`` (see ``runs`` in the recorder).
    """

    blocks: tuple[Block, ...]
    frames: np.ndarray  # the blocks' frames, concatenated: (sum of n, channels) int16
    period: int  # frames in each block when they all hold as many (the rule), else 0

    @property
    def line(self) -> str:
        return self.blocks[0].line

    @property
    def stream(self) -> int:
        return self.blocks[0].stream

    @property
    def start_frame(self) -> int:
        return self.blocks[0].start_frame

    @staticmethod
    def of(blocks: Sequence[Block]) -> Run:
        parts = [b.frames for b in blocks]
        n = len(parts[0])
        if len(parts) == 1:
            return Run(tuple(blocks), parts[0], n)
        whole = np.concatenate(parts)
        uniform = len(whole) == n * len(parts) and all(map(n.__eq__, map(len, parts)))  # no frame per block
        return Run(tuple(blocks), whole, n if uniform else 0)

