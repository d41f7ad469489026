"""The recorder as a service: signals, the housekeeping loop, status file, checks.

``run_service`` is what ``linetap run`` does: start the recorder (which runs its
own health and housekeeping threads), wait for SIGTERM/SIGINT, then stop cleanly
(open calls finalised with ``end_reason = "shutdown"``, MQTT ``offline``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from .config import Config

logger = logging.getLogger(__name__)



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
        stop.wait()
    finally:
        rec.stop()
    logger.info("stopped cleanly")
    return 0


# = linetap.housekeeping.STATUS_FILE, not imported: that module loads the recorder's (numpy and
# the detectors among them: 0.3 s of a ``linetap status`` that reads one JSON file;
# tests/test_service.py checks the two agree).
STATUS_FILE = "status.json"


def status_path(cfg: Config) -> Path:
    return Path(cfg.recorder.data_dir) / STATUS_FILE


def read_status(cfg: Config) -> dict[str, Any] | None:
    """The running recorder's last health snapshot (rewritten every second), or None."""
    from .health.snapshot import read_snapshot
    try:
        return read_snapshot(status_path(cfg))
    except (OSError, ValueError):
        return None


def run_checks(cfg: Config) -> int:
    """``linetap check``: one line per check; exit 0 only if all pass."""
    from .capture.alsa import probe

    ok = True

    def report(passed: bool, what: str, detail: str = "") -> None:
        nonlocal ok
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} {what}{': ' + detail if detail else ''}")

    report(True, "config", cfg.source)
    # The same checks first boot makes before it applies a config (files it names, PCM names,
    # the data dir for the service user): what passes there passes here.
    from .bootfiles import ServiceUser, box_checks
    problems = box_checks(cfg, service=ServiceUser.lookup())
    report(not problems, "files", "; ".join(problems) or "every file the config names is there and usable")
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
            from .mqtt.probe import check_broker
        except ImportError:
            report(False, "broker", "MQTT support is not installed")
        else:
            problem = check_broker(cfg.mqtt)
            report(problem is None, "broker", problem or f"{cfg.mqtt.host}:{cfg.mqtt.port} reachable")
    return 0 if ok else 1


__all__ = ["run_service", "run_checks", "read_status"]
