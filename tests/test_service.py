"""The recorder as a service: systemd notify/watchdog, `linetap status`, `linetap coverage`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from linetap.clock import SystemClock, parse_iso
from linetap.config import load
from linetap.health.sdnotify import Notifier
from linetap.gpio import mock_factory
from linetap.recorder import Recorder
from linetap.sim.line import render
from helpers import wait_for, write_config


class NotifySocket:
    """What systemd listens on: a datagram socket; collects every message."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self, key: str) -> list[float]:
        return [t for t, m in self.messages if f"{key}=" in m.split("\n")[0] or f"\n{key}=" in m
                or m.startswith(f"{key}=")]

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


# WatchdogSec=5 s: a part is hung after 2.5 s without progress, pings go every 2.5 s. (With
# 2 s, i.e. 1 s, a pipeline merely starved for a second on a busy machine is rightly called
# hung and the "fed while progressing" half fails; the product's unit has WatchdogSec=30s.)
WATCHDOG_S = 5.0
STALE_S = PING_EVERY_S = WATCHDOG_S / 2
# A ping decided just before the hang is seen counts from the last block handled (an in-flight
# block) and reaches the socket's reader thread late on a busy machine: this much is allowed.
LATE_S = 1.0


def test_ready_after_the_lines_open_and_the_watchdog_fed_only_while_the_pipeline_makes_progress(
        alsa, data_dir, tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify")
    (line,) = alsa.lines(1)
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm}],
                            health={"check_clock": False}, leds={"status": 5}))
    notifier = Notifier({"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
    rec = Recorder(cfg, clock=SystemClock(), notifier=notifier, pin_factory=mock_factory())
    feeder = line.feed(render([("idle", 60)], seed=1)[0], speed=1.0)
    hang = threading.Event()
    try:
        rec.start()
        wait_for(lambda: ns.fields("READY"), timeout=5)
        assert rec.readers["line1"].is_open
        # Fed every half WatchdogSec while the pipeline runs (the first ping with READY).
        wait_for(lambda: len(ns.fields("WATCHDOG")) >= 2, timeout=4 * PING_EVERY_S)
        # The pipeline hangs (a stuck write, a deadlock): the pings must stop, the box must say so.
        calls = rec.line_calls["line1"]
        monkeypatch.setattr(calls, "on_block", lambda block: hang.wait())
        hung_at = time.monotonic()
        wait_for(lambda: rec.leds.pattern("status") == "fast_blink", timeout=4 * STALE_S)
        time.sleep(PING_EVERY_S + LATE_S)  # a ping would be due by now
        late = [t for t in ns.fields("WATCHDOG") if t > hung_at + STALE_S + LATE_S]
        assert late == [], "the watchdog was fed by a recorder that no longer records"
        assert rec.leds.pattern("status") == "fast_blink"
    finally:
        hang.set()
        rec.stop()
        feeder.stop()
        ns.close()
    assert any("STOPPING=1" in m for _, m in ns.messages)


def _run(alsa, cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "linetap", "run", "-c", str(cfg)], env=alsa.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cli(alsa, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linetap", *args], env=alsa.env(), capture_output=True,
                          text=True, timeout=30)


def test_status_shows_the_running_recorder_and_coverage_names_every_gap(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    cfg = write_config(tmp_path / "c.toml", data_dir,
                       [{"name": "line1", "pcm": line.pcm}, {"name": "line2", "pcm": "linetap_no_such_pcm"}],
                       health={"check_clock": False})
    feeder = line.feed(render([("idle", 120)], seed=2)[0], speed=1.0)
    child = _run(alsa, cfg)
    try:
        wait_for(lambda: (data_dir / "status.json").exists()
                 and "LINE_NO_DEVICE" in (data_dir / "status.json").read_text(), timeout=10)
        out = _cli(alsa, "status", "-c", str(cfg), "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["lines"]["line1"]["state"] == "idle" and doc["lines"]["line2"]["state"] == "fault"
        assert doc["lines"]["line2"]["alarms"] == ["LINE_NO_DEVICE"] and doc["alarms"] == ["LINE_NO_DEVICE"]
        text = _cli(alsa, "status", "-c", str(cfg)).stdout
        assert "line2" in text and "LINE_NO_DEVICE" in text
        time.sleep(1.5)
        child.send_signal(signal.SIGKILL)  # a power cut
        child.wait(5)
        killed_at = time.time()
        time.sleep(2.0)
        child = _run(alsa, cfg)
        wait_for(lambda: "RECORDER_RESTARTED" in _cli(alsa, "status", "-c", str(cfg), "--json").stdout
                 or _restarted(data_dir), timeout=10)
        restarted_by = time.time()
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
        feeder.stop()
    res = _cli(alsa, "coverage", "-c", str(cfg), "--json", "--until", "2100-01-01T00:00:00Z",
               "--since", "2000-01-01T00:00:00Z")
    assert res.returncode == 0, res.stderr
    report = {r["line"]: r for r in json.loads(res.stdout)["lines"]}
    reasons1 = [g["reason"] for g in report["line1"]["gaps"]]
    assert reasons1[0] == "before_first_start" and reasons1[-1] == "recorder_down"
    down = [g for g in report["line1"]["gaps"] if g["reason"] == "recorder_down"][0]
    assert parse_iso(down["started_at"]) == pytest.approx(killed_at, abs=1.5)  # the last heartbeat
    # Down from the last heartbeat until the new process started: at least the 2 s it was off,
    # at most until its restart was seen (a busy machine starts Python slowly; that counts too).
    assert 2.0 <= down["duration_s"]
    assert parse_iso(down["ended_at"]) <= restarted_by
    assert parse_iso(down["ended_at"]) - parse_iso(down["started_at"]) == pytest.approx(down["duration_s"], abs=0.01)
    assert all("no_device" in g["reason"] or g["reason"] in ("before_first_start", "recorder_down")
               for g in report["line2"]["gaps"])
    assert report["line1"]["covered_fraction"] < 1.0
    text = _cli(alsa, "coverage", "-c", str(cfg)).stdout
    assert "line1" in text and "recorder_down" in text and "no_device" in text


def _restarted(data_dir: Path) -> bool:
    import sqlite3
    con = sqlite3.connect(data_dir / "index.db", timeout=5)
    try:
        return bool(list(con.execute("select 1 from alarms where code = 'RECORDER_RESTARTED'")))
    finally:
        con.close()


def test_linetap_status_reads_the_file_housekeeping_writes_without_loading_the_recorder(tmp_path, data_dir):
    """``linetap status`` reads one JSON file, under the name housekeeping writes it
    (``service.STATUS_FILE`` is a copy of ``housekeeping.STATUS_FILE``, not an import of it), and
    starts without the recorder's modules: importing housekeeping loaded numpy and the detectors,
    0.3-0.4 s of a 0.6 s command that tests, scripts and the installer run again and again."""
    from linetap import housekeeping, service
    assert service.STATUS_FILE == housekeeping.STATUS_FILE
    cfg = write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": "null"}],
                       health={"check_clock": False})
    data_dir.mkdir(parents=True, exist_ok=True)
    doc = {"id": "box-1", "lines": {"line1": {"state": "idle", "alarms": []}}, "alarms": []}
    (data_dir / housekeeping.STATUS_FILE).write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "linetap", "status", "-c", str(cfg), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == doc
    loaded = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "linetap.cli.recorder" in loaded  # the importtime report is there and names what it ran
    assert not loaded & {"linetap.housekeeping", "linetap.recorder", "numpy"}, sorted(loaded)
