"""The fleet view's pure rules: box state, since, worst first, exit codes, the JSON document."""

from __future__ import annotations

import json

from linetap.clock import iso
from linetap.fleet import state
from linetap.fleet.state import Box, Received, apply, box_state, exit_code

T0 = 1_800_000_000.0


def health(box: str = "b1", *, ts: float = T0, uptime_s: float = 100.0, alarms: list[str] | None = None) -> bytes:
    return json.dumps({"ts": iso(ts), "id": box, "uptime_s": uptime_s, "alarms": alarms or [],
                       "lines": {"line1": {"state": "idle"}, "line2": {"state": "fault"}},
                       "disk": {"hours_left": 812.4}, "archive": {"backlog": 3}}).encode()


def seen(*msgs: Received) -> Box:
    box = None
    for m in msgs:
        box = apply(box, m, stale_after_s=90.0)
    assert box is not None
    return box


def test_topics_are_split_into_box_and_kind_and_foreign_ones_ignored():
    assert state.split_topic("linetap/shop-01/health", "linetap") == ("shop-01", "health")
    assert state.split_topic("linetap/shop-01/checkpoint", "linetap") == ("shop-01", "checkpoint")
    assert state.split_topic("linetap/shop-01/other", "linetap") is None
    assert state.split_topic("linetap/../health", "linetap") is None  # the id becomes a file name (--collect)
    assert state.split_topic("other/shop-01/health", "linetap") is None


def test_a_box_with_fresh_health_is_online_until_its_expiry():
    box = seen(Received("b1", "status", b"online", T0), Received("b1", "health", health(), T0, expiry_s=90))
    assert box_state(box, T0 + 89.9) == "online"
    assert box_state(box, T0 + 90.0) == "stale"


def test_expiry_counts_from_what_the_broker_says_is_left_of_a_retained_snapshot():
    box = seen(Received("b1", "status", b"online", T0), Received("b1", "health", health(), T0, expiry_s=5))
    assert box_state(box, T0 + 4.9) == "online"
    assert box_state(box, T0 + 5.0) == "stale"


def test_without_an_mqtt5_expiry_health_goes_stale_after_stale_after_s():
    box = seen(Received("b1", "health", health(), T0, expiry_s=None))
    assert box_state(box, T0 + 89.0) == "online"
    assert box_state(box, T0 + 90.0) == "stale"


def test_online_status_without_any_health_is_stale():
    assert box_state(seen(Received("b1", "status", b"online", T0)), T0) == "stale"


def test_offline_wins_over_fresh_health():
    box = seen(Received("b1", "health", health(), T0, expiry_s=90), Received("b1", "status", b"offline", T0 + 1))
    assert box_state(box, T0 + 2) == "offline"


def test_garbage_payloads_change_nothing():
    box = seen(Received("b1", "status", b"online", T0), Received("b1", "health", health(), T0, expiry_s=90))
    assert apply(box, Received("b1", "health", b"\xff{", T0 + 1)) == box
    assert apply(box, Received("b1", "status", b"maybe", T0 + 1)) == box
    assert apply(box, Received("b1", "checkpoint", b'{"length": 1}', T0 + 1)) == box


def test_online_since_is_the_recorder_start_offline_since_its_last_snapshot():
    box = seen(Received("b1", "status", b"online", T0), Received("b1", "health", health(uptime_s=100.0), T0,
                                                                 expiry_s=90))
    assert state.since(box, "online") == T0 - 100.0
    assert state.since(box, "offline") == T0


def test_last_call_and_checkpoint_come_from_call_ended_events():
    cp = {"id": "b1", "ts": iso(T0), "length": 7, "head": "aa" * 32, "key": "bb" * 32, "signature": "cc" * 64}
    ev = json.dumps({"type": "call_ended", "ended_at": iso(T0 - 5), "checkpoint": cp}).encode()
    box = seen(Received("b1", "event", ev, T0))
    assert box.last_call_at == iso(T0 - 5)
    assert box.checkpoint == cp
    started = json.dumps({"type": "call_started", "started_at": iso(T0)}).encode()
    assert apply(box, Received("b1", "event", started, T0 + 1)) == box


def test_exit_code_is_nagios_style():
    online = seen(Received("ok", "status", b"online", T0), Received("ok", "health", health("ok"), T0, expiry_s=90))
    warning = seen(Received("w", "health", health("w", alarms=["CLOCK_UNSYNCED"]), T0, expiry_s=90))
    critical = seen(Received("c", "health", health("c", alarms=["LINE_DEAD"]), T0, expiry_s=90))
    offline = seen(Received("o", "status", b"offline", T0))
    stale = seen(Received("s", "status", b"online", T0))
    unknown_code = seen(Received("u", "health", health("u", alarms=["SOMETHING_NEW"]), T0, expiry_s=90))
    now = T0 + 1
    assert exit_code([], now) == 0
    assert exit_code([online], now) == 0
    assert exit_code([online, warning], now) == 1
    assert exit_code([online, stale], now) == 1
    assert exit_code([online, unknown_code], now) == 1
    assert exit_code([online, warning, critical], now) == 2
    assert exit_code([online, stale, offline], now) == 2


def test_the_json_document_lists_the_worst_box_first_with_the_contract_fields():
    online = seen(Received("a", "status", b"online", T0), Received("a", "health", health("a"), T0, expiry_s=90))
    offline = seen(Received("z", "status", b"offline", T0))
    doc = state.fleet_doc([online, offline], T0 + 1)
    assert doc["generated_at"] == iso(T0 + 1)
    assert [b["id"] for b in doc["boxes"]] == ["z", "a"]
    a = doc["boxes"][1]
    assert a == {"id": "a", "state": "online", "since": iso(T0 - 100), "lines": {"line1": "idle", "line2": "fault"},
                 "alarms": [], "hours_left": 812.4, "archive_backlog": 3, "last_call_at": None, "checkpoint": None}


def test_the_table_shows_every_box_worst_first_and_colours_only_when_asked():
    online = seen(Received("a", "status", b"online", T0), Received("a", "health", health("a"), T0, expiry_s=90))
    offline = seen(Received("z", "status", b"offline", T0))
    plain = state.render_table([online, offline], T0 + 1)
    rows = plain.splitlines()
    assert rows[0].startswith("BOX") and rows[1].startswith("z ") and rows[2].startswith("a ")
    assert "\x1b[" not in plain
    assert "\x1b[31m" in state.render_table([online, offline], T0 + 1, colour=True)


def test_a_checkpoint_is_collected_once():
    seen_cps = state.Checkpoints()
    cp = {"length": 3, "head": "aa", "signature": "x"}
    assert seen_cps.is_new("b1", cp)
    assert not seen_cps.is_new("b1", dict(cp))
    assert seen_cps.is_new("b2", cp)
    assert seen_cps.is_new("b1", {"length": 4, "head": "bb", "signature": "y"})
