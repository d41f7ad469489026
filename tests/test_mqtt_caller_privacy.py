"""``[mqtt] publish_caller_id = false``: the caller's identity stays on the box.

The index keeps caller number, name and DTMF digits in clear (README, "What stays in clear");
this option keeps them off the broker. Real path: FSK caller ID and a call fed through ALSA, a
real mosquitto, the recorder's own MQTT link.
"""

from __future__ import annotations

import json

import pytest

from linetap import events
from linetap.clock import SystemClock
from linetap.config import load
from linetap.index.db import open_index
from linetap.recorder import Recorder
from linetap.sim import signals as sig
from linetap.sim.line import render
from helpers import write_config
from mqtt_broker import broker, first_deliveries  # noqa: F401  (broker is the fixture)
from test_line_dsp_e2e import pcm

ID = "priv-01"
EVENT = f"linetap/{ID}/event"
RATE = 8000


def test_without_caller_nulls_the_callers_fields_and_keeps_the_shape() -> None:
    ev = {"type": "call_ended", "call_id": 3, "caller_number": "5551234567", "caller_name": "ACME", "dtmf": "12#"}
    assert events.without_caller(ev) == {"type": "call_ended", "call_id": 3, "caller_number": None,
                                         "caller_name": None, "dtmf": None}
    assert ev["caller_number"] == "5551234567"  # the recorder's own copy is untouched


def test_without_caller_also_withholds_a_forwarded_calls_number_and_the_waiting_callers() -> None:
    ev = events.call_ended(call_id=3, line="line1", started_at=0.0, ended_at=1.0, duration_s=1.0,
                           caller_number="0201234567", caller_redirected_from="0307654321",
                           waiting_callers=[{"number": "5559876543", "name": "BOB", "at_s": 0.5}])
    hidden = events.without_caller(ev)
    assert (hidden["caller_number"], hidden["caller_redirected_from"], hidden["waiting_callers"]) == (None, None, None)
    assert hidden.keys() == ev.keys()


def test_an_event_without_caller_fields_is_passed_as_it_is() -> None:
    ev = {"type": "alarm_raised", "code": "LINE_DEAD"}
    assert events.without_caller(ev) is ev


@pytest.mark.parametrize("publish", [True, False])
def test_publish_caller_id_decides_what_the_broker_sees_and_the_index_keeps_it(alsa, broker, data_dir, tmp_path,
                                                                               publish: bool) -> None:
    b = broker()
    sub = b.subscribe(EVENT)
    (line,) = alsa.lines(1)
    fsk = sig.fsk_callerid("5551234567", "ACME PIZZA", "11281530", "bell202", RATE, -15.0)
    fed, _ = render([("idle", 1), ("raw", 0, pcm(fsk, 1)), ("idle", 1), ("call", 4), ("idle", 4)], seed=5)
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, "vox_hang_s": 1.5,
                                                              "callerid": ["bell202"]}],
                            recorder={"id": ID, "queue_s": 120}, health={"check_clock": False},
                            mqtt={"host": "127.0.0.1", "port": b.port, "publish_caller_id": publish}))
    rec = Recorder(cfg, clock=SystemClock())
    # What is published is the subject, not when: the 11 s go in as fast as the FIFO takes them
    # (the queue holds them all), calls cut by the audio's own VOX timing.
    feeder = line.feed(fed)
    rec.start()
    try:
        sub.wait_for(lambda m: json.loads(m.payload)["type"] == "call_ended", timeout=20)
    finally:
        rec.stop()
        feeder.stop()
    (ended,) = [e for e in first_deliveries(sub.on(EVENT)) if e["type"] == "call_ended"]
    index = open_index(data_dir)
    try:
        (row,) = index.calls()
    finally:
        index.close()
    assert (row["caller_number"], row["caller_name"]) == ("5551234567", "ACME PIZZA")
    sent = (ended["caller_number"], ended["caller_name"])
    assert sent == (("5551234567", "ACME PIZZA") if publish else (None, None))
    assert "caller_number" in ended and ended["call_id"] == row["id"]
