"""The pure parts of the MQTT module: topics, payloads, the events they carry, discovery, the outbox (no broker)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from linetap.events import alarm_cleared, alarm_raised, call_ended, call_started
from linetap.mqtt.discovery import discovery_document
from linetap.mqtt.outbox import Outbox
from linetap.mqtt.topics import Topics, client_id_for, dumps, event_payload

T0 = 1_795_000_000.125
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def topics() -> Topics:
    return Topics.build(prefix="linetap", recorder_id="shop-01")


# --- topics and payloads ------------------------------------------------------------


def test_topics_follow_the_contract() -> None:
    t = topics()
    assert (t.status, t.health, t.event) == ("linetap/shop-01/status", "linetap/shop-01/health",
                                             "linetap/shop-01/event")
    assert t.discovery == "homeassistant/device/shop-01/config"
    assert t.ha_status == "homeassistant/status"


def test_the_client_id_is_derived_from_the_recorder_id() -> None:
    assert client_id_for("shop-01") == "linetap-shop-01"


def test_an_event_payload_starts_with_type_ts_seq_id() -> None:
    doc = json.loads(event_payload({"type": "call_started", "line": "line1"}, seq=7, recorder_id="shop-01", now=T0))
    assert list(doc)[:4] == ["type", "ts", "seq", "id"]
    assert doc == {"type": "call_started", "ts": "2026-11-18T11:06:40.125Z", "seq": 7, "id": "shop-01",
                   "line": "line1"}


def test_an_event_keeps_its_own_ts() -> None:
    doc = json.loads(event_payload(call_started(call_id=1, line="l", started_at=T0, ts=T0 + 1),
                                   seq=1, recorder_id="x", now=T0 + 99))
    assert doc["ts"] == "2026-11-18T11:06:41.125Z"


def test_an_event_without_a_type_is_refused() -> None:
    with pytest.raises(ValueError):
        event_payload({"line": "line1"}, seq=1, recorder_id="x", now=T0)


def test_silence_at_minus_infinity_dbfs_becomes_json_null() -> None:
    assert dumps({"level_dbfs": float("-inf"), "x": [float("nan"), 1.5]}) == b'{"level_dbfs":null,"x":[null,1.5]}'


def test_call_ended_carries_every_contract_field() -> None:
    e = call_ended(call_id=42, line="line1", started_at=T0, ended_at=T0 + 61.5, duration_s=61.5,
                   caller_number="5551234", end_reason="onhook")
    assert e == {"type": "call_ended", "call_id": 42, "line": "line1", "started_at": "2026-11-18T11:06:40.125Z",
                 "ended_at": "2026-11-18T11:07:41.625Z", "duration_s": 61.5, "caller_number": "5551234",
                 "caller_name": None, "caller_redirected_from": None, "waiting_callers": [], "dtmf": None,
                 "end_reason": "onhook"}


def test_call_ended_carries_a_forwarded_calls_original_number_and_its_waiting_callers() -> None:
    e = call_ended(call_id=42, line="line1", started_at=T0, ended_at=T0 + 61.5, duration_s=61.5,
                   caller_number="0201234567", caller_redirected_from="0307654321",
                   waiting_callers=[{"number": "5559876543", "name": "BOB", "at_s": 12.5, "extra": 1}],
                   end_reason="onhook")
    assert e["caller_redirected_from"] == "0307654321"
    assert e["waiting_callers"] == [{"number": "5559876543", "name": "BOB", "at_s": 12.5}]  # the documented keys


def test_call_ended_masks_dtmf_digits_unless_publishing_them_is_configured() -> None:
    common = dict(call_id=42, line="line1", started_at=T0, ended_at=T0 + 1, duration_s=1.0, dtmf="4111#")
    assert call_ended(**common)["dtmf"] == "*****"
    assert call_ended(**common, publish_dtmf=False)["dtmf"] == "*****"
    assert call_ended(**common, publish_dtmf=True)["dtmf"] == "4111#"
    assert call_ended(**{**common, "dtmf": None})["dtmf"] is None


def test_alarm_events_carry_code_severity_line_detail() -> None:
    r = alarm_raised(code="LINE_DEAD", severity="critical", line="line2", detail="no frames", raised_at=T0)
    c = alarm_cleared(code="LINE_DEAD", severity="critical", line="line2", raised_at=T0, cleared_at=T0 + 5)
    assert r["type"] == "alarm_raised" and r["raised_at"] == "2026-11-18T11:06:40.125Z"
    assert {k: r[k] for k in ("code", "severity", "line", "detail")} == {
        "code": "LINE_DEAD", "severity": "critical", "line": "line2", "detail": "no frames"}
    assert c["type"] == "alarm_cleared" and ISO_MS.match(c["cleared_at"])


# --- Home Assistant discovery ---------------------------------------------------------


def discovery() -> dict:
    return discovery_document(recorder_id="shop-01", version="1.2.3", lines=["line1", "line2"], topics=topics(),
                              health_interval_s=30)


def test_discovery_declares_per_line_problem_level_and_state_entities() -> None:
    cmps = discovery()["cmps"]
    for line in ("line1", "line2"):
        problem = cmps[f"shop-01_{line}_problem"]
        assert (problem["p"], problem["device_class"]) == ("binary_sensor", "problem")
        assert f"lines['{line}']" in problem["value_template"]
        assert cmps[f"shop-01_{line}_level"]["p"] == "sensor"
        assert cmps[f"shop-01_{line}_state"]["options"] == ["idle", "recording", "fault", "disabled"]


def test_discovery_declares_disk_sensors_and_an_alarm_event_entity() -> None:
    cmps = discovery()["cmps"]
    assert "disk.free_mb" in cmps["shop-01_disk_free"]["value_template"]
    assert "disk.hours_left" in cmps["shop-01_hours_left"]["value_template"]
    alarm = cmps["shop-01_alarm"]
    assert alarm["p"] == "event" and alarm["state_topic"] == "linetap/shop-01/event"
    assert alarm["event_types"] == ["alarm_raised", "alarm_cleared"]


def test_discovery_binds_availability_to_the_status_topic() -> None:
    doc = discovery()
    assert doc["availability"] == [{"topic": "linetap/shop-01/status", "payload_available": "online",
                                    "payload_not_available": "offline"}]
    assert doc["state_topic"] == "linetap/shop-01/health"
    assert doc["dev"]["sw"] == doc["o"]["sw"] == "1.2.3"


def test_every_discovered_entity_has_a_distinct_unique_id_and_platform() -> None:
    cmps = discovery()["cmps"]
    ids = [c["unique_id"] for c in cmps.values()]
    assert len(ids) == len(set(ids)) and all(c.get("p") for c in cmps.values())
    assert all(re.match(r"^[A-Za-z0-9_-]+$", k) for k in cmps)
    json.dumps(discovery())  # serialisable as is


def test_sensors_expire_after_three_health_intervals() -> None:
    assert discovery()["cmps"]["shop-01_line1_level"]["expire_after"] == 90


# --- the outbox -----------------------------------------------------------------------


def payload(seq: int) -> bytes:
    return f'{{"seq":{seq}}}'.encode()


def test_the_outbox_hands_out_rows_oldest_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    for _ in range(3):
        box.append("t/event", payload)
    assert [r.seq for r in box.rows()] == [1, 2, 3]
    assert box.peek().payload == b'{"seq":1}'  # type: ignore[union-attr]
    box.remove(1)
    assert box.peek().seq == 2 and len(box) == 2  # type: ignore[union-attr]


def test_outbox_rows_and_numbering_survive_a_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    for _ in range(3):
        box.append("t/event", payload)
    box.remove(1)
    box.remove(2)
    box.remove(3)
    box.append("t/event", payload)
    box.close()
    again = Outbox(tmp_path / "outbox.db", max_rows=100)
    assert [r.seq for r in again.rows()] == [4]
    assert again.append("t/event", payload).seq == 5  # never reused, even after the table was emptied


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=3)
    results = [box.append("t/event", payload) for _ in range(5)]
    assert [r.dropped for r in results] == [0, 0, 0, 1, 1]
    assert [r.seq for r in box.rows()] == [3, 4, 5]
    assert box.dropped == 2


def test_the_drop_count_persists_until_the_backlog_is_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=2)
    for _ in range(3):
        box.append("t/event", payload)
    box.close()
    box = Outbox(tmp_path / "outbox.db", max_rows=2)
    assert box.dropped == 1
    for r in box.rows():
        box.remove(r.seq)
    assert box.dropped == 0
    box.close()
    assert Outbox(tmp_path / "outbox.db", max_rows=2).dropped == 0


def test_removing_a_row_twice_is_harmless(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=5)
    box.append("t/event", payload)
    box.remove(1)
    box.remove(1)
    assert len(box) == 0


def test_the_outbox_uses_wal(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=5)
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- architecture -----------------------------------------------------------------------


def test_only_the_paho_adapter_imports_paho() -> None:
    root = Path(__file__).resolve().parents[1] / "firmware" / "linetap"
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if re.search(r"^\s*(import|from)\s+paho\b", p.read_text(), re.M))
    assert importers == ["mqtt/paho_client.py"]
