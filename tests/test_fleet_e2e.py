"""``linetap fleet`` against 50 simulated boxes (tests/fleet_boxes.py) on a real mosquitto.

The boxes publish every INTERVAL_S, their health expiring after 3 intervals (as the recorder's
does). One box is SIGKILLed (its Last Will), one stops publishing health while staying
connected (its snapshot expires): the view flags both within one health interval of the moment
the broker can know, and keeps the other 48 online.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linetap.cli import main
from linetap.fleet.state import box_state
from linetap.fleet.watch import FleetWatch
from mqtt_broker import broker, free_port  # noqa: F401

HERE = Path(__file__).resolve().parent
INTERVAL_S = 1.0
EXPIRY_S = 3 * INTERVAL_S


def start_boxes(port: int, ids: list[str], *extra: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, str(HERE / "fleet_boxes.py"), "--port", str(port), "--ids", ",".join(ids),
                          "--interval", str(INTERVAL_S), *extra], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "ready", f"boxes did not start: {line!r}"
    return p


@pytest.fixture
def fleet(broker):  # noqa: F811
    b = broker()
    ids = [f"box-{i:02d}" for i in range(48)] + ["box-quiet"]
    procs = [start_boxes(b.port, ids, "--quiet", "box-quiet"), start_boxes(b.port, ["box-kill"])]
    yield b, procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


def run_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["fleet", *args, "--json", "--wait", "3"])
    return code, json.loads(capsys.readouterr().out)


def test_the_fleet_view_shows_all_50_and_flags_the_killed_and_the_expired_box(fleet, capsys):
    b, (many, killed) = fleet
    code, doc = run_json(capsys, "--broker", f"127.0.0.1:{b.port}")
    assert len(doc["boxes"]) == 50
    assert {x["state"] for x in doc["boxes"]} == {"online"}
    assert code == 0
    one = next(x for x in doc["boxes"] if x["id"] == "box-07")
    assert one["lines"] == {"line1": "idle"} and one["hours_left"] == 1234.0 and one["alarms"] == []

    watch = FleetWatch(host="127.0.0.1", port=b.port)
    watch.start()
    try:
        watch.settle(3)
        killed.send_signal(signal.SIGKILL)
        many.send_signal(signal.SIGUSR1)  # box-quiet publishes no more health from its next round
        t_quiet = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - t_quiet < 30:
            now = time.time()
            for box in watch.boxes():
                if box.id in ("box-kill", "box-quiet") and box.id not in seen and box_state(box, now) != "online":
                    seen[box.id] = time.monotonic() - t_quiet
            time.sleep(0.05)
        states = {box.id: box_state(box, time.time()) for box in watch.boxes()}
    finally:
        watch.stop()
    assert states["box-kill"] == "offline"
    assert states["box-quiet"] == "stale"
    assert sum(s == "online" for s in states.values()) == 48
    # The Last Will arrives within a second or two of the kill (FACTS.md): flagged well within the
    # expiry. The quiet box's last snapshot was published at most one interval before the signal,
    # so it expires at most EXPIRY_S after it; flagged within one more interval.
    assert seen["box-kill"] < EXPIRY_S + INTERVAL_S
    assert seen["box-quiet"] < EXPIRY_S + INTERVAL_S

    # A fresh view (as from cron) sees the retained Will and no unexpired snapshot of box-quiet.
    code, doc = run_json(capsys, "--broker", f"127.0.0.1:{b.port}")
    by_id = {x["id"]: x for x in doc["boxes"]}
    assert len(by_id) == 50
    assert by_id["box-kill"]["state"] == "offline" and by_id["box-quiet"]["state"] == "stale"
    assert [x["id"] for x in doc["boxes"][:2]] == ["box-kill", "box-quiet"]  # worst first
    assert code == 2


def test_collect_keeps_each_boxes_checkpoints_append_only(fleet, tmp_path, capsys):
    b, _ = fleet
    out = tmp_path / "anchors"
    # One refresh of the live view: the retained checkpoints (the boxes' call_ended events were
    # published before it subscribed).
    assert main(["fleet", "--broker", f"127.0.0.1:{b.port}", "--collect", str(out), "-n", "1", "--wait", "3"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 50 and "box-kill.jsonl" in files
    first = [json.loads(x) for x in (out / "box-03.jsonl").read_text().splitlines()]
    assert [c["length"] for c in first] == [1]
    # A second run, watching while a new box starts: it sees that box's retained checkpoint and
    # then the next one in its call_ended event; the retained ones it re-reads are not repeated.
    watch = FleetWatch(host="127.0.0.1", port=b.port, collect_dir=out)
    watch.start()
    try:
        watch.settle(3)
        late = start_boxes(b.port, ["box-late"])
        late.terminate()
        late.wait(10)
        watch.settle(3)
    finally:
        watch.stop()
    assert [json.loads(x)["length"] for x in (out / "box-03.jsonl").read_text().splitlines()] == [1]
    assert [json.loads(x)["length"] for x in (out / "box-late.jsonl").read_text().splitlines()] == [1, 2]
    out_text = capsys.readouterr().out
    assert "box-kill" in out_text and "BOX" in out_text


def test_a_box_in_critical_alarm_makes_exit_2_a_warning_exit_1(broker, capsys):  # noqa: F811
    b = broker()
    warn = start_boxes(b.port, ["w1", "ok1"], "--alarm", "w1=CLOCK_UNSYNCED")
    try:
        code, doc = run_json(capsys, "--broker", f"127.0.0.1:{b.port}")
        assert code == 1 and {x["id"] for x in doc["boxes"]} == {"w1", "ok1"}
        crit = start_boxes(b.port, ["c1"], "--alarm", "c1=LINE_DEAD")
        try:
            code, doc = run_json(capsys, "--broker", f"127.0.0.1:{b.port}")
            assert code == 2 and doc["boxes"][0]["id"] == "c1" and doc["boxes"][0]["alarms"] == ["LINE_DEAD"]
        finally:
            crit.terminate()
            crit.wait(10)
    finally:
        warn.terminate()
        warn.wait(10)


def test_an_unreachable_broker_is_exit_3(capsys):
    assert main(["fleet", "--broker", f"127.0.0.1:{free_port()}", "--json"]) == 3
    assert "broker unreachable" in capsys.readouterr().err


def test_the_fleet_view_connects_with_tls_and_a_password(broker, tmp_path, capsys):  # noqa: F811
    b = broker(tls=True, users={"fleet": "s3cret"})
    b.publish("linetap/tls-box/status", "online", retain=True)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    code, doc = run_json(capsys, "--broker", f"127.0.0.1:{b.port}", "--tls", str(b.pki.ca), "--username", "fleet",
                         "--password-file", str(pw))
    assert [x["id"] for x in doc["boxes"]] == ["tls-box"] and doc["boxes"][0]["state"] == "stale"
    assert code == 1
    pw.write_text("wrong\n")
    assert main(["fleet", "--broker", f"127.0.0.1:{b.port}", "--tls", str(b.pki.ca), "--username", "fleet",
                 "--password-file", str(pw), "--json"]) == 3
    err = capsys.readouterr().err
    assert "broker unreachable" in err and ("Not authorized" in err or "Bad user name or password" in err), err
