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


# The broker's CONNACK answers the link and ``linetap check``'s probe explain to a human, by paho's
# names (MQTT 5 reason codes 134 and 135; paho maps MQTT 3.1.1's return codes 4 and 5 onto the same
# names). Mosquitto answers "Not authorized" both to a wrong password and to a client without a
# user name where anonymous clients are refused (the Home Assistant add-on's default).
AUTH_REASONS = ("Bad user name or password", "Not authorized")
UNSUPPORTED = "Unsupported protocol version"


def refusal(where: str, reason: str, *, username: str | None) -> str:
    """The alarm's and the log's words for a broker that refused our CONNECT with ``reason``.

    A credentials refusal says so in plain words and names the settings to change, since the
    broker's own word ("Not authorized") does not say what was wrong; the password is never in
    it (only whether a user name was sent, and which). Other refusals keep the broker's words."""
    head = f"broker {where} refused the connection"
    if reason in AUTH_REASONS:
        if username:
            return (f"{head}: it did not accept the user name {username!r} with the password from "
                    f"mqtt.password_file (broker's answer: {reason}); check mqtt.username and mqtt.password_file")
        return (f"{head}: it requires a user name and password and none is configured (broker's answer: "
                f"{reason}); set mqtt.username and mqtt.password_file")
    if reason == UNSUPPORTED:
        return f'{head}: {reason} (set mqtt.protocol = "3.1.1" or "auto")'
    return f"{head}: {reason}"
