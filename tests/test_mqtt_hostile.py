"""Bounded memory under a hostile broker: a fake MQTT 3.1.1 server on loopback that accepts the login
and then misbehaves (announces a 64 MiB packet, never acknowledges anything)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from helpers import wait_for

from linetap.clock import FakeClock
from linetap.config import MqttConfig
from linetap.mqtt.credentials import Credentials
from linetap.mqtt.link import MqttLink
from linetap.mqtt.paho_client import MAX_QUEUED_MESSAGES, ErrorCode, ProtocolVersion, make_client

RID = "box-1"
STATUS, DISCOVERY = f"linetap/{RID}/status", f"homeassistant/device/{RID}/config"
HUGE_BYTES = 64 * 1024 * 1024


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH (MQTT 3.1.1)."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return b"\x30" + varint(len(body)) + body


class FakeBroker:
    """Accepts every MQTT 3.1.1 login; records the topics published to it; acknowledges a QoS 1
    PUBLISH only if ``ack``; on each new connection runs ``on_connect(conn)`` (the misbehaviour)."""

    def __init__(self, *, ack: bool = False, on_connect: Callable[[socket.socket], None] | None = None) -> None:
        self.ack, self.on_connect = ack, on_connect
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.srv.getsockname()[1]
        self.connections = 0
        self.published: list[str] = []
        self.current: socket.socket | None = None
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _packet(self, conn: socket.socket) -> tuple[int, bytes] | None:
        head = conn.recv(1)
        if not head:
            return None
        length, shift = 0, 0
        while True:
            b = conn.recv(1)
            if not b:
                return None
            length += (b[0] & 127) << shift
            shift += 7
            if not b[0] & 128:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        return head[0], body

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._packet(conn) is None:  # CONNECT
                return
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK: accepted
            self.connections += 1
            self.current = conn
            if self.on_connect is not None:
                self.on_connect(conn)
            while (packet := self._packet(conn)) is not None:
                kind, body = packet
                if kind >> 4 == 3:  # PUBLISH
                    n = int.from_bytes(body[:2], "big")
                    self.published.append(body[2:2 + n].decode())
                    if (kind >> 1) & 3 == 1 and self.ack:
                        conn.sendall(b"\x40\x02" + body[2 + n:4 + n])  # PUBACK for its packet id
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        assert self.current is not None
        self.current.sendall(data)

    def close(self) -> None:
        self.srv.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def fakes() -> Iterator[list[FakeBroker]]:
    made: list[FakeBroker] = []
    yield made
    for f in made:
        f.close()


def announce_huge_packet(conn: socket.socket) -> None:
    """A PUBLISH header announcing a 64 MiB body, then the body, as fast as the client takes it."""
    chunk = b"\x00" * (1024 * 1024)
    try:
        conn.sendall(b"\x30" + varint(HUGE_BYTES))
        for _ in range(HUGE_BYTES // len(chunk)):
            conn.sendall(chunk)
    except OSError:
        pass  # the client hung up: what it should do


CHILD = r"""
import json, select, sys, time
from pathlib import Path
from linetap.clock import SystemClock
from linetap.config import MqttConfig
from linetap.events import call_started
from linetap.mqtt.link import MqttLink

def peak_rss_bytes():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

port, data_dir = int(sys.argv[1]), Path(sys.argv[2])
link = MqttLink(MqttConfig(host="127.0.0.1", port=port, keepalive_s=5, protocol="3.1.1"), recorder_id="box-1",
                data_dir=data_dir, version="9.9", lines=["line1"], clock=SystemClock(),
                reconnect_min_s=0.1, reconnect_max_s=0.5)
link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))  # sent on each connect, never acknowledged
before = peak_rss_bytes()
link.start()
errors = set()
while not select.select([sys.stdin], [], [], 0.005)[0]:  # until the test has seen enough
    state = link.state()
    if state.last_error:
        errors.add(state.last_error)
print(json.dumps({"before": before, "peak": peak_rss_bytes(), "errors": sorted(errors),
                  "queued": link.state().queued}), flush=True)
link.stop(timeout_s=0.2)
"""


def test_an_oversized_packet_is_refused_before_it_is_buffered_and_the_link_reconnects(
        fakes: list[FakeBroker], data_dir: Path) -> None:
    fake = FakeBroker(on_connect=announce_huge_packet)
    fakes.append(fake)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(fake.port), str(data_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fake.connections >= 3 or child.poll() is not None, timeout=60)
        out, err = child.communicate("done\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert fake.connections >= 3  # refused, and back each time
    # Buffering the body would take 64 MiB; refusing it costs next to nothing.
    growth = result["peak"] - result["before"]
    assert growth < 16 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert (f"lost the connection to 127.0.0.1:{fake.port}: failed to receive on socket: "
            f"[Errno 90] the broker announced a packet of {HUGE_BYTES} bytes (limit {64 * 1024})") in result["errors"]
    assert result["queued"] == 1  # never acknowledged: the event waits in the outbox


@pytest.mark.parametrize("ack, announcements", [(False, 1), (True, 4)])
def test_birth_messages_re_announce_only_once_the_last_announcement_is_acknowledged(
        fakes: list[FakeBroker], data_dir: Path, caplog: pytest.LogCaptureFixture, ack: bool,
        announcements: int) -> None:
    fake = FakeBroker(ack=ack)
    fakes.append(fake)
    clock = FakeClock()
    caplog.set_level(logging.DEBUG, logger="linetap.mqtt")
    # The re-announcement's random delay (a fleet's spread, up to 5 s by default) is not what is
    # tested here: up to 0.3 s, so the three births take ~1 s, not ~13 s.
    link = MqttLink(MqttConfig(host=fake.host, port=fake.port, keepalive_s=30, protocol="3.1.1",
                               discovery_delay_max_s=0.3),
                    recorder_id=RID, data_dir=data_dir, version="9.9", lines=["line1"], clock=clock)
    try:
        link.start()
        wait_for(lambda: link.connected and fake.published.count(DISCOVERY) == 1, timeout=20)
        for n in range(1, 4):
            clock.advance(5)  # past the birth rate limit
            fake.send(publish_packet("homeassistant/status", b"online"))
            handled = ("Home Assistant came online" if ack else "not re-announcing")
            wait_for(lambda: sum(handled in r.getMessage() for r in caplog.records) == n, timeout=20)
            if ack:
                wait_for(lambda: fake.published.count(DISCOVERY) == n + 1, timeout=20)
        assert fake.published.count(STATUS) == announcements
        assert fake.published.count(DISCOVERY) == announcements
    finally:
        link.stop(timeout_s=0.2)


def test_paho_queues_at_most_max_queued_messages_for_a_broker_that_never_acknowledges(
        fakes: list[FakeBroker]) -> None:
    fake = FakeBroker(ack=False)
    fakes.append(fake)
    c = make_client(MqttConfig(host=fake.host, port=fake.port), Credentials(None), client_id="t",
                    protocol=ProtocolVersion.MQTTv311, will_topic=None)
    c.connect(fake.host, fake.port)
    c.loop_start()
    try:
        wait_for(c.is_connected, timeout=20)
        infos = [c.publish("t/x", b"x" * 1000, qos=1) for _ in range(3 * MAX_QUEUED_MESSAGES)]
        refused: list[Any] = [i for i in infos if i.rc == ErrorCode.MQTT_ERR_QUEUE_SIZE]
        assert len(refused) == 2 * MAX_QUEUED_MESSAGES
    finally:
        c.disconnect()
        c.loop_stop()
