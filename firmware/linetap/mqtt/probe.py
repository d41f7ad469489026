"""``linetap check``'s broker probe: connect and log in once, then disconnect.

Built on the same adapter as the link (``paho_client.py``), so it meets the broker exactly as the
recorder will: same credentials, TLS, protocol and fall-back from MQTT 5 to 3.1.1.
"""

from __future__ import annotations

import os
import time
from typing import Any

from linetap.config import ConfigError, MqttConfig
from linetap.mqtt.credentials import Credentials, credentials, describe_oserror
from linetap.mqtt.paho_client import (
    ErrorCode,
    ProtocolVersion,
    ReasonCode,
    connect_properties,
    make_client,
)
from linetap.mqtt.state import UNSUPPORTED, refusal


def check_broker(cfg: MqttConfig, timeout_s: float = 5.0) -> str | None:
    """Connect and log in once, then disconnect: None if that works, else a reason for a human.

    Uses its own client id (and no Last Will), so running it next to a live recorder does not
    kick the recorder off the broker.
    """
    try:
        creds = credentials(cfg)
    except ConfigError as e:
        return "; ".join(e.errors)
    protocols = [ProtocolVersion.MQTTv311] if cfg.protocol == "3.1.1" else [ProtocolVersion.MQTTv5]
    if cfg.protocol == "auto":
        protocols.append(ProtocolVersion.MQTTv311)
    reason: str | None = None
    for protocol in protocols:
        reason = _probe(cfg, creds, protocol, timeout_s)
        if reason != UNSUPPORTED:
            break
    if reason == UNSUPPORTED:
        reason = (f"broker {cfg.host}:{cfg.port} refused the connection: {UNSUPPORTED}"
                  + ('' if cfg.protocol == "auto" else ' (set mqtt.protocol = "3.1.1" or "auto")'))
    return reason


def _probe(cfg: MqttConfig, creds: Credentials, protocol: ProtocolVersion, timeout_s: float) -> str | None:
    where = f"{cfg.host}:{cfg.port}"
    c = make_client(cfg, creds, client_id=f"linetap-check-{os.getpid()}", protocol=protocol, will_topic=None)
    c.connect_timeout = timeout_s
    answer: list[ReasonCode] = []
    c.on_connect = lambda client, userdata, flags, rc, props: answer.append(rc)
    try:
        kwargs: dict[str, Any] = {"properties": connect_properties(protocol)} if protocol == ProtocolVersion.MQTTv5 else {}
        c.connect(cfg.host, cfg.port, keepalive=max(5, cfg.keepalive_s), **kwargs)
        deadline = time.monotonic() + timeout_s
        while not answer and time.monotonic() < deadline:
            if c.loop(timeout=0.1) not in (ErrorCode.MQTT_ERR_SUCCESS, ErrorCode.MQTT_ERR_CONN_REFUSED):
                break
    except OSError as e:
        return f"cannot connect to {where}: {describe_oserror(e)}"
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
        if str(rc) == UNSUPPORTED:
            return UNSUPPORTED
        return refusal(where, str(rc), username=cfg.username)
    return None
