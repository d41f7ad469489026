"""What goes where on the broker: topic names and payload encoding (pure, no paho).

The contract (docs/CONTRACT.md, "MQTT") fixes the topics; this module is the one place that
spells them, so the link, the discovery document, ``linetap fleet`` and the tests agree.
The events themselves (their types and fields) belong to the recorder: ``linetap/events.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from linetap.clock import iso

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic one recorder publishes to or listens on."""

    status: str      # retained online/offline, also the Last Will
    health: str      # retained JSON snapshot
    event: str       # non-retained JSON events, QoS 1
    discovery: str   # retained Home Assistant device discovery document
    ha_status: str   # Home Assistant's birth/will topic (the only subscription)
    checkpoint: str  # retained signed checkpoint of the evidence chain (evidence/checkpoint.py)

    @classmethod
    def build(cls, *, prefix: str, recorder_id: str, discovery_prefix: str = "homeassistant") -> Topics:
        base = f"{prefix}/{recorder_id}"
        return cls(status=f"{base}/status", health=f"{base}/health", event=f"{base}/event",
                   discovery=f"{discovery_prefix}/device/{recorder_id}/config",
                   ha_status=f"{discovery_prefix}/status", checkpoint=f"{base}/checkpoint")


def client_id_for(recorder_id: str) -> str:
    """The MQTT client id of a recorder: stable, so a box reconnecting replaces its old session."""
    return f"linetap-{recorder_id}"


# --- payloads -------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (``-inf`` dBFS of digital silence, NaN) replaced by None.

    ``json.dumps`` would write ``-Infinity``, which is not JSON and breaks Home Assistant and jq.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(doc: Any) -> bytes:
    """Compact, strict JSON (UTF-8) as published on every JSON topic."""
    return json.dumps(json_safe(doc), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def event_payload(event: dict[str, Any], *, seq: int, recorder_id: str, now: float) -> bytes:
    """The bytes of one event: ``type``, ``ts``, ``seq``, ``id`` first, then the event's own fields.

    ``seq`` is the outbox's persisted, strictly increasing number: a consumer that sees a ``seq``
    it has already seen from this ``id`` has a duplicate (QoS 1 is at-least-once), a jump means
    events were dropped by the outbox's overflow policy.
    """
    etype = event.get("type")
    if not isinstance(etype, str) or not etype:
        raise ValueError(f"event needs a non-empty string 'type', got {etype!r}")
    doc: dict[str, Any] = {"type": etype, "ts": event.get("ts") or iso(now), "seq": seq, "id": recorder_id}
    for k, v in event.items():
        if k not in doc:
            doc[k] = v
    return dumps(doc)
