#!/usr/bin/env python3
"""Fault detection latency: from a fault's onset to its alarm and to the LED change.

    .venv/bin/python benchmarks/detection.py [--trials 10] [--card]

Each fault type is injected into lines running in real time through the whole
recorder (ALSA ``file`` PCMs on FIFOs fed at real-time pace, gpiozero MockFactory
LEDs): ``--trials`` lines per type in one recorder, each line's fault at a
different moment. Onset is when the feeder hands the first faulty sample to the
FIFO (zeros, stuck), when it stops sending (stall), when the device vanishes or
reports an overrun (at the capture seam). Printed: median and max latency to the
``alarm_raised`` event and to the line's LED turning to fast blink; for a warning (overrun),
which leaves the line LEDs alone, to the status LED's heartbeat (the status LED is shared, so
that is measured once, from the first trial's onset).

Side by side, in the same run, a plain silence detector as typical loggers
configure it (alarm after 20 s below -40 dBFS), fed the same audio: its latency
for the same faults, and what it does on a quiet but live line (an hour of
analog noise floor at -70 dBFS), where linetap must raise nothing.

``--card``: each line's source behaves as a sound card read non-blocking does (the recorder's
reader drains it every 100 ms, ``linetap.capture.alsa``): a thread pulls the ALSA PCM's periods as
they come, as a card's DMA fills its buffer, and a read takes one if there is one. Without it the
reader reads the ``file`` PCM period by period, as it does for the demo and the tests.

The detection targets: <= 1 s to the alarm and <= 1.25 s to the LED, every type.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TMP = Path(tempfile.mkdtemp(prefix="linetap-bench-"))
os.environ["HOME"] = str(TMP)  # libasound reads ~/.asoundrc once, at the first open
os.environ.pop("XDG_CONFIG_HOME", None)

from linetap.capture import DeviceGone, Read  # noqa: E402
from linetap.capture.alsa import AlsaSource  # noqa: E402
from linetap.clock import SystemClock  # noqa: E402
from linetap.config import load_text  # noqa: E402
from linetap.detect.dead import LineHealthDetector  # noqa: E402
from linetap.detect.level import dbfs  # noqa: E402
from linetap.gpio import mock_factory  # noqa: E402
from linetap.recorder import Recorder  # noqa: E402
from linetap.sim.feeder import FifoFeeder, asoundrc, make_fifo  # noqa: E402
from linetap.sim.line import render  # noqa: E402

RATE = 8000
LEAD_S = 2.0  # live audio before the first fault
STAGGER_S = 0.137  # faults on successive lines start this much apart (not aligned to ticks)
FAULT_S = 3.0
WARNINGS = ("overrun",)  # shown by the status LED's heartbeat, not by the line's LED
TYPES = ("zeros", "stuck", "stall", "unplug", "overrun")


class SilenceDetector:
    """The baseline: alarm once the level stays below ``threshold`` dBFS for ``hold_s``."""

    def __init__(self, threshold: float = -40.0, hold_s: float = 20.0) -> None:
        self.threshold, self.hold_s = threshold, hold_s
        self.quiet_since: float | None = None
        self.alarmed_at: float | None = None

    def feed(self, frames: np.ndarray, t: float) -> None:
        if dbfs(frames) < self.threshold:
            if self.quiet_since is None:
                self.quiet_since = t
            if self.alarmed_at is None and t + len(frames) / RATE - self.quiet_since >= self.hold_s:
                self.alarmed_at = t + len(frames) / RATE
        else:
            self.quiet_since = None


def baseline_latency(kind: str) -> float | None:
    """The silence detector on the same faulty audio (None: it never alarms)."""
    if kind in ("stall", "unplug", "overrun"):
        return None  # no audio arrives (or only a gap): a level detector sees nothing to measure
    audio, _ = render([("tone", LEAD_S, 400, -20), (kind, 60)], seed=3)  # a live call, then the fault
    det = SilenceDetector()
    for i in range(0, len(audio), 160):
        det.feed(audio[i:i + 160].reshape(-1, 1), i / RATE)
        if det.alarmed_at is not None:
            return det.alarmed_at - LEAD_S
    return None


def quiet_line(hours: float = 1.0) -> tuple[int, float | None]:
    """An hour of -70 dBFS line noise: (linetap's LINE_DEAD raises, baseline's first alarm time)."""
    audio, _ = render([("idle", hours * 3600)], seed=11)
    ours = LineHealthDetector(RATE, 1)
    base = SilenceDetector()
    raises = 0
    for i in range(0, len(audio), 160):
        block = audio[i:i + 160].reshape(-1, 1)
        raises += sum(1 for c in ours.feed(block, i / RATE) if c.active)
        base.feed(block, i / RATE)
    return raises, base.alarmed_at


class SeamSource:
    """Wraps the real ALSA source; at ``fail_at`` (monotonic) it vanishes or overruns once."""

    def __init__(self, inner: AlsaSource, kind: str, fail_at: float, onsets: dict, key: str) -> None:
        self.inner, self.kind, self.fail_at, self.onsets, self.key = inner, kind, fail_at, onsets, key
        self.done = False

    def read(self) -> Read:
        r = self.inner.read()
        if not self.done and time.time() >= self.fail_at:
            self.done = True
            self.onsets[self.key] = time.time()
            if self.kind == "unplug":
                raise DeviceGone("benchmark: device unplugged")
            time.sleep(0.05)  # the samples of those 50 ms are lost
            return Read(None, overrun=True)
        return r

    def close(self) -> None:
        self.inner.close()


class CardBuffer:
    """A sound card's buffer over a self-paced source, read non-blocking (see ``--card``)."""

    drain_s = 0.1

    def __init__(self, inner) -> None:
        self.inner = inner
        self.periods: collections.deque[Read] = collections.deque()
        self.error: Exception | None = None
        self.closing = threading.Event()
        self.dma = threading.Thread(target=self._fill, daemon=True)
        self.dma.start()

    def _fill(self) -> None:
        while not self.closing.is_set():
            try:
                self.periods.append(self.inner.read())
            except Exception as e:  # noqa: BLE001 - handed to the reader at its next read
                self.error = e
                return

    def read(self) -> Read:
        if self.periods:
            return self.periods.popleft()
        if self.error is not None:
            raise self.error
        return Read(None)

    def pending(self) -> int:
        return sum(len(r.frames) for r in list(self.periods) if r.frames is not None)

    def close(self) -> None:
        self.closing.set()
        self.dma.join(timeout=2)  # its read returns within a period while the FIFO is fed
        if not self.dma.is_alive():  # (a stalled FIFO keeps it in libasound: closing then would crash)
            self.inner.close()


def run_type(kind: str, trials: int, pcms: list[str], fifos: dict[str, Path],
             card: bool = False) -> dict[str, list[float]]:
    names = [f"l{i}" for i in range(trials)]
    lines = "".join(f'[[line]]\nname = "{n}"\npcm = "{p}"\nled = {6 + i}\n' for i, (n, p) in
                    enumerate(zip(names, pcms)))
    cfg = load_text(f"""[recorder]\nid = "bench"\ndata_dir = "{TMP / ('data-' + kind)}"\n
[health]\ncheck_clock = false\n[leds]\nstatus = 5\n{lines}""", source="bench.toml")
    onsets: dict[str, float] = {}
    alarms: dict[str, float] = {}
    leds: dict[str, float] = {}
    start = time.time() + 1.0  # the moment the feeders start, roughly
    fail_at = {n: start + LEAD_S + i * STAGGER_S for i, n in enumerate(names)}
    by_pcm = dict(zip(pcms, names))
    opened: set[str] = set()

    def factory(pcm: str, rate: int, channels: int, period: int):
        src = opened_source(pcm, rate, channels, period)
        return CardBuffer(src) if card else src

    def opened_source(pcm: str, rate: int, channels: int, period: int):
        src = AlsaSource(pcm, rate, channels, period)
        name = by_pcm[pcm]
        if kind in ("unplug", "overrun") and name not in opened:
            opened.add(name)
            return SeamSource(src, kind, fail_at[name], onsets, name)
        if kind == "unplug" and time.time() < onsets.get(name, 0) + 1.0:
            src.close()
            raise DeviceGone(f"{pcm}: No such device")  # unplugged for a second
        return src

    feeders = []
    for i, (name, pcm) in enumerate(zip(names, pcms)):
        lead = LEAD_S + i * STAGGER_S
        if kind in ("zeros", "stuck"):
            audio, _ = render([("idle", lead), (kind, FAULT_S), ("idle", 1)], seed=i)
        else:
            audio, _ = render([("idle", lead + FAULT_S + 1)], seed=i)

        def on_sent(sent_s: float, name=name, lead=lead, f=None) -> None:
            if name in onsets:
                return
            if kind in ("zeros", "stuck", "stall") and sent_s >= lead:
                onsets[name] = time.time()
                if kind == "stall":
                    feeders_by_name[name].pause()
        feeders.append(FifoFeeder(fifos[pcm], [audio], rate=RATE, speed=1.0, keep_open=True, on_sent=on_sent))
    feeders_by_name = dict(zip(names, feeders))
    pins = mock_factory()
    rec = Recorder(cfg, clock=SystemClock(), source_factory=factory, pin_factory=pins)
    codes = {"zeros": "LINE_DEAD", "stuck": "LINE_DEAD", "stall": "LINE_DEAD", "unplug": "LINE_NO_DEVICE",
             "overrun": "LINE_OVERRUN"}

    def on_event(ev: dict) -> None:
        if ev["type"] == "alarm_raised" and ev["code"] == codes[kind] and ev["line"] not in alarms:
            alarms[ev["line"]] = time.time()
    rec.listeners.subscribe(on_event)

    def watch_leds() -> None:
        while not stop.is_set():
            if kind in WARNINGS:
                if not leds and onsets and rec.leds is not None and rec.leds.pattern("status") == "heartbeat":
                    leds[min(onsets, key=onsets.__getitem__)] = time.time()
            else:
                for i, n in enumerate(names):
                    if n not in leds and n in onsets and rec.leds is not None and \
                            rec.leds.pattern(n) == "fast_blink":
                        leds[n] = time.time()
            time.sleep(0.002)
    stop = threading.Event()
    for f in feeders:
        f.start()
    # Shift the seam failures to the feeders' real start.
    t0 = time.time()
    for i, n in enumerate(names):
        fail_at[n] = t0 + LEAD_S + i * STAGGER_S
    rec.start()
    watcher = threading.Thread(target=watch_leds, daemon=True)
    watcher.start()
    try:
        deadline = time.time() + LEAD_S + trials * STAGGER_S + FAULT_S + 3
        while time.time() < deadline and (len(alarms) < trials or len(leds) < led_trials(kind, trials)):
            time.sleep(0.05)
    finally:
        stop.set()
        rec.stop()
        for f in feeders:
            f.stop()
    to_alarm = [alarms[n] - onsets[n] for n in names if n in alarms and n in onsets]
    to_led = [leds[n] - onsets[n] for n in names if n in leds and n in onsets]
    missed = [n for n in names if n not in alarms]
    return {"alarm": to_alarm, "led": to_led, "missed": missed}


def led_trials(kind: str, trials: int) -> int:
    """How many LED changes a run of ``trials`` faults shows: one per line for a critical fault,
    one in all for a warning (the shared status LED)."""
    return 1 if kind in WARNINGS else trials


def fmt(xs: list[float]) -> str:
    if not xs:
        return "      -       -"
    return f"{statistics.median(xs):7.3f} {max(xs):7.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--card", action="store_true", help="sources behave as sound cards read non-blocking")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the recorder's own log lines would drown the table
    n = args.trials
    fifos = {f"b{i}": make_fifo(TMP / f"b{i}.fifo") for i in range(n * len(TYPES))}
    (TMP / ".asoundrc").write_text(asoundrc(fifos))
    pcms = list(fifos)
    how = "sound cards read non-blocking, drained every 100 ms" if args.card else "ALSA file PCMs read as they come"
    print(f"fault detection latency, {n} trials per type, lines in real time ({how}; seconds)\n")
    print(f"{'fault':<9} {'alarm median':>12} {'max':>7}   {'LED median':>10} {'max':>7}   "
          f"{'silence detector (-40 dBFS, 20 s)':>34}   target")
    ok = True
    for i, kind in enumerate(TYPES):
        res = run_type(kind, n, pcms[i * n:(i + 1) * n], fifos, card=args.card)
        base = baseline_latency(kind)
        base_s = f"{base:7.2f} s" if base is not None else "never alarms"
        met = (len(res["alarm"]) == n and len(res["led"]) == led_trials(kind, n) and max(res["alarm"]) <= 1.0
               and max(res["led"]) <= 1.25)
        ok &= met
        print(f"{kind:<9} {fmt(res['alarm']):>20}   {fmt(res['led']):>18}   {base_s:>34}   "
              f"{'met' if met else 'MISSED'}{' (no alarm on ' + ','.join(res['missed']) + ')' if res['missed'] else ''}")
    raises, base_at = quiet_line()
    print(f"\nquiet but live line, 1 h at -70 dBFS: linetap LINE_DEAD raised {raises} time(s); "
          f"silence detector: {'false alarm after %.1f s' % base_at if base_at is not None else 'no alarm'}")
    ok &= raises == 0
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
