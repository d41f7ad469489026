"""Capture: one reader thread per line, pulling 20 ms periods from ALSA.

The API (``Source``, ``Block``, ``SourceEvent``) is defined here apart from the
ALSA implementation in ``alsa.py``, so tests and the pipeline can use a fake
source at the same seam.
"""

from __future__ import annotations

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
    """A capture stream for one line. ``read`` blocks until a period is available."""

    def read(self) -> Read: ...
    def close(self) -> None: ...


class SourceFactory(Protocol):
    def __call__(self, pcm: str, rate: int, channels: int, period_frames: int) -> Source: ...


@dataclass(frozen=True, slots=True)
class Block:
    """One period of audio from a line, stamped from its sample count.

    ``start_frame`` counts frames since the line's stream was (re)opened;
    ``t_wall`` is the UTC time of the first frame: the stream's anchor plus
    ``frames / rate``. ``overrun`` marks that samples were lost just before it.
    """

    line: str
    frames: np.ndarray
    start_frame: int
    t_wall: float
    rate: int
    overrun: bool = False
    stream: int = 0  # increments on every reopen


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A change in a line's capture: ``opened``, ``lost`` (with the error), ``stalled``."""

    line: str
    kind: str
    t_wall: float
    detail: str = ""
    stream: int = 0
