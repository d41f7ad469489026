"""Feed audio into a FIFO behind an ALSA ``file`` PCM, at real-time pace or faster."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np


def asoundrc(pcms: dict[str, Path]) -> str:
    """ALSA config declaring a capture PCM per name, each reading raw S16_LE from a FIFO/file."""
    return "".join(
        f'pcm.{name} {{ type file slave.pcm "null" file "/dev/null" infile "{path}" format "raw" }}\n'
        for name, path in pcms.items())


def make_fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path, 0o600)
    return path


class FifoFeeder(threading.Thread):
    """Writes chunks to a FIFO. ``speed`` 1.0 = real time, 0 = as fast as the reader takes it.

    ``pause()``/``resume()`` stall the line (the writer keeps the FIFO open but writes
    nothing), ``close_early()`` stops feeding (the writer closes the FIFO). ``fast_head_s``:
    the first seconds of audio go as fast as the reader takes them, the rest at ``speed``
    from then on (an idle lead-in whose wall-clock pace nothing depends on, then a call whose
    pace a test measures: what a kill leaves on the disk).
    """

    def __init__(self, path: Path, chunks: Iterable[np.ndarray], *, rate: int, channels: int = 1,
                 speed: float = 1.0, chunk_s: float = 0.02, on_sent: Callable[[float], None] | None = None,
                 keep_open: bool = False, fast_head_s: float = 0.0) -> None:
        super().__init__(name=f"feeder-{Path(path).name}", daemon=True)
        self.path = Path(path)
        self.chunks = chunks
        self.rate = rate
        self.channels = channels
        self.speed = speed
        self.chunk_s = chunk_s
        self.on_sent = on_sent
        self.keep_open = keep_open
        self.head_frames = int(fast_head_s * rate)
        self.sent_frames = 0
        self._go = threading.Event()
        self._go.set()
        self._stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        # Open now, read-write: on Linux that never blocks, and it lets the reader's
        # open() return at once. pyalsaaudio holds the GIL while libasound opens the
        # FIFO, so a writer that had not reached its own open() yet would deadlock.
        self._fd = os.open(self.path, os.O_RDWR)

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def run(self) -> None:
        fd = self._fd
        t0 = time.monotonic()
        step = max(1, int(self.chunk_s * self.rate))
        try:
            for chunk in self.chunks:
                for i in range(0, len(chunk), step):
                    self._go.wait()
                    if self._stop.is_set():
                        return
                    part = np.ascontiguousarray(chunk[i:i + step], dtype="<i2")
                    os.write(fd, part.tobytes())
                    self.sent_frames += len(part) // self.channels if part.ndim == 1 else len(part)
                    if self.on_sent:
                        self.on_sent(self.sent_frames / self.rate)
                    if self.speed > 0 and self.sent_frames <= self.head_frames:
                        # the head is not paced: the rest is, from where the head ended
                        t0 = time.monotonic() - self.sent_frames / self.rate / self.speed
                    elif self.speed > 0:
                        due = t0 + self.sent_frames / self.rate / self.speed
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        elif delay < -0.5:
                            t0 -= delay  # paused or starved: don't burst to catch up
            if self.keep_open:
                self._stop.wait()
        except BrokenPipeError:
            pass
        except OSError as e:
            self.error = e
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
            self.done.set()
