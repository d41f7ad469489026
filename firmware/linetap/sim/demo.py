"""``linetap demo``: the real recorder on a simulated phone line, no hardware needed.

What runs is the same code as on the box: pyalsaaudio opens an ALSA PCM (an ALSA
``file`` PCM reading a FIFO instead of a sound card), the pipeline cuts calls,
writes Opus files and the index, raises alarms, drives LEDs (gpiozero's
MockFactory pins, printed here) and, when ``mosquitto`` is installed, publishes
health and events to a broker the demo starts on a free loopback port.

The simulated line cycles through quiet idle time, calls (recorded speech),
and now and then a fault: the line goes digitally silent (LINE_DEAD) or stops
delivering audio altogether (a stalled PCM), so every part shows itself.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import load
from .feeder import FifoFeeder, asoundrc, make_fifo
from .line import render

logger = logging.getLogger(__name__)

RATE = 8000
PCM = "linetap_demo1"


def _script(cycle: int) -> list[tuple]:
    """One cycle of the simulated line: idle, a call, idle, and every other cycle a fault."""
    call_s = 12 + (cycle * 7) % 14
    script: list[tuple] = [("idle", 6), ("call", call_s), ("idle", 12)]
    if cycle % 3 == 1:
        script += [("zeros", 4), ("idle", 6)]  # the line goes digitally silent: LINE_DEAD
    return script


class _DemoFeeder(FifoFeeder):
    """The endless simulated line; every third cycle the sender stops for 3 s (a stall)."""

    def __init__(self, fifo: Path) -> None:
        self.stalls: dict[int, float] = {}
        super().__init__(fifo, self._chunks_with_stalls(), rate=RATE, speed=1.0, keep_open=True)

    def _chunks_with_stalls(self) -> Iterator[np.ndarray]:
        for cycle in itertools.count():
            audio, _ = render(_script(cycle), rate=RATE, seed=cycle)
            yield audio
            if cycle % 3 == 2:
                print("demo: the simulated line stops delivering audio for 3 s (a stalled PCM)", flush=True)
                time.sleep(3.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child SIGTERMed when the demo process dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``); None where there is no such call. Resolved
    here, in the parent: the child, between fork and exec, should not import."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the broker may outlive a killed demo
    return lambda: prctl(1, int(signal.SIGTERM), 0, 0, 0)


def _start_broker(directory: Path) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        print("demo: mosquitto is not installed; running stand-alone (no MQTT)", flush=True)
        return None, None
    port = _free_port()
    conf = directory / "mosquitto.conf"
    # "user": run as whoever runs the demo. (Run as root, mosquitto would otherwise switch to its
    # own user, and a change of credentials clears the parent-death signal set below.)
    user = pwd.getpwuid(os.getuid()).pw_name
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {user}\n")
    # Its own session: Ctrl-C stops the recorder first, then the demo stops the broker. And it
    # dies with the demo even when the demo is killed outright (Linux parent-death signal).
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    print("demo: mosquitto did not start; running stand-alone (no MQTT)", flush=True)
    return None, None


def write_demo_config(directory: Path, codec: str, port: int | None) -> Path:
    mqtt = (f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nhealth_interval_s = 10\n' if port else "")
    text = f"""# linetap demo: one simulated line (an ALSA file PCM fed by the demo).
[recorder]
id = "demo"
data_dir = "{directory / 'data'}"

[[line]]
name = "line1"
pcm = "{PCM}"
trigger = "vox"
led = 6

[storage]
codec = "{codec}"
keep_free_mb = 64

[health]
check_clock = false   # a PC's clock sync is not the demo's business; on the box it is checked

[leds]
status = 5
{mqtt}"""
    path = directory / "linetap.toml"
    path.write_text(text)
    return path


def _print_event(ev: dict[str, Any]) -> None:
    t = ev.get("type")
    if t == "call_started":
        print(f"{ev['ts']}  call {ev['call_id']} started on {ev['line']}", flush=True)
    elif t == "call_ended":
        print(f"{ev['ts']}  call {ev['call_id']} ended on {ev['line']}: {ev['duration_s']:.1f} s "
              f"({ev['end_reason']}) -> {ev.get('path')}", flush=True)
    elif t == "alarm_raised":
        where = f" on {ev['line']}" if ev.get("line") else ""
        print(f"{ev['ts']}  ALARM {ev['code']}{where} ({ev['severity']}): {ev.get('detail', '')}", flush=True)
    elif t == "alarm_cleared":
        where = f" on {ev['line']}" if ev.get("line") else ""
        print(f"{ev['ts']}  cleared {ev['code']}{where}", flush=True)


def run_demo(directory: Path, *, seconds: float = 0, codec: str = "opus") -> int:
    from ..gpio import mock_factory
    from ..recorder import Recorder

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    # libasound reads $XDG_CONFIG_HOME/alsa/asoundrc: the demo's PCM lives there.
    alsa_dir = directory / "alsa"
    alsa_dir.mkdir(exist_ok=True)
    fifo = make_fifo(directory / "line1.fifo")
    (alsa_dir / "asoundrc").write_text(asoundrc({PCM: fifo}))
    os.environ["XDG_CONFIG_HOME"] = str(directory)

    broker, port = _start_broker(directory)
    cfg = load(write_demo_config(directory, codec, port))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: stop.set())  # the terminal closed

    feeder = _DemoFeeder(fifo)  # opens the FIFO first, so the PCM opens at once
    feeder.start()
    rec = Recorder(cfg, pin_factory=mock_factory())
    rec.listeners.subscribe(_print_event)
    print(f"demo: recording a simulated line into {cfg.recorder.data_dir} (Ctrl-C stops)", flush=True)
    if port:
        print(f"demo: MQTT on 127.0.0.1:{port}; watch it with\n"
              f"      mosquitto_sub -h 127.0.0.1 -p {port} -v -t 'linetap/#'", flush=True)
    print(f"demo: list the calls with  linetap calls -c {directory / 'linetap.toml'}", flush=True)
    try:
        rec.start()
        shown: dict[str, str] = {}
        deadline = time.monotonic() + seconds if seconds else None
        while not stop.wait(0.2):
            if rec.leds is not None:
                for key in ("status", "line1"):
                    p = rec.leds.pattern(key)
                    if p is not None and shown.get(key) != p:
                        shown[key] = p
                        print(f"{'':24}  LED {key}: {p}", flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        rec.stop()
        feeder.stop()
        if broker is not None:
            broker.terminate()
            broker.wait(5)
    calls = rec.line_calls["line1"].calls_recorded if "line1" in rec.line_calls else 0
    print(f"demo: stopped; {calls} call(s) recorded this run", flush=True)
    return 0
