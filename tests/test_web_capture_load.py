"""Capture under web load: lines recorded in real time through ALSA lose nothing while a load generator
(its own process, loopback only, bounded to a few connections) lists calls and streams audio from
``linetap web`` (its own process, niced as the unit runs it) on the same index."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linetap.clock import FakeClock
from linetap.config import load
from linetap.index.db import open_index
from linetap.recorder import Recorder
from linetap.sim.line import render
from linetap.web import service

from helpers import wait_for, write_config
from web_box import make_call
from test_web_cli import _connects, free_port

LINES = 4
# 19 s of audio per line, one call each, fed in real time (overruns are a real-time matter): the
# web is hammered for all of it. The call was 10 s; 6 s still gives the load generator 20 s.
CALL_S = 6
SCRIPT = [("idle", 3), ("call", CALL_S), ("idle", 10)]
LOAD = r"""
import http.client, json, sys, threading, time
port, until = int(sys.argv[1]), float(sys.argv[2])
counts = {"list": 0, "audio_bytes": 0, "errors": 0}
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/login", body=json.dumps({"user": "lena", "password": "listener-pass-1"}),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    cookie = r.getheader("set-cookie").split(";")[0]
    i = 0
    while time.time() < until:
        for path in ("/api/calls?limit=50", "/calls?number=555", "/api/calls/1/audio", "/api/calls/2/audio"):
            conn.request("GET", path, headers={"Cookie": cookie, "Range": "bytes=0-" if i % 2 else "bytes=100-"})
            r = conn.getresponse(); body = r.read()
            if r.status not in (200, 206): counts["errors"] += 1
            elif "audio" in path: counts["audio_bytes"] += len(body)
            else: counts["list"] += 1
            i += 1
threads = [threading.Thread(target=client) for _ in range(3)]  # bounded: three connections
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"""


def test_lines_recorded_in_real_time_lose_nothing_while_the_web_is_hammered(alsa, data_dir: Path,
                                                                            tmp_path: Path) -> None:
    # Calls to serve: two recordings made before, and a listener.
    index = open_index(data_dir)
    clock = FakeClock(wall=time.time() - 86400)
    for i in range(2):
        make_call(index, data_dir, clock, number=f"555000{i}", seconds=20)
    service.add_user(index, "lena", "listener", "listener-pass-1")
    index.close()

    lines = alsa.lines(LINES)
    cfg_path = write_config(tmp_path / "c.toml", data_dir, [{"name": f"l{i}", "pcm": ln.pcm}
                                                            for i, ln in enumerate(lines)])
    port = free_port()
    web = subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "linetap", "web", "-c", str(cfg_path),
                            "--insecure-http", "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    load_proc = None
    rec = Recorder(load(cfg_path))
    feeders = []
    try:
        wait_for(lambda: _connects(port), timeout=60, every=0.2)
        total_s = sum(s[1] for s in SCRIPT)
        load_proc = subprocess.Popen([sys.executable, "-c", LOAD, str(port), str(time.time() + total_s + 2)],
                                     stdout=subprocess.PIPE, text=True)
        for i, ln in enumerate(lines):
            pcm_audio, _ = render(SCRIPT, seed=20 + i)
            feeders.append(ln.feed(pcm_audio, speed=1.0))  # real time, as a phone line delivers it
        rec.start()
        names = [f"l{i}" for i in range(LINES)]
        wait_for(lambda: all(rec.line_calls[n].frames_seen >= int((total_s - 0.5) * 8000) for n in names),
                 timeout=total_s + 40, every=0.2)
        lost = {n: (rec.readers[n].dropped_blocks, rec.readers[n].overruns) for n in names}
    finally:
        rec.stop()
        for f in feeders:
            f.stop()
        out = load_proc.communicate(timeout=60)[0] if load_proc else "{}"
        web.terminate()
        web.wait(20)
    counts = json.loads(out)
    assert lost == {n: (0, 0) for n in names}
    assert counts["errors"] == 0 and counts["list"] > 20 and counts["audio_bytes"] > 1_000_000, counts
    index = open_index(data_dir)
    recorded = [r for r in index.calls() if r["line"] in names]
    index.close()
    assert sorted(r["line"] for r in recorded) == names  # one call per line
    assert all(r["duration_s"] == pytest.approx(3 + CALL_S + 8, abs=1.0) for r in recorded), recorded
