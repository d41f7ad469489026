"""The pipeline benchmark still runs, in both its modes (tiny sizes: its figures are not checked here;
speed targets are met in the benchmark itself, never in a timed test)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linetap.sim.line import render

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "pipeline.py"


def script(seconds: float) -> list[tuple]:
    """The benchmark's own script of a line (calls and idle), from its module."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.script(seconds)


def _run(*args: str) -> str:
    p = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_the_pipeline_benchmark_prints_its_table_beside_the_codec_alone():
    out = _run("--lines", "1", "--codecs", "flac", "--seconds", "10")
    row = re.search(r"^flac\s+1\s+\d+\s+\d+\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)x\s+[\d.]+%\s+[\d.]+\s+[\d.]+\s+(\d+)$",
                    out, re.M)
    assert row, out
    pipeline_pct, codec_pct, ratio, drops = (float(row[1]), float(row[2]), float(row[3]), int(row[4]))
    assert pipeline_pct > codec_pct > 0 and ratio > 1  # the codec is part of the pipeline
    assert drops == 0 and "WARNING" not in out


def test_the_real_time_benchmark_runs_with_either_reader():
    """Both readers' runs at once: each case has a fixed 2.5 s warm-up and 2 s tail in real time
    (benchmarks/pipeline.py), mostly asleep (2 lines at about 1 % of a core), so one after the
    other they took 18 s of waiting; side by side 10 s. Each run's output is checked as before."""
    procs = {}
    for reader in ("drain", "blocking"):
        parts = ("--parts",) if reader == "drain" else ()
        procs[reader] = (parts, subprocess.Popen(
            [sys.executable, str(BENCH), "--realtime", "4", "--lines", "2", "--codecs", "flac", "--reader", reader,
             *parts], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = {}
    try:
        for reader, (parts, proc) in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
            done[reader] = (parts, out)
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for reader, (parts, out) in done.items():
        rows = re.findall(r"^(wakeups|flac)\s+2\s+([\d.]+)%\s+[\d.]+%\s+(\d+)\s+(\d+)$", out, re.M)
        assert [r[0] for r in rows] == ["wakeups", "flac"], out
        assert all(r[2] == "0" and r[3] == "0" for r in rows), out  # no drops, no overruns
        assert re.search(r"flac x 2: wake-ups a second .*; filesystem syncs a second [\d.]+$", out, re.M), out
        if parts:  # the pipeline thread's CPU by part, each a figure, the round's own part above zero
            by_part = dict(re.findall(r"(codec|detectors|calls|line health|sync|round) (-?[\d.]+) %",
                                      re.search(r"pipeline thread by part (.*)$", out, re.M).group(1)))
            assert list(by_part) == ["codec", "detectors", "calls", "line health", "sync", "round"], out
            assert float(by_part["round"]) > 0 and float(by_part["line health"]) > 0, out


def test_the_paced_codec_encodes_what_the_recorder_records_of_each_lines_calls_once():
    """The codec floor measured alongside the real-time run (benchmarks/pipeline.py ``PacedCodec``):
    started 120 s in the past, the whole schedule is due at once, so it writes every 200 ms tick
    without waiting. Two lines, each the script's two calls (30 s and 20 s): each recorded from 3 s
    (pre-roll) before its first voiced sample to 8 s (VOX hang time) after its last."""
    p = subprocess.Popen([sys.executable, str(BENCH), "--paced-codec", "2", "flac", "--realtime", "120"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.stdin.write(f"{time.monotonic() - 120.0!r}\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err[-2000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["ticks"] == 600  # 120 s in 200 ms writes
    spans = [(t.voice_start_s - 3.0, t.voice_end_s + 8.0)
             for seed in (100, 101) for t in render(script(120.0), rate=8000, seed=seed)[1] if t.kind == "call"]
    assert len(spans) == 4 and all(0 < a < b <= 120 for a, b in spans)
    assert r["written_s"] == pytest.approx(sum(b - a for a, b in spans), abs=4 / 8000)


def test_the_floor_benchmark_measures_each_mandated_step_beside_the_codec_alone():
    p = subprocess.run([sys.executable, str(BENCH.with_name("floor.py")), "--codecs", "flac", "--seconds", "4",
                        "--trials", "1", "--lines", "2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = dict(re.findall(r"^flac  (.+?)\s+[\d.]+\s+[\d.]+-[\d.]+\s+([\d.]+)x$", p.stdout, re.M))
    assert list(rows) == ["codec-only", "read", "read+codec", "+fsync 1.0s", "+fsync 0.4s",
                          "2 lines, fsync each 0.4s", "2 lines, syncfs 0.4s",
                          "... + level"], p.stdout
    assert float(rows["codec-only"]) == 1.0 and float(rows["read"]) > 0  # ALSA delivered the audio


def test_the_verification_benchmark_measures_beside_plain_sha256_and_alarms_on_a_flipped_byte():
    p = subprocess.run([sys.executable, str(BENCH.with_name("verification.py")), "--n", "500", "--hours", "0.05",
                        "--flip"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    rows = dict(re.findall(r"^(background check|baseline: plain sha256).*?\s+([\d.]+)\s+[\d.]+%$", p.stdout, re.M))
    assert set(rows) == {"background check", "baseline: plain sha256"}, p.stdout
    assert "flipped byte: EVIDENCE_INTEGRITY raised: call " in p.stdout


def test_the_fleet_benchmark_measures_the_view_beside_a_bare_subscriber():
    p = subprocess.run([sys.executable, str(BENCH.with_name("fleet.py")), "--boxes", "20", "--interval", "2",
                        "--seconds", "3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = dict(re.findall(r"^(bare|fleet)\s+(\d+)\s+[\d.]+%\s+[\d.]+$", p.stdout, re.M))
    assert set(rows) == {"bare", "fleet"} and int(rows["bare"]) > 0 and int(rows["fleet"]) > 0, p.stdout
    assert "20 boxes seen" in p.stdout


def test_the_rounds_benchmark_times_the_drains_and_rounds_alone():
    bench = BENCH.parent / "rounds.py"
    for extra in ((), ("--call",)):
        p = subprocess.run([sys.executable, str(bench), "--lines", "2", "--seconds", "4", "--codec", "flac", *extra],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        row = re.search(r"drains ([\d.]+) us, rounds ([\d.]+) us", p.stdout)
        assert row and float(row[1]) > 0 and float(row[2]) > 0, p.stdout


def test_the_dsp_benchmarks_callgrind_workers_run_the_measured_parts():
    """``dsp.py --callgrind`` runs these two under valgrind (minutes; not here): each must finish
    and run its measured part inside ``operator.call``, which callgrind's --toggle-collect counts."""
    bench = BENCH.parent / "dsp.py"
    code = ("import operator, runpy, sys; calls = []; real = operator.call\n"
            "operator.call = lambda f, *a: (calls.append(f), real(f, *a))[1]\n"
            f"sys.argv = [{str(bench)!r}] + sys.argv[1:]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('measured', len(calls))\n")
    for part in ("analyzer", "opus"):
        p = subprocess.run([sys.executable, "-c", code, "--measure", part, "--audio", "idle"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "measured 1" in p.stdout, p.stdout
