#!/usr/bin/env python3
"""Storage at scale: the retention sweep and index queries at 100 000 recordings, beside a naive
directory scan.

    .venv/bin/python benchmarks/storage.py [--n 100000] [--dir DIR]

The storage targets: a sweep < 1 s, ``linetap calls --number`` < 200 ms.

The store is synthetic but real: one small file per recording under the usual
recordings/<line>/YYYY/MM/DD/ tree, a calls row each, every one chained, a few on hold,
a year of calls across two lines. Free space is reported by a fixed probe, so the sweep can
be made to need space at will.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from linetap.clock import FakeClock, iso
from linetap.evidence import chain
from linetap.evidence.verify import verify
from linetap.index.db import Index, open_index, public_call
from linetap.retention.plan import LinePolicy, Policy
from linetap.retention.sweeper import Sweeper
from linetap.store.recordings import make_dirs, relative_path

MB = 1024 * 1024
FILE_BYTES = 2048
NOW = 1_795_000_000.0
YEAR_S = 365 * 86400


class FixedSpace:
    def __init__(self, free_bytes: int) -> None:
        self.free = free_bytes

    def free_bytes(self) -> int:
        return self.free


def timed(fn: Callable[[], object], repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def build(data_dir: Path, n: int) -> tuple[Index, list[str]]:
    rnd = random.Random(5)
    numbers = [f"555{rnd.randrange(10**7):07d}" for _ in range(5000)]
    index = open_index(data_dir)
    payload = os.urandom(FILE_BYTES)
    rows = []
    step = YEAR_S / n
    for i in range(1, n + 1):
        started = NOW - YEAR_S + i * step
        line = "line1" if i % 2 else "line2"
        rel = relative_path(line, started, i, "opus")
        rows.append({"id": i, "line": line, "started_at": iso(started), "ended_at": iso(started + 60),
                     "duration_s": 60.0, "path": str(rel), "codec": "opus", "bytes": FILE_BYTES,
                     "sha256": None, "caller_number": numbers[i % len(numbers)], "caller_name": None,
                     "dtmf": None, "end_reason": "onhook", "status": "complete", "rate": 8000, "channels": 1})
    import hashlib
    sha = hashlib.sha256(payload).hexdigest()
    made: set[Path] = set()
    for r in rows:
        p = data_dir / r["path"]
        if p.parent not in made:
            make_dirs(data_dir, Path(r["path"]).parent)
            made.add(p.parent)
        with open(p, "wb") as f:
            f.write(payload)
        r["sha256"] = sha
    with index.write_transaction():  # one transaction: 100 000 single-row commits would take minutes
        for r in rows:
            index.call_recovered(**r)
    chain.append_recordings(index, rows, clock=FakeClock(NOW))
    for i in range(1, n, max(1, n // 100)):  # 100 held, spread over the year
        index.execute("insert into holds (call_id, held_at, held_by, reason) values (?, ?, 'bench', 'bench')",
                      [i, iso(NOW)])
    return index, numbers


def naive_oldest(data_dir: Path, k: int) -> list[str]:
    """What a recorder without an index does: walk and stat every file, sort by age."""
    files = []
    for root, _dirs, names in os.walk(data_dir / "recordings"):
        for name in names:
            p = os.path.join(root, name)
            files.append((os.stat(p).st_mtime, p))
    files.sort()
    return [p for _, p in files[:k]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dir", help="build the store here (default: a temporary directory, removed after)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="linetap-bench-"))
    data_dir = base / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        index, numbers = build(data_dir, args.n)
        print(f"built {args.n} recordings (files, rows, chain, 100 holds) in {time.perf_counter() - t0:.1f} s")
        clock = FakeClock(NOW)
        results: list[tuple[str, float, str]] = []

        steady = Sweeper(index, data_dir, Policy(keep_free_bytes=512 * MB), clock=clock, space=FixedSpace(10**12))
        t, _ = timed(steady.sweep)
        results.append(("sweep, nothing to delete", t, "< 1 s"))

        need = Sweeper(index, data_dir, Policy(keep_free_bytes=512 * MB), clock=clock,
                       space=FixedSpace(512 * MB - 200 * FILE_BYTES))
        t, res = timed(need.sweep)
        results.append((f"sweep, evicting {len(res.deleted)} oldest for space", t, "< 1 s"))

        ret = Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=360)), clock=clock,
                      space=FixedSpace(10**12))
        t, res = timed(ret.sweep, repeat=1)
        results.append((f"sweep, {len(res.deleted)} past retention_days (a day's calls)", t, "< 1 s"))

        blocked = Sweeper(index, data_dir, Policy(keep_free_bytes=512 * MB, default=LinePolicy(min_retention_days=400)),
                          clock=clock, space=FixedSpace(0))
        t, res = timed(blocked.sweep, repeat=3)
        results.append((f"sweep, min_retention protects all (DISK_LOW={res.disk_low})", t, "< 1 s"))

        index.execute("insert or ignore into holds (call_id, held_at, held_by, reason) "
                      "select id, ?, 'bench', 'bench' from calls", [iso(NOW)])
        all_held = Sweeper(index, data_dir, Policy(keep_free_bytes=512 * MB), clock=clock, space=FixedSpace(0))
        t, res = timed(all_held.sweep, repeat=3)
        results.append((f"sweep, all held: worst case, reads every row (DISK_LOW={res.disk_low})", t, "< 1 s"))
        index.execute("delete from holds where reason = 'bench' and held_at = ? and call_id % 1000 != 1", [iso(NOW)])

        t, _ = timed(lambda: naive_oldest(data_dir, 200), repeat=3)
        results.append(("naive: walk + stat every file, pick the 200 oldest", t, ""))

        picks = random.Random(1).sample(numbers, 20)
        it = iter(picks * 10)
        t, rows = timed(lambda: json.dumps([public_call(r) for r in index.calls(number=next(it))]), repeat=20)
        results.append((f"index: calls --number ({len(json.loads(rows))} rows, as JSON)", t, "< 200 ms"))

        def cli_calls() -> None:
            cfg = base / "bench.toml"
            cfg.write_text(f'[recorder]\nid = "bench"\ndata_dir = "{data_dir}"\n[[line]]\nname = "line1"\n'
                           'pcm = "null"\n')
            subprocess.run([sys.executable, "-m", "linetap", "calls", "-c", str(cfg), "--json", "--number",
                            picks[0]], check=True, capture_output=True)
        t, _ = timed(cli_calls, repeat=3)
        results.append(("process: linetap calls --number --json (incl. Python start-up)", t, "< 200 ms?"))

        t, _ = timed(lambda: index.query("select id from calls not indexed where caller_number = ?", [picks[1]]),
                     repeat=5)
        results.append(("naive: full table scan for a number (no index)", t, ""))

        t, _ = timed(lambda: index.query("select * from calls order by started_at, id"), repeat=3)
        results.append(("naive: load every row to plan in Python", t, ""))

        t, rep = timed(lambda: verify(index, data_dir, record_audit=False), repeat=1)
        results.append((f"verify: re-hash {rep.files_checked} files + chain of {rep.entries}", t, ""))

        width = max(len(r[0]) for r in results)
        print(f"\n{'measurement':<{width}}  {'median':>10}  target")
        for name, t, target in results:
            print(f"{name:<{width}}  {t * 1000:>8.1f} ms  {target}")
        index.close()
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
