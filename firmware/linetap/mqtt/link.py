"""The MQTT link: the recorder's connection to the broker (paho behind ``paho_client.py``).

Threads: paho's network thread (``loop_start``) runs every callback; the recorder calls
``publish_event``/``publish_health`` from its own threads and ``tick`` about twice a second.
Every callback is wrapped by ``_guarded``: an exception escaping a paho callback would end the
network thread and with it all reconnects (paho-mqtt 2.x does not catch them), so none may. The link raises no alarm itself:
``state()`` reports a ``LinkState`` and the health side decides (``health/broker.py``).

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
- So what is promised (TOPICS.md, "Delivery of events") is: every event, in order, at least
  once. If the connection (or the process) dies after the broker has taken the in-flight event
  but before its PUBACK is processed, that one event is delivered again (and a broker may
  re-deliver to a persistent subscriber). Every event carries ``seq`` (persisted, strictly
  increasing per recorder), so a consumer drops repeats: keep the highest ``seq`` seen per ``id``.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from linetap.clock import Clock
from linetap.config import ConfigError, MqttConfig, board_model, board_serial
from linetap.fsutil import write_atomic
from linetap.mqtt.credentials import credentials, files_stamp
from linetap.mqtt.discovery import Device, discovery_document, plan_announcement
from linetap.mqtt.outbox import OUTBOX_FILE, Outbox
from linetap.mqtt.paho_client import (
    PROTOCOL_NAMES,
    PROTOCOLS,
    Client,
    ErrorCode,
    Message,
    MessageInfo,
    PahoClient,
    ProtocolVersion,
    ReasonCode,
    acknowledged,
    connect_properties,
    error_string,
    make_client,
    publish_properties,
)
from linetap.mqtt.state import UNSUPPORTED, LinkState, refusal
from linetap.mqtt.topics import OFFLINE, ONLINE, Topics, client_id_for, dumps, event_payload

logger = logging.getLogger(__name__)

DISCOVERY_STATE = "discovery.json"  # in data_dir: the last announced discovery topic and components
MAX_INBOUND_BYTES = 1024           # anything bigger on a subscribed topic is ignored
BIRTH_MIN_INTERVAL_S = 1.0         # a flood of birth messages re-announces at most once a second
_HOSTILE_LOG_BUDGET = 10           # ignored-message log lines per minute, then one summary

_F = TypeVar("_F", bound=Callable[..., Any])


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


# --- the link -------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    seq: int
    mid: int | None = None  # None between claiming the slot and paho returning the message id


class MqttLink:
    """The recorder's connection to an MQTT broker; see TOPICS.md for what it publishes.

    Never raises on an unreachable or refusing broker: it keeps trying in the background with
    exponential back-off (``reconnect_min_s`` doubling up to ``reconnect_max_s``) and reports
    its condition through ``state()``. The constructor raises ConfigError for unusable security settings
    (unreadable password file, missing TLS files, password without TLS) and sqlite3.Error if
    ``<data_dir>/outbox.db`` cannot be opened.
    """

    def __init__(self, cfg: MqttConfig, *, recorder_id: str, data_dir: Path, version: str,
                 lines: list[str] | tuple[str, ...], clock: Clock,
                 reconnect_min_s: float = 1.0, reconnect_max_s: float = 60.0,
                 key_fingerprint: str | None = None, device: Device | None = None,
                 archive: bool = False) -> None:
        self.cfg = cfg
        self.recorder_id = recorder_id
        self.topics = Topics.build(prefix=cfg.topic_prefix, recorder_id=recorder_id,
                                   discovery_prefix=cfg.discovery_prefix)
        self.client_id = client_id_for(recorder_id)
        self._creds = credentials(cfg)  # read here, and again only after a refusal (renew_credentials)
        self._creds_stamp = files_stamp(cfg)
        self._clock = clock
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        doc = discovery_document(recorder_id=recorder_id, version=version, lines=list(lines), topics=self.topics,
                                 health_interval_s=cfg.health_interval_s, archive=archive,
                                 key_fingerprint=key_fingerprint,
                                 device=device or Device(serial_number=board_serial(), hw_version=board_model()))
        # What was announced last (discovery.py, "Removal"): the removals to send with this
        # announcement, and the set to remember once it has been sent.
        self._discovery_state_path = data_dir / DISCOVERY_STATE
        plan = plan_announcement(doc if cfg.discovery else None, self.topics.discovery,
                                 _read_json(self._discovery_state_path))
        self._discovery_msgs = [(topic, b"" if d is None else dumps(d)) for topic, d in plan.messages]
        self._discovery_state = plan.state
        self._discovery_saved = False
        self.outbox = Outbox(data_dir / OUTBOX_FILE, max_rows=cfg.outbox_max)

        self._lock = threading.Condition()
        self._client: PahoClient | None = None
        self._protocol = PROTOCOLS.get(cfg.protocol, ProtocolVersion.MQTTv5)
        self._started = False
        self._stopping = False
        self._stop_called = False
        self._connected = False
        self._down_since: float | None = None
        self._refused: str | None = None     # the broker's reason for refusing our CONNECT
        self._last_error: str | None = None
        self._fall_back = False
        self._health: bytes | None = None
        self._checkpoint: bytes | None = None
        self._inflight: _InFlight | None = None
        self._early_acks: dict[int, ReasonCode] = {}
        self._last_birth = float("-inf")
        self._announced: list[MessageInfo] = []  # the last announcement's status and discovery
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

    def state(self) -> LinkState:
        """What the link is up to, for the health side to judge (``health/broker.py``)."""
        with self._lock:
            connected, down_since, refused, last_error = (self._connected, self._down_since, self._refused,
                                                          self._last_error)
        return LinkState(broker=f"{self.cfg.host}:{self.cfg.port}", connected=connected,
                         down_since_mono=None if connected else down_since,
                         refused=None if connected else refused, last_error=None if connected else last_error,
                         queued=len(self.outbox), dropped=self.outbox.dropped, outbox_max=self.outbox.max_rows)

    def start(self) -> None:
        """Connect in the background; returns at once whether or not the broker is there."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._down_since = self._clock.mono()
        self._start_client()

    def renew_credentials(self) -> bool:
        """After the broker refused the login: if the password file (or a TLS file) changed since it
        was read, read it again and log in with it on a new client; True if it did.

        ``tick`` calls this (twice a second), so an installer's corrected password is used within
        about a second, with no restart; a refusal does not fix itself otherwise (paho retries the
        same credentials). While not refused it returns at once; while refused it costs a ``stat``
        of the password and TLS files (``files_stamp``) and reads them only when one has changed.
        Files that cannot be read now leave the old credentials (and the broker's refusal in the
        alarm); the password itself is never logged."""
        with self._lock:
            if not self._started or self._stopping or self._connected or self._refused is None:
                return False
        stamp = files_stamp(self.cfg)
        if stamp == self._creds_stamp:
            return False
        self._creds_stamp = stamp
        try:
            creds = credentials(self.cfg)
        except ConfigError as e:
            logger.warning("MQTT: the changed credentials cannot be used: %s", "; ".join(e.errors))
            return False
        if creds == self._creds:
            return False
        logger.info("MQTT: the credentials changed after the broker refused them: logging in again")
        self._creds = creds
        self._restart_client(self._protocol)
        return True

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

    def publish_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Publish the newest signed checkpoint (retained, QoS 1, no expiry) if connected; always
        remember it: it is sent again on every connect, so a fresh broker has it at once.

        Not through the outbox: only the newest matters, and a retained message replaces the older.
        """
        payload = dumps(checkpoint)
        with self._lock:
            self._checkpoint = payload
            client = self._client if self._connected else None
        if client is not None:
            client.publish(self.topics.checkpoint, payload, qos=1, retain=True)

    def tick(self) -> None:
        """Housekeeping, called by the recorder about twice a second: protocol fall-back, a login
        the broker refused retried with corrected credentials (``renew_credentials``), a stuck send."""
        with self._lock:
            if not self._started or self._stopping:
                return
            fall_back, self._fall_back = self._fall_back, False
        if fall_back:
            self._restart_client(ProtocolVersion.MQTTv311)
        else:
            self.renew_credentials()
        self._pump()

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
        c = make_client(self.cfg, self._creds, client_id=self.client_id, protocol=protocol,
                         will_topic=self.topics.status)
        # paho types these as int but sleeps on them, so fractions work (tests use 0.1 s).
        c.reconnect_delay_set(min_delay=self._reconnect[0], max_delay=self._reconnect[1])  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        kwargs: dict[str, Any] = {}
        if protocol == ProtocolVersion.MQTTv5:
            kwargs = {"clean_start": True, "properties": connect_properties(protocol)}
        with self._lock:
            self._client = c
            self._announced = []  # a new client holds none of the old one's messages
        logger.info("MQTT: connecting to %s:%d as %s (MQTT %s%s%s)", self.cfg.host, self.cfg.port,
                    self.client_id, PROTOCOL_NAMES.get(protocol, "?"),
                    ", TLS" if self.cfg.tls_ca else "", f", user {self._creds.username}" if self._creds.username else "")
        c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        c.loop_start()

    def _restart_client(self, protocol: ProtocolVersion) -> None:
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
    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                    properties: Any) -> None:
        if client is not self._client:
            return
        where = f"{self.cfg.host}:{self.cfg.port}"
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason == UNSUPPORTED and self.cfg.protocol == "auto" and self._protocol == ProtocolVersion.MQTTv5:
                logger.info("MQTT: broker %s does not speak MQTT 5; falling back to 3.1.1", where)
                with self._lock:
                    self._fall_back = True
                return
            with self._lock:
                self._refused = refusal(where, reason, username=self.cfg.username)
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
        logger.info("MQTT: connected to %s (MQTT %s)", where, PROTOCOL_NAMES.get(self._protocol, "?"))
        if self.cfg.discovery:
            client.subscribe(self.topics.ha_status, qos=0)
        self._announce(client)
        self._pump()

    @_guarded
    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        if client is not self._client:
            return
        err = getattr(client, "last_connect_error", None) or "connection failed"
        with self._lock:
            self._last_error = f"cannot connect to {self.cfg.host}:{self.cfg.port}: {err}"
            message = self._last_error
        self._log_once(logging.WARNING, "MQTT: %s (retrying in the background)", message)

    @_guarded
    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if client is not self._client:
            return
        why = getattr(client, "last_socket_error", None) or str(reason_code)
        if isinstance(client, PahoClient):
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
    def _on_publish(self, client: Client, userdata: Any, mid: int, reason_code: ReasonCode,
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
    def _on_message(self, client: Client, userdata: Any, msg: Message) -> None:
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
        # A fleet of boxes answering one birth at the same instant would flood HA: a random delay.
        delay_s = random.uniform(0.0, self.cfg.discovery_delay_max_s)
        logger.info("MQTT: Home Assistant came online; re-announcing in %.1f s", delay_s)
        timer = threading.Timer(delay_s, self._announce_again, args=(client,))
        timer.daemon = True
        timer.start()

    @_guarded
    def _announce_again(self, client: Client) -> None:
        """The delayed re-announcement after HA's birth, if that client is still ours and connected."""
        with self._lock:
            current = client is self._client and self._connected and not self._stopping
        if current:
            self._announce(client)

    # --- sending --------------------------------------------------------------------

    def _announce(self, client: Client) -> None:
        """status online, discovery, the latest health: on every connect and on HA's birth.

        Not status and discovery again while the last ones are unacknowledged: paho still holds
        them and re-sends them after a reconnect, and a broker that never acknowledges (or a
        flood of birth messages) must not pile copies up in paho's memory.
        """
        with self._lock:
            last, health, checkpoint = self._announced, self._health, self._checkpoint
        if not all(acknowledged(info) for info in last):  # outside our lock: paho's own lock inside
            logger.debug("MQTT: not re-announcing; the last announcement is not acknowledged yet")
        else:
            announced = [client.publish(self.topics.status, ONLINE, qos=1, retain=True)]
            for topic, payload in self._discovery_msgs:
                announced.append(client.publish(topic, payload, qos=1, retain=True))
            with self._lock:
                self._announced = announced
            self._save_discovery_state()
        if health is not None:
            self._send_health(client, health)
        if checkpoint is not None:
            client.publish(self.topics.checkpoint, checkpoint, qos=1, retain=True)

    def _save_discovery_state(self) -> None:
        """Remember what was announced (once per run), so the next start can remove what it drops."""
        if self._discovery_saved:
            return
        self._discovery_saved = True
        try:
            if self._discovery_state is None:
                self._discovery_state_path.unlink(missing_ok=True)
            else:
                write_atomic(self._discovery_state_path, json.dumps(self._discovery_state, sort_keys=True))
        except OSError as e:
            logger.warning("MQTT: cannot keep the announced discovery components in %s: %s",
                           self._discovery_state_path, e)

    def _send_health(self, client: Client, payload: bytes) -> None:
        props = publish_properties(self._protocol, expiry_s=max(1, round(3 * self.cfg.health_interval_s)))
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
            if info.rc not in (ErrorCode.MQTT_ERR_SUCCESS, ErrorCode.MQTT_ERR_NO_CONN):
                # Not queued by paho at all: free the slot; tick() tries again.
                self._inflight = None
                logger.warning("MQTT: publishing event seq=%d failed: %s", row.seq, error_string(info.rc))
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

    # --- logging -------------------------------------------------------------

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


def _read_json(path: Path) -> Any:
    """A small JSON state file, or None when absent or unreadable (then nothing is removed)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
