"""Home Assistant device-based MQTT discovery (pure: values in, one JSON-able dict out).

One retained document at ``<discovery_prefix>/device/<id>/config`` declares the whole box:
per line a ``problem`` binary sensor, a level sensor and a state sensor; disk free and hours
left; a box-wide problem sensor; an ``event`` entity for alarms. Every entity reads the
retained health snapshot (the shared ``state_topic``), except the event entity, which reads
the event topic. Availability is bound to the ``status`` topic, so a box whose Last Will fired
shows "unavailable" in Home Assistant.

Format: https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload
(``dev``/``o``/``cmps``; shared options ``state_topic``, ``availability``, ``qos``).
"""

from __future__ import annotations

import math
from typing import Any

from linetap.events import ALARM_CLEARED, ALARM_RAISED
from linetap.mqtt.topics import OFFLINE, ONLINE, Topics

LINE_STATES = ("idle", "recording", "fault", "disabled")

# Renders nothing (so Home Assistant ignores the message) for call events on the same topic.
_ALARM_EVENT_TEMPLATE = (
    "{% if value_json.type in ['" + ALARM_RAISED + "', '" + ALARM_CLEARED + "'] %}"
    "{{ {'event_type': value_json.type, 'code': value_json.code, 'severity': value_json.severity,"
    " 'line': value_json.line, 'detail': value_json.detail} | to_json }}"
    "{% endif %}"
)


def discovery_document(*, recorder_id: str, version: str, lines: list[str] | tuple[str, ...],
                       topics: Topics, health_interval_s: float,
                       key_fingerprint: str | None = None) -> dict[str, Any]:
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
        cmps[f"{recorder_id}_{key}"] = {"p": platform, "name": name, "unique_id": f"{uid}_{key}", **opts}

    add("problem", "binary_sensor", "Problem", device_class="problem", expire_after=expire_after,
        value_template="{{ 'ON' if value_json.alarms else 'OFF' }}",
        json_attributes_topic=topics.health,
        json_attributes_template="{{ {'alarms': value_json.alarms} | to_json }}")
    for line in lines:
        ref = f"value_json.lines['{line}']"
        add(f"{line}_problem", "binary_sensor", f"{line} problem", device_class="problem",
            expire_after=expire_after,
            value_template=f"{{{{ 'ON' if {ref}.state == 'fault' or {ref}.alarms else 'OFF' }}}}")
        add(f"{line}_level", "sensor", f"{line} level", unit_of_measurement="dBFS",
            state_class="measurement", suggested_display_precision=1, expire_after=expire_after,
            value_template=f"{{{{ {ref}.level_dbfs }}}}")
        add(f"{line}_state", "sensor", f"{line} state", device_class="enum", options=list(LINE_STATES),
            expire_after=expire_after, value_template=f"{{{{ {ref}.state }}}}")
    add("disk_free", "sensor", "Disk free", device_class="data_size", unit_of_measurement="MB",
        state_class="measurement", expire_after=expire_after, value_template="{{ value_json.disk.free_mb }}")
    add("hours_left", "sensor", "Recording hours left", device_class="duration", unit_of_measurement="h",
        state_class="measurement", suggested_display_precision=0, expire_after=expire_after,
        value_template="{{ value_json.disk.hours_left }}")
    add("alarm", "event", "Alarm", state_topic=topics.event, event_types=[ALARM_RAISED, ALARM_CLEARED],
        value_template=_ALARM_EVENT_TEMPLATE)

    dev: dict[str, Any] = {"ids": [uid], "name": f"linetap {recorder_id}", "mf": "linetap",
                           "mdl": "call recorder", "sw": version}
    if key_fingerprint:
        dev["sn"] = key_fingerprint
    return {
        "dev": dev,
        "o": {"name": "linetap", "sw": version},
        "cmps": cmps,
        "state_topic": topics.health,
        "availability": [{"topic": topics.status, "payload_available": ONLINE,
                          "payload_not_available": OFFLINE}],
        "qos": 1,
    }
