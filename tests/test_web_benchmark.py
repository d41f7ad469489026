"""The web benchmark still runs (tiny sizes: its figures are not checked here, only that it measures
every query and both processes; the targets are met in the benchmark itself)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "web.py"


def test_the_web_benchmark_prints_page_times_and_memory_beside_its_baseline() -> None:
    p = subprocess.run([sys.executable, str(BENCH), "--n", "600", "--requests", "30"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^(first page|last page|number \(part of\)|held)\s+([\d.]+)\s+(\d+)$", p.stdout, re.M)
    assert [(r[0], int(r[2])) for r in rows] == [("first page", 600), ("last page", 600),
                                                 ("number (part of)", 1), ("held", 100)], p.stdout
    mem = re.findall(r"^(baseline: empty index|600 calls, after the load)\s+([\d.]+)\s+([\d.]+)$", p.stdout, re.M)
    assert len(mem) == 2 and all(10 < float(rss) <= float(peak) for _, rss, peak in mem), p.stdout
