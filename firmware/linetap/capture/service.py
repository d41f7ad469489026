"""The recorder's capture side, built once: one ``LineReader`` per line, the ``CardDrainer`` they
share, the queue to the pipeline and the order they start and stop in.

``start`` starts the consumer (the pipeline) before the readers, so no block waits for it;
``stop`` stops the readers first, lets the consumer take what they queued (at most
``drain_timeout_s``), then stops it: the last audio captured is recorded. ``alsa`` (pyalsaaudio
behind it) is imported only when a line opens a real PCM.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Protocol

from ..clock import Clock
from ..config import LineConfig
from . import SourceFactory
from .reader import BlockQueue, CardDrainer, LineReader

logger = logging.getLogger(__name__)

__all__ = ["Capture", "alsa_factory", "join"]


class Consumer(Protocol):
    """What takes the queue (``pipeline.Pipeline``): a thread that drains it before stopping."""

    ident: int | None

    def start(self) -> None: ...
    def is_alive(self) -> bool: ...
    def drain(self, timeout_s: float) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


def alsa_factory(capture_gain_db: float | None = None) -> SourceFactory:
    """ALSA sources for one line; its ``capture_gain_db`` is set on the card at every open."""
    from .alsa import AlsaSource
    if capture_gain_db is None:
        return AlsaSource

    def factory(pcm: str, rate: int, channels: int, period_frames: int) -> AlsaSource:
        return AlsaSource(pcm, rate, channels, period_frames, capture_gain_db=capture_gain_db)
    return factory


def join(thread: threading.Thread | Consumer, timeout_s: float) -> None:
    """Join a thread that was started (a stop after a failed start must still close all)."""
    if thread.ident is not None:
        thread.join(timeout=timeout_s)


class Capture:
    """The lines' readers (``readers``: line name -> ``LineReader``) feeding ``blocks``, which
    ``consumer`` takes."""

    def __init__(self, lines: Iterable[LineConfig], blocks: BlockQueue, *, consumer: Consumer, clock: Clock,
                 queue_s: float, stall_after_ms: int, source_factory: SourceFactory | None = None) -> None:
        lines = list(lines)
        self.blocks = blocks
        self.consumer = consumer
        # ``queue_s`` of audio per line (50 blocks a second) may wait for the pipeline, at least 50 blocks.
        max_queued = max(50, int(queue_s * 50 * max(1, len(lines))))
        # A card left between drains must not look stalled: drained 4x per stall time. Every
        # card is drained by one thread (CardDrainer: one wake-up per tick for all the lines).
        self.drainer = drainer = CardDrainer()  # its ``after_sweep`` is the recorder's to set
        self.readers = {line.name: LineReader(line, blocks,
                                              source_factory=source_factory or alsa_factory(line.capture_gain_db),
                                              clock=clock, max_queued=max_queued,
                                              max_sleep_s=min(0.1, stall_after_ms / 4000), drainer=drainer)
                        for line in lines}

    def start(self) -> None:
        """The consumer first, then every reader."""
        self.consumer.start()
        for reader in self.readers.values():
            reader.start()

    def stop(self, drain_timeout_s: float) -> bool:
        """Readers stopped, what they queued taken by the consumer, the consumer stopped. False if
        the consumer is still running after the drain and join timeouts (a disk stalled for
        seconds): its open calls must then not be finalised from another thread, which would
        close files under its writes (libsndfile's encoder freed mid-write: a segfault); they are
        left to the next start's recovery, as after a crash (at most the unsynced last second)."""
        for reader in self.readers.values():
            reader.stop()
        # Readers blocked in a read (a stalled FIFO) cannot be interrupted; they are daemons.
        for reader in self.readers.values():
            join(reader, 0.5)
        consumer = self.consumer
        if consumer.is_alive():
            consumer.drain(drain_timeout_s)
        consumer.stop()
        join(consumer, drain_timeout_s)
        if consumer.is_alive():
            logger.error("the pipeline did not stop within %.1f s: its open calls are left for recovery at the "
                         "next start", 2 * drain_timeout_s)
            return False
        return True
