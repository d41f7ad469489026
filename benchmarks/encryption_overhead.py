#!/usr/bin/env python3
"""What encrypting recordings as they are written costs: file size and CPU, per codec.

    .venv/bin/python benchmarks/encryption_overhead.py [--seconds 120] [--sync 0.4]

The same simulated call (speech clips over line noise, ``linetap.sim.line``) is written twice
through ``Recording``, as the pipeline writes it (20 ms blocks, a sync point every ``--sync`` s of
audio): once plain, once with ``encrypt=`` (one age file per sync interval, README "Encryption").
Reported: both sizes, the overhead in bytes per second of audio and per cent, the per-record
overhead, and the writing CPU time of each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from linetap import crypto, unseal
from linetap.clock import FakeClock
from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store.recordings import Recording

RATE = 8000
BLOCK = RATE // 50


def write(root: Path, codec: str, pcm: np.ndarray, sync_s: float, encrypt) -> tuple[int, float, Path]:
    root.mkdir()
    index = open_index(root)
    try:
        t0 = time.process_time()
        rec = Recording(root, index, line="line1", codec=codec, rate=RATE, channels=1,
                        started_at=FakeClock().wall(), sync_interval_s=sync_s, encrypt=encrypt)
        frames = pcm.reshape(-1, 1)
        for i in range(0, len(frames), BLOCK):
            rec.write(frames[i:i + BLOCK])
        row = rec.finish("onhook")
        cpu = time.process_time() - t0
    finally:
        index.close()
    path = root / row["path"]
    return path.stat().st_size, cpu, path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--sync", type=float, default=0.4)
    a = ap.parse_args()
    pcm, _ = render([("call", a.seconds)], seed=3)
    pcm = pcm.astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        pub, _key = crypto.generate_keypair(Path(tmp) / "keys")
        opener = crypto.stream_opener(pub)
        print(f"{a.seconds:.0f} s of simulated call, a sync point every {a.sync} s\n")
        print(f"{'codec':6} {'plain B':>9} {'sealed B':>9} {'+B/s':>7} {'+%':>6} {'+B/record':>9} "
              f"{'plain cpu s':>11} {'sealed cpu s':>12}")
        for codec in ("opus", "flac", "wav"):
            plain, cpu_p, _ = write(Path(tmp) / f"p-{codec}", codec, pcm, a.sync, None)
            sealed, cpu_s, path = write(Path(tmp) / f"s-{codec}", codec, pcm, a.sync, opener)
            records = unseal.scan(path).records
            extra = sealed - plain
            print(f"{codec:6} {plain:9d} {sealed:9d} {extra / a.seconds:7.0f} {100 * extra / plain:6.1f} "
                  f"{extra / records:9.0f} {cpu_p:11.3f} {cpu_s:12.3f}")


if __name__ == "__main__":
    main()
