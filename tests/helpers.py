"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from linetap.calls.segmenter import Start, VoxSegmenter
from linetap.capture import DeviceGone, Read
from linetap.config import load
from linetap.detect.level import dbfs
from linetap.firstboot import Layout, factory_config_text
from linetap.index.db import open_index
from linetap.sim.line import render


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(data_dir: Path, lines: list[dict[str, Any]], *, recorder: dict[str, Any] | None = None,
                **tables: dict[str, Any]) -> str:
    out = ["[recorder]", f"id = {toml_value((recorder or {}).get('id', 'test-01'))}",
           f"data_dir = {toml_value(str(data_dir))}"]
    for k, v in (recorder or {}).items():
        if k != "id":
            out.append(f"{k} = {toml_value(v)}")
    for name, table in tables.items():
        if table is None:
            continue
        out.append(f"\n[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for line in lines:
        out.append("\n[[line]]")
        out += [f"{k} = {toml_value(v)}" for k, v in line.items()]
    return "\n".join(out) + "\n"


def write_config(path: Path, data_dir: Path, lines: list[dict[str, Any]], **kw: Any) -> Path:
    path.write_text(config_text(data_dir, lines, **kw))
    return path


def factory_config(data_dir: Path, *, status_pin: int = 5, extra: str = "") -> str:
    """The image's factory ``linetap.toml`` (``firstboot.factory_config_text``), pointed at a test
    data dir, its status LED on ``status_pin``, with ``extra`` appended."""
    text = factory_config_text().replace('data_dir = "/var/lib/linetap"', f'data_dir = "{data_dir}"')
    text = text.replace("status = 5", f"status = {status_pin}")
    assert f'data_dir = "{data_dir}"' in text
    return text + extra


def boot_layout(top: Path, running: Callable[[Layout], str] | None = None) -> Layout:
    """A box's partitions under ``top``: an empty boot partition (``top/boot``), the config dir,
    and the data dir (``top/data``, not made: the recorder or first boot makes it), running the
    config ``running(layout)`` (default: the factory config pointed at that data dir)."""
    layout = Layout(boot_dir=top / "boot", data_dir=top / "data")
    layout.boot_dir.mkdir()
    layout.config_dir.mkdir(parents=True)
    layout.active.write_text(running(layout) if running else factory_config(layout.data_dir))
    return layout


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {getattr(cond, '__name__', cond)}")
        time.sleep(every)


def paced_by(progress_s: Callable[[], float], lead_s: float, timeout_s: float = 30.0) -> Callable[[float], None]:
    """An ``on_sent`` callback for a feeder: back-pressure from the system under test.

    A feed faster than real time (to test an hour in seconds) must not outrun the pipeline: its
    queue would fill and blocks be dropped, an artefact of the feed, not the behaviour under
    test (the recorder's own overrun is tested on its own). After each chunk the feeder waits
    until ``progress_s()`` (audio handled, in seconds) is within ``lead_s`` of what it has sent,
    so the feed goes exactly as fast as the pipeline drains, however busy the machine. Keep
    ``lead_s`` well below the queue's length (``recorder.queue_s``): the FIFO and ALSA's buffer
    hold a little more. A pipeline that has not caught up ``timeout_s`` after a chunk was sent
    is stuck (or stopped, the test over): the feeder ends with ``FifoFeeder.error`` set rather
    than waiting forever."""
    def on_sent(sent_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while sent_s - progress_s() > lead_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pipeline stayed {lead_s} s of audio behind the feed for {timeout_s} s")
            time.sleep(0.005)
    return on_sent


def alarm_rows(data_dir: Path) -> list[dict[str, Any]]:
    """Every row of the index's ``alarms`` table in ``data_dir``, oldest first: what the recorder
    process that wrote them keeps after it stopped."""
    index = open_index(data_dir)
    try:
        return index.query("select * from alarms order by id")
    finally:
        index.close()


class FlakySource:
    """A PCM that vanishes after ``fail_after`` reads (ENODEV), as a USB unplug does."""

    def __init__(self, inner: Any, fail_after: int) -> None:
        self.inner, self.left = inner, fail_after

    def read(self) -> Read:
        self.left -= 1
        if self.left < 0:
            raise DeviceGone("fake: USB device unplugged")
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


class Alarms:
    """Records ``on_alarm(code, active, detail)`` calls: the fake for the recorder's alarm manager."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def __call__(self, code: str, active: bool, detail: str) -> None:
        self.calls.append((code, active, detail))

    def active(self) -> dict[str, str]:
        """The alarms active now, with their last detail."""
        state: dict[str, str] = {}
        for code, active, detail in self.calls:
            if active:
                state[code] = detail
            else:
                state.pop(code, None)
        return state


# --- ``linetap run`` as a real process ---------------------------------------------------------

def run_linetap(env: dict[str, str], cfg: Path) -> subprocess.Popen:
    """``linetap run -c cfg`` as the box runs it, its log (stdout and stderr) unbuffered in ``stdout``."""
    env = {**env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "linetap", "run", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen) -> str:
    """SIGTERM (the way systemd stops it), at most 30 s for the clean stop; its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def read_status(data_dir: Path) -> dict:
    """The running recorder's ``status.json`` ({} until it is written)."""
    try:
        return json.loads((data_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def indexed_calls(data_dir: Path) -> list[dict]:
    """Every call in the index of ``data_dir`` ([] until the index exists)."""
    from linetap.index.db import open_index
    try:
        index = open_index(data_dir)
    except Exception:  # noqa: BLE001 - not created yet
        return []
    try:
        return index.calls()
    finally:
        index.close()


# --- a recorder process killed in the middle of a call (test_recovery.py, test_encryption_e2e.py) ---

def expected_start_frame(cfg_path: Path, pcm_audio: np.ndarray) -> int:
    """Where the recorder must start the recording: the segmenter over the fed audio, in the
    recorder's 20 ms blocks, so a test checks against the audio, not a hard-coded figure."""
    line = load(cfg_path).lines[0]
    seg = VoxSegmenter(line)
    block = line.rate // 50
    for s in range(0, len(pcm_audio) - block + 1, block):
        for a in seg.step(dbfs(pcm_audio[s:s + block]), s, block):
            if isinstance(a, Start):
                return a.frame
    raise AssertionError("the fed audio holds no call")


class RecorderProcess:
    """``linetap run -c CONFIG`` as a child process (``--debug``), its log kept in a file for failure
    messages; for the tests that kill it (SIGKILL) or stop it (SIGTERM) in the middle of a call."""

    def __init__(self, cfg: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "linetap", "--debug", "run", "-c", str(cfg)], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def until(self, cond, timeout: float = 10):
        """Wait for ``cond`` while the recorder runs; a recorder that died fails with its log."""
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the recorder exited with {self.proc.returncode}:\n{self.text()}")
            return cond()
        return wait_for(check, timeout=timeout)

    def started(self) -> None:
        # The recorder is up once it says so: every line open, the index created.
        self.until(lambda: "recording 1 line(s)" in self.text())


def offset_in(fed: np.ndarray, recorded: np.ndarray) -> int:
    """Where a lossless recording's first samples lie in the fed audio (exact match), or -1."""
    needle, hay = recorded[:800].tobytes(), fed.tobytes()
    i = hay.find(needle)
    while i % 2:  # a match must start on a sample boundary
        i = hay.find(needle, i + 1)
    return i // 2 if i >= 0 else -1


def row_of(data_dir: Path, status: str) -> dict | None:
    """The newest call row with ``status`` that has its file named: ``Recording`` inserts the row,
    then sets ``path`` in a second statement, and a reader between the two sees ``path`` null."""
    if not (data_dir / "index.db").exists():
        return None
    index = open_index(data_dir)
    try:
        rows = [row for row in index.calls(status=status) if row.get("path")]
    finally:
        index.close()
    return rows[0] if rows else None


def salvaged_after_restart(line: Any, cfg: Path, env: dict[str, str], log: Path, data_dir: Path, *,
                           seed: int) -> dict[str, Any]:
    """After a kill: start the recorder again on the same config and wait (15 s) until the cut
    recording is salvaged at start-up (``recovered``), then stop it cleanly (exit 0). The line is
    fed 30 s of idle meanwhile (the restarted recorder's FIFO-backed PCM needs a writer to open).
    Returns the recovered calls row."""
    idle, _ = render([("idle", 30)], seed=seed)
    line.feed(idle, speed=1.0)
    rec = RecorderProcess(cfg, env, log)
    try:
        rec.started()
        row = rec.until(lambda: row_of(data_dir, "recovered"), timeout=15)
        rec.proc.send_signal(signal.SIGTERM)
        assert rec.wait() == 0, rec.text()
    finally:
        rec.kill()
        line.feeder.stop()
    return row
