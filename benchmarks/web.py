#!/usr/bin/env python3
"""The web interface at 100 000 calls: server time per call-list page, and the web process's memory
beside a baseline (the same process on an empty index).

    .venv/bin/python benchmarks/web.py [--n 100000] [--requests 300]

Targets (issue: a Pi Zero 2 W): < 100 ms server time per page, whatever the filter or the page;
RSS < 60 MB. The store is benchmarks/storage.py's (a year of calls on two lines, every one
chained, 100 on hold). Server time is :meth:`WebService.calls` alone (the queries and the
rows), median of 5; "HTTP" is the client's wall time for the same page through ``linetap web``
(uvicorn, h11), median over the load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage import NOW, build, timed  # noqa: E402  (the same synthetic store)

from linetap.clock import FakeClock, iso  # noqa: E402
from linetap.config import load  # noqa: E402
from linetap.index.db import open_index  # noqa: E402
from linetap.index.web import CallFilter  # noqa: E402
from linetap.web import service  # noqa: E402

TARGET_MS = 100.0
TARGET_RSS_MB = 60.0
DAY_S = 86400.0


def write_config(base: Path, data_dir: Path) -> Path:
    path = base / "linetap.toml"
    path.write_text(f'[recorder]\nid = "bench"\ndata_dir = "{data_dir}"\n'
                    '[[line]]\nname = "line1"\npcm = "null"\n[[line]]\nname = "line2"\npcm = "null"\n')
    return path


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Web:
    """``linetap web --insecure-http`` as the appliance runs it, in its own process."""

    def __init__(self, cfg: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "linetap", "web", "-c", str(cfg), "--insecure-http",
                                      "--listen", f"127.0.0.1:{self.port}"], stderr=subprocess.DEVNULL,
                                     env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.cookie = ""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Cookie": self.cookie, **(headers or {})}
        data = None
        if body is not None:
            data, h["Content-Type"] = json.dumps(body).encode(), "application/json"
        t0 = time.perf_counter()
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        out = r.read()
        dt = time.perf_counter() - t0
        if r.getheader("set-cookie"):
            self.cookie = r.getheader("set-cookie").split(";")[0]
        conn.close()
        return r.status, out, dt

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def load_web(web: Web, n_requests: int, pages: list[str]) -> dict[str, list[float]]:
    """Log in, then cycle through list pages, call pages and audio streams (a whole file and a seek)."""
    status, _, _ = web.request("POST", "/api/login", {"user": "bench", "password": "bench-password"})
    assert status == 200, status
    times: dict[str, list[float]] = {}
    for i in range(n_requests):
        path = pages[i % len(pages)]
        status, _, dt = web.request("GET", path)
        assert status in (200, 206), (path, status)
        times.setdefault(path, []).append(dt)
        if i % 10 == 0:
            web.request("GET", "/api/calls/1/audio", headers={"Range": "bytes=1000-"})
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="linetap-webbench-"))
    try:
        # Baseline: the same web process on an empty index.
        empty = base / "empty"
        empty.mkdir()
        cfg0 = write_config(empty, empty / "data")
        (empty / "data").mkdir()
        idx = open_index(empty / "data")
        service.add_user(idx, "bench", "admin", "bench-password")
        idx.close()
        web = Web(cfg0)
        load_web(web, min(50, args.requests), ["/api/calls", "/calls", "/api/health"])
        base_rss, base_hwm = rss_mb(web.proc.pid)
        web.stop()

        data_dir = base / "data"
        data_dir.mkdir()
        t0 = time.perf_counter()
        index, numbers = build(data_dir, args.n)
        service.add_user(index, "bench", "admin", "bench-password")
        print(f"built {args.n} calls in {time.perf_counter() - t0:.1f} s")
        cfg = load(write_config(base, data_dir))
        svc = service.WebService(cfg, index, secret=b"b" * 32, state_dir=base / "web", clock=FakeClock(NOW))
        week = (iso(NOW - 30 * DAY_S), iso(NOW - 23 * DAY_S))
        cases: list[tuple[str, CallFilter, int]] = [
            ("first page", CallFilter(), 0),
            ("middle page (offset n/2)", CallFilter(), args.n // 2),
            ("last page", CallFilter(), max(0, args.n - 50)),
            ("number (part of)", CallFilter(number=numbers[7][3:]), 0),
            ("line", CallFilter(line="line2"), 0),
            ("one week", CallFilter(since=week[0], until=week[1]), 0),
            ("held", CallFilter(held=True), 0),
            ("DTMF present", CallFilter(dtmf=True), 0),
            ("DTMF absent (every call)", CallFilter(dtmf=False), 0),
            ("duration >= 30 s (every call)", CallFilter(min_duration_s=30), 0),
            ("not held, last page", CallFilter(held=False), max(0, args.n - 150)),
            ("name (part of)", CallFilter(name="gmbh"), 0),
            ("duration >= 30 s, line, week", CallFilter(line="line1", since=week[0], until=week[1],
                                                         min_duration_s=30), 0),
        ]
        print(f"\nserver time per page of 50 at {args.n} calls (median of 5; target < {TARGET_MS:.0f} ms)")
        print(f"{'query':32} {'ms':>8} {'total':>8}")
        worst = 0.0
        for name, f, offset in cases:
            t, (total, _rows) = timed(lambda f=f, offset=offset: svc.calls(f, limit=50, offset=offset))
            worst = max(worst, t * 1000)
            print(f"{name:32} {t * 1000:8.1f} {total:8d}")
        index.close()

        web = Web(write_config(base, data_dir))
        pages = ["/api/calls", f"/api/calls?offset={args.n // 2}", "/calls", f"/calls?number={numbers[7][3:]}",
                 "/calls/1", "/api/calls/1", "/api/calls/1/audio", "/api/health"]
        times = load_web(web, args.requests, pages)
        rss, hwm = rss_mb(web.proc.pid)
        web.stop()
        print(f"\nHTTP wall time through linetap web, {args.requests} requests (median ms)")
        for path, ts in times.items():
            print(f"{path:40} {statistics.median(ts) * 1000:8.1f}")
        print(f"\nweb process memory (MB)           {'RSS':>8} {'peak':>8}")
        print(f"{'baseline: empty index':32} {base_rss:8.1f} {base_hwm:8.1f}")
        print(f"{f'{args.n} calls, after the load':32} {rss:8.1f} {hwm:8.1f}")
        ok = worst < TARGET_MS and hwm < TARGET_RSS_MB
        print(f"\nworst page {worst:.1f} ms (< {TARGET_MS:.0f}), peak RSS {hwm:.1f} MB (< {TARGET_RSS_MB:.0f}): "
              + ("OK" if ok else "WARNING: over target"))
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
