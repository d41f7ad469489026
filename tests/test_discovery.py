"""Home Assistant discovery: entities, units and categories (pure), and removals through a real broker.

A real Home Assistant cannot run here (it needs Python >= 3.14), so the documents are checked
against HA's documented device-discovery format: components by key with ``p``, a removed
component as ``{"p": platform}`` only, an empty retained payload to remove the device.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from linetap.clock import SystemClock
from linetap.config import MqttConfig, board_serial, default_recorder_id
from linetap.mqtt.discovery import Device, discovery_document, plan_announcement
from linetap.mqtt.link import MqttLink
from linetap.mqtt.topics import Topics
from mqtt_broker import broker  # noqa: F401

TOPICS = Topics.build(prefix="linetap", recorder_id="shop-01")


def doc(lines: tuple[str, ...] = ("line1", "line2"), **kw: Any) -> dict[str, Any]:
    return discovery_document(recorder_id="shop-01", version="1.2.3", lines=lines, topics=TOPICS,
                              health_interval_s=30, **kw)


def test_call_event_entity_takes_call_events_and_the_alarm_entity_alarm_events():
    cmps = doc()["cmps"]
    call, alarm = cmps["shop-01_call"], cmps["shop-01_alarm"]
    assert call["p"] == alarm["p"] == "event"
    assert call["state_topic"] == alarm["state_topic"] == "linetap/shop-01/event"
    assert call["event_types"] == ["call_started", "call_ended"]
    assert alarm["event_types"] == ["alarm_raised", "alarm_cleared"]
    for field in ("line", "caller_number", "duration_s"):
        assert f"value_json.{field}" in call["value_template"]


def test_automation_sensors_read_the_health_document():
    cmps = doc()["cmps"]
    assert cmps["shop-01_last_call"]["device_class"] == "timestamp"
    assert "last_call.ended_at" in cmps["shop-01_last_call"]["value_template"]
    assert cmps["shop-01_calls_today"]["state_class"] == "total_increasing"
    assert "disk.recordings" in cmps["shop-01_recordings"]["value_template"]
    rec = cmps["shop-01_line2_recording"]
    assert (rec["p"], rec["device_class"]) == ("binary_sensor", "running")
    assert "lines['line2'].state == 'recording'" in rec["value_template"]
    assert cmps["shop-01_clock_synced"]["p"] == "binary_sensor"
    assert cmps["shop-01_started"]["device_class"] == "timestamp"


def test_units_match_the_numbers():
    cmps = doc()["cmps"]
    assert cmps["shop-01_disk_free"]["unit_of_measurement"] == "MiB"  # free_mb is bytes / 1024**2
    assert cmps["shop-01_disk_free"]["device_class"] == "data_size"
    assert cmps["shop-01_hours_left"]["unit_of_measurement"] == "h"
    assert cmps["shop-01_line1_level"]["unit_of_measurement"] == "dBFS"


def test_figures_about_the_box_are_diagnostic_and_what_automations_use_is_not():
    cmps = doc(archive=True)["cmps"]
    diagnostic = {k.removeprefix("shop-01_") for k, c in cmps.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostic == {"line1_level", "line2_level", "line1_state", "line2_state", "disk_free", "hours_left",
                          "clock_synced", "started", "archive_backlog"}


def test_the_archive_backlog_sensor_exists_only_with_an_archive():
    assert "shop-01_archive_backlog" not in doc()["cmps"]
    assert "archive.backlog" in doc(archive=True)["cmps"]["shop-01_archive_backlog"]["value_template"]


def test_the_device_carries_serial_hardware_and_the_origin_url():
    d = doc(device=Device(serial_number="10000000abcdef01", hw_version="Raspberry Pi 4 Model B Rev 1.5"))
    assert d["dev"]["sn"] == "10000000abcdef01" and d["dev"]["hw"] == "Raspberry Pi 4 Model B Rev 1.5"
    assert d["o"]["url"].startswith("https://")
    assert "sn" not in doc()["dev"]


def test_entity_names_are_consistent():
    for key, c in doc()["cmps"].items():
        name = c["name"]
        if key.startswith("shop-01_line"):
            assert name.startswith(key.split("_")[1] + " ") and name == name[:6] + name[6:].lower()
        else:
            assert name[0].isupper() and name[1:] == name[1:].lower()


def test_a_renamed_line_removes_its_components_by_platform():
    first = plan_announcement(doc(("line1", "line2")), TOPICS.discovery, None)
    renamed = plan_announcement(doc(("line1", "front")), TOPICS.discovery, first.state)
    [(topic, sent)] = renamed.messages
    assert topic == TOPICS.discovery
    removed = {k: v for k, v in sent["cmps"].items() if k.startswith("shop-01_line2")}
    assert removed == {"shop-01_line2_problem": {"p": "binary_sensor"}, "shop-01_line2_recording":
                       {"p": "binary_sensor"}, "shop-01_line2_level": {"p": "sensor"},
                       "shop-01_line2_state": {"p": "sensor"}}
    assert sent["cmps"]["shop-01_front_level"]["p"] == "sensor"
    assert "shop-01_line2_level" not in renamed.state["cmps"]


def test_discovery_off_or_a_new_id_empties_the_old_document():
    first = plan_announcement(doc(), TOPICS.discovery, None)
    off = plan_announcement(None, TOPICS.discovery, first.state)
    assert off.messages == ((TOPICS.discovery, None),) and off.state is None
    new_topics = Topics.build(prefix="linetap", recorder_id="shop-02")
    moved = plan_announcement(doc(), new_topics.discovery, first.state)
    assert [(t, d is None) for t, d in moved.messages] == [(TOPICS.discovery, True), (new_topics.discovery, False)]
    assert plan_announcement(None, TOPICS.discovery, None).messages == ()


def test_discovery_prefix_is_validated_like_topic_prefix():
    from linetap.config import ConfigError, load
    with pytest.raises(ConfigError, match="discovery_prefix"):
        cfg_path = Path(__import__("tempfile").mkdtemp()) / "c.toml"
        cfg_path.write_text('[recorder]\nid = "a"\n[[line]]\nname = "line1"\ndevice = "null"\n'
                            '[mqtt]\nhost = "h"\ndiscovery_prefix = "home/#"\n')
        load(cfg_path)


def test_the_default_id_is_the_board_serial_else_the_machine_id(tmp_path):
    tree = tmp_path / "serial-number"
    tree.write_bytes(b"10000000abcdef01\x00")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nSerial\t\t: 00000000deadbeef\n")
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    assert default_recorder_id((tree, cpuinfo), mid) == "linetap-abcdef01"
    assert default_recorder_id((tmp_path / "none", cpuinfo), mid) == "linetap-deadbeef"
    (tmp_path / "vm").mkdir()
    zeros = tmp_path / "vm" / "cpuinfo"  # a board that reports no serial
    zeros.write_text("Serial\t\t: 0000000000000000\n")
    assert board_serial((zeros,)) is None
    assert default_recorder_id((tmp_path / "none",), mid) == "linetap-01234567"


# --- through a real broker --------------------------------------------------------------


def link(b: Any, data_dir: Path, lines: list[str], *, rid: str = "shop-01", **cfg: Any) -> MqttLink:
    c = MqttConfig(host=b.host, port=b.port, keepalive_s=5, **cfg)
    return MqttLink(c, recorder_id=rid, data_dir=data_dir, version="9.9", lines=lines, clock=SystemClock(),
                    reconnect_min_s=0.1, reconnect_max_s=0.5, device=Device())


def run_once(b: Any, data_dir: Path, lines: list[str], **kw: Any) -> None:
    sub = b.subscribe("homeassistant/#")
    lk = link(b, data_dir, lines, **kw)
    lk.start()
    try:
        sub.wait_for(lambda m: m.topic.startswith("homeassistant/device/"))
        time.sleep(0.2)
    finally:
        lk.stop()
        sub.close()


def test_restarting_with_a_renamed_line_sends_the_removal_messages(broker, tmp_path):  # noqa: F811
    b = broker()
    data = tmp_path / "data"
    data.mkdir()
    run_once(b, data, ["line1", "line2"])
    sub = b.subscribe("homeassistant/#")
    lk = link(b, data, ["line1", "front"])
    lk.start()
    try:
        m = sub.wait_for(lambda m: m.topic == "homeassistant/device/shop-01/config"
                         and "shop-01_front_level" in json.loads(m.payload)["cmps"])
    finally:
        lk.stop()
    cmps = json.loads(m.payload)["cmps"]
    assert cmps["shop-01_line2_level"] == {"p": "sensor"}
    assert cmps["shop-01_line2_problem"] == {"p": "binary_sensor"}
    assert cmps["shop-01_line1_level"]["unit_of_measurement"] == "dBFS"
    kept = json.loads((data / "discovery.json").read_text())
    assert "shop-01_front_state" in kept["cmps"] and "shop-01_line2_state" not in kept["cmps"]


def test_turning_discovery_off_empties_the_retained_document(broker, tmp_path):  # noqa: F811
    b = broker()
    data = tmp_path / "data"
    data.mkdir()
    run_once(b, data, ["line1"])
    run_once(b, data, ["line1"], discovery=False)
    # A new subscriber finds no retained device document left for Home Assistant.
    b.publish("homeassistant/probe", "x", retain=True)
    sub = b.subscribe("homeassistant/#")
    sub.wait_for(lambda m: m.topic == "homeassistant/probe")
    time.sleep(0.3)
    assert [m.topic for m in sub.messages] == ["homeassistant/probe"]
    assert not (data / "discovery.json").exists()

