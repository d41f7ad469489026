"""An off-hook input that cannot be built never stops recording (README "Alarms"): the line records
by voice activity, GPIO_FAILED names it, and housekeeping's retry puts it back on its hook input at
a call boundary — through the real path: gpiozero's MockFactory with the pin already taken, an ALSA
``file`` PCM fed from a FIFO, the real index; and ``linetap run`` as a real process whose pin
factory cannot be loaded at all."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from linetap.alarms.manager import AlarmManager
from linetap.calls.line import LineCalls
from linetap.capture import Block
from linetap.clock import FakeClock, SystemClock
from linetap.config import LineConfig, StorageConfig, load
from linetap.evidence.keywatch import EncryptionKey
from linetap.index.db import Index
from linetap.gpio import HookInput, mock_factory
from linetap.recorder import Recorder
from linetap.sim.line import render
from linetap.store.opener import RecordingOpener
from linetap.store.recordings import SyncBatch
from helpers import indexed_calls, read_status, run_linetap, stop_process, wait_for, write_config

HOOK_PIN = 17
RATE = 8000


def _events(events: list[dict], etype: str, code: str | None = None) -> list[tuple[int, dict]]:
    return [(k, e) for k, e in enumerate(events) if e["type"] == etype and (code is None or e.get("code") == code)]


def test_a_taken_hook_pin_records_by_vox_with_gpio_failed_and_the_retry_goes_back_to_offhook_between_calls(
        alsa, tmp_path: Path, data_dir: Path) -> None:
    (line,) = alsa.lines(1)
    cfg = load(write_config(tmp_path / "c.toml", data_dir,
                            [{"name": "line1", "pcm": line.pcm, "trigger": "offhook", "offhook_gpio": HOOK_PIN,
                              "vox_hang_s": 1.0}],
                            recorder={"queue_s": 120}, health={"check_clock": False, "alarm_clear_s": 0.5}))
    pins = mock_factory()
    holder = HookInput(HOOK_PIN, pin_factory=pins)  # another driver holds the hook pin
    pcm, _ = render([("idle", 1), ("call", 4), ("idle", 120)], seed=3)
    feeder = line.feed(pcm, speed=1.0, fast_head_s=1.0)  # the idle lead-in needs no pace; the call does
    rec = Recorder(cfg, clock=SystemClock(), pin_factory=pins)
    events: list[dict] = []
    rec.listeners.subscribe(events.append)
    calls = rec.line_calls["line1"]
    rec.start()
    try:
        alarm = {(a.code, a.line): a for a in rec.alarms.active()}[("GPIO_FAILED", "line1")]
        assert alarm.severity == "warning"
        assert alarm.detail.startswith(f"off-hook input on GPIO{HOOK_PIN} failed: ")
        assert alarm.detail.endswith("; recording by voice activity")
        assert calls.line.trigger == "vox" and calls.hook is None
        # The caller speaks: a call by voice activity, though the line is configured off-hook.
        wait_for(lambda: _events(events, "call_started"), timeout=30)
        holder.close()  # the pin is free again, while that call goes on
        rec.housekeeping.slow_checks()  # the retry (every 10 s) builds the input now
        trigger, in_call = calls.line.trigger, calls.recording is not None
        assert not (trigger == "offhook" and in_call), "the trigger changed in the middle of a call"
        (k_end, ended), = wait_for(lambda: _events(events, "call_ended"), timeout=30)
        assert ended["end_reason"] == "vox_timeout"  # the call was not cut by the change
        (k_clear, cleared), = wait_for(lambda: _events(events, "alarm_cleared", "GPIO_FAILED"), timeout=30)
        assert cleared["line"] == "line1" and k_clear > k_end
        assert calls.line.trigger == "offhook" and calls.hook is rec.hooks.inputs["line1"]
        assert not rec.hooks.fallback
        # Off-hook triggering again: the handset lifted for 3 s, then put down.
        pin = pins.pin(HOOK_PIN)
        pin.drive_high()
        wait_for(lambda: len(_events(events, "call_started")) == 2, timeout=30)
        time.sleep(3.0)
        pin.drive_low()
        (_, second), = wait_for(lambda: _events(events, "call_ended")[1:], timeout=30)
        assert second["end_reason"] == "onhook" and second["duration_s"] >= 2.5
        rec.housekeeping.slow_checks()  # a later retry raises nothing again
        assert ("GPIO_FAILED", "line1") not in {(a.code, a.line) for a in rec.alarms.active()}
    finally:
        rec.stop()
        feeder.stop()
        holder.close()


def test_a_trigger_switch_waits_for_the_call_in_progress_to_end(data_dir: Path, index: Index) -> None:
    """``LineCalls.switch_trigger`` from another thread: the call in progress by voice activity
    ends by voice activity, and the blocks after it run by the hook input (real recordings in a
    real index, made by the recorder's ``RecordingOpener``)."""
    line = LineConfig(name="l", pcm="null", rate=RATE, trigger="offhook", offhook_gpio=HOOK_PIN,
                      vox_hang_s=0.5, min_call_s=0.2, preroll_s=0.1)
    clock = FakeClock()
    opener = RecordingOpener(data_dir, index, StorageConfig(codec="wav"), syncs=SyncBatch(data_dir),
                             key=EncryptionKey(None), alarms=AlarmManager(index, clock, clear_after_s=0.0))
    calls = LineCalls(dataclasses.replace(line, trigger="vox"), open_recording=opener)
    switched: list[int] = []
    n = RATE // 50
    loud = (np.sin(2 * np.pi * 440 * np.arange(n) / RATE) * 8000).astype(np.int16).reshape(-1, 1)
    quiet = np.zeros_like(loud)
    k = 0

    def feed(x: np.ndarray, count: int) -> None:
        nonlocal k
        for _ in range(count):
            calls.on_block(Block("l", x, k * n, 1000.0 + k * n / RATE, RATE))
            k += 1

    feed(loud, 50)  # 1 s of speech: a call by voice activity
    assert calls.recording is not None
    calls.switch_trigger(line, lambda: False, then=lambda: switched.append(k))
    feed(loud, 10)
    assert calls.line.trigger == "vox" and not switched and calls.recording is not None
    feed(quiet, 50)  # the hang time passes: the call ends by VOX, then the line runs off-hook
    assert [c["end_reason"] for c in index.calls()] == ["vox_timeout"]
    assert calls.line.trigger == "offhook" and switched
    feed(loud, 50)  # speech alone no longer starts a call: the hook is on
    assert calls.recording is None and len(index.calls()) == 1


def _finished_calls(data_dir: Path) -> list[dict]:
    return [c for c in indexed_calls(data_dir) if c["status"] != "recording"]


def test_linetap_run_without_a_usable_pin_factory_keeps_running_and_records_by_voice(
        alsa, tmp_path: Path, data_dir: Path) -> None:
    """The box's own process: gpiozero cannot load the pin factory it is told to use, which
    made ``linetap run`` exit before any line opened (and systemd restart it in a loop)."""
    (line,) = alsa.lines(1)
    cfg = write_config(tmp_path / "c.toml", data_dir,
                       [{"name": "line1", "pcm": line.pcm, "trigger": "offhook", "offhook_gpio": HOOK_PIN,
                         "vox_hang_s": 1.0}],
                       recorder={"queue_s": 120}, health={"check_clock": False})
    feeder = line.feed(render([("idle", 1), ("call", 3), ("idle", 60)], seed=6)[0], speed=1.0)
    # gpiozero is told to use a pin factory that cannot be loaded (as on a box whose GPIO driver is missing).
    proc = run_linetap({**alsa.env(), "GPIOZERO_PIN_FACTORY": "linetap_test_no_such_factory"}, cfg)
    try:
        doc = wait_for(lambda: read_status(data_dir) if "GPIO_FAILED" in read_status(data_dir).get("alarms", [])
                       else None, timeout=30)
        assert proc.poll() is None
        assert doc["lines"]["line1"]["state"] in ("idle", "recording")
        (call,) = wait_for(lambda: _finished_calls(data_dir), timeout=40)
        assert call["line"] == "line1" and call["end_reason"] == "vox_timeout"
        assert proc.poll() is None
    finally:
        out = stop_process(proc)
        feeder.stop()
    assert proc.returncode == 0, out
    assert f"off-hook input on GPIO{HOOK_PIN} failed: " in out and "recording by voice activity" in out
