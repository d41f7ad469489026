"""A destructive config change met by a real ``linetap run``: the recorder keeps recording, keeps the
previous limits, raises DELETION_HELD; with ``storage.confirm_deletion`` the change is applied."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store.recordings import Recording
from helpers import indexed_calls, read_status, wait_for, write_config

DAY_S = 86400.0


def cli(alsa, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linetap", *args], env=alsa.env(), capture_output=True,
                          text=True, timeout=30)


def status(alsa, cfg: Path) -> dict:
    out = cli(alsa, "status", "-c", str(cfg), "--json")
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout else {}


def n_calls(alsa, cfg: Path) -> int:
    out = cli(alsa, "calls", "-c", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    return len(json.loads(out.stdout))


def old_recordings(data_dir: Path, n: int, age_days: float) -> None:
    index = open_index(data_dir)
    try:
        for i in range(n):
            rec = Recording(data_dir, index, line="line1", codec="wav", rate=8000, channels=1,
                            started_at=time.time() - age_days * DAY_S + i * 60, sync_interval_s=0.5)
            rec.write(np.zeros((800, 1), dtype=np.int16))
            rec.finish("vox_timeout")
    finally:
        index.close()


def run_until(alsa, cfg: Path, line, log: Path, cond, first=None) -> None:
    """``linetap run`` until ``cond()``; then SIGTERM, which must end it cleanly.

    ``first``: a cheap in-process look (status.json, the index) waited for before ``cond``, which
    asks the CLI: each ``linetap status`` costs ~0.9 s of CPU, and polling it every 0.2 s took a
    core from the recorder starting beside it (the test took 11 s in the suite)."""
    line.feed(render([("idle", 120)], seed=5)[0], speed=1.0)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "linetap", "run", "-c", str(cfg)], env=alsa.env(),
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            def check():
                assert proc.poll() is None, log.read_text(errors="replace")
                return cond()
            if first is not None:
                wait_for(lambda: proc.poll() is not None or first(), timeout=40, every=0.05)
            wait_for(check, timeout=40, every=0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            line.feeder.stop()


def test_an_unconfirmed_retention_typo_keeps_the_recordings_and_the_recorder_recording(alsa, tmp_path, data_dir):
    (line,) = alsa.lines(1)
    old_recordings(data_dir, 30, age_days=10)

    def config(**storage) -> Path:
        return write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": line.pcm}],
                            storage={"codec": "wav", **storage}, health={"check_clock": False})

    cfg = config(retention_days=90)
    run_until(alsa, cfg, line, tmp_path / "run1.log",
              lambda: status(alsa, cfg).get("lines", {}).get("line1", {}).get("state") == "idle",
              first=lambda: read_status(data_dir).get("lines", {}).get("line1", {}).get("state") == "idle")
    assert n_calls(alsa, cfg) == 30

    cfg = config(retention_days=1)  # the typo
    held = {}

    def deletion_held() -> bool:
        doc = status(alsa, cfg)
        held.update(doc)
        return "DELETION_HELD" in doc.get("alarms", [])
    run_until(alsa, cfg, line, tmp_path / "run2.log", deletion_held,
              first=lambda: "DELETION_HELD" in read_status(data_dir).get("alarms", []))
    assert held["lines"]["line1"]["state"] == "idle"  # recording goes on: the line is open and watched
    assert n_calls(alsa, cfg) == 30
    index = open_index(data_dir)
    try:
        detail = [a["detail"] for a in index.query("select detail from alarms where code = 'DELETION_HELD'")]
    finally:
        index.close()
    assert detail and "set storage.confirm_deletion = 30" in detail[0]

    cfg = config(retention_days=1, confirm_deletion=30)
    run_until(alsa, cfg, line, tmp_path / "run3.log", lambda: n_calls(alsa, cfg) == 0,
              first=lambda: indexed_calls(data_dir) == [])
