"""Never weaker in silence: a recording that cannot be sealed or chained, or a crash's ``.part``
the disk cannot take back now, is a critical alarm and a retry — with real files, a real index,
a real key pair and, end to end, the real capture path."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap import crypto
from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock, SystemClock
from linetap.config import HealthConfig, StorageConfig, load
from linetap.housekeeping import SLOW_CHECK_S, Housekeeping
from linetap.index.db import Index
from linetap.index.evidence import calls_unchained
from linetap.recorder import Recorder
from linetap.sim.line import render
from linetap.store.recordings import Recording
from helpers import alarm_rows, indexed_calls as _calls, read_status as status, run_linetap, stop_process as stop
from helpers import wait_for, write_config
from mqtt_broker import broker  # noqa: F401  (the fixture)

RATE = 8000


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return crypto.generate_keypair(tmp_path / "keys")


def finished_call(index: Index, data_dir: Path, clock: FakeClock) -> dict:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.write((np.sin(np.arange(RATE) * 0.3) * 8000).astype(np.int16).reshape(-1, 1))
    clock.advance(60)
    return rec.finish("onhook")


def housekeeping(index: Index, data_dir: Path, clock: FakeClock, storage: StorageConfig) -> Housekeeping:
    import queue

    from linetap.health.board import StatusBoard
    alarms = AlarmManager(index, clock, clear_after_s=0.0)
    board = StatusBoard(recorder_id="t", lines=(), line_calls={}, alarms=alarms, clock=clock)
    return Housekeeping(index=index, data_dir=data_dir, storage=storage, health=HealthConfig(check_clock=False),
                        clock=clock, alarms=alarms, sweeper=None, board=board,  # type: ignore[arg-type]
                        to_seal=queue.Queue(), heartbeat_s=1.0)


def active(hk: Housekeeping) -> dict[str, str]:
    return {a.code: a.detail for a in hk.alarms.active()}


def test_a_call_that_cannot_be_sealed_is_a_critical_alarm_at_once_and_sealed_on_the_retry(
        index: Index, data_dir: Path, clock: FakeClock, keypair: tuple[Path, Path]) -> None:
    pub, _ = keypair
    hk = housekeeping(index, data_dir, clock, StorageConfig(codec="wav", encrypt_to=pub))
    hidden = pub.with_name("moved-away")
    pub.rename(hidden)  # the key vanished after start (card swapped, file removed)
    row = finished_call(index, data_dir, clock)
    hk.to_seal.put(row["id"])
    hk.seal_finished()
    assert "EVIDENCE_FAILED" in active(hk) and f"call {row['id']}" in active(hk)["EVIDENCE_FAILED"]
    assert hk.alarms.active()[0].severity == "critical"
    assert calls_unchained(index) == [row["id"]] and (data_dir / row["path"]).is_file()
    hk.retry_failed()  # still no key: still the alarm
    assert "EVIDENCE_FAILED" in active(hk)
    hidden.rename(pub)
    hk.retry_failed()
    sealed = index.get_call(row["id"])
    assert sealed["path"].endswith(crypto.SUFFIX) and crypto.is_sealed(data_dir / sealed["path"])
    assert not (data_dir / row["path"]).exists()  # no plaintext left
    assert calls_unchained(index) == [] and "EVIDENCE_FAILED" not in active(hk)


def test_a_call_the_previous_run_could_not_seal_raises_the_alarm_at_start(
        index: Index, data_dir: Path, clock: FakeClock, keypair: tuple[Path, Path]) -> None:
    pub, _ = keypair
    row = finished_call(index, data_dir, clock)  # the previous run died before sealing it
    pub.unlink()
    hk = housekeeping(index, data_dir, clock, StorageConfig(codec="wav", encrypt_to=pub))
    hk.recover_previous_run()
    assert hk.unsealed == {row["id"]} and "EVIDENCE_FAILED" in active(hk)


@contextlib.contextmanager
def disk_refusing_files_over(limit_bytes: int) -> Iterator[None]:
    """Writes past ``limit_bytes`` into any file fail (RLIMIT_FSIZE: EFBIG, as a full disk fails
    them with ENOSPC) in this process, until the block ends."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_an_unrecoverable_part_keeps_disk_write_failed_active_until_a_retry_recovers_it(
        index: Index, data_dir: Path, clock: FakeClock) -> None:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.write((np.sin(np.arange(20 * RATE) * 0.3) * 8000).astype(np.int16).reshape(-1, 1))
    rec.sync_now()  # a crash here: the .part is on disk, the row says "recording"
    part = rec.part
    before = part.read_bytes()
    limit = 128 * 1024  # the index and its WAL stay under it; the salvaged copy of the audio does not
    assert part.stat().st_size > limit and (data_dir / "index.db").stat().st_size < limit // 2
    hk = housekeeping(index, data_dir, clock, StorageConfig(codec="wav"))
    with disk_refusing_files_over(limit):
        hk.recover_previous_run()
        assert hk.unsalvaged == [part] and "DISK_WRITE_FAILED" in active(hk)
        assert "1 unfinished recording" in active(hk)["DISK_WRITE_FAILED"]
        assert hk.alarms.active()[0].severity == "critical"
        hk.retry_failed()  # the disk is still full: still the alarm, the file untouched
        assert "DISK_WRITE_FAILED" in active(hk) and part.read_bytes() == before
    hk.retry_failed()  # space again
    assert hk.unsalvaged == [] and "DISK_WRITE_FAILED" not in active(hk)
    row = index.get_call(rec.id)
    assert row["status"] == "recovered" and row["duration_s"] == pytest.approx(20.0, abs=0.05)
    assert calls_unchained(index) == []  # recovered on the retry, then chained


def test_an_encryption_key_that_cannot_be_loaded_is_named_but_does_not_stop_the_recorder(
        tmp_path: Path, data_dir: Path) -> None:
    """First boot and `linetap check` refuse such a config (bootfiles.box_checks); a key lost on the box
    itself must not become a restart loop that records nothing: the recorder is built, and says why."""
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": "null"}],
                            storage={"encrypt_to": str(tmp_path / "missing.pub")}))
    rec = Recorder(cfg)
    try:
        assert rec.key.opener is None
        assert rec.key.problem is not None and rec.key.problem.startswith(
            f"storage.encrypt_to: '{tmp_path / 'missing.pub'}' cannot be loaded")
    finally:
        rec.stop()


def recorder_with_key(alsa, tmp_path: Path, data_dir: Path, pub: Path, script: list) -> tuple[Recorder, object, list]:
    (line,) = alsa.lines(1)
    pcm, _ = render(script, seed=4)
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, "vox_hang_s": 1.0}],
                            recorder={"queue_s": 120}, storage={"codec": "wav", "encrypt_to": str(pub)},
                            health={"check_clock": False, "alarm_clear_s": 0.5}))
    rec = Recorder(cfg, clock=SystemClock())
    events: list[dict] = []
    rec.listeners.subscribe(events.append)
    return rec, line.feed(pcm, speed=1.0), events


def alarm_events(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind and e["code"] == "EVIDENCE_FAILED"]


def test_key_removed_after_start_alarms_within_one_housekeeping_period_and_nothing_is_plaintext(
        alsa, tmp_path: Path, data_dir: Path, keypair: tuple[Path, Path]) -> None:
    """End to end through ALSA: recordings are encrypted as they are written with the key loaded at
    start, so a key file removed afterwards leaves nothing in plaintext — but the next start would be
    without it: EVIDENCE_FAILED (critical) within one housekeeping period (1 s), cleared when it is back."""
    pub, _ = keypair
    rec, feeder, events = recorder_with_key(alsa, tmp_path, data_dir, pub, [("idle", 1), ("call", 3), ("idle", 3)])
    hidden = pub.with_name("moved-away")
    rec.start()
    try:
        pub.rename(hidden)
        removed_at = time.monotonic()
        raised = wait_for(lambda: alarm_events(events, "alarm_raised"), timeout=5)
        assert time.monotonic() - removed_at <= 2.0  # one housekeeping period (1 s) and margin for load
        assert raised[0]["severity"] == "critical" and "cannot start again" in raised[0]["detail"]
        ended = wait_for(lambda: [e for e in events if e["type"] == "call_ended"], timeout=30)
        row = wait_for(lambda: (r := rec.index.get_call(ended[0]["call_id"])) and r["sha256"] and r, timeout=10)
        assert row["path"].endswith(crypto.SUFFIX)  # encrypted as it was written, key file or not
        hidden.rename(pub)
        wait_for(lambda: alarm_events(events, "alarm_cleared"), timeout=10)
        assert calls_unchained(rec.index) == []
    finally:
        rec.stop()
        feeder.stop()
    plain = [p for p in (data_dir / "recordings").rglob("*") if p.is_file() and p.suffix in (".wav", ".part")]
    assert plain == []


def test_a_key_missing_at_start_does_not_stop_recording_the_alarm_is_at_once_and_its_return_seals_the_backlog(
        alsa, tmp_path: Path, data_dir: Path, keypair: tuple[Path, Path]) -> None:
    """A box whose key file is damaged records anyway (only capture may stop it): in plaintext, with
    EVIDENCE_FAILED from the start; the key back, the backlog is sealed and chained in the same
    housekeeping cycle (``Housekeeping.watch_key``, every second) and the alarm clears."""
    pub, _ = keypair
    hidden = pub.with_name("moved-away")
    pub.rename(hidden)
    rec, feeder, events = recorder_with_key(alsa, tmp_path, data_dir, pub, [("idle", 1), ("call", 3), ("idle", 3)])
    rec.start()
    try:
        raised = wait_for(lambda: alarm_events(events, "alarm_raised"), timeout=5)
        assert raised[0]["severity"] == "critical" and "plaintext" in raised[0]["detail"]
        ended = wait_for(lambda: [e for e in events if e["type"] == "call_ended"], timeout=30)
        assert rec.index.get_call(ended[0]["call_id"])["path"].endswith(".wav")  # recorded, in plaintext
        assert not alarm_events(events, "alarm_cleared")
        hidden.rename(pub)
        wait_for(lambda: alarm_events(events, "alarm_cleared"), timeout=SLOW_CHECK_S + 10)
        row = rec.index.get_call(ended[0]["call_id"])
        assert row["path"].endswith(crypto.SUFFIX) and not (data_dir / row["path"].removesuffix(crypto.SUFFIX)).exists()
        assert calls_unchained(rec.index) == []
        assert rec.key.opener is not None  # the next recordings are encrypted as they are written
    finally:
        rec.stop()
        feeder.stop()


# --- only capture may stop recording ---------------------------------------------------------

def run_recorder(alsa, cfg: Path) -> subprocess.Popen:
    return run_linetap(alsa.env(), cfg)


def one_call_and_a_password_file(alsa, b, tmp_path: Path, data_dir: Path, *, seed: int) -> tuple[Path, Path, Any]:
    """A config whose one line is fed a call at real-time pace (1 s idle, 3 s call, 3 s idle: a
    VOX call of ~4 s) and whose ``[mqtt]`` logs in to broker ``b`` as 'recorder' with the password
    in ``tmp_path/mqtt-password`` (not written here; plain TCP allowed: a test broker on
    loopback), health every 2 s: (config, password file, feeder)."""
    (line,) = alsa.lines(1)
    pw = tmp_path / "mqtt-password"
    cfg = write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, "vox_hang_s": 1.0}],
                       recorder={"queue_s": 120}, health={"check_clock": False, "alarm_clear_s": 0.5},
                       mqtt={"host": b.host, "port": b.port, "username": "recorder", "password_file": str(pw),
                             "allow_plaintext_password": True, "health_interval_s": 2})
    pcm, _ = render([("idle", 1), ("call", 3), ("idle", 3)], seed=seed)
    return cfg, pw, line.feed(pcm, speed=1.0)


def test_a_missing_mqtt_password_file_is_an_alarm_the_lines_record_and_the_link_comes_up_when_it_appears(
        alsa, broker, tmp_path: Path, data_dir: Path) -> None:
    """The installer's mistake from the issue: the config names a password file that is not on the
    box. ``linetap run`` (a real process) records anyway, raises BROKER_UNREACHABLE naming the
    problem, and once the file is there (housekeeping stats the credential files every tick and
    retries at once when they change: ``Uplink.retry_if_files_changed``) the link connects and the
    events queued meanwhile arrive."""
    b = broker(users={"recorder": "s3cret"})
    sub = b.subscribe("linetap/test-01/#")
    cfg, pw, feeder = one_call_and_a_password_file(alsa, b, tmp_path, data_dir, seed=6)
    proc = run_recorder(alsa, cfg)
    try:
        doc = wait_for(lambda: status(data_dir) if "BROKER_UNREACHABLE" in status(data_dir).get("alarms", [])
                       else None, timeout=20)
        assert proc.poll() is None
        wait_for(lambda: any(r["status"] != "recording" for r in _calls(data_dir)), timeout=30)
        assert doc["lines"]["line1"]["state"] in ("idle", "recording")
        pw.write_text("s3cret\n")
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.text == "online", timeout=SLOW_CHECK_S + 15)
        sub.wait_for(lambda m: m.topic.endswith("/event") and json.loads(m.payload)["type"] == "call_ended",
                     timeout=15)
        raised = [json.loads(m.payload) for m in sub.on("linetap/test-01/event")
                  if json.loads(m.payload)["type"] == "alarm_raised"]
        broker_alarm = [e for e in raised if e["code"] == "BROKER_UNREACHABLE"]
        assert broker_alarm and "mqtt.password_file" in broker_alarm[0]["detail"]
    finally:
        out = stop(proc)
        feeder.stop()
    assert proc.returncode == 0, out
    assert "MQTT not started: mqtt.password_file" in out


def test_a_wrong_mqtt_password_is_an_alarm_saying_so_the_lines_record_and_a_corrected_file_is_used(
        alsa, broker, tmp_path: Path, data_dir: Path) -> None:
    """Issue 14, "Prove it": broker credentials wrong -> lines record, alarm raised. A real mosquitto
    that requires a password, a real ``linetap run`` whose password file holds the wrong one. The
    process keeps running and records a call; BROKER_UNREACHABLE says in plain words that the broker
    refused the user name and password (mosquitto answers "Not authorized", MQTT 5 reason 135), at
    once, not after ``unreachable_after_s``; the link keeps trying (the broker logs each refused
    CONNECT); the password appears in no log, status or alarm. Corrected while it runs, the file is
    read again within about a second (the link's tick, twice a second: ``MqttLink.renew_credentials``):
    the link logs in, the alarm clears, and the call recorded while the broker refused it arrives."""
    wrong, right = "wrong-horse-battery-7", "right-horse-battery-7"
    b = broker(users={"recorder": right})
    sub = b.subscribe("linetap/test-01/#")
    cfg, pw, feeder = one_call_and_a_password_file(alsa, b, tmp_path, data_dir, seed=7)
    pw.write_text(wrong + "\n")
    pw.chmod(0o600)
    proc = run_recorder(alsa, cfg)
    out = ""
    try:
        def broker_alarm() -> dict | None:
            return next((a for a in status(data_dir).get("alarm_details", [])
                         if a["code"] == "BROKER_UNREACHABLE"), None)

        # Raised at once: the default unreachable_after_s (60 s) is far longer than this wait.
        alarm = wait_for(broker_alarm, timeout=30)
        assert alarm["severity"] == "warning"
        assert "refused the connection: it did not accept the user name 'recorder' with the password from " \
               "mqtt.password_file" in alarm["detail"] and "check mqtt.username and mqtt.password_file" in \
               alarm["detail"], alarm
        assert proc.poll() is None
        # The line records meanwhile: a whole call, finished and on disk.
        done = wait_for(lambda: [r for r in _calls(data_dir) if r["status"] != "recording"], timeout=30)
        assert done[0]["duration_s"] > 2 and (data_dir / done[0]["path"]).stat().st_size > 0
        assert status(data_dir)["lines"]["line1"]["state"] in ("idle", "recording")
        # The link keeps trying (paho's back-off: 1 s, doubling): the broker refuses each CONNECT.
        wait_for(lambda: b.log.read_text().count("not authorised") >= 2, timeout=30)
        assert proc.poll() is None
        st = subprocess.run([sys.executable, "-m", "linetap", "status", "--json", "-c", str(cfg)], env=alsa.env(),
                            capture_output=True, text=True, timeout=60)
        assert st.returncode == 0 and "BROKER_UNREACHABLE" in json.loads(st.stdout)["alarms"], st
        assert wrong not in st.stdout + st.stderr
        # Corrected while it runs (the box has no reload): the link's next tick logs in with the new file.
        pw.write_text(right + "\n")
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.text == "online", timeout=SLOW_CHECK_S + 30)
        ended = sub.wait_for(lambda m: m.topic.endswith("/event") and json.loads(m.payload)["type"] == "call_ended",
                             timeout=30)
        assert json.loads(ended.payload)["call_id"] == done[0]["id"]  # recorded while refused, delivered now
        wait_for(lambda: broker_alarm() is None, timeout=30)
        assert proc.poll() is None
    finally:
        out = stop(proc)
        feeder.stop()
    assert proc.returncode == 0, out
    # Logged by the link once (not at every retry), and by the alarm manager once when raised.
    assert out.count("linetap.mqtt.link: MQTT: broker") == 1 and "did not accept the user name" in out, out
    assert "the credentials changed after the broker refused them" in out
    for where in (out, (data_dir / "status.json").read_text(), json.dumps(alarm_rows(data_dir))):
        assert wrong not in where and right not in where
    refused_rows = [a for a in alarm_rows(data_dir) if a["code"] == "BROKER_UNREACHABLE"]
    assert refused_rows and "did not accept the user name" in refused_rows[0]["detail"]
    assert refused_rows[0]["cleared_at"] is not None


def test_leds_that_cannot_be_driven_are_an_alarm_not_an_exit(alsa, tmp_path: Path, data_dir: Path) -> None:
    from linetap.gpio import HookInput, mock_factory
    (line,) = alsa.lines(1)
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, "led": 6}],
                            leds={"status": 5}, health={"check_clock": False}))
    pins = mock_factory()
    holder = HookInput(5, pin_factory=pins)  # something else holds the status LED's pin
    feeder = line.feed(render([("idle", 2)], seed=1)[0], speed=1.0)
    rec = Recorder(cfg, clock=SystemClock(), pin_factory=pins)
    rec.start()
    try:
        assert rec.leds is not None and rec.leds.lines_with_led == {"line1"}
        alarm = {a.code: a for a in rec.alarms.active()}["GPIO_FAILED"]
        assert alarm.severity == "warning" and alarm.detail.startswith("LEDs: status on GPIO 5: ")
        rec.housekeeping.slow_checks()  # still taken: still the alarm
        assert "GPIO_FAILED" in {a.code for a in rec.alarms.active()}
        holder.close()  # the pin is free again: the retry takes it
        rec.housekeeping.slow_checks()
        assert rec.leds is not None and rec.health_loop.leds is rec.leds and not rec.leds.errors
        assert "status" in rec.leds.devices
        wait_for(lambda: "GPIO_FAILED" not in {a.code for a in rec.alarms.active()}, timeout=10)
    finally:
        rec.stop()
        feeder.stop()


def test_a_failing_retention_sweep_is_an_alarm_and_is_retried(index: Index, data_dir: Path, clock: FakeClock) -> None:
    from linetap.config import Config, RecorderConfig
    from linetap.retention.sweeper import Sweeper
    gone = data_dir / "unmounted"  # statvfs fails: the sweep cannot measure free space
    cfg = Config(source="t", recorder=RecorderConfig(id="t", data_dir=gone), lines=(), storage=StorageConfig(),
                 health=HealthConfig(check_clock=False), mqtt=None, leds=None)
    hk = housekeeping(index, data_dir, clock, StorageConfig(codec="wav"))
    hk.sweeper = Sweeper.from_config(index, cfg, clock=clock)
    hk.slow_checks()
    assert "DISK_LOW" in active(hk) and active(hk)["DISK_LOW"].startswith("retention sweep failed: ")
    gone.mkdir()  # mounted again: the next sweep works and the alarm clears
    hk.slow_checks()
    assert "DISK_LOW" not in active(hk)
