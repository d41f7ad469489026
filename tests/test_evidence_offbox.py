"""The head leaves the box: adversary scenarios against a chain whose checkpoint was captured
off the box, from a real recorder on a real mosquitto, through the real capture path."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from linetap import sign
from linetap.cli import main
from linetap.clock import SystemClock
from linetap.config import load
from linetap.evidence import chain
from linetap.evidence.export_verify import checkpoint_signed
from linetap.index.db import open_index
from linetap.recorder import Recorder
from linetap.sim.line import render
from linetap.store.recordings import sidecar_path
from helpers import write_config
from mqtt_broker import broker, first_deliveries  # noqa: F401  (broker is the fixture)

ID = "ev-01"
EVENT, CHECKPOINT = f"linetap/{ID}/event", f"linetap/{ID}/checkpoint"
DISCOVERY = f"homeassistant/device/{ID}/config"
CALLS = 3


@pytest.fixture(scope="module")
def recorded(alsa, tmp_path_factory) -> dict:
    """A recorder ran three calls with a real broker; what an MSP's mosquitto_sub kept.

    The audio is fed faster than real time (the queue holds all 19 s of it): the promise timed here
    is the checkpoint's latency after a call's end, which housekeeping's own wall-clock tick sets,
    so it is measured between the subscriber's receipts of ``call_ended`` and of the first
    checkpoint longer than the one that event carried (Message.received_mono), not from when the
    test looked. Fed in real time this fixture took 18 s."""
    from mqtt_broker import Broker
    tmp = tmp_path_factory.mktemp("offbox")
    data_dir = tmp / "data"
    b = Broker(tmp / "broker").start()
    try:
        sub = b.subscribe(f"linetap/{ID}/#", DISCOVERY)
        (line,) = alsa.lines(1)
        script = [("idle", 1)] + [("call", 3), ("idle", 3)] * CALLS
        pcm, _ = render(script, seed=15)
        cfg_path = write_config(tmp / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, "vox_hang_s": 1.5}],
                                recorder={"id": ID, "queue_s": 120}, storage={"codec": "wav"},
                                health={"check_clock": False},
                                mqtt={"host": "127.0.0.1", "port": b.port, "health_interval_s": 5})
        rec = Recorder(load(cfg_path), clock=SystemClock())
        feeder = line.feed(pcm)  # as fast as the FIFO takes it
        rec.start()
        late: list[float] = []
        try:
            ended_all = sub.wait_count(lambda m: m.topic == EVENT and json.loads(m.payload)["type"] == "call_ended",
                                       CALLS, timeout=60)
            for ended in ended_all[:CALLS]:
                carried = json.loads(ended.payload)["checkpoint"]
                before = carried["length"] if carried else 0
                # The checkpoint covering this call: the chain grew past the one the event carried.
                cp = sub.wait_for(lambda m: m.topic == CHECKPOINT and json.loads(m.payload)["length"] > before,
                                  timeout=30)
                late.append(cp.received_mono - ended.received_mono)
        finally:
            rec.stop()
            feeder.stop()
        kept = json.loads(sub.on(CHECKPOINT)[-1].payload)
        discovery = json.loads(sub.wait_for(lambda m: m.topic == DISCOVERY).payload)
        events = [e for e in first_deliveries(sub.on(EVENT)) if e["type"] == "call_ended"]
        sub.close()
    finally:
        b.close()
    return {"data_dir": data_dir, "cfg": cfg_path, "checkpoint": kept, "events": events, "late_s": late,
            "tmp": tmp, "discovery": discovery}


def scenario(recorded: dict, name: str) -> tuple[Path, Path]:
    """A copy of the box's data (the SD card in the adversary's PC) and a config pointing at it."""
    data = recorded["tmp"] / name
    shutil.copytree(recorded["data_dir"], data)
    cfg = recorded["tmp"] / f"{name}.toml"
    cfg.write_text(recorded["cfg"].read_text().replace(str(recorded["data_dir"]), str(data)))
    return data, cfg


def kept_checkpoint(recorded: dict) -> Path:
    path = recorded["tmp"] / "kept-checkpoint.json"
    path.write_text(json.dumps(recorded["checkpoint"]))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def test_a_checkpoint_covering_each_call_is_published_within_10_s_of_its_end(recorded: dict) -> None:
    assert len(recorded["late_s"]) == CALLS and max(recorded["late_s"]) <= 10.0, recorded["late_s"]


def test_the_published_checkpoint_is_signed_by_the_box_and_covers_the_whole_chain(recorded: dict) -> None:
    cp = recorded["checkpoint"]
    index = open_index(recorded["data_dir"])
    try:
        length, head = chain.head(index)
    finally:
        index.close()
    key = sign.load(sign.key_path(recorded["data_dir"]))
    assert (checkpoint_signed(cp), cp["key"], cp["id"], cp["length"], cp["head"]) == (True, key.public_hex, ID,
                                                                                        length, head)


def test_call_ended_carries_the_checkpoint_before_it(recorded: dict) -> None:
    lengths = [e["checkpoint"]["length"] if e["checkpoint"] else 0 for e in recorded["events"]]
    assert lengths == sorted(lengths) and lengths[-1] < recorded["checkpoint"]["length"]
    assert all(checkpoint_signed(e["checkpoint"]) for e in recorded["events"] if e["checkpoint"])


def test_the_untouched_box_verifies_against_the_kept_checkpoint(recorded: dict,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data, cfg = scenario(recorded, "untouched")
    code, out = run(capsys, "verify", "-c", str(cfg), "--checkpoint", str(kept_checkpoint(recorded)))
    assert (code, "holds every entry up to the checkpoint" in out) == (0, True), out


def test_deleting_the_newest_calls_with_their_chain_rows_is_named_as_truncation(
        recorded: dict, capsys: pytest.CaptureFixture[str]) -> None:
    data, cfg = scenario(recorded, "truncated")
    con = sqlite3.connect(data / "index.db")
    con.execute("DROP TRIGGER chain_no_delete")
    newest = [r[0] for r in con.execute("select id from calls order by id desc limit 2")]
    first_seq = min(r[0] for r in con.execute(
        f"select seq from chain where call_id in ({','.join('?' * len(newest))})", newest))
    paths = [r[0] for r in con.execute(f"select path from calls where id in ({','.join('?' * len(newest))})",
                                       newest)]
    con.execute("delete from chain where seq >= ?", [first_seq])
    con.execute(f"delete from calls where id in ({','.join('?' * len(newest))})", newest)
    con.execute("delete from meta where key like 'checkpoint' or key like 'verify_%'")
    con.commit()
    con.close()
    for p in paths:  # a thorough adversary: the audio and its sidecar
        (data / p).unlink()
        sidecar_path(data / p).unlink(missing_ok=True)
    # Inside the box nothing shows: that is why the head must leave it.
    assert run(capsys, "verify", "-c", str(cfg))[0] == 0
    code, out = run(capsys, "verify", "-c", str(cfg), "--checkpoint", str(kept_checkpoint(recorded)))
    assert (code, "truncated" in out, f"entries {first_seq}..{recorded['checkpoint']['length']} were removed"
            in out) == (1, True, True), out


def test_a_chain_rebuilt_from_scratch_is_named_as_rewritten(recorded: dict,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, cfg = scenario(recorded, "rebuilt")
    con = sqlite3.connect(data / "index.db")
    for t in ("chain_no_delete", "audit_no_delete"):
        con.execute(f"DROP TRIGGER {t}")
    con.execute("delete from chain")
    con.execute("delete from chain_salts")
    con.execute("update calls set caller_number = '5550000'")  # what the adversary wanted to change
    con.commit()
    con.close()
    index = open_index(data)
    try:  # the adversary has linetap's code: a consistent new chain, as long as the old one
        chain.append_recordings(index, index.calls_by_id())
        while chain.head(index)[0] < recorded["checkpoint"]["length"]:
            chain.append_event(index, "config", None, {"by": "root", "sha256": "0" * 64, "path": "x"},
                               at=time.time())
    finally:
        index.close()
    assert run(capsys, "verify", "-c", str(cfg))[0] == 0  # self-consistent
    code, out = run(capsys, "verify", "-c", str(cfg), "--checkpoint", str(kept_checkpoint(recorded)))
    assert (code, "rewritten" in out) == (1, True), out


def test_a_replaced_device_key_is_named(recorded: dict, capsys: pytest.CaptureFixture[str]) -> None:
    data, cfg = scenario(recorded, "rekeyed")
    sign.key_path(data).unlink()
    sign.load_or_create(data)
    code, out = run(capsys, "verify", "-c", str(cfg), "--checkpoint", str(kept_checkpoint(recorded)))
    assert (code, "the device key was replaced" in out) == (1, True), out


def test_an_altered_kept_checkpoint_is_refused(recorded: dict, capsys: pytest.CaptureFixture[str]) -> None:
    data, cfg = scenario(recorded, "forgedcp")
    forged = dict(recorded["checkpoint"], length=1)
    code, out = run(capsys, "verify", "-c", str(cfg), "--checkpoint", json.dumps(forged))
    assert (code, "signature does not verify" in out) == (1, True), out


def test_status_shows_the_checkpoint_the_fingerprint_and_the_applied_config_is_chained(
        recorded: dict, capsys: pytest.CaptureFixture[str]) -> None:
    fp = sign.load(sign.key_path(recorded["data_dir"])).fingerprint
    code, out = run(capsys, "status", "--json", "-c", str(recorded["cfg"]))
    doc = json.loads(out)
    assert (code, doc["checkpoint"], doc["evidence"]["key_fingerprint"]) == (0, recorded["checkpoint"], fp)
    code, text = run(capsys, "status", "-c", str(recorded["cfg"]))
    assert f"evidence: key {fp}, chain of {recorded['checkpoint']['length']} entries" in text
    index = open_index(recorded["data_dir"])
    try:
        kinds = [e.kind for e in chain.entries(index)]
    finally:
        index.close()
    assert kinds[0] == "config" and kinds.count("recording") == CALLS


def test_the_discovery_document_carries_the_fingerprint(recorded: dict) -> None:
    fp = sign.load(sign.key_path(recorded["data_dir"])).fingerprint
    assert recorded["discovery"]["dev"]["sn"] == fp


def test_the_link_keeps_the_newest_checkpoint_retained_and_resends_it_to_a_restarted_broker(
        broker, data_dir: Path) -> None:  # noqa: F811 - the broker fixture
    from helpers import wait_for
    from linetap.config import MqttConfig
    from linetap.mqtt.link import MqttLink
    b = broker()
    link = MqttLink(MqttConfig(host=b.host, port=b.port, keepalive_s=5), recorder_id="box-1", data_dir=data_dir,
                    version="9", lines=["line1"], clock=SystemClock(), reconnect_min_s=0.1, reconnect_max_s=0.5)
    try:
        link.start()
        wait_for(lambda: link.connected, timeout=20)
        topic = "linetap/box-1/checkpoint"
        watch = b.subscribe(topic)  # subscribed before the publishes: sees both arrive at the broker
        for n in (1, 2):
            link.publish_checkpoint({"id": "box-1", "length": n})
        watch.wait_for(lambda m: json.loads(m.payload)["length"] == 2, timeout=30)
        watch.close()
        late = b.subscribe(topic)  # arrives after both: sees only the newest, retained
        assert json.loads(late.wait_for(lambda m: m.retain, timeout=30).payload)["length"] == 2
        assert [json.loads(m.payload)["length"] for m in late.messages if m.retain] == [2]
        late.close()
        b.restart()  # a broker without persistence: its retained messages are gone
        wait_for(lambda: link.connected, timeout=20)
        again = b.subscribe(topic)
        assert json.loads(again.wait_for(lambda m: True, timeout=20).payload)["length"] == 2
        again.close()
    finally:
        link.stop(timeout_s=0.5)
