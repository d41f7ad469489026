"""Test lines on the real ALSA capture path, without a sound card.

At session start one ``$HOME/.asoundrc`` declares PCMs ``tl0`` ... ``tl127``, each an
ALSA ``file`` PCM whose ``infile`` is a FIFO in the session's directory
(libasound reads its config once per process, so every name is declared up
front). A test takes fresh names with ``alsa.lines(n)``: new FIFOs, and a
feeder thread per line writing audio at real-time pace or faster.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linetap.sim.feeder import FifoFeeder, asoundrc, make_fifo

N_PCMS = 128  # names taken by the whole suite (each test takes fresh ones): 65 in use at 4bd8744


@dataclass
class TestLine:
    pcm: str
    fifo: Path
    feeder: FifoFeeder | None = None

    def feed(self, audio: np.ndarray, *, rate: int = 8000, speed: float = 0.0, keep_open: bool = True,
             channels: int = 1, on_sent=None, fast_head_s: float = 0.0) -> FifoFeeder:
        self.feeder = FifoFeeder(self.fifo, [audio], rate=rate, speed=speed, keep_open=keep_open,
                                 channels=channels, on_sent=on_sent, fast_head_s=fast_head_s)
        self.feeder.start()
        return self.feeder


class AlsaLines:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.fifos = {f"tl{i}": root / f"tl{i}.fifo" for i in range(N_PCMS)}
        (self.home / ".asoundrc").write_text(asoundrc(self.fifos))
        self._next = itertools.count()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env.pop("XDG_CONFIG_HOME", None)
        return env

    def lines(self, n: int) -> list[TestLine]:
        out = []
        for _ in range(n):
            i = next(self._next)
            if i >= N_PCMS:
                raise RuntimeError("out of test PCMs; raise N_PCMS")
            name = f"tl{i}"
            out.append(TestLine(name, make_fifo(self.fifos[name])))
        return out
