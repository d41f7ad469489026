"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from linetap.capture import DeviceGone, Read


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
