"""Simulated boxes for the fleet tests: each a real paho client publishing what a recorder does.

    python tests/fleet_boxes.py --port P --ids a,b,c --interval 1 [--quiet ID]

Per box: ``status`` ``online`` (retained, QoS 1) with the Last Will ``offline``; a retained health
snapshot every ``--interval`` seconds with an MQTT 5 message expiry of 3 x the interval (as
mqtt/link.py publishes it); a retained ``checkpoint``; one ``call_ended`` event carrying the next
checkpoint. On SIGUSR1 the ``--quiet`` boxes stop publishing health but stay connected (a box
that hangs without its Last Will firing). Prints ``ready`` once every box has been acknowledged.
SIGTERM: clean exit (``offline`` published); SIGKILL: the broker sends the Last Wills.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def checkpoint(box: str, length: int) -> dict[str, object]:
    return {"id": box, "ts": iso(time.time()), "length": length, "head": f"{length:02x}" * 32,
            "key": "ab" * 32, "signature": "cd" * 64}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--quiet", action="append", default=[])
    ap.add_argument("--alarm", action="append", default=[], help="ID=CODE: the box reports this alarm")
    args = ap.parse_args()
    ids = args.ids.split(",")
    alarms = dict(a.split("=", 1) for a in args.alarm)
    started = time.time()
    quiet = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: quiet.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    clients: dict[str, paho.Client] = {}
    for box in ids:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"linetap-{box}", protocol=MQTTProtocolVersion.MQTTv5)
        c.will_set(f"linetap/{box}/status", "offline", qos=1, retain=True)
        c.connect("127.0.0.1", args.port, keepalive=30)
        c.loop_start()
        clients[box] = c
    infos = []
    for box, c in clients.items():
        infos.append(c.publish(f"linetap/{box}/status", "online", qos=1, retain=True))
        infos.append(c.publish(f"linetap/{box}/checkpoint", json.dumps(checkpoint(box, 1)), qos=1, retain=True))
        infos.append(c.publish(f"linetap/{box}/event", json.dumps({
            "type": "call_ended", "ts": iso(time.time()), "seq": 1, "id": box, "call_id": 1, "line": "line1",
            "started_at": iso(started - 60), "ended_at": iso(started - 1), "duration_s": 59.0,
            "checkpoint": checkpoint(box, 2)}), qos=1))
    expiry = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    expiry.MessageExpiryInterval = int(3 * args.interval)

    def publish_health() -> None:
        for box, c in clients.items():
            if quiet.is_set() and box in args.quiet:
                continue
            now = time.time()
            code = alarms.get(box)
            doc = {"ts": iso(now), "id": box, "version": "sim", "uptime_s": round(now - started, 1),
                   "lines": {"line1": {"state": "idle", "level_dbfs": -60.0, "last_audio_at": iso(now),
                                       "alarms": []}},
                   "disk": {"free_mb": 1000.0, "used_mb": 10.0, "recordings": 2, "hours_left": 1234.0},
                   "alarms": [code] if code else []}
            infos.append(c.publish(f"linetap/{box}/health", json.dumps(doc), qos=1, retain=True, properties=expiry))

    publish_health()
    for info in infos:
        info.wait_for_publish(30)
    infos.clear()
    print("ready", flush=True)
    while not stop.wait(args.interval):
        publish_health()
        infos.clear()
    for box, c in clients.items():
        c.publish(f"linetap/{box}/status", "offline", qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
