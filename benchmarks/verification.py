#!/usr/bin/env python3
"""Background self-verification at 100 000 recordings: the CPU an hour of it costs, beside plain
sha256 of the same bytes, and the alarm on a flipped byte.

    .venv/bin/python benchmarks/verification.py [--n 100000] [--file-kb 240] [--hours 1] [--dir DIR]

The store is synthetic but real: a calls row and a chain entry per recording (a year across two
lines), and, for the recordings the measured hours reach, a real file (hard links to a few distinct
files of ``--file-kb``, 240 KiB by default: a two-minute call in Opus at 16 kbit/s). Housekeeping
runs :meth:`BackgroundCheck.step` every 10 s, so an hour is 360 steps; each step re-hashes its slice
(2 files at 100 000 recordings: a full pass in 6 days) and checks the chain's new entries (one new
entry per step here, a call every 10 s all hour). The baseline reads and sha256-hashes the same
files in a plain loop. With ``--flip`` a byte of one file in the measured slice is flipped first, and
the run checks that EVIDENCE_INTEGRITY is raised naming it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock, iso
from linetap.evidence import chain
from linetap.evidence.background import BackgroundCheck, files_per_step, sha256_file_gently
from linetap.index.db import Index, open_index
from linetap.store.recordings import make_dirs, relative_path

STEP_S = 10.0  # housekeeping.SLOW_CHECK_S
NOW = 1_800_000_000.0
YEAR_S = 365 * 86400.0
DISTINCT = 16


def build(data_dir: Path, n: int, file_bytes: int, with_files: int) -> Index:
    index = open_index(data_dir)
    payloads = [os.urandom(file_bytes) for _ in range(DISTINCT)]
    shas = [hashlib.sha256(p).hexdigest() for p in payloads]
    sources = []
    (data_dir / "src").mkdir()
    for i, p in enumerate(payloads):
        f = data_dir / "src" / f"{i}.opus"
        f.write_bytes(p)
        sources.append(f)
    rows = []
    step = YEAR_S / n
    for i in range(1, n + 1):
        started = NOW - YEAR_S + i * step
        line = "line1" if i % 2 else "line2"
        rel = str(relative_path(line, started, i, "opus"))
        k = i % DISTINCT
        rows.append({"id": i, "line": line, "started_at": iso(started), "ended_at": iso(started + 120),
                     "duration_s": 120.0, "path": rel, "codec": "opus", "bytes": file_bytes, "sha256": shas[k],
                     "caller_number": "5550000", "caller_name": None, "dtmf": None, "end_reason": "onhook",
                     "status": "complete", "rate": 8000, "channels": 1})
        if i <= with_files:
            make_dirs(data_dir, Path(rel).parent)
            os.link(sources[k], data_dir / rel)
    with index.write_transaction():
        for r in rows:
            index.call_recovered(**r)
    chain.append_recordings(index, rows, clock=FakeClock(NOW))
    return index


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="recordings in the store")
    ap.add_argument("--file-kb", type=int, default=240, help="size of each recording")
    ap.add_argument("--hours", type=float, default=1.0, help="hours of background checking to measure")
    ap.add_argument("--flip", action="store_true", help="flip a byte first; expect EVIDENCE_INTEGRITY")
    ap.add_argument("--dir", help="build the store here (default: a temporary directory, removed after)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    steps = int(round(args.hours * 3600 / STEP_S))
    per_step = files_per_step(args.n, STEP_S)
    files = min(args.n, steps * per_step)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="linetap-verify-bench-"))
    data_dir = base / "data"
    data_dir.mkdir(parents=True)
    try:
        t0 = time.monotonic()
        index = build(data_dir, args.n, args.file_kb * 1024, files)
        print(f"store: {args.n} recordings, {files} files of {args.file_kb} KiB reached in {args.hours:g} h "
              f"({per_step} per {STEP_S:g} s step; a full pass in {args.n / per_step * STEP_S / 86400:.1f} days); "
              f"built in {time.monotonic() - t0:.0f} s")
        clock = FakeClock(NOW)
        alarms = AlarmManager(index, clock, clear_after_s=0)
        check = BackgroundCheck(index, data_dir, alarms=alarms, clock=clock, step_s=STEP_S)
        check.check_chain()  # the first step after a start reads the whole chain once (timed apart)
        if args.flip:
            victim = (args.n // 2) if files > args.n // 2 else max(1, files // 2)
            row = index.get_call(victim)
            assert row is not None
            # A hard link shares its bytes: replace the file by a flipped copy.
            data = bytearray((data_dir / row["path"]).read_bytes())
            data[len(data) // 2] ^= 0x01
            (data_dir / row["path"]).unlink()
            (data_dir / row["path"]).write_bytes(bytes(data))
        walls = []
        c0 = cpu_s()
        for i in range(steps):
            chain.append_event(index, "config", None, {"by": "bench", "sha256": "0" * 64, "source": "x"},
                               at=clock.wall())  # a new entry per step for the continuity check
            w = time.monotonic()
            check.step()
            walls.append(time.monotonic() - w)
            clock.advance(STEP_S)
        check_cpu = cpu_s() - c0
        # baseline: plain sha256 of the same bytes
        paths = [data_dir / index.get_call(i)["path"] for i in range(1, files + 1)]  # type: ignore[index]
        c0 = cpu_s()
        for p in paths:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while block := f.read(1 << 16):
                    h.update(block)
        base_cpu = cpu_s() - c0
        c0 = cpu_s()
        for p in paths:
            sha256_file_gently(p)
        gentle_cpu = cpu_s() - c0
        hours = args.hours
        print(f"{'what':<44} {'CPU s/h':>9} {'% core':>7}")
        print(f"{'background check (chain + re-hash slice)':<44} {check_cpu / hours:>9.2f} "
              f"{100 * check_cpu / hours / 3600:>6.3f}%")
        print(f"{'  of which hashing (64 KiB reads, fadvise)':<44} {gentle_cpu / hours:>9.2f} "
              f"{100 * gentle_cpu / hours / 3600:>6.3f}%")
        print(f"{'baseline: plain sha256 of the same bytes':<44} {base_cpu / hours:>9.2f} "
              f"{100 * base_cpu / hours / 3600:>6.3f}%")
        walls.sort()
        print(f"step wall time: median {1000 * walls[len(walls) // 2]:.1f} ms, max {1000 * walls[-1]:.1f} ms")
        st = check.status()
        print(f"re-hashed this pass: {st.rehashed}")
        if args.flip:
            active = [a for a in alarms.active() if a.code == "EVIDENCE_INTEGRITY"]
            print(f"flipped byte: {'EVIDENCE_INTEGRITY raised: ' + active[0].detail if active else 'NO ALARM'}")
            if not active:
                return 1
        index.close()
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
