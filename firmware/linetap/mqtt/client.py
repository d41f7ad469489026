"""The MQTT link: the only module that imports paho.

Threads: paho's network thread (``loop_start``) runs every callback; the recorder calls
``publish_event``/``publish_health`` from its own threads and ``tick`` about twice a second.
Every callback is wrapped by ``_guarded``: an exception escaping a paho callback would end the
network thread and with it all reconnects (paho-mqtt 2.x does not catch them), so none may. ``on_alarm`` is called only
from ``tick``, on the caller's thread, never from the network thread.

Locking: ``self._lock`` protects the link's state and is never held while calling into paho,
because paho runs ``on_publish`` while holding its own message lock, which ``publish`` also
takes (holding ours across ``publish`` would deadlock against an arriving PUBACK).

Event delivery (see also outbox.py):
- ``publish_event`` appends to the durable outbox first, then tries to send.
- One event is in flight at a time: the oldest row is published at QoS 1 and deleted from the
  outbox only in ``on_publish`` for its message id (the PUBACK); then the next one goes. That
  makes delivery strictly ordered, and a lost connection costs at most one event in doubt.
- After a reconnect paho itself re-sends the in-flight message (same message id, DUP flag), so
  the link keeps waiting for that id instead of publishing the row again. After a restart the
  un-acknowledged row is simply first in the outbox again.
- A persistent session would not help: brokers de-duplicate only QoS 2, not QoS 1, and the one
  subscription is renewed on every connect, so the link connects with a clean session.
- Residual duplicate risk, stated honestly: if the connection (or the process) dies after the
  broker has taken the in-flight event but before its PUBACK is processed, that one event is
  delivered again. Every event carries ``seq`` (persisted, strictly increasing per recorder), so
  a consumer can drop the repeat: keep the highest ``seq`` seen per ``id``.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from linetap.clock import Clock
from linetap.config import ConfigError, MqttConfig
from linetap.mqtt.discovery import discovery_document
from linetap.mqtt.outbox import Outbox
from linetap.mqtt.topics import OFFLINE, ONLINE, Topics, client_id_for, dumps, event_payload

logger = logging.getLogger(__name__)
_paho_logger = logging.getLogger(__name__ + ".paho")

BROKER_UNREACHABLE = "BROKER_UNREACHABLE"
# Not (yet) in the contract's list: the outbox overflowed and events were dropped (warning).
MQTT_OUTBOX_FULL = "MQTT_OUTBOX_FULL"

MAX_INBOUND_BYTES = 1024           # anything bigger on a subscribed topic is ignored
MAX_PACKET_BYTES = 64 * 1024       # MQTT v5: the broker must not send us bigger packets at all
BIRTH_MIN_INTERVAL_S = 1.0         # a flood of birth messages re-announces at most once a second
_HOSTILE_LOG_BUDGET = 10           # ignored-message log lines per minute, then one summary

AlarmCallback = Callable[[str, bool, str], None]
_F = TypeVar("_F", bound=Callable[..., Any])

_PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311,
              "auto": MQTTProtocolVersion.MQTTv5}
_PROTOCOL_NAMES = {MQTTProtocolVersion.MQTTv5: "5", MQTTProtocolVersion.MQTTv311: "3.1.1",
                   MQTTProtocolVersion.MQTTv31: "3.1"}
_AUTH_REASONS = ("Bad user name or password", "Not authorized")
_UNSUPPORTED = "Unsupported protocol version"


def _guarded(fn: _F) -> _F:
    """Never let an exception out of a paho callback (it would end the network thread)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            logger.exception("MQTT: error in %s (ignored; the connection carries on)", fn.__name__)
            return None

    return wrapper  # type: ignore[return-value]


# --- secrets and TLS ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Credentials:
    username: str | None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password, even in a traceback's locals
        return f"_Credentials(username={self.username!r}, password={'********' if self.password else None})"


def read_password(path: Path) -> str:
    """The password in ``path`` (one line; the trailing newline is not part of it).

    Raises ConfigError naming ``mqtt.password_file`` if it cannot be read or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError([f"mqtt.password_file: cannot read {path}: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"mqtt.password_file: {path} is not UTF-8 text"]) from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError([f"mqtt.password_file: {path} is empty"])
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning("mqtt.password_file %s is readable by other users; chmod 600 it", path)
    return password


def _credentials(cfg: MqttConfig) -> _Credentials:
    """Check the security settings and read the password: ConfigError lists every problem."""
    errors: list[str] = []
    for key in ("tls_ca", "tls_cert", "tls_key"):
        p: Path | None = getattr(cfg, key)
        if p is not None and not os.access(p, os.R_OK):
            errors.append(f"mqtt.{key}: cannot read {p}")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        errors.append("mqtt.tls_key: tls_cert and tls_key must be given together")
    if not errors:
        errors += _tls_problems(cfg)
    password = None
    if cfg.password_file is not None:
        if not cfg.username:
            errors.append("mqtt.username: is required when mqtt.password_file is set")
        if cfg.tls_ca is None and not cfg.allow_plaintext_password:
            errors.append("mqtt.password_file: refusing to send a password without TLS; set mqtt.tls_ca, "
                          "or mqtt.allow_plaintext_password = true on a trusted network")
        try:
            password = read_password(cfg.password_file)
        except ConfigError as e:
            errors += e.errors
    if errors:
        raise ConfigError(errors)
    return _Credentials(cfg.username, password)


def _tls_problems(cfg: MqttConfig) -> list[str]:
    """Load the TLS files once up front, so a bad file is a config error, not a retry loop."""
    if cfg.tls_ca is None:
        return ["mqtt.tls_cert: a client certificate needs TLS; set mqtt.tls_ca too"] if cfg.tls_cert else []
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.tls_ca))
    except (ssl.SSLError, OSError, ValueError) as e:
        return [f"mqtt.tls_ca: {cfg.tls_ca} is not a usable CA certificate (PEM): {e}"]
    if cfg.tls_cert is not None and cfg.tls_key is not None:
        try:
            # password: an encrypted key must fail here, not make OpenSSL prompt on a terminal.
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key), password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as e:
            return [f"mqtt.tls_cert: cannot use {cfg.tls_cert} with the key {cfg.tls_key} "
                    f"(PEM, unencrypted, matching): {e}"]
    return []


class _PahoClient(paho.Client):
    """paho's client, remembering why the last connection attempt failed.

    paho's reconnect loop swallows the OSError of a failed attempt; we want it in the log and in
    the alarm detail ("Connection refused", "certificate verify failed", ...).
    """

    last_connect_error: str | None = None
    last_socket_error: str | None = None  # set by _paho_log: why paho dropped a connection

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as e:
            self.last_connect_error = _describe_oserror(e)
            raise


def _describe_oserror(e: OSError) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {e.verify_message or e}"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    if isinstance(e, TimeoutError):
        return "connection timed out"
    return e.strerror or str(e) or type(e).__name__


def _make_client(cfg: MqttConfig, creds: _Credentials, *, client_id: str,
                 protocol: MQTTProtocolVersion, will_topic: str | None) -> _PahoClient:
    c = _PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                    reconnect_on_failure=True)
    c.suppress_exceptions = True  # second line of defence behind _guarded
    c.on_log = _paho_log
    if creds.username:
        c.username_pw_set(creds.username, creds.password)
    if cfg.tls_ca is not None:
        c.tls_set(ca_certs=str(cfg.tls_ca),
                  certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
                  keyfile=str(cfg.tls_key) if cfg.tls_key else None,
                  cert_reqs=ssl.CERT_REQUIRED)
        if cfg.tls_insecure:
            c.tls_insecure_set(True)
    if will_topic is not None:
        c.will_set(will_topic, OFFLINE, qos=1, retain=True)
    return c


def _paho_log(client: paho.Client, userdata: Any, level: int, buf: str) -> None:
    """paho's own log, at DEBUG: it logs an ERROR on every failed reconnect attempt
    ("Client is not connected"), which would flood the journal while a broker is down; the link
    logs connection trouble itself, once. Exceptions caught in callbacks stay errors."""
    if level == paho.MQTT_LOG_ERR and buf.startswith("Caught exception"):
        _paho_logger.error("%s", buf)
        return
    _paho_logger.debug("%s", buf)
    if buf.startswith(("failed to receive on socket", "timeout on socket")) and isinstance(client, _PahoClient):
        client.last_socket_error = buf


def _connect_properties(protocol: MQTTProtocolVersion) -> Properties | None:
    if protocol != MQTTProtocolVersion.MQTTv5:
        return None
    p = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    p.MaximumPacketSize = MAX_PACKET_BYTES
    return p


# --- the link -------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    seq: int
    mid: int | None = None  # None between claiming the slot and paho returning the message id


class MqttLink:
    """The recorder's connection to an MQTT broker; see TOPICS.md for what it publishes.

    Never raises on an unreachable or refusing broker: it keeps trying in the background with
    exponential back-off (``reconnect_min_s`` doubling up to ``reconnect_max_s``) and reports
    through ``on_alarm``. The constructor raises ConfigError for unusable security settings
    (unreadable password file, missing TLS files, password without TLS) and sqlite3.Error if
    ``<data_dir>/outbox.db`` cannot be opened.
    """

    def __init__(self, cfg: MqttConfig, *, recorder_id: str, data_dir: Path, version: str,
                 lines: list[str] | tuple[str, ...], clock: Clock, on_alarm: AlarmCallback | None = None,
                 reconnect_min_s: float = 1.0, reconnect_max_s: float = 60.0) -> None:
        self.cfg = cfg
        self.recorder_id = recorder_id
        self.topics = Topics.build(prefix=cfg.topic_prefix, recorder_id=recorder_id,
                                   discovery_prefix=cfg.discovery_prefix)
        self.client_id = client_id_for(recorder_id)
        self._creds = _credentials(cfg)  # read once, here
        self._clock = clock
        self._on_alarm = on_alarm
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._discovery = dumps(discovery_document(recorder_id=recorder_id, version=version, lines=list(lines),
                                                   topics=self.topics, health_interval_s=cfg.health_interval_s))
        self.outbox = Outbox(data_dir / "outbox.db", max_rows=cfg.outbox_max)

        self._lock = threading.Condition()
        self._client: _PahoClient | None = None
        self._protocol = _PROTOCOLS.get(cfg.protocol, MQTTProtocolVersion.MQTTv5)
        self._started = False
        self._stopping = False
        self._stop_called = False
        self._connected = False
        self._down_since: float | None = None
        self._refused: str | None = None     # the broker's reason for refusing our CONNECT
        self._last_error: str | None = None
        self._fall_back = False
        self._health: bytes | None = None
        self._inflight: _InFlight | None = None
        self._early_acks: dict[int, ReasonCode] = {}
        self._last_birth = float("-inf")
        self._alarms_reported: dict[str, bool] = {BROKER_UNREACHABLE: False, MQTT_OUTBOX_FULL: False}
        self._logged: set[str] = set()       # failure messages already logged since the last connect
        self._hostile_window = (float("-inf"), 0)

    # --- public API -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def last_error(self) -> str | None:
        """Why the link is not connected (None while connected or before the first attempt)."""
        with self._lock:
            return self._refused or self._last_error

    def start(self) -> None:
        """Connect in the background; returns at once whether or not the broker is there."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._down_since = self._clock.mono()
        self._start_client()

    def publish_event(self, event: dict[str, Any]) -> int | None:
        """Queue one event durably, then send it if the broker is connected.

        ``event`` needs ``type``; ``ts`` (now), ``seq`` and ``id`` are filled in. Returns the
        event's ``seq``, or None if the outbox could not store it (logged). Never blocks on the
        network; it does wait for one SQLite commit (fsync).
        """
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        now = self._clock.wall()
        payload = functools.partial(event_payload, event, recorder_id=self.recorder_id, now=now)
        payload(seq=0)  # fail here, in the caller, on a malformed event (ValueError/TypeError)
        try:
            added = self.outbox.append(self.topics.event, lambda seq: payload(seq=seq))
        except Exception as e:
            self._log_limited("outbox-write", logging.ERROR,
                              "MQTT outbox %s: cannot store event %s: %s", self.outbox.path, event.get("type"), e)
            return None
        if added.dropped:
            logger.warning("MQTT outbox full (%d events): dropped the %d oldest undelivered event(s)",
                           self.outbox.max_rows, added.dropped)
        self._pump()
        return added.seq

    def publish_health(self, snapshot: dict[str, Any]) -> None:
        """Publish the health snapshot (retained, QoS 0) if connected; always remember it.

        While disconnected nothing is queued: the latest snapshot is sent on the next connect.
        Under MQTT v5 it expires at the broker after about three health intervals.
        """
        payload = dumps(snapshot)
        with self._lock:
            self._health = payload
            client = self._client if self._connected else None
        if client is not None:
            self._send_health(client, payload)

    def tick(self) -> None:
        """Housekeeping, called by the recorder about twice a second: alarms, protocol fall-back."""
        with self._lock:
            if not self._started or self._stopping:
                return
            fall_back, self._fall_back = self._fall_back, False
        if fall_back:
            self._restart_client(MQTTProtocolVersion.MQTTv311)
        self._pump()
        for code, (active, detail) in self._alarm_states().items():
            if active != self._alarms_reported[code]:
                self._alarms_reported[code] = active
                # Not logged here: the cause was logged when it happened, the alarm is the
                # alarm manager's to log.
                if self._on_alarm is not None:
                    try:
                        self._on_alarm(code, active, detail)
                    except Exception:
                        logger.exception("MQTT: on_alarm(%s) failed", code)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Clean shutdown: deliver what it can within ``timeout_s``, publish retained ``offline``,
        disconnect normally (so the broker discards the Last Will), close the outbox.

        Undelivered events stay in the outbox for the next start. Safe to call more than once.
        """
        with self._lock:
            if self._stop_called:
                return
            self._stop_called = True
            client = self._client
            if self._started and client is not None:
                # Let the backlog drain while connected, so a restart re-sends as little as possible.
                self._lock.wait_for(lambda: not self._connected or (self._inflight is None
                                                                    and len(self.outbox) == 0), timeout_s)
            self._stopping = True
            connected = self._connected
        if client is not None:
            if connected:
                try:
                    info = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                    info.wait_for_publish(timeout_s)
                except (RuntimeError, ValueError) as e:
                    logger.warning("MQTT: could not confirm the retained 'offline' status: %s", e)
                client.disconnect()  # normal disconnect: the broker discards the Will
                client.loop_stop()
            else:
                # Stop the reconnect loop first: disconnect() on a socket-less client makes paho
                # log an ERROR from its loop. (The broker already has our Will for a lost link.)
                client.loop_stop()
                client.disconnect()
        with self._lock:
            self._connected = False
            self._client = None
        left = len(self.outbox)
        self.outbox.close()
        if self._started:
            logger.info("MQTT: link stopped (%d event(s) left in the outbox)", left)

    # --- client lifecycle ---------------------------------------------------------

    def _start_client(self) -> None:
        protocol = self._protocol
        c = _make_client(self.cfg, self._creds, client_id=self.client_id, protocol=protocol,
                         will_topic=self.topics.status)
        # paho types these as int but sleeps on them, so fractions work (tests use 0.1 s).
        c.reconnect_delay_set(min_delay=self._reconnect[0], max_delay=self._reconnect[1])  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        kwargs: dict[str, Any] = {}
        if protocol == MQTTProtocolVersion.MQTTv5:
            kwargs = {"clean_start": True, "properties": _connect_properties(protocol)}
        with self._lock:
            self._client = c
        logger.info("MQTT: connecting to %s:%d as %s (MQTT %s%s%s)", self.cfg.host, self.cfg.port,
                    self.client_id, _PROTOCOL_NAMES.get(protocol, "?"),
                    ", TLS" if self.cfg.tls_ca else "", f", user {self._creds.username}" if self._creds.username else "")
        c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        c.loop_start()

    def _restart_client(self, protocol: MQTTProtocolVersion) -> None:
        with self._lock:
            old, self._client = self._client, None
            self._protocol = protocol
            self._inflight = None  # nothing can be in flight on a client that never connected
        if old is not None:
            old.disconnect()
            old.loop_stop()
        with self._lock:
            if self._stopping:
                return
        self._start_client()

    # --- paho callbacks (network thread) -------------------------------------------

    @_guarded
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                    properties: Any) -> None:
        if client is not self._client:
            return
        where = f"{self.cfg.host}:{self.cfg.port}"
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason == _UNSUPPORTED and self.cfg.protocol == "auto" and self._protocol == MQTTProtocolVersion.MQTTv5:
                logger.info("MQTT: broker %s does not speak MQTT 5; falling back to 3.1.1", where)
                with self._lock:
                    self._fall_back = True
                return
            hint = ""
            if reason in _AUTH_REASONS:
                hint = " (check mqtt.username and mqtt.password_file)"
            elif reason == _UNSUPPORTED:
                hint = ' (set mqtt.protocol = "3.1.1" or "auto")'
            with self._lock:
                self._refused = f"broker {where} refused the connection: {reason}{hint}"
                message = self._refused
            self._log_once(logging.ERROR, "MQTT: %s", message)
            return
        with self._lock:
            self._connected = True
            self._down_since = None
            self._refused = None
            self._last_error = None
            self._logged.clear()
            self._lock.notify_all()
        logger.info("MQTT: connected to %s (MQTT %s)", where, _PROTOCOL_NAMES.get(self._protocol, "?"))
        if self.cfg.discovery:
            client.subscribe(self.topics.ha_status, qos=0)
        self._announce(client)
        self._pump()

    @_guarded
    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if client is not self._client:
            return
        err = getattr(client, "last_connect_error", None) or "connection failed"
        with self._lock:
            self._last_error = f"cannot connect to {self.cfg.host}:{self.cfg.port}: {err}"
            message = self._last_error
        self._log_once(logging.WARNING, "MQTT: %s (retrying in the background)", message)

    @_guarded
    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if client is not self._client:
            return
        why = getattr(client, "last_socket_error", None) or str(reason_code)
        if isinstance(client, _PahoClient):
            client.last_socket_error = None
        where = f"{self.cfg.host}:{self.cfg.port}"
        with self._lock:
            was, self._connected = self._connected, False
            if self._down_since is None:
                self._down_since = self._clock.mono()
            stopping = self._stopping
            refused = self._refused is not None
            if was:
                self._last_error = f"lost the connection to {where}: {why}"
            elif not refused:
                # Dropped before the broker accepted us: TLS client certificate refused, a
                # plain-text client on a TLS port, ...
                self._last_error = f"the connection to {where} was closed before the broker accepted it: {why}"
            message = self._last_error
            self._lock.notify_all()
        if stopping:
            return
        if was:
            logger.warning("MQTT: lost the connection to %s (%s); events wait in the outbox", where, why)
        elif not refused and message:
            self._log_once(logging.WARNING, "MQTT: %s (retrying in the background)", message)

    @_guarded
    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Any) -> None:
        with self._lock:
            inflight = self._inflight
            if inflight is None:
                return
            if inflight.mid is None:
                # The PUBACK beat publish() back to _pump; _pump looks here for its mid.
                self._early_acks[mid] = reason_code
                return
            if inflight.mid != mid:
                return
        self._settle(inflight, reason_code)
        self._pump()

    @_guarded
    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self._ignore(repr(msg._topic[:80]), "topic is not UTF-8")
            return
        payload = msg.payload
        if topic != self.topics.ha_status:
            self._ignore(topic, "not a topic linetap subscribes to")
            return
        if len(payload) > MAX_INBOUND_BYTES:
            self._ignore(topic, f"payload of {len(payload)} bytes (limit {MAX_INBOUND_BYTES})")
            return
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._ignore(topic, f"payload is not UTF-8 text ({len(payload)} bytes)")
            return
        if text == OFFLINE:
            logger.debug("MQTT: Home Assistant went offline")
            return
        if text != ONLINE:
            self._ignore(topic, f"unexpected payload {text[:40]!r} (expected 'online' or 'offline')")
            return
        if msg.retain:
            return  # the retained birth replayed by our own subscribe: we have just announced
        now = self._clock.mono()
        with self._lock:
            if now - self._last_birth < BIRTH_MIN_INTERVAL_S:
                return
            self._last_birth = now
        logger.info("MQTT: Home Assistant came online; re-announcing")
        self._announce(client)

    # --- sending --------------------------------------------------------------------

    def _announce(self, client: paho.Client) -> None:
        """status online, discovery, the latest health: on every connect and on HA's birth."""
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        if self.cfg.discovery:
            client.publish(self.topics.discovery, self._discovery, qos=1, retain=True)
        with self._lock:
            health = self._health
        if health is not None:
            self._send_health(client, health)

    def _send_health(self, client: paho.Client, payload: bytes) -> None:
        props = None
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = max(1, round(3 * self.cfg.health_interval_s))
        # QoS 0: a snapshot must never be queued in paho's memory and re-sent stale after a
        # reconnect (it could overwrite a newer retained one); the next snapshot follows anyway.
        client.publish(self.topics.health, payload, qos=0, retain=True, properties=props)

    def _pump(self) -> None:
        """Send the oldest outbox row if connected and nothing is in flight."""
        with self._lock:
            if self._inflight is not None or not self._connected or self._stopping or self._client is None:
                return
            row = self.outbox.peek()
            if row is None:
                return
            inflight = self._inflight = _InFlight(seq=row.seq)
            client = self._client
        try:
            info = client.publish(row.topic, row.payload, qos=1)
        except Exception:
            with self._lock:
                self._inflight = None
                self._early_acks.clear()
            raise
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            self._early_acks.clear()
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # Not queued by paho at all: free the slot; tick() tries again.
                self._inflight = None
                logger.warning("MQTT: publishing event seq=%d failed: %s", row.seq, paho.error_string(info.rc))
                return
            # NO_CONN: paho keeps the QoS 1 message and sends it after the reconnect.
            inflight.mid = info.mid
        if early is not None:
            self._settle(inflight, early)
            self._pump()

    def _settle(self, inflight: _InFlight, reason_code: ReasonCode) -> None:
        """The broker answered for the in-flight event: forget the row, free the slot."""
        if reason_code.is_failure:
            # e.g. "Not authorized" by an ACL: re-sending would fail forever and block every later
            # event, so the event is dropped, loudly.
            logger.error("MQTT: broker rejected event seq=%d on %s: %s; dropped",
                         inflight.seq, self.topics.event, reason_code)
        with self._lock:
            # Delete before freeing the slot, so no other thread can pick the same row again.
            try:
                self.outbox.remove(inflight.seq)
            finally:
                if self._inflight is inflight:
                    self._inflight = None
                self._lock.notify_all()

    # --- alarms and logging -------------------------------------------------------------

    def _alarm_states(self) -> dict[str, tuple[bool, str]]:
        now = self._clock.mono()
        where = f"{self.cfg.host}:{self.cfg.port}"
        with self._lock:
            unreachable, detail = False, ""
            if not self._connected:
                if self._refused:
                    unreachable, detail = True, self._refused
                elif self._down_since is not None and now - self._down_since >= self.cfg.unreachable_after_s:
                    unreachable = True
                    detail = f"no connection to the MQTT broker {where} for {now - self._down_since:.0f} s"
                    if self._last_error:
                        detail += f" ({self._last_error})"
        dropped = self.outbox.dropped
        full = (dropped > 0, f"MQTT outbox full ({self.outbox.max_rows} events): {dropped} oldest "
                             "undelivered event(s) dropped" if dropped else "")
        return {BROKER_UNREACHABLE: (unreachable, detail), MQTT_OUTBOX_FULL: full}

    def _log_once(self, level: int, fmt: str, message: str) -> None:
        """Log a connection problem once; again only after a successful connect."""
        with self._lock:
            if message in self._logged:
                return
            self._logged.add(message)
        logger.log(level, fmt, message)

    def _log_limited(self, key: str, level: int, fmt: str, *args: Any) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        logger.log(level, fmt, *args)

    def _ignore(self, topic: str, why: str) -> None:
        """One log line per ignored inbound message, at most _HOSTILE_LOG_BUDGET a minute."""
        now = self._clock.mono()
        with self._lock:
            start, n = self._hostile_window
            if now - start >= 60.0:
                start, n = now, 0
            n += 1
            self._hostile_window = (start, n)
        if n <= _HOSTILE_LOG_BUDGET:
            logger.warning("MQTT: ignored a message on %s: %s", topic, why)
        elif n == _HOSTILE_LOG_BUDGET + 1:
            logger.warning("MQTT: more ignored messages; not logging them for a minute")


# --- `linetap check` ------------------------------------------------------------


def check_broker(cfg: MqttConfig, timeout_s: float = 5.0) -> str | None:
    """Connect and log in once, then disconnect: None if that works, else a reason for a human.

    Uses its own client id (and no Last Will), so running it next to a live recorder does not
    kick the recorder off the broker.
    """
    try:
        creds = _credentials(cfg)
    except ConfigError as e:
        return "; ".join(e.errors)
    protocols = [MQTTProtocolVersion.MQTTv311] if cfg.protocol == "3.1.1" else [MQTTProtocolVersion.MQTTv5]
    if cfg.protocol == "auto":
        protocols.append(MQTTProtocolVersion.MQTTv311)
    reason: str | None = None
    for protocol in protocols:
        reason = _probe(cfg, creds, protocol, timeout_s)
        if reason != _UNSUPPORTED:
            break
    if reason == _UNSUPPORTED:
        reason = (f"broker {cfg.host}:{cfg.port} refused the connection: {_UNSUPPORTED}"
                  + ('' if cfg.protocol == "auto" else ' (set mqtt.protocol = "3.1.1" or "auto")'))
    return reason


def _probe(cfg: MqttConfig, creds: _Credentials, protocol: MQTTProtocolVersion, timeout_s: float) -> str | None:
    where = f"{cfg.host}:{cfg.port}"
    c = _make_client(cfg, creds, client_id=f"linetap-check-{os.getpid()}", protocol=protocol, will_topic=None)
    c.connect_timeout = timeout_s
    answer: list[ReasonCode] = []
    c.on_connect = lambda client, userdata, flags, rc, props: answer.append(rc)
    try:
        kwargs: dict[str, Any] = {"properties": _connect_properties(protocol)} if protocol == MQTTProtocolVersion.MQTTv5 else {}
        c.connect(cfg.host, cfg.port, keepalive=max(5, cfg.keepalive_s), **kwargs)
        deadline = time.monotonic() + timeout_s
        while not answer and time.monotonic() < deadline:
            if c.loop(timeout=0.1) not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_CONN_REFUSED):
                break
    except OSError as e:
        return f"cannot connect to {where}: {_describe_oserror(e)}"
    finally:
        try:
            c.disconnect()
        except Exception:  # the socket may already be gone
            pass
    if not answer:
        if c.last_socket_error:
            return f"the connection to {where} was closed before the broker accepted it: {c.last_socket_error}"
        return (f"no MQTT answer from {where} within {timeout_s:g} s "
                "(wrong port? TLS settings not matching the listener?)")
    rc = answer[0]
    if rc.is_failure:
        if str(rc) == _UNSUPPORTED:
            return _UNSUPPORTED
        hint = " (check mqtt.username and mqtt.password_file)" if str(rc) in _AUTH_REASONS else ""
        return f"broker {where} refused the connection: {rc}{hint}"
    return None
