"""The recorder on a real mosquitto: what an MSP's dashboard sees, through the real capture path."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from linetap.clock import SystemClock
from linetap.config import load
from linetap.recorder import Recorder
from linetap.sim.line import render
from helpers import wait_for, write_config
from mqtt_broker import broker, first_deliveries  # noqa: F401  (broker is the fixture)

ID = "e2e-01"
STATUS, HEALTH, EVENT = f"linetap/{ID}/status", f"linetap/{ID}/health", f"linetap/{ID}/event"
DISCOVERY = f"homeassistant/device/{ID}/config"


def cfg_for(tmp_path: Path, data_dir: Path, pcm: str, port: int, **line):
    return write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": pcm, **line}],
                        recorder={"id": ID, "queue_s": 120},
                        health={"check_clock": False, "alarm_clear_s": 0.5},
                        mqtt={"host": "127.0.0.1", "port": port, "health_interval_s": 5})


def events(sub) -> list[dict]:
    return [json.loads(m.payload) for m in sub.on(EVENT)]


def test_a_dashboard_sees_online_health_discovery_calls_and_a_dead_line_within_a_second(alsa, broker, data_dir,
                                                                                         tmp_path):
    b = broker()
    sub = b.subscribe(f"linetap/{ID}/#", DISCOVERY)
    (line,) = alsa.lines(1)
    # Real time: the alarm's latency is the point. A short hang time keeps it brief.
    script = [("idle", 1), ("call", 4), ("idle", 2), ("zeros", 1.5), ("idle", 1.5)]
    pcm, truth = render(script, seed=8)
    dead = truth[3]
    sent_at: dict[str, float] = {}

    def on_sent(t: float) -> None:
        if t >= dead.start_s and "dead" not in sent_at:
            sent_at["dead"] = time.time()

    cfg = load(cfg_for(tmp_path, data_dir, line.pcm, b.port, vox_hang_s=1.5))
    rec = Recorder(cfg, clock=SystemClock())
    feeder = line.feed(pcm, speed=1.0, on_sent=on_sent, fast_head_s=1.0)  # the idle lead-in needs no pace
    rec.start()
    try:
        sub.wait_for(lambda m: m.topic == STATUS and m.text == "online")
        sub.wait_for(lambda m: m.topic == DISCOVERY)
        first = json.loads(sub.wait_for(lambda m: m.topic == HEALTH).payload)
        raised = sub.wait_for(lambda m: m.topic == EVENT and json.loads(m.payload)["type"] == "alarm_raised",
                              timeout=15)
        arrived = time.time()
        sub.wait_for(lambda m: m.topic == EVENT and json.loads(m.payload)["type"] == "alarm_cleared", timeout=15)
        sub.wait_for(lambda m: m.topic == EVENT and json.loads(m.payload)["type"] == "call_ended", timeout=15)
    finally:
        rec.stop()
        feeder.stop()
    latency = arrived - sent_at["dead"]
    assert latency <= 1.0, f"alarm_raised reached the broker {latency:.2f} s after the line died"
    ev = json.loads(raised.payload)
    assert ev["code"] == "LINE_DEAD" and ev["line"] == "line1" and ev["severity"] == "critical"
    kinds = [e["type"] for e in first_deliveries(sub.on(EVENT))]
    assert kinds == ["call_started", "call_ended", "alarm_raised", "alarm_cleared"]
    call = first_deliveries(sub.on(EVENT))[1]
    assert call["line"] == "line1" and call["duration_s"] > 4 and call["end_reason"] == "vox_timeout"
    # A health snapshot went out at once when the line became faulty.
    faulty = [json.loads(m.payload) for m in sub.on(HEALTH)]
    assert any(d["lines"]["line1"]["state"] == "fault" and d["alarms"] == ["LINE_DEAD"] for d in faulty)
    assert faulty[-1]["id"] == ID and set(faulty[-1]["disk"]) >= {"free_mb", "used_mb", "recordings", "hours_left"}
    # The first snapshot after the start already has the disk and call figures (HA shows no "unknown");
    # hours_left stays null on a box that has never recorded a minute (the rate is not known yet).
    assert all(first["disk"][k] is not None for k in ("free_mb", "used_mb", "recordings")), first
    assert first["calls_today"] == 0 and first["last_call"] is None
    late = b.subscribe(STATUS)
    assert late.wait_for(lambda m: True).text == "offline"  # retained after a clean stop


def run_recorder(alsa, cfg: Path) -> subprocess.Popen:
    env = alsa.env()
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-m", "linetap", "run", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_shows_offline_by_the_will_and_events_from_a_broker_outage_and_a_restart_all_arrive_in_order(
        alsa, broker, data_dir, tmp_path):
    b = broker(persistence=True)
    sub = b.subscribe(f"linetap/{ID}/#", persistent=True, client_id="msp-dashboard")
    (line,) = alsa.lines(1)
    cfg = cfg_for(tmp_path, data_dir, line.pcm, b.port)
    one_call = render([("idle", 4), ("call", 6), ("idle", 10)], seed=3)[0]

    line.feed(one_call, speed=0)
    child = run_recorder(alsa, cfg)
    try:
        sub.wait_for(lambda m: m.topic == EVENT and json.loads(m.payload)["type"] == "call_ended", timeout=20)
        # Killed between the broker's PUBACK and the outbox delete, an event is sent again on
        # restart (QoS 1 is at-least-once; TOPICS.md: consumers drop repeated seq). Kill after it.
        wait_for(lambda: len(_outbox(data_dir)) == 0, timeout=20)
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        sub.wait_for(lambda m: m.topic == STATUS and m.text == "offline", timeout=15)  # the Last Will
        line.feeder.stop()

        # The broker goes away; the recorder restarts (a RECORDER_RESTARTED alarm and a call
        # happen while it is away), is restarted once more, and only then the broker returns.
        b.stop()
        line.feed(one_call, speed=0)
        child = run_recorder(alsa, cfg)
        wait_for(lambda: len(_outbox(data_dir)) >= 4, timeout=20)  # restarted raised+cleared, call x2
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0
        line.feeder.stop()
        queued = _outbox(data_dir)
        line.feed(render([("idle", 2)], seed=1)[0], speed=0)
        child = run_recorder(alsa, cfg)
        time.sleep(1.0)
        b.start()
        sub.wait_for(lambda m: m.topic == STATUS and m.text == "online", timeout=15)
        wait_for(lambda: len(_outbox(data_dir)) == 0, timeout=30)
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
        line.feeder.stop()
    # Acknowledged by the broker is not yet delivered to the subscriber: wait for the queued ones.
    wait_for(lambda: set(queued) <= {e["seq"] for e in events(sub)}, timeout=20)
    # At least once, in order (TOPICS.md): a repeat can only be a redelivery of the same seq.
    got = first_deliveries(sub.on(EVENT))
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs), "out of order"
    assert set(queued) <= set(seqs), "an event queued during the outage never arrived"
    types = [e["type"] for e in got]
    # The first run's call. (On a loaded machine its FIFO feed can stall long enough for a LINE_DEAD
    # alarm in between: that is the line's business, not this test's.)
    first_end = types.index("call_ended")
    assert [t for t in types[:first_end + 1] if t.startswith("call_")] == ["call_started", "call_ended"], types
    after = got[first_end + 1:]
    assert ("alarm_raised", "RECORDER_RESTARTED") in [(e["type"], e.get("code")) for e in after]
    assert [e["type"] for e in after if e["type"].startswith("call")] == ["call_started", "call_ended"]
    late = b.subscribe(STATUS)
    assert late.wait_for(lambda m: True).text == "offline"


def _outbox(data_dir: Path) -> list[int]:
    import sqlite3
    path = data_dir / "outbox.db"
    if not path.exists():
        return []
    con = sqlite3.connect(path, timeout=5)
    try:
        return [r[0] for r in con.execute("select seq from outbox order by seq")]
    except sqlite3.Error:
        return []
    finally:
        con.close()



def test_the_recorder_raises_broker_unreachable_from_the_link_state_and_clears_it_on_connect(
        alsa, broker, data_dir, tmp_path):
    b = broker(start=False)
    (line,) = alsa.lines(1)
    path = write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm}],
                        recorder={"id": ID}, health={"check_clock": False, "alarm_clear_s": 0.5},
                        mqtt={"host": "127.0.0.1", "port": b.port, "unreachable_after_s": 1.0})
    rec = Recorder(load(path), clock=SystemClock())
    feeder = line.feed(render([("idle", 30)], seed=2)[0], speed=1.0)
    rec.start()
    try:
        wait_for(lambda: rec.alarms is not None and rec.alarms.is_active("BROKER_UNREACHABLE"), timeout=20)
        (raised,) = [a for a in rec.alarms.active() if a.code == "BROKER_UNREACHABLE"]
        assert raised.detail == (f"no connection to the MQTT broker 127.0.0.1:{b.port} for 1 s "
                                 f"(cannot connect to 127.0.0.1:{b.port}: Connection refused)")
        b.start()
        wait_for(lambda: not rec.alarms.is_active("BROKER_UNREACHABLE"), timeout=20)
    finally:
        rec.stop()
        feeder.stop()
