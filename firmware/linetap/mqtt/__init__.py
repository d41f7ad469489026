"""MQTT: status, health, events and Home Assistant discovery (topics and payloads: TOPICS.md).

Nothing is re-exported here, so importing a pure module of this package never loads paho:
- ``topics``, ``discovery``, ``outbox``, ``credentials`` and ``state`` are pure (standard library);
- ``paho_client`` is the paho-mqtt adapter, the one module that imports paho;
- ``link`` (``MqttLink``, the recorder's side) and ``probe`` (``check_broker``, ``linetap check``'s
  probe) are built on that adapter.
The event types and builders are the recorder's own: ``linetap/events.py``.
"""
