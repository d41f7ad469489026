"""Home Assistant device-based MQTT discovery (pure: values in, JSON-able dicts out).

One retained document at ``<discovery_prefix>/device/<id>/config`` declares the whole box.
Every entity reads the retained health snapshot (the shared ``state_topic``) except the two
event entities, which read the event topic. Availability is bound to the ``status`` topic, so a
box whose Last Will fired shows "unavailable" in Home Assistant; sensors also expire after three
health intervals, like the snapshot itself.

Entities (TOPICS.md, "Home Assistant", lists them for users):

- box: *Problem* (any alarm), *Call* and *Alarm* events, *Last call* (timestamp, with caller and
  duration as attributes), *Recordings* (total), *Disk free* (MiB), *Recording hours left*,
  *Clock synced*, *Started* (uptime as a timestamp), *Archive backlog* (with an archive);
- per line: *<line> problem*, *<line> recording*, *<line> level* (dBFS), *<line> state*.

Figures about the box rather than its calls (levels, disk, hours left, clock, start time,
backlog, line state) are ``entity_category: diagnostic``, so HA lists them apart.

Removal (:func:`plan_announcement`): HA forgets a component only when the device document names
it with nothing but its platform (``{"p": "sensor"}``), and forgets the device on an empty
retained document. The link keeps the last announced topic and component set in
``<data_dir>/discovery.json`` to know what a renamed or removed line, a changed id, or discovery
turned off must remove.

Format: https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload
(``dev``/``o``/``cmps``; shared options ``state_topic``, ``availability``, ``qos``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from linetap.events import ALARM_CLEARED, ALARM_RAISED, CALL_ENDED, CALL_STARTED
from linetap.mqtt.topics import OFFLINE, ONLINE, Topics

LINE_STATES = ("idle", "recording", "fault", "disabled")
ORIGIN_URL = "https://github.com/linetap/linetap"
DIAGNOSTIC = "diagnostic"


def _event_template(types: tuple[str, ...], fields: tuple[str, ...]) -> str:
    """Renders the event's fields for ``types`` and nothing for the others (which the other event
    entity on the same topic takes; HA skips an empty rendering with a debug line)."""
    listed = ", ".join(f"'{t}'" for t in types)
    attrs = ", ".join(f"'{f}': value_json.{f}" for f in fields)
    return ("{% if value_json.type in [" + listed + "] %}"
            "{{ {'event_type': value_json.type, " + attrs + "} | to_json }}{% endif %}")


_ALARM_EVENT_TEMPLATE = _event_template((ALARM_RAISED, ALARM_CLEARED), ("code", "severity", "line", "detail"))
# caller_number is null where privacy hides it (calls.caller_id / PCI masking decide, not HA).
_CALL_EVENT_TEMPLATE = _event_template((CALL_STARTED, CALL_ENDED),
                                       ("call_id", "line", "started_at", "caller_number", "caller_name",
                                        "duration_s", "end_reason"))
# The recorder's start, from the snapshot's ts and uptime, rounded to the minute so that the
# rounding of uptime_s (0.1 s) does not make a new state at every snapshot.
_STARTED_TEMPLATE = ("{{ (((as_timestamp(value_json.ts) - value_json.uptime_s) / 60) | round(0) * 60)"
                     " | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) }}")


@dataclass(frozen=True, slots=True)
class Device:
    """What HA shows about the hardware: the board's serial number and model, when known."""

    serial_number: str | None = None
    hw_version: str | None = None


def discovery_document(*, recorder_id: str, version: str, lines: list[str] | tuple[str, ...],
                       topics: Topics, health_interval_s: float, device: Device = Device(),
                       archive: bool = False, key_fingerprint: str | None = None) -> dict[str, Any]:
    """The discovery payload for one recorder.

    ``key_fingerprint``: the device signing key's fingerprint (:mod:`linetap.sign`), shown as the
    device's serial number, so the owner can read it in Home Assistant to check an export.

    Line names and the recorder id are ``[a-z0-9_-]`` (validated by the config), so they are
    safe inside component ids and Jinja string literals.
    """
    uid = f"linetap_{recorder_id}"
    # A sensor whose snapshot stopped arriving turns "unavailable" after about three intervals,
    # matching the MQTT v5 message expiry of the retained snapshot.
    expire_after = int(math.ceil(3 * health_interval_s))
    cmps: dict[str, dict[str, Any]] = {}

    def add(key: str, platform: str, name: str, **opts: Any) -> None:
        if platform in ("sensor", "binary_sensor") and "state_topic" not in opts:
            opts.setdefault("expire_after", expire_after)
        cmps[f"{recorder_id}_{key}"] = {"p": platform, "name": name, "unique_id": f"{uid}_{key}", **opts}

    add("problem", "binary_sensor", "Problem", device_class="problem",
        value_template="{{ 'ON' if value_json.alarms else 'OFF' }}",
        json_attributes_topic=topics.health,
        json_attributes_template="{{ {'alarms': value_json.alarms} | to_json }}")
    add("call", "event", "Call", state_topic=topics.event, event_types=[CALL_STARTED, CALL_ENDED],
        value_template=_CALL_EVENT_TEMPLATE)
    add("alarm", "event", "Alarm", state_topic=topics.event, event_types=[ALARM_RAISED, ALARM_CLEARED],
        value_template=_ALARM_EVENT_TEMPLATE)
    add("last_call", "sensor", "Last call", device_class="timestamp",
        value_template="{{ value_json.last_call.ended_at if value_json.last_call else None }}",
        json_attributes_topic=topics.health,
        json_attributes_template="{{ (value_json.last_call or {}) | to_json }}")
    # Counts from local midnight and falls back to 0 there: total_increasing treats a drop as a new cycle.
    add("calls_today", "sensor", "Calls today", state_class="total_increasing", unit_of_measurement="calls",
        value_template="{{ value_json.calls_today }}")
    add("recordings", "sensor", "Recordings", state_class="measurement", unit_of_measurement="recordings",
        value_template="{{ value_json.disk.recordings }}")
    for line in lines:
        ref = f"value_json.lines['{line}']"
        add(f"{line}_problem", "binary_sensor", f"{line} problem", device_class="problem",
            value_template=f"{{{{ 'ON' if {ref}.state == 'fault' or {ref}.alarms else 'OFF' }}}}")
        add(f"{line}_recording", "binary_sensor", f"{line} recording", device_class="running",
            value_template=f"{{{{ 'ON' if {ref}.state == 'recording' else 'OFF' }}}}")
        add(f"{line}_level", "sensor", f"{line} level", unit_of_measurement="dBFS",
            state_class="measurement", suggested_display_precision=1, entity_category=DIAGNOSTIC,
            value_template=f"{{{{ {ref}.level_dbfs }}}}")
        add(f"{line}_state", "sensor", f"{line} state", device_class="enum", options=list(LINE_STATES),
            entity_category=DIAGNOSTIC, value_template=f"{{{{ {ref}.state }}}}")
    # free_mb is bytes / 1024**2 (health/snapshot.py): MiB, not MB.
    add("disk_free", "sensor", "Disk free", device_class="data_size", unit_of_measurement="MiB",
        state_class="measurement", suggested_display_precision=0, entity_category=DIAGNOSTIC,
        value_template="{{ value_json.disk.free_mb }}")
    add("hours_left", "sensor", "Recording hours left", device_class="duration", unit_of_measurement="h",
        state_class="measurement", suggested_display_precision=0, entity_category=DIAGNOSTIC,
        value_template="{{ value_json.disk.hours_left }}")
    add("clock_synced", "binary_sensor", "Clock synced", entity_category=DIAGNOSTIC,
        value_template="{{ 'ON' if value_json.clock_synced else 'OFF' }}")
    add("started", "sensor", "Started", device_class="timestamp", entity_category=DIAGNOSTIC,
        value_template=_STARTED_TEMPLATE)
    if archive:
        add("archive_backlog", "sensor", "Archive backlog", state_class="measurement",
            unit_of_measurement="recordings", entity_category=DIAGNOSTIC,
            value_template="{{ value_json.archive.backlog }}",
            json_attributes_topic=topics.health,
            json_attributes_template="{{ value_json.archive | to_json }}")

    dev: dict[str, Any] = {"ids": [uid], "name": f"linetap {recorder_id}", "mf": "linetap",
                           "mdl": "call recorder", "sw": version}
    # The board's serial (stable across reflashes); without one, the signing key's fingerprint.
    if device.serial_number or key_fingerprint:
        dev["sn"] = device.serial_number or key_fingerprint
    if device.hw_version:
        dev["hw"] = device.hw_version
    return {
        "dev": dev,
        "o": {"name": "linetap", "sw": version, "url": ORIGIN_URL},
        "cmps": cmps,
        "state_topic": topics.health,
        "availability": [{"topic": topics.status, "payload_available": ONLINE,
                          "payload_not_available": OFFLINE}],
        "qos": 1,
    }


@dataclass(frozen=True, slots=True)
class Announcement:
    """What to publish (retained, in order) and the state to keep for the next start."""

    messages: tuple[tuple[str, dict[str, Any] | None], ...]  # (topic, document); None: empty payload
    state: dict[str, Any] | None  # ``{"topic", "cmps": {key: platform}}``; None: nothing announced


def plan_announcement(document: dict[str, Any] | None, topic: str,
                      previous: dict[str, Any] | None) -> Announcement:
    """From the document to announce now (None with discovery off) and what was announced last.

    - discovery off, something announced before: an empty document on the old topic (HA removes
      the device);
    - a different topic than last time (the id or the prefix changed): an empty document on the
      old one, then the new document;
    - the same topic: the new document, naming each component it no longer has as
      ``{"p": platform}`` (a renamed or removed line).
    """
    prev_topic = previous.get("topic") if isinstance(previous, dict) else None
    prev_cmps = previous.get("cmps") if isinstance(previous, dict) else None
    prev_cmps = prev_cmps if isinstance(prev_cmps, dict) else {}
    messages: list[tuple[str, dict[str, Any] | None]] = []
    if isinstance(prev_topic, str) and prev_topic and (document is None or prev_topic != topic):
        messages.append((prev_topic, None))
    if document is None:
        return Announcement(tuple(messages), None)
    cmps = dict(document["cmps"])
    if prev_topic == topic:
        for key, platform in sorted(prev_cmps.items()):
            if key not in cmps and isinstance(platform, str):
                cmps[key] = {"p": platform}
    messages.append((topic, {**document, "cmps": cmps}))
    state = {"topic": topic, "cmps": {k: c["p"] for k, c in document["cmps"].items()}}
    return Announcement(tuple(messages), state)
