"""MqttLink against a real mosquitto: status, Last Will, health, discovery, events, outbox, link state."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from helpers import wait_for
from mqtt_broker import Broker, Message, broker, first_deliveries  # noqa: F401  (broker is a fixture)

from linetap.clock import FakeClock, SystemClock
from linetap.config import MqttConfig
from linetap.events import call_started
from linetap.health.broker import broker_alarm
from linetap.mqtt.link import MqttLink
from linetap.mqtt.probe import check_broker

RID = "box-1"
STATUS, HEALTH, EVENT = f"linetap/{RID}/status", f"linetap/{RID}/health", f"linetap/{RID}/event"
DISCOVERY = f"homeassistant/device/{RID}/config"

LinkFactory = Callable[..., MqttLink]


def alarm(link: MqttLink, clock: FakeClock) -> tuple[bool, str]:
    """What the health side makes of the link's state now (BROKER_UNREACHABLE's active, detail)."""
    return broker_alarm(link.state(), clock.mono(), link.cfg.unreachable_after_s)


def mqtt_config(b: Broker, **kw: Any) -> MqttConfig:
    """A config for broker ``b``; the re-announcement after HA's birth waits up to 0.3 s, not
    the default 5 s (a fleet's spread, random: 2.5 s a birth on average, none of it tested here)."""
    base: dict[str, Any] = {"host": b.host, "port": b.port, "keepalive_s": 5, "health_interval_s": 10,
                            "unreachable_after_s": 1.0, "discovery_delay_max_s": 0.3}
    base.update(kw)
    return MqttConfig(**base)


@pytest.fixture
def make_link(data_dir: Path) -> Iterator[LinkFactory]:
    made: list[MqttLink] = []

    def make(b: Broker, *, clock: Any = None, data: Path | None = None,
             lines: tuple[str, ...] = ("line1", "line2"), **cfg: Any) -> MqttLink:
        link = MqttLink(mqtt_config(b, **cfg), recorder_id=RID, data_dir=data or data_dir, version="9.9",
                        lines=list(lines), clock=clock or SystemClock(),
                        reconnect_min_s=0.1, reconnect_max_s=0.5)
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop(timeout_s=0.5)


def events(sub: Any) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.on(EVENT)]


def is_event(m: Message) -> bool:
    return m.topic == EVENT


def wait_until_seen(sub: Any, *topics: str) -> None:
    """Retained or live (the link may still be announcing when the subscriber arrives)."""
    for topic in topics:
        sub.wait_for(lambda m: m.topic == topic)


def start_connected(link: MqttLink) -> MqttLink:
    link.start()
    wait_for(lambda: link.connected, timeout=20)
    return link


CHILD = r"""
import sys, time
from pathlib import Path
from linetap.clock import SystemClock
from linetap.config import MqttConfig
from linetap.events import call_started
from linetap.mqtt.link import MqttLink
host, port, data_dir, n, wait = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
link = MqttLink(MqttConfig(host=host, port=port, keepalive_s=5), recorder_id="box-1", data_dir=data_dir,
                version="9.9", lines=["line1"], clock=SystemClock(), reconnect_min_s=0.1, reconnect_max_s=0.5)
link.start()
deadline = time.monotonic() + 20
while wait == "connected" and not link.connected and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(n):
    link.publish_event(call_started(call_id=i, line="line1", started_at=0.0))
print("ready", link.connected, flush=True)
time.sleep(60)
"""


def run_child(b: Broker, data_dir: Path, *, n: int, wait: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, b.host, str(b.port), str(data_dir), str(n), wait],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), line
    return p


def kill(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(5)


# --- what a subscriber sees ----------------------------------------------------------------


def test_a_subscriber_sees_online_discovery_health_and_events(broker: Any, make_link: LinkFactory) -> None:
    b = broker()
    link = start_connected(make_link(b))
    link.publish_health({"ts": "t", "id": RID, "lines": {"line1": {"state": "idle", "level_dbfs": float("-inf")}}})
    for i in range(3):
        link.publish_event(call_started(call_id=i, line="line1", started_at=1_795_000_000.0))
    wait_for(lambda: len(link.outbox) == 0, timeout=20)

    sub = b.subscribe("linetap/#", "homeassistant/#")  # late: sees the retained state only
    assert sub.wait_for(lambda m: m.topic == STATUS).text == "online"
    assert sub.on(STATUS)[0].retain
    health = sub.wait_for(lambda m: m.topic == HEALTH)
    assert health.retain and health.expiry_s is not None and 29 <= health.expiry_s <= 30
    assert json.loads(health.payload)["lines"]["line1"]["level_dbfs"] is None
    disc = sub.wait_for(lambda m: m.topic == DISCOVERY)
    assert disc.retain and f"{RID}_line2_problem" in json.loads(disc.payload)["cmps"]
    assert sub.on(EVENT) == []  # events are not retained

    live = b.subscribe(EVENT)
    link.publish_event(call_started(call_id=9, line="line2", started_at=1_795_000_000.0))
    got = json.loads(live.wait_for(is_event).payload)
    assert (got["type"], got["seq"], got["id"], got["call_id"]) == ("call_started", 4, RID, 9)
    assert live.on(EVENT)[0].qos == 1


def test_without_discovery_nothing_goes_to_home_assistant_topics(broker: Any, make_link: LinkFactory) -> None:
    b = broker()
    link = start_connected(make_link(b, discovery=False))
    link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))
    wait_for(lambda: len(link.outbox) == 0, timeout=20)
    sub = b.subscribe("#")
    sub.wait_for(lambda m: m.topic == STATUS)
    assert not [m for m in sub.messages if m.topic.startswith("homeassistant/")]


def test_the_broker_publishes_offline_when_the_recorder_process_is_killed(broker: Any, data_dir: Path) -> None:
    b = broker()
    sub = b.subscribe(STATUS)
    child = run_child(b, data_dir, n=0, wait="connected")
    try:
        sub.wait_for(lambda m: m.text == "online")
    finally:
        kill(child)
    sub.wait_for(lambda m: m.text == "offline", timeout=15)
    late = b.subscribe(STATUS)
    assert late.wait_for(lambda m: True).text == "offline"  # the Will is retained


def test_a_clean_stop_leaves_a_retained_offline(broker: Any, make_link: LinkFactory) -> None:
    b = broker()
    link = start_connected(make_link(b))
    link.stop()
    late = b.subscribe(STATUS)
    m = late.wait_for(lambda m: True)
    assert (m.text, m.retain) == ("offline", True)


# --- the outbox ------------------------------------------------------------------------------


def test_events_during_a_broker_outage_arrive_afterwards_in_order_at_least_once(broker: Any,
                                                                                make_link: LinkFactory) -> None:
    """Every event arrives, in order, at least once; a repeat is a QoS 1 redelivery of the same seq.

    Event 0 may come twice to this persistent subscriber: if the broker stops before the
    subscriber's PUBACK for it has been processed, the broker re-delivers it on restart.
    """
    b = broker(persistence=True)
    sub = b.subscribe(EVENT, persistent=True, client_id="watcher")
    link = start_connected(make_link(b))
    link.publish_event(call_started(call_id=0, line="line1", started_at=0.0))
    sub.wait_for(is_event)

    b.stop()
    wait_for(lambda: not link.connected, timeout=20)
    for i in range(1, 21):
        link.publish_event(call_started(call_id=i, line="line1", started_at=0.0))
        link.publish_health({"n": i})  # not queued: only the latest goes out after the outage
    assert len(link.outbox) == 20
    b.start()

    wait_for(lambda: len(first_deliveries(sub.on(EVENT))) >= 21, timeout=30)
    wait_for(lambda: len(link.outbox) == 0, timeout=20)
    got = first_deliveries(sub.on(EVENT))  # also checks that every repeat is a redelivery
    assert [e["call_id"] for e in got] == list(range(21))
    assert [e["seq"] for e in got] == list(range(1, 22))
    # Snapshots are not queued while offline: the retained one is the newest.
    late = b.subscribe(HEALTH)
    assert json.loads(late.wait_for(lambda m: True).payload) == {"n": 20}


def test_events_survive_a_restart_of_the_publishing_process(broker: Any, make_link: LinkFactory,
                                                            data_dir: Path) -> None:
    b = broker(start=False)  # the broker is down while the first process records events
    child = run_child(b, data_dir, n=5, wait="no")
    kill(child)  # no clean shutdown: the outbox on disk is all that is left
    b.start()
    sub = b.subscribe(EVENT)
    link = make_link(b)
    link.start()
    wait_for(lambda: len(first_deliveries(sub.on(EVENT))) >= 5, timeout=30)
    assert [e["call_id"] for e in first_deliveries(sub.on(EVENT))] == [0, 1, 2, 3, 4]
    link.publish_event(call_started(call_id=5, line="line1", started_at=0.0))
    wait_for(lambda: len(first_deliveries(sub.on(EVENT))) >= 6, timeout=20)
    wait_for(lambda: len(link.outbox) == 0, timeout=20)
    assert [e["seq"] for e in first_deliveries(sub.on(EVENT))] == [1, 2, 3, 4, 5, 6]


def test_a_full_outbox_drops_the_oldest_and_reports_it_until_delivered(broker: Any,
                                                                      make_link: LinkFactory) -> None:
    b = broker(start=False)
    clock = FakeClock()  # standing still: the outage itself stays shorter than unreachable_after_s
    link = make_link(b, clock=clock, outbox_max=10)
    link.start()
    for i in range(15):
        link.publish_event(call_started(call_id=i, line="line1", started_at=0.0))
    state = link.state()
    assert (state.connected, state.queued, state.dropped, state.outbox_max) == (False, 10, 5, 10)
    assert alarm(link, clock) == (True, "MQTT outbox full (10 events): 5 oldest undelivered event(s) dropped")
    b.start()
    sub = b.subscribe(EVENT)
    wait_for(lambda: len(link.outbox) == 0, timeout=20)
    state = link.state()
    assert (state.connected, state.queued, state.dropped) == (True, 0, 0)
    assert alarm(link, clock) == (False, "")
    wait_for(lambda: len({e["seq"] for e in events(sub)}) >= 10, timeout=20)
    assert sorted({e["seq"] for e in events(sub)})[-10:] == list(range(6, 16))


def test_stopping_the_broker_mid_stream_loses_nothing_and_keeps_the_order(broker: Any,
                                                                          make_link: LinkFactory) -> None:
    """The residual QoS 1 risk, measured: repeats are possible, and recognisable by ``seq``.

    When the broker stops while events stream, the one event in flight (taken by the broker,
    PUBACK never seen) is sent again, and the broker itself may re-deliver to a persistent
    subscriber what that subscriber had not acknowledged. Nothing is lost, nothing reordered.
    """
    b = broker(persistence=True)
    sub = b.subscribe(EVENT, persistent=True, client_id="watcher")
    link = start_connected(make_link(b))
    n = 150

    def feed() -> None:
        for i in range(n):
            link.publish_event(call_started(call_id=i, line="line1", started_at=0.0))
            time.sleep(0.002)

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: len(sub.on(EVENT)) >= 20, timeout=20)
    b.stop()
    time.sleep(0.2)
    b.start()
    feeder.join()
    wait_for(lambda: len(link.outbox) == 0, timeout=30)
    wait_for(lambda: len({e["seq"] for e in events(sub)}) == n, timeout=20)
    seqs = [e["seq"] for e in events(sub)]
    assert [e["seq"] for e in first_deliveries(sub.on(EVENT))] == list(range(1, n + 1))
    # Our side repeats at most the one event in flight; the broker may repeat up to its
    # per-client in-flight window (mosquitto: 20) to the subscriber.
    assert len(seqs) - n <= 21, seqs


# --- broker reachability ------------------------------------------------------------------


def test_broker_unreachable_is_raised_after_the_configured_time_and_cleared_on_connect(
        broker: Any, make_link: LinkFactory) -> None:
    b = broker(start=False)
    clock = FakeClock()
    link = make_link(b, clock=clock, unreachable_after_s=30)
    assert link.state().down_since_mono is None and alarm(link, clock) == (False, "")  # not started
    link.start()
    wait_for(lambda: link.last_error, timeout=20)
    state = link.state()
    assert (state.connected, state.down_since_mono, state.refused) == (False, clock.mono(), None)
    assert "Connection refused" in (state.last_error or "")
    clock.advance(29)
    assert alarm(link, clock) == (False, "")
    clock.advance(1)
    active, detail = alarm(link, clock)
    assert active and detail == (f"no connection to the MQTT broker {b.host}:{b.port} for 30 s "
                                 f"({state.last_error})")
    b.start()
    wait_for(lambda: link.connected, timeout=20)
    assert alarm(link, clock) == (False, "")
    assert link.last_error is None and link.state().down_since_mono is None


def test_the_link_reconnects_after_a_broker_restart(broker: Any, make_link: LinkFactory) -> None:
    b = broker()
    link = start_connected(make_link(b))
    b.restart()
    sub = b.subscribe(STATUS)
    assert sub.wait_for(lambda m: m.text == "online", timeout=20)
    wait_for(lambda: link.connected, timeout=20)


# --- inbound messages ---------------------------------------------------------------------


def test_home_assistant_birth_republishes_discovery_status_and_health(broker: Any,
                                                                     make_link: LinkFactory) -> None:
    b = broker()
    clock = FakeClock()
    link = start_connected(make_link(b, clock=clock))
    link.publish_health({"n": 1})
    sub = b.subscribe(STATUS, HEALTH, DISCOVERY)
    wait_until_seen(sub, STATUS, HEALTH, DISCOVERY)
    sub.clear()
    clock.advance(5)
    b.publish("homeassistant/status", "online")
    sub.wait_for(lambda m: m.topic == DISCOVERY and not m.retain)
    sub.wait_for(lambda m: m.topic == STATUS and m.text == "online")
    sub.wait_for(lambda m: m.topic == HEALTH and json.loads(m.payload) == {"n": 1})


def test_hostile_input_on_the_subscribed_topic_changes_nothing_and_logs_one_line_each(
        broker: Any, make_link: LinkFactory, caplog: pytest.LogCaptureFixture) -> None:
    b = broker()
    clock = FakeClock()
    link = start_connected(make_link(b, clock=clock))
    sub = b.subscribe(STATUS, DISCOVERY, HEALTH)
    wait_until_seen(sub, STATUS, DISCOVERY)
    sub.clear()
    caplog.set_level(logging.WARNING, logger="linetap.mqtt")
    clock.advance(5)
    hostile = [b"\xff\xfe\x00garbage", b"online" * 400, b'{"status": "online"', b"\x00" * (1 << 20)]
    for payload in hostile:
        b.publish("homeassistant/status", payload)
    b.publish("homeassistant/status", "offline")  # Home Assistant's own Will: legitimate, silent
    wait_for(lambda: len([r for r in caplog.records if "ignored a message" in r.getMessage()]) >= 3, timeout=20)
    # A valid birth afterwards proves the network thread is alive and that nothing was announced before.
    b.publish("homeassistant/status", "online")
    sub.wait_for(lambda m: m.topic == DISCOVERY)
    assert len(sub.on(DISCOVERY)) == 1 and link.connected
    ignored = [r.getMessage() for r in caplog.records if "ignored a message" in r.getMessage()]
    # The 1 MiB payload never reaches the link: MQTT v5 maximum packet size makes the broker drop it.
    assert len(ignored) == 3, ignored
    assert all("\n" not in line for line in ignored)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_exception_in_a_callback_does_not_stop_the_network_thread(
        broker: Any, make_link: LinkFactory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    b = broker()
    clock = FakeClock()
    link = start_connected(make_link(b, clock=clock))
    # "connected" is set before the link subscribes to HA's birth topic; its first announcement
    # follows the SUBSCRIBE on the same connection, so once that is seen a birth reaches the link.
    wait_until_seen(b.subscribe(STATUS, DISCOVERY), STATUS, DISCOVERY)
    real = link._announce

    def boom(client: Any) -> None:
        raise RuntimeError("bug in a callback")

    monkeypatch.setattr(link, "_announce", boom)
    clock.advance(5)
    b.publish("homeassistant/status", "online")
    wait_for(lambda: any("bug in a callback" in (r.exc_text or str(r.exc_info)) for r in caplog.records), timeout=20)
    monkeypatch.setattr(link, "_announce", real)
    sub = b.subscribe(EVENT, STATUS)
    link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))
    sub.wait_for(is_event)
    b.restart()  # reconnects still happen: the thread is alive
    wait_for(lambda: link.connected, timeout=20)


# --- protocol versions ---------------------------------------------------------------------


def test_mqtt_3_1_1_works_without_message_expiry(broker: Any, make_link: LinkFactory) -> None:
    b = broker()
    link = start_connected(make_link(b, protocol="3.1.1"))
    link.publish_health({"n": 1})
    link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))
    wait_for(lambda: len(link.outbox) == 0, timeout=20)
    sub = b.subscribe(HEALTH, STATUS)
    assert sub.wait_for(lambda m: m.topic == HEALTH).expiry_s is None
    assert sub.wait_for(lambda m: m.topic == STATUS).text == "online"


class Mqtt311OnlyBroker:
    """Just enough of an old MQTT 3.1.1 broker: refuses protocol level 5, accepts level 4."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            head = conn.recv(2 + 4 + 2 + 1)  # fixed header, "MQTT" name, level (remaining length < 128)
            level = head[8] if len(head) >= 9 else -1
            self.levels.append(level)
            if level == 4:
                conn.sendall(b"\x20\x02\x00\x00")
            else:
                conn.sendall(b"\x20\x02\x00\x01")
                conn.close()

    def close(self) -> None:
        self.srv.close()
        for c in self.conns:
            c.close()


def test_auto_falls_back_to_3_1_1_for_a_broker_without_mqtt_5(make_link: LinkFactory) -> None:
    fake = Mqtt311OnlyBroker()
    try:
        link = make_link(SimpleNamespace(host="127.0.0.1", port=fake.port), protocol="auto")
        link.start()
        def ticked_and_connected() -> bool:
            link.tick()  # the recorder's housekeeping call performs the fall-back
            return link.connected

        wait_for(ticked_and_connected, timeout=20)
        assert fake.levels[0] == 5 and fake.levels[-1] == 4
        link.stop(timeout_s=0.2)
    finally:
        fake.close()


def test_check_broker_falls_back_like_the_link(make_link: LinkFactory) -> None:
    fake = Mqtt311OnlyBroker()
    try:
        assert check_broker(MqttConfig(host="127.0.0.1", port=fake.port, protocol="auto"), timeout_s=15) is None
        reason = check_broker(MqttConfig(host="127.0.0.1", port=fake.port, protocol="5"), timeout_s=15)
        assert reason is not None and "Unsupported protocol version" in reason and "3.1.1" in reason
    finally:
        fake.close()


def test_protocol_5_against_an_old_broker_says_what_to_change(make_link: LinkFactory) -> None:
    fake = Mqtt311OnlyBroker()
    clock = FakeClock()
    try:
        link = make_link(SimpleNamespace(host="127.0.0.1", port=fake.port), clock=clock, protocol="5")
        link.start()
        wait_for(lambda: link.last_error, timeout=20)
        link.tick()
        assert link.state().refused is not None
        active, detail = alarm(link, clock)  # at once: a refusal does not fix itself
        assert active and 'mqtt.protocol = "3.1.1"' in detail
    finally:
        fake.close()
