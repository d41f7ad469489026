"""A real mosquitto for tests, and a real paho subscriber to watch it.

    from mqtt_broker import broker  # noqa: F401  (the fixture; or list it in conftest's pytest_plugins)

    def test_something(broker):
        b = broker()                              # plain TCP, anonymous, on a free loopback port
        sub = b.subscribe("linetap/#")            # connected and subscribed when it returns
        ...
        msg = sub.wait_for(lambda m: m.topic.endswith("/status") and m.text == "online")
        b.stop(); b.start()                       # same port, same config

Variants: ``broker(users={"u": "pw"})`` (password file, anonymous refused),
``broker(tls=True)`` (TLS only, with a test CA made by openssl: ``b.pki.ca``),
``broker(tls=True, require_certificate=True)`` (clients must present ``b.pki.client_cert``),
``broker(persistence=True)`` (sessions and queued messages survive ``stop()``/``start()``, so a
``subscribe(..., persistent=True)`` subscriber misses nothing while the broker is down).

Skips the test cleanly when mosquitto (or openssl / mosquitto_passwd for the variants) is absent.
Broker output goes to ``<workdir>/mosquitto.log``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


# --- a test PKI -------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    openssl = _need("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=linetap test CA")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=linetap test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", *ext)
    return Pki(ca=directory / "ca.crt", server_cert=directory / "server.crt", server_key=directory / "server.key",
                   client_cert=directory / "client.crt", client_key=directory / "client.key")


# --- watching the broker ------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    expiry_s: int | None  # MQTT v5 message expiry interval, if the publisher set one
    # time.monotonic() when the subscriber received it: a latency is measured between receipts,
    # not from when the test happened to look
    received_mono: float = field(default=0.0, compare=False)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


class Subscriber:
    """A real paho client (MQTT v5) that records every message it receives."""

    def __init__(self, broker: Broker, topics: tuple[str, ...], *, persistent: bool = False,
                 client_id: str | None = None, timeout_s: float = 15.0) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        cid = client_id or f"test-sub-{id(self):x}"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5)
        c.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        broker.configure_client(c)

        def on_connect(client, userdata, flags, rc, props):  # type: ignore[no-untyped-def]
            if not rc.is_failure and not flags.session_present:
                client.subscribe([(t, 1) for t in topics])
            elif not rc.is_failure:
                self._subscribed.set()

        def on_subscribe(client, userdata, mid, rcs, props):  # type: ignore[no-untyped-def]
            self._subscribed.set()

        def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
            expiry = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties else None
            m = Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, expiry, time.monotonic())
            with self._cond:
                self.messages.append(m)
                self._cond.notify_all()

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        c.connect(broker.host, broker.port, keepalive=5, clean_start=not persistent, properties=props)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(timeout_s):
            c.loop_stop()
            raise AssertionError(f"subscriber could not subscribe to {topics} on {broker.host}:{broker.port}")

    def wait_for(self, pred: Callable[[Message], bool], timeout: float = 15.0) -> Message:
        """The first message (received so far or within ``timeout``) that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(f"{m.topic} {m.payload[:120]!r}" for m in self.messages[-20:])
                    raise AssertionError(f"no matching message within {timeout} s; last ones:\n  {seen}")
                self._cond.wait(left)

    def wait_count(self, pred: Callable[[Message], bool], n: int, timeout: float = 15.0) -> list[Message]:
        """Wait until at least ``n`` matching messages arrived; return all matching ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(found)} of {n} messages within {timeout} s")
                self._cond.wait(left)

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the broker ------------------------------------------------------------------------


@dataclass
class Broker:
    """One mosquitto process on a fixed loopback port (kept across stop/start)."""

    workdir: Path
    port: int = 0
    users: dict[str, str] | None = None
    tls: bool = False
    require_certificate: bool = False
    persistence: bool = False
    host: str = HOST
    pki: Pki | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _subscribers: list[Subscriber] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exe = _need("mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        lines = [f"listener {self.port} {self.host}", f"allow_anonymous {'false' if self.users else 'true'}",
                 f"persistence {'true' if self.persistence else 'false'}"]
        if self.persistence:
            lines += [f"persistence_location {self.workdir}/", "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # otherwise it drops to 'mosquitto' and cannot read our files
        if self.users:
            passwd = self.workdir / "passwd"
            tool = _need("mosquitto_passwd")
            passwd.touch()
            for user, pw in self.users.items():
                subprocess.run([tool, "-b", str(passwd), user, pw], check=True, capture_output=True)
            lines.append(f"password_file {passwd}")
        if self.tls:
            self.pki = self.pki or make_pki(self.workdir / "pki")
            lines += [f"cafile {self.pki.ca}", f"certfile {self.pki.server_cert}", f"keyfile {self.pki.server_key}"]
            if self.require_certificate:
                lines.append("require_certificate true")
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 15.0) -> Broker:
        if self.running:
            return self
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM and wait (mosquitto writes its persistence file on the way out)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> Broker:
        self.stop()
        return self.start()

    def configure_client(self, c: paho.Client, *, username: str | None = None, password: str | None = None,
                         client_cert: bool = False) -> None:
        """Make a paho client able to talk to this broker (first configured user, TLS, cert)."""
        if username is None and self.users:
            username, password = next(iter(self.users.items()))
        if username is not None:
            c.username_pw_set(username, password)
        if self.tls:
            assert self.pki is not None
            cert = self.pki.client_cert if (client_cert or self.require_certificate) else None
            key = self.pki.client_key if cert else None
            c.tls_set(ca_certs=str(self.pki.ca), certfile=str(cert) if cert else None,
                      keyfile=str(key) if key else None)

    def subscribe(self, *topics: str, persistent: bool = False, client_id: str | None = None) -> Subscriber:
        sub = Subscriber(self, topics or ("#",), persistent=persistent, client_id=client_id)
        self._subscribers.append(sub)
        return sub

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1) -> None:
        """Publish one message as some other client (waits until the broker has it)."""
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}",
                        protocol=MQTTProtocolVersion.MQTTv5)
        self.configure_client(c)
        c.connect(self.host, self.port, keepalive=5)
        c.loop_start()
        try:
            c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)
        finally:
            c.disconnect()
            c.loop_stop()

    def close(self) -> None:
        for sub in self._subscribers:
            try:
                sub.close()
            except Exception:
                pass
        self._subscribers.clear()
        self.stop()


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Factory: ``broker(users=..., tls=..., require_certificate=..., persistence=..., start=True)``."""
    made: list[Broker] = []

    def make(*, start: bool = True, **kw: object) -> Broker:
        b = Broker(tmp_path / f"mosquitto{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in made:
        b.close()


def first_deliveries(messages: list[Message]) -> list[dict[str, Any]]:
    """The events as a consumer that drops repeated ``seq`` sees them, in arrival order.

    QoS 1 is at-least-once (TOPICS.md, "Delivery of events"): an event may arrive again, but only as
    a redelivery, i.e. with a ``seq`` already seen and the very same payload. Anything else repeated
    under an old ``seq`` fails here.
    """
    first: dict[int, bytes] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        doc = json.loads(m.payload)
        seq = doc["seq"]
        if seq in first:
            assert m.payload == first[seq], f"seq {seq} arrived again with another payload: {m.payload!r}"
            continue
        first[seq] = m.payload
        out.append(doc)
    return out
