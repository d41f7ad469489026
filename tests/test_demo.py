"""The README's first command: ``linetap demo`` records a simulated line, end to end, and cleans up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from linetap.store import audio
from helpers import wait_for

LINETAP = [sys.executable, "-m", "linetap"]
needs_broker = pytest.mark.skipif(not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()),
                                  reason="mosquitto is not installed (scripts/setup installs it)")


def brokers_of(directory: Path) -> list[int]:
    """PIDs of the mosquitto processes the demo in ``directory`` started."""
    conf = str(directory / "mosquitto.conf")
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and conf.encode() in argv:
            pids.append(int(proc.name))
    return pids


def demo_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, HOME=str(tmp_path), PYTHONUNBUFFERED="1")


@needs_broker
def test_the_demo_records_a_call_publishes_and_stops_its_broker(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    p = subprocess.run([*LINETAP, "demo", "--dir", str(directory), "--seconds", "10", "--codec", "flac"],
                       capture_output=True, text=True, timeout=60, env=demo_env(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Traceback" not in out
    assert "call 1 started on line1" in out and "LED line1: steady" in out, out
    assert "MQTT: connected to 127.0.0.1" in out, out
    assert "demo: stopped; 1 call(s) recorded this run" in out, out
    calls = subprocess.run([*LINETAP, "calls", "-c", str(directory / "linetap.toml"), "--json"],
                           capture_output=True, text=True, timeout=30, env=demo_env(tmp_path))
    (row,) = json.loads(calls.stdout)
    assert (row["line"], row["status"], row["end_reason"]) == ("line1", "complete", "shutdown")
    samples, rate = audio.read(directory / "data" / row["path"])
    assert rate == 8000 and len(samples) / rate == pytest.approx(row["duration_s"], abs=0.05)
    assert row["duration_s"] > 2
    assert brokers_of(directory) == []  # the broker went with the demo


@needs_broker
def test_a_killed_demo_takes_its_broker_with_it(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    proc = subprocess.Popen([*LINETAP, "demo", "--dir", str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=demo_env(tmp_path))
    try:
        wait_for(lambda: brokers_of(directory), timeout=15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: brokers_of(directory) == [], timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in brokers_of(directory):
            os.kill(pid, signal.SIGKILL)
