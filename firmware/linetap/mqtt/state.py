"""What the MQTT link tells the rest of the recorder about itself (pure: a value, no paho).

The link only reports; whether that is an alarm is the health side's decision
(``linetap/health/broker.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkState:
    """A snapshot of the link, taken by ``MqttLink.state()``."""

    broker: str                   # "host:port", for messages
    connected: bool
    down_since_mono: float | None  # monotonic time the link went (or started) down; None while connected
    refused: str | None           # the broker refused our CONNECT (bad credentials, not authorised, protocol)
    last_error: str | None        # why the last connection attempt or connection failed
    queued: int                   # events in the outbox, waiting for the broker's PUBACK
    dropped: int                  # events the outbox dropped for overflow since it was last empty
    outbox_max: int               # the outbox's capacity (mqtt.outbox_max)
