#!/usr/bin/env python3
"""What the recorder's index check at start costs (linetap.index.rebuild.problem: PRAGMA quick_check),
and what a rebuild from sidecars costs.

    .venv/bin/python benchmarks/index_check.py [--calls 100000] [--rebuild 2000]

Builds an index of ``--calls`` finished calls in a temporary directory and times the check
(warm: the file was just written, so it is in the page cache; a cold check reads the whole file
once, its size is printed). Then ``--rebuild`` recordings (short WAV files with sidecars) are
written, the index is deleted, and ``open_or_rebuild`` is timed, then the start-up
finalisation that chains the rebuilt rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

from linetap.clock import FakeClock  # noqa: E402
from linetap.config import StorageConfig  # noqa: E402
from linetap.evidence.finalize import finalize_pending  # noqa: E402
from linetap.index.db import open_index  # noqa: E402
from linetap.index.rebuild import open_or_rebuild, problem  # noqa: E402
from linetap.store.recordings import Recording  # noqa: E402


def check(n: int) -> None:
    d = Path(tempfile.mkdtemp())
    idx = open_index(d)
    with idx.write_transaction():
        for i in range(n):
            idx.call_rebuilt(line="line1", started_at=f"2026-01-01T00:00:{i % 60:02d}.000Z",
                             ended_at="2026-01-01T00:01:00.000Z", duration_s=60.0,
                             path=f"recordings/line1/2026/01/01/x_{i}.flac", codec="flac", bytes=1_000_000,
                             sha256="ab" * 32, caller_number="5551234", status="complete", end_reason="onhook")
    idx.checkpoint_wal()
    idx.close()
    t = time.perf_counter()
    assert problem(d / "index.db") is None
    dt = time.perf_counter() - t
    print(f"quick_check of {n} calls ({(d / 'index.db').stat().st_size / 2**20:.1f} MiB): {dt:.3f} s")


def rebuild(n: int) -> None:
    d = Path(tempfile.mkdtemp())
    clock = FakeClock(wall=1_795_000_000.0)
    idx = open_index(d)
    tone = (np.sin(np.arange(8000) * 0.3) * 8000).astype(np.int16).reshape(-1, 1)
    for _ in range(n):
        rec = Recording(d, idx, line="line1", codec="wav", rate=8000, channels=1, started_at=clock.wall(),
                        sync_interval_s=10.0)
        rec.write(tone)
        rec.finish("onhook")
        clock.advance(60)
    idx.close()
    (d / "index.db").unlink()
    t = time.perf_counter()
    idx, report = open_or_rebuild(d, clock=clock)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    chained = finalize_pending(idx, d, StorageConfig(codec="wav"), clock=clock)
    dt_chain = time.perf_counter() - t
    idx.close()
    assert report is not None and report.recordings == n and len(chained) == n
    print(f"rebuild of {n} recordings from their sidecars: {dt:.2f} s; chaining them afresh "
          f"(finalize_pending, sidecars rewritten): {dt_chain:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--rebuild", type=int, default=2000)
    a = ap.parse_args()
    check(a.calls)
    rebuild(a.rebuild)


if __name__ == "__main__":
    main()
