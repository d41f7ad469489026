#!/usr/bin/env python3
"""``linetap fleet``'s cost with many boxes: CPU and latency beside a bare paho subscriber.

    .venv/bin/python benchmarks/fleet.py [--boxes 500] [--interval 30] [--seconds 90]

A private mosquitto on a free loopback port; one publisher process publishes, for each of
``--boxes`` boxes, its retained ``status`` and a retained health snapshot (a real document, ~700
bytes, MQTT 5 expiry 3 x interval) every ``--interval`` seconds, spread evenly over the interval
(500 boxes at 30 s: 16.7 snapshots a second), each carrying the time it was sent.

Two subscribers run side by side, each in its own process, for ``--seconds``:

  bare     a paho client that only counts the messages (the least any MQTT fleet view costs)
  fleet    the fleet view's own parts: ``FleetWatch`` (paho, ``state.apply`` per message), the
           table of every box rendered once a second (to /dev/null), ``--json`` once a second

CPU is each process's user + system time over the measured window (after the retained messages
of the start); latency is from the publisher's send to the box record being updated in the
fleet view's state (median, p99, max), on one machine so one clock. The figures are printed as a
table; nothing is asserted (tests/test_benchmarks.py only checks that it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def health(box: str, now: float, started: float) -> dict:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return {"ts": iso, "sent": now, "id": box, "version": "bench", "uptime_s": round(now - started, 1),
            "lines": {f"line{i}": {"state": "idle", "level_dbfs": -61.2, "last_audio_at": iso, "alarms": []}
                      for i in (1, 2)},
            "disk": {"free_mb": 21500.0, "used_mb": 3100.0, "recordings": 812, "hours_left": 2900.5},
            "alarms": [], "alarm_details": [], "clock_synced": True, "calls_today": 3,
            "last_call": {"line": "line1", "ended_at": iso, "duration_s": 130.5, "caller_number": None,
                          "caller_name": None}}


def publisher(port: int, boxes: int, interval: float, seconds: float) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    c = Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=MQTTProtocolVersion.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = int(3 * interval)
    ids = [f"box-{i:04d}" for i in range(boxes)]
    started = time.time()
    for box in ids:
        c.publish(f"linetap/{box}/status", "online", qos=1, retain=True)
        c.publish(f"linetap/{box}/health", json.dumps(health(box, time.time(), started)), qos=0, retain=True,
                  properties=props)
    print("ready", flush=True)
    step = interval / boxes
    t_next = time.monotonic()
    end = t_next + seconds
    i = 0
    while time.monotonic() < end:
        t_next += step
        box = ids[i % boxes]
        i += 1
        c.publish(f"linetap/{box}/health", json.dumps(health(box, time.time(), started)), qos=0, retain=True,
                  properties=props)
        time.sleep(max(0.0, t_next - time.monotonic()))
    c.disconnect()
    c.loop_stop()


def bare(port: int, warmup: float, seconds: float) -> dict:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    n = [0]
    c = Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=MQTTProtocolVersion.MQTTv5)
    c.on_message = lambda cl, ud, m: n.__setitem__(0, n[0] + 1)
    c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe([(f"linetap/+/{k}", 1) for k in
                                                            ("status", "health", "event", "checkpoint")])
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(warmup)
    cpu0, n0 = cpu_s(), n[0]
    time.sleep(seconds)
    out = {"cpu_s": cpu_s() - cpu0, "messages": n[0] - n0}
    c.disconnect()
    c.loop_stop()
    return out


def fleet(port: int, warmup: float, seconds: float) -> dict:
    from linetap.fleet import state
    from linetap.fleet.watch import FleetWatch
    latencies: list[float] = []

    class Timed(FleetWatch):
        def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
            super()._on_message(client, userdata, msg)
            if msg.topic.endswith("/health"):
                try:
                    latencies.append(time.time() - json.loads(msg.payload)["sent"])
                except (ValueError, KeyError):
                    pass

    w = Timed(host="127.0.0.1", port=port)
    w.start()
    devnull = open(os.devnull, "w")
    time.sleep(warmup)
    latencies.clear()
    cpu0 = cpu_s()
    render_s: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        boxes = w.boxes()
        now = time.time()
        devnull.write(state.render_table(boxes, now))
        devnull.write(json.dumps(state.fleet_doc(boxes, now)))
        render_s.append(time.perf_counter() - t0)
        time.sleep(1.0)
    out = {"cpu_s": cpu_s() - cpu0, "messages": len(latencies), "boxes": len(w.boxes()),
           "latency_ms": sorted(x * 1000 for x in latencies), "render_ms": statistics.median(render_s) * 1000}
    w.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=500)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--role", choices=("bare", "fleet", "publisher"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=float, default=3.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "publisher":
        publisher(a.port, a.boxes, a.interval, a.seconds + a.warmup + 2)
        return 0
    if a.role:
        print(json.dumps((bare if a.role == "bare" else fleet)(a.port, a.warmup, a.seconds)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_queued_messages 100000"]
        if os.geteuid() == 0:
            import getpass
            lines.append(f"user {getpass.getuser()}")
        conf.write_text("\n".join(lines) + "\n")
        mosq = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            me = [sys.executable, __file__, "--port", str(port), "--boxes", str(a.boxes), "--interval",
                  str(a.interval), "--seconds", str(a.seconds), "--warmup", str(a.warmup)]
            pub = subprocess.Popen([*me, "--role", "publisher"], stdout=subprocess.PIPE, text=True)
            assert pub.stdout is not None and pub.stdout.readline().strip() == "ready"
            subs = {r: subprocess.Popen([*me, "--role", r], stdout=subprocess.PIPE, text=True)
                    for r in ("bare", "fleet")}
            res = {r: json.loads(p.communicate(timeout=a.seconds + 120)[0]) for r, p in subs.items()}
            pub.wait(a.seconds + 60)
        finally:
            mosq.terminate()
            mosq.wait(10)

    lat = res["fleet"]["latency_ms"]
    print(f"{a.boxes} boxes, health every {a.interval:g} s ({a.boxes / a.interval:.1f} snapshots/s), "
          f"measured {a.seconds:g} s")
    print(f"{'subscriber':<10} {'messages':>8} {'CPU %':>7} {'CPU ms/msg':>10}")
    for r in ("bare", "fleet"):
        x = res[r]
        pct = 100 * x["cpu_s"] / a.seconds
        per = 1000 * x["cpu_s"] / max(1, x["messages"])
        print(f"{r:<10} {x['messages']:>8} {pct:>6.2f}% {per:>10.3f}")
    if lat:
        print(f"fleet: {res['fleet']['boxes']} boxes seen; latency send -> view state: median "
              f"{statistics.median(lat):.1f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.1f} ms, max {lat[-1]:.1f} ms; "
              f"table + JSON of all boxes {res['fleet']['render_ms']:.1f} ms each refresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
