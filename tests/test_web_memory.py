"""The web process stays small (a Pi Zero 2 W: < 60 MB): it serves pages without loading numpy, and
the names it keeps so as not to import the recorder's modules agree with theirs."""

from __future__ import annotations

import json
import subprocess
import sys

from linetap.detect import callerid, names, tones
from linetap.housekeeping import STATUS_FILE
from linetap.web import service

PROBE = r"""
import json, sys
from pathlib import Path
from linetap.cli.web import import_index_without_numpy, return_big_allocations_to_the_kernel
return_big_allocations_to_the_kernel()
import_index_without_numpy()
from linetap.clock import FakeClock
from linetap.config import load_text
from linetap.index.db import open_index
from linetap.index.web import CallFilter
from linetap.web import app, service
data = Path(sys.argv[1])
cfg = load_text(f'[recorder]\ndata_dir = "{data}"\n[[line]]\nname = "line1"\npcm = "null"\n')
index = open_index(data)
svc = service.WebService(cfg, index, secret=b"s" * 32, state_dir=data / "web", clock=FakeClock())
app.build_app(svc, https=True)
service.add_user(index, "bob", "admin", "password-1")
svc.login("bob", "password-1", "127.0.0.1")
svc.health(); svc.coverage(7); svc.calls(CallFilter(number="555"), limit=50, offset=0)
rid = svc.request_erasure("bob", "127.0.0.1", reason="asked", number="555")  # queued; the recorder erases
svc.erasure(rid); svc.erasures(limit=50, offset=0)
print(json.dumps(sorted(m for m in ("numpy", "soundfile", "alsaaudio", "paho", "gpiozero") if m in sys.modules)))
"""


def test_the_web_serves_login_health_coverage_calls_and_erasure_requests_without_numpy(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_the_config_s_detector_names_are_the_detectors_own() -> None:
    assert (names.CALLERID_STANDARDS, names.TONE_SETS) == (callerid.STANDARDS, tones.TONE_SETS)


def test_the_web_reads_the_status_file_the_recorder_writes() -> None:
    assert service.STATUS_FILE == STATUS_FILE
