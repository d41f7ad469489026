#!/usr/bin/env python3
"""The pipeline's rounds and the cards' drains alone, back to back: their CPU per line-second.

    .venv/bin/python benchmarks/rounds.py [--lines 4] [--seconds 20] [--codec opus] [--call]
    valgrind --tool=callgrind --toggle-collect='*operator_call*' .venv/bin/python benchmarks/rounds.py ...

The real ``linetap.recorder.Recorder`` is built (not started); each line's card is a stream of the
capture reader (``capture.reader._Stream``) over an in-memory source. A round is what happens in real
time every 200 ms: every card drained twice (five 20 ms periods each time, as the ``CardDrainer`` does
every 100 ms), then the pipeline's round (``runs``, each run's line health, calls and writes, the
round's sync). Here the rounds follow each other on one thread with no waiting, so the figure is the
work alone: no wake-ups, warm caches (``pipeline.py --realtime`` measures them with everything else).

The lines carry their noise floor only (no call), or with ``--call`` one call from 2 s on. The first
2 s are not measured. Printed: CPU microseconds per second of one line's audio, drains and rounds
apart (``time.thread_time``). Under callgrind with the option above only the measured rounds are
counted (they run inside ``operator.call``): instructions do not depend on the machine's load, so
two versions compare on a busy machine (README "Benchmarks": 2.20 M -> 2.06 M instructions per
idle line-second).
"""

from __future__ import annotations

import argparse
import operator
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as systemd/linetap.service runs it
os.environ.setdefault("OMP_NUM_THREADS", "1")

RATE = 8000
BLOCK = RATE // 50  # 20 ms, the capture period
PER_DRAIN = 5  # periods a card gathers between two drains (100 ms)
WARM_UP_S = 2.0
T0 = 1_795_000_000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per line, warm-up included")
    ap.add_argument("--codec", default="opus", choices=["opus", "flac", "wav"])
    ap.add_argument("--call", action="store_true", help="a call from 2 s on (default: idle lines)")
    args = ap.parse_args()

    from linetap import pipeline
    from linetap.capture import Read
    from linetap.capture.reader import _Stream
    from linetap.clock import FakeClock
    from linetap.config import load_text
    from linetap.recorder import Recorder
    from linetap.sim.line import render

    plan = [("idle", WARM_UP_S), ("call", args.seconds)] if args.call else [("idle", args.seconds)]
    renders = [render(plan, rate=RATE, seed=100 + i)[0].reshape(-1, 1) for i in range(4)]
    work = Path(tempfile.mkdtemp(prefix="linetap-rounds-"))
    text = (f'[recorder]\nid = "bench"\ndata_dir = "{work / "data"}"\n[storage]\ncodec = "{args.codec}"\n'
            f'keep_free_mb = 0\n[health]\ncheck_clock = false\n')
    text += "".join(f'[[line]]\nname = "line{i}"\npcm = "line{i}"\n' for i in range(args.lines))

    class Card:
        """A card's buffer: the periods up to ``due`` are there to read, then none (EAGAIN)."""
        drain_s = 0.1

        def __init__(self, audio) -> None:
            self.audio, self.pos, self.due = audio, 0, 0

        def read(self) -> Read:
            if self.pos + BLOCK > self.due:
                return Read(None)
            block = self.audio[self.pos:self.pos + BLOCK]
            self.pos += BLOCK
            return Read(block)

        def pending(self) -> int:
            return 0

        def close(self) -> None:
            pass

    rec = Recorder(load_text(text), clock=FakeClock(wall=T0), source_factory=lambda *a: None)
    streams = []
    for i, reader in enumerate(rec.readers.values()):
        reader.stream = 1
        streams.append(_Stream(reader, Card(renders[i % len(renders)])))
    pl = rec.pipeline
    total = min(len(r) for r in renders) // BLOCK * BLOCK
    state = {"pos": 0, "drain": 0.0, "round": 0.0}

    def one_round() -> tuple[float, float]:
        t0 = time.thread_time()
        for _ in range(2):
            state["pos"] += PER_DRAIN * BLOCK
            for s in streams:
                s.source.due = state["pos"]
                s.drain(together=True)
        t1 = time.thread_time()
        items = pl.blocks.take_all()
        for item in pipeline.runs(items, pipeline.RUN_BLOCKS):
            pl._handle(item)
        if items:
            pl._sync()
        return t1 - t0, time.thread_time() - t1

    def measured() -> None:
        while state["pos"] + 2 * PER_DRAIN * BLOCK <= total:
            d, r = one_round()
            state["drain"] += d
            state["round"] += r

    while state["pos"] < WARM_UP_S * RATE:
        one_round()
    start = state["pos"]
    operator.call(measured)  # what callgrind counts with --toggle-collect='*operator_call*'
    line_s = (state["pos"] - start) / RATE * args.lines
    for lc in rec.line_calls.values():
        lc.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    if pl.errors:
        print(f"{pl.errors} pipeline errors", file=sys.stderr)
        return 1
    print(f"{args.lines} lines, {'a call' if args.call else 'idle'}, {args.codec}: CPU per line-second "
          f"drains {1e6 * state['drain'] / line_s:.1f} us, rounds {1e6 * state['round'] / line_s:.1f} us "
          f"({100 * (state['drain'] + state['round']) / line_s:.4f} % of a core per line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
