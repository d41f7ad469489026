"""The recorder as a service: signals, the housekeeping loop, status file, checks.

``run_service`` is what ``linetap run`` does: start the recorder, then loop on
the wall of time (heartbeat, health snapshot, watchdog) until SIGTERM/SIGINT,
then stop cleanly (open calls finalised with ``end_reason = "shutdown"``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from .clock import iso
from .config import Config

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def run_service(cfg: Config, *, stop: threading.Event | None = None) -> int:
    from .recorder import Recorder

    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rec = Recorder(cfg)
    try:
        rec.start()
        while not stop.wait(cfg.recorder.heartbeat_s):
            rec.housekeeping()
    finally:
        rec.stop()
    logger.info("stopped cleanly")
    return 0


def status_path(cfg: Config) -> Path:
    return Path(cfg.recorder.data_dir) / STATUS_FILE


def write_status(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def read_status(cfg: Config) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(cfg).read_text())
    except (OSError, ValueError):
        return None


def render_status(doc: dict[str, Any]) -> str:
    out = [f"linetap {doc.get('id')} (version {doc.get('version')}), up {doc.get('uptime_s')} s, at {doc.get('ts')}"]
    for name, line in sorted(doc.get("lines", {}).items()):
        level = line.get("level_dbfs")
        lv = f"{level:.1f} dBFS" if isinstance(level, (int, float)) else "-"
        out.append(f"  {name:<12} {line.get('state'):<10} {lv:>12}  alarms: {', '.join(line.get('alarms') or []) or 'none'}")
    disk = doc.get("disk") or {}
    if disk:
        out.append(f"  disk: {disk.get('free_mb')} MB free, {disk.get('recordings')} recordings, "
                   f"{disk.get('hours_left')} h left")
    out.append(f"  alarms: {', '.join(doc.get('alarms') or []) or 'none'}")
    return "\n".join(out)


def run_checks(cfg: Config) -> int:
    """``linetap check``: one line per check; exit 0 only if all pass."""
    from .capture.alsa import probe

    ok = True

    def report(passed: bool, what: str, detail: str = "") -> None:
        nonlocal ok
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} {what}{': ' + detail if detail else ''}")

    report(True, "config", cfg.source)
    data = Path(cfg.recorder.data_dir)
    try:
        data.mkdir(parents=True, exist_ok=True, mode=0o750)
        probe_file = data / ".linetap-check"
        probe_file.write_bytes(b"ok")
        os.fsync(os.open(probe_file, os.O_RDONLY))
        probe_file.unlink()
        st = os.statvfs(data)
        report(True, "data dir", f"{data} writable, {st.f_bavail * st.f_frsize // 2**20} MB free")
    except OSError as e:
        report(False, "data dir", f"{data}: {e.strerror or e}")
    for line in cfg.lines:
        if not line.enabled:
            report(True, f"line {line.name}", "disabled")
            continue
        problem = probe(line.pcm, line.rate, line.channels)
        report(problem is None, f"line {line.name}", problem or f"{line.pcm} opens at {line.rate} Hz")
    if cfg.mqtt is not None:
        try:
            from .mqtt.client import check_broker
        except ImportError:
            report(False, "broker", "MQTT support is not installed")
        else:
            problem = check_broker(cfg.mqtt)
            report(problem is None, "broker", problem or f"{cfg.mqtt.host}:{cfg.mqtt.port} reachable")
    return 0 if ok else 1


__all__ = ["run_service", "run_checks", "read_status", "render_status", "write_status", "iso"]
