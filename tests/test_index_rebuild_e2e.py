"""The index lost under a real ``linetap run``: replaced by garbage, or deleted.

The recorder (a child process on the real ALSA file-PCM path) records two calls and stops; the
index is then ruined; the recorder started again records a third call, raises INDEX_REBUILT, and
``linetap calls`` lists the first two again with the same paths and sha256 (ids may differ,
CONTRACT.md "Robustness"). Audio is fed as fast as the FIFO takes it (``queue_s`` holds it all).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from linetap.sim.line import render
from helpers import wait_for, write_config

FAST = {"queue_s": 120}


def cli(alsa, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linetap", *args], env=alsa.env(), capture_output=True,
                          text=True, timeout=30)


def calls(alsa, cfg: Path) -> list[dict[str, Any]]:
    out = cli(alsa, "calls", "-c", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Run:
    """``linetap run`` as a child process, its log kept for failure messages."""

    def __init__(self, alsa, cfg: Path, log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "linetap", "run", "-c", str(cfg)], env=alsa.env(),
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def until(self, cond, timeout: float = 40.0):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the recorder exited with {self.proc.returncode}:\n"
                                     + self.log.read_text(errors="replace"))
            return cond()
        return wait_for(check, timeout=timeout, every=0.2)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


def chained(alsa, cfg: Path, data_dir: Path, n: int) -> list[dict[str, Any]] | None:
    """The calls once ``n`` are finished and each one's sidecar names its chain entry."""
    rows = [r for r in calls(alsa, cfg) if r["status"] != "recording"]
    if len(rows) < n:
        return None
    for r in rows:
        side = data_dir / (r["path"].removesuffix(".sealed") + ".json")
        if not side.exists() or json.loads(side.read_text()).get("chain_seq") is None:
            return None
    return rows


@pytest.mark.parametrize("ruin", ["garbage", "deleted"])
def test_a_ruined_index_is_rebuilt_and_the_recorder_keeps_recording(alsa, tmp_path, data_dir, ruin):
    (line,) = alsa.lines(1)
    cfg = write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": line.pcm}], recorder=FAST,
                       storage={"codec": "flac"}, health={"check_clock": False})
    two_calls, _ = render([("idle", 3), ("call", 5), ("idle", 10), ("call", 5), ("idle", 10)], seed=21)
    line.feed(two_calls)
    run = Run(alsa, cfg, tmp_path / "run1.log")
    try:
        before = run.until(lambda: chained(alsa, cfg, data_dir, 2))
        assert run.stop() == 0
    finally:
        run.kill()
        line.feeder.stop()
    assert len(before) == 2

    index = data_dir / "index.db"
    if ruin == "garbage":
        index.write_bytes(b"\x13\x37 SD card bit-rot \xff" * 4096)
        out = cli(alsa, "calls", "-c", str(cfg))
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "index error" in out.stderr, out.stderr
    else:
        index.unlink()

    one_call, _ = render([("idle", 3), ("call", 5), ("idle", 10)], seed=22)
    line.feed(one_call)
    run = Run(alsa, cfg, tmp_path / "run2.log")
    try:
        run.until(lambda: "INDEX_REBUILT" in json.loads(cli(alsa, "status", "-c", str(cfg), "--json").stdout
                                                        or "{}").get("alarms", []))
        after = run.until(lambda: chained(alsa, cfg, data_dir, 3))
        assert run.stop() == 0, run.log.read_text(errors="replace")
    finally:
        run.kill()
        line.feeder.stop()

    old = {(r["path"], r["sha256"]) for r in before}
    assert old <= {(r["path"], r["sha256"]) for r in after}
    (new,) = [r for r in after if (r["path"], r["sha256"]) not in old]
    assert new["status"] == "complete" and new["duration_s"] > 4.0
    with sqlite3.connect(index) as con:
        kinds = [k for (k,) in con.execute("select kind from chain order by seq")]
        alarm = con.execute("select severity, detail from alarms where code = 'INDEX_REBUILT'").fetchone()
    # The break first; then the two recordings found, the config the recorder started with (the
    # rebuilt index had none on record), and the new call.
    assert kinds == ["rebuild", "recording", "recording", "config", "recording"]
    assert alarm[0] == "critical" and "rebuilt 2 recording(s), 2 from sidecars" in alarm[1]
    kept = sorted(p.name for p in data_dir.glob("index.db.corrupt-*"))
    assert len(kept) == (1 if ruin == "garbage" else 0)
