"""MQTT: status, health, events and Home Assistant discovery (topics and payloads: TOPICS.md).

``MqttLink`` is the recorder's side of it; ``check_broker`` is ``linetap check``'s probe.
``topics``, ``discovery`` and ``outbox`` are importable without a broker; only ``client``
imports paho.
"""

from __future__ import annotations

from linetap.mqtt.client import BROKER_UNREACHABLE, MQTT_OUTBOX_FULL, MqttLink, check_broker, read_password
from linetap.mqtt.topics import (
    EVENT_TYPES,
    OFFLINE,
    ONLINE,
    Topics,
    alarm_cleared,
    alarm_raised,
    call_ended,
    call_started,
)

__all__ = [
    "BROKER_UNREACHABLE",
    "EVENT_TYPES",
    "MQTT_OUTBOX_FULL",
    "MqttLink",
    "OFFLINE",
    "ONLINE",
    "Topics",
    "alarm_cleared",
    "alarm_raised",
    "call_ended",
    "call_started",
    "check_broker",
    "read_password",
]
