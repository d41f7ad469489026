"""The reference central side (docs/central/) against a real mosquitto: the ACL lets a box write
only under its own id, and a real MqttLink (status, health, events, discovery) works under it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from linetap.clock import SystemClock
from linetap.config import MqttConfig
from linetap.mqtt.discovery import Device
from linetap.mqtt.link import MqttLink
from mqtt_broker import Broker, Subscriber

ACL = Path(__file__).resolve().parents[1] / "docs" / "central" / "linetap.acl"
USERS = {"shop-01": "pw1", "shop-02": "pw2", "fleet": "pwf", "homeassistant": "pwh"}


@pytest.fixture
def central(tmp_path: Path):
    b = Broker(tmp_path / "mosquitto", users=USERS)
    # The reference ACL file, as shipped (the fixture's config plus acl_file).
    b.conf.write_text(b.conf.read_text() + f"acl_file {ACL}\n")
    b.start()
    yield b
    b.close()


def client(b: Broker, user: str, *, will: str | None = None) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.username_pw_set(user, USERS[user])
    if will:
        c.will_set(will, "offline", qos=1, retain=True)
    c.connect(b.host, b.port, keepalive=5)
    c.loop_start()
    return c


def publish(c: paho.Client, topic: str, payload: str) -> Any:
    """Publish at QoS 1 and return the broker's PUBACK reason (MQTT 5 says when it refused)."""
    reasons: dict[int, Any] = {}
    c.on_publish = lambda cl, ud, mid, rc, props: reasons.__setitem__(mid, rc)
    info = c.publish(topic, payload, qos=1, retain=True)
    info.wait_for_publish(5)
    deadline = time.monotonic() + 5
    while info.mid not in reasons and time.monotonic() < deadline:
        time.sleep(0.01)
    return reasons.get(info.mid)


def watch(b: Broker, user: str = "homeassistant") -> Any:
    """A subscriber logged in as ``user`` (the fixture's configure_client takes the first user)."""
    b.users = {user: USERS[user]}
    return Subscriber(b, ("linetap/#", "homeassistant/#"))


def test_a_box_cannot_publish_under_another_boxes_id(central):
    sub = watch(central)
    box = client(central, "shop-01")
    try:
        denied = publish(box, "linetap/shop-02/status", "offline")
        assert denied is not None and denied.is_failure  # "Not authorized"
        assert publish(box, "homeassistant/device/shop-02/config", "{}").is_failure
        assert publish(box, "linetap/shop-01/status", "online").is_failure is False
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/status" and m.text == "online")
        time.sleep(0.5)
        assert not [m for m in sub.messages if "shop-02" in m.topic]
    finally:
        box.disconnect()
        box.loop_stop()
        sub.close()


def test_a_box_cannot_leave_a_last_will_under_another_id(central):
    sub = watch(central)
    proc = subprocess.Popen([sys.executable, "-c", f"""
import time, paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="evil", protocol=MQTTProtocolVersion.MQTTv5)
c.username_pw_set("shop-01", "pw1")
c.will_set("linetap/shop-02/status", "offline", qos=1, retain=True)
c.connect("{central.host}", {central.port}, keepalive=5)
c.loop_start(); print("up", flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        time.sleep(0.5)
        proc.kill()  # the broker now sends (or, here, refuses to send) the Will
        proc.wait(10)
        time.sleep(2.0)
        assert not [m for m in sub.messages if m.topic == "linetap/shop-02/status"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()


def test_a_real_box_works_under_the_acl(central, tmp_path):
    sub = watch(central)
    cfg = MqttConfig(host=central.host, port=central.port, keepalive_s=5, username="shop-01",
                     password_file=tmp_path / "pw", allow_plaintext_password=True, health_interval_s=1)
    (tmp_path / "pw").write_text("pw1\n")
    (tmp_path / "pw").chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    link = MqttLink(cfg, recorder_id="shop-01", data_dir=data, version="9.9", lines=["line1"],
                    clock=SystemClock(), reconnect_min_s=0.1, reconnect_max_s=0.5, device=Device())
    link.start()
    try:
        link.publish_health({"ts": "2026-12-07T00:00:00.000Z", "id": "shop-01"})
        link.publish_event({"type": "call_started", "call_id": 1, "line": "line1", "started_at": "x"})
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/status" and m.text == "online")
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/health")
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/event" and json.loads(m.payload)["seq"] == 1)
        sub.wait_for(lambda m: m.topic == "homeassistant/device/shop-01/config")
    finally:
        link.stop()
        sub.close()


def test_the_fleet_user_reads_the_boxes_but_not_home_assistant(central):
    box = client(central, "shop-01")
    try:
        publish(box, "linetap/shop-01/status", "online")
        publish(box, "homeassistant/device/shop-01/config", "{}")
    finally:
        box.disconnect()
        box.loop_stop()
    sub = watch(central, "fleet")
    try:
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/status")
        time.sleep(0.5)
        assert not [m for m in sub.messages if m.topic.startswith("homeassistant/")]
    finally:
        sub.close()
