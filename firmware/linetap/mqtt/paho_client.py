"""The paho-mqtt adapter: the one module that imports paho (tests/test_architecture.py checks it).

The link (``link.py``) and ``linetap check``'s probe (``probe.py``) both build their client here,
so they connect the same way (credentials, TLS, MQTT 5 maximum packet size, paho's log at
DEBUG) and name paho's types only through the aliases below.
"""

from __future__ import annotations

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
__all__ = ["Client", "ErrorCode", "Message", "PahoClient", "ProtocolVersion", "ReasonCode", "connect_properties",
           "error_string", "make_client", "publish_properties"]

# The broker's CONNACK reason strings the link and the probe explain to a human.
AUTH_REASONS = ("Bad user name or password", "Not authorized")
UNSUPPORTED = "Unsupported protocol version"

MAX_PACKET_BYTES = 64 * 1024       # MQTT v5: the broker must not send us bigger packets at all

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


def make_client(cfg: MqttConfig, creds: Credentials, *, client_id: str,
                protocol: MQTTProtocolVersion, will_topic: str | None) -> PahoClient:
    """A client set up for ``cfg`` (credentials, TLS, Last Will ``offline`` on ``will_topic``); not connected."""
    c = PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                   reconnect_on_failure=True)
    c.suppress_exceptions = True  # second line of defence behind link._guarded
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
