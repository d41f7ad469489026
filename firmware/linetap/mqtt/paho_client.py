"""The paho-mqtt adapter: the one module that imports paho (tests/test_architecture.py checks it).

The link (``link.py``) and ``linetap check``'s probe (``probe.py``) both build their client here,
so they connect the same way (credentials, TLS, MQTT 5 maximum packet size, paho's log at
DEBUG) and name paho's types only through the aliases below.
"""

from __future__ import annotations

import errno
import logging
import ssl
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from linetap.config import MqttConfig
from linetap.mqtt.credentials import Credentials, describe_oserror
from linetap.mqtt.topics import OFFLINE

_paho_logger = logging.getLogger(__name__ + ".paho")

# paho's names, for the modules built on this adapter.
Client = paho.Client
Message = paho.MQTTMessage
ErrorCode = MQTTErrorCode
ProtocolVersion = MQTTProtocolVersion
error_string = paho.error_string
MessageInfo = paho.MQTTMessageInfo
__all__ = ["Client", "ErrorCode", "Message", "MessageInfo", "PahoClient", "ProtocolVersion", "ReasonCode",
           "acknowledged", "connect_properties", "error_string", "make_client", "make_watcher", "message_expiry_s",
           "publish_properties"]

MAX_PACKET_BYTES = 64 * 1024       # MQTT v5: the broker must not send us bigger packets at all
# Nothing the recorder receives comes near it (acknowledgements, and birth messages of a few
# bytes on homeassistant/status), so the same cap is enforced locally, also under MQTT 3.1.1,
# which has no way to tell the broker.
MAX_INBOUND_PACKET_BYTES = MAX_PACKET_BYTES
# paho's own outgoing queue of QoS 1 messages, which lives in memory: the link keeps one event in
# flight, plus status and discovery of one announcement, plus the 'offline' at stop. A broker
# that never acknowledges must not make it grow with every reconnect; beyond this, publish()
# answers "queue full" (the events wait in the durable outbox anyway).
MAX_QUEUED_MESSAGES = 16

PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311,
             "auto": MQTTProtocolVersion.MQTTv5}
PROTOCOL_NAMES = {MQTTProtocolVersion.MQTTv5: "5", MQTTProtocolVersion.MQTTv311: "3.1.1",
                  MQTTProtocolVersion.MQTTv31: "3.1"}


class PahoClient(paho.Client):
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
            self.last_connect_error = describe_oserror(e)
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        """Refuse an oversized incoming packet before its body is buffered.

        paho reads a packet's remaining length first and then accumulates the whole body in
        memory before looking at it: a broker (or anything posing as one) announcing 256 MiB
        would get 256 MiB of our RAM. This hook sits where paho asks the socket for the body (a
        private method of paho 2.x, ``Client._packet_read``; checked by
        tests/test_mqtt_hostile.py): once the announced length is known and over
        ``MAX_INBOUND_PACKET_BYTES``, reading fails like a broken socket, so paho drops the
        connection, logs the reason ("failed to receive on socket: ...") and reconnects.
        """
        packet = self._in_packet
        if packet["have_remaining"] and packet["remaining_length"] > MAX_INBOUND_PACKET_BYTES:
            raise OSError(errno.EMSGSIZE, f"the broker announced a packet of {packet['remaining_length']} bytes "
                                          f"(limit {MAX_INBOUND_PACKET_BYTES})")
        return super()._sock_recv(bufsize)  # type: ignore[no-any-return]


def make_client(cfg: MqttConfig, creds: Credentials, *, client_id: str,
                protocol: MQTTProtocolVersion, will_topic: str | None) -> PahoClient:
    """A client set up for ``cfg`` (credentials, TLS, Last Will ``offline`` on ``will_topic``); not connected."""
    c = PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                   reconnect_on_failure=True)
    c.suppress_exceptions = True  # second line of defence behind link._guarded
    c.max_queued_messages_set(MAX_QUEUED_MESSAGES)
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
    if buf.startswith(("failed to receive on socket", "timeout on socket")) and isinstance(client, PahoClient):
        client.last_socket_error = buf


def connect_properties(protocol: MQTTProtocolVersion) -> Properties | None:
    """MQTT 5 CONNECT properties: the maximum packet size we accept (None under 3.1.1)."""
    if protocol != MQTTProtocolVersion.MQTTv5:
        return None
    p = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    p.MaximumPacketSize = MAX_PACKET_BYTES
    return p


def publish_properties(protocol: MQTTProtocolVersion, *, expiry_s: int) -> Properties | None:
    """MQTT 5 PUBLISH properties with a message expiry of ``expiry_s`` (None under 3.1.1, which has none)."""
    if protocol != MQTTProtocolVersion.MQTTv5:
        return None
    p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    p.MessageExpiryInterval = expiry_s
    return p


def acknowledged(info: paho.MQTTMessageInfo) -> bool:
    """Is a QoS 1 message no longer waiting for its PUBACK? True once acknowledged, and for one
    paho never queued or sent while disconnected (its info cannot tell: paho raises on it)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True


def make_watcher(*, client_id: str, username: str | None = None, password: str | None = None,
                 tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 tls_insecure: bool = False) -> PahoClient:
    """A subscriber (``linetap fleet``): MQTT 5, so retained health arrives with its remaining
    message expiry; no Last Will; not connected. Only the watcher's own queue limits apply:
    it publishes nothing."""
    c = PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                   reconnect_on_failure=True)
    c.suppress_exceptions = True
    c.on_log = _paho_log
    if username:
        c.username_pw_set(username, password)
    if tls_ca is not None:
        c.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key, cert_reqs=ssl.CERT_REQUIRED)
        if tls_insecure:
            c.tls_insecure_set(True)
    return c


def message_expiry_s(msg: paho.MQTTMessage) -> int | None:
    """The MQTT 5 message expiry the broker passed on with ``msg`` (what is left of it), or None."""
    props = msg.properties
    value = getattr(props, "MessageExpiryInterval", None) if props is not None else None
    return int(value) if isinstance(value, int) else None
