"""Fault injection through the real capture path (and the seam where ALSA cannot fault).

Each fault: the alarm is raised (with the right onset), the LED on a gpiozero
MockFactory pin changes, the gap is written with the right bounds, the alarm
clears when the fault ends, and the audio captured around it is all there.
"""

from __future__ import annotations

import errno
import threading
import time

import pytest

from linetap.capture import DeviceGone
from linetap.capture.alsa import AlsaSource
from linetap.clock import FakeClock, SystemClock, parse_iso
from linetap.config import load
from linetap.gpio import mock_factory
from linetap.index.db import open_index
from linetap.recorder import Recorder
from linetap.sim.line import render
from linetap.store import audio
from helpers import FlakySource, paced_by, wait_for, write_config

T0 = 1_795_000_000.0
PERIOD_S = 0.02
STATUS_PIN, LINE_PIN, BUZZER_PIN, BUTTON_PIN = 5, 6, 19, 26
HEALTH = {"check_clock": False, "alarm_clear_s": 1.0}
# With time taken from the audio, the capture thread runs ahead of the pipeline by the
# queue's length: the stall check (tested on its own, in real time) is kept out of the way.
NO_STALL = {"stall_after_ms": 60_000}


class AudioClock(FakeClock):
    """Wall time fixed (block times come from the sample count), monotonic time = the audio
    the pipeline has handled: hysteresis runs on audio time, and a paused feed is not a stall."""

    def __init__(self) -> None:
        super().__init__(wall=T0)
        self.rec: Recorder | None = None

    def mono(self) -> float:
        calls = self.rec.line_calls.get("line1") if self.rec is not None else None
        return 1000.0 + (calls.frames_seen / 8000 if calls is not None else 0.0)


def pause_at(seconds: float):
    """An ``on_sent`` callback that pauses the feeder once it has sent ``seconds`` of audio."""
    def on_sent(sent_s: float) -> None:
        if sent_s >= seconds and not state["done"]:
            state["done"] = True
            state["feeder"].pause()
    state = {"done": False, "feeder": None}
    on_sent.state = state
    return on_sent


def feed_paused(line, pcm, seconds: float):
    cb = pause_at(seconds)
    feeder = line.feed(pcm, on_sent=cb)
    cb.state["feeder"] = feeder
    return feeder


def make(alsa_line, data_dir, tmp_path, *, clock=None, source_factory=None, line=None, leds=None, **tables):
    cfg = load(write_config(tmp_path / "c.toml", data_dir,
                            [{"name": "line1", "pcm": alsa_line.pcm, "led": LINE_PIN, **(line or {})}],
                            recorder={"queue_s": 120}, health={**HEALTH, **tables.pop("health", {})},
                            leds={"status": STATUS_PIN, **(leds or {})}, **tables))
    pins = mock_factory()
    rec = Recorder(cfg, clock=clock or FakeClock(wall=T0), source_factory=source_factory, pin_factory=pins)
    if isinstance(clock, AudioClock):
        clock.rec = rec
    events: list[dict] = []
    rec.listeners.subscribe(events.append)
    return rec, pins, events


def fed(rec: Recorder, seconds: float, rate: int = 8000, timeout_s: float = 60.0) -> None:
    def done() -> bool:
        assert rec.readers["line1"].dropped_blocks == 0
        return rec.line_calls["line1"].frames_seen >= int(seconds * rate)
    wait_for(done, timeout=timeout_s)


def handled_s(rec: Recorder, rate: int = 8000) -> float:
    """Seconds of line1's audio the pipeline has handled (0 before it starts)."""
    calls = rec.line_calls.get("line1")
    return calls.frames_seen / rate if calls is not None else 0.0


def toggles(pins, pin: int, seconds: float) -> int:
    """How often the pin changed state during the next ``seconds``."""
    before = len(pins.pin(pin).states)
    time.sleep(seconds)
    return len(pins.pin(pin).states) - before


@pytest.mark.parametrize("kind,detail", [("zeros", "digital silence"), ("stuck", "stuck at 1234")])
def test_a_line_whose_audio_turns_dead_is_alarmed_gapped_lit_and_cleared(alsa, data_dir, tmp_path, kind, detail):
    (line,) = alsa.lines(1)
    script = [("idle", 3), ("call", 6), (kind, 4), ("call", 6), ("idle", 12)]
    pcm, truth = render(script, seed=5)
    rec, pins, events = make(line, data_dir, tmp_path, clock=AudioClock(), health=NO_STALL)
    feeder = feed_paused(line, pcm, 12.5)  # stop in the middle of the dead stretch (9 s .. 13 s)
    rec.start()
    try:
        fed(rec, 12.4)
        wait_for(lambda: rec.leds.pattern("line1") == "fast_blink", timeout=2)
        assert rec.alarms.is_active("LINE_DEAD", "line1")
        assert rec.leds.pattern("status") != "fast_blink"  # the line's own LED tells; status is for the box
        assert toggles(pins, LINE_PIN, 0.5) >= 3  # the pin really blinks (5 Hz)
        feeder.resume()
        fed(rec, 31)  # the line is live again; 1 s of audio later the alarm clears
        wait_for(lambda: not rec.alarms.is_active("LINE_DEAD", "line1"), timeout=2)
        wait_for(lambda: rec.leds.pattern("line1") in ("slow_pulse", "steady"), timeout=2)
    finally:
        rec.stop()
        feeder.stop()
    dead = next(t for t in truth if t.kind == kind)
    index = open_index(data_dir)
    origin = T0 - PERIOD_S  # the first block's first frame
    (alarm,) = index.query("select * from alarms where code = 'LINE_DEAD'")
    assert detail in alarm["detail"]
    assert parse_iso(alarm["raised_at"]) - origin == pytest.approx(dead.start_s, abs=0.03)
    assert parse_iso(alarm["cleared_at"]) - origin == pytest.approx(dead.end_s, abs=0.03)
    (gap,) = index.query("select * from gaps where line = 'line1'")
    assert gap["reason"] == "dead"
    assert parse_iso(gap["started_at"]) - origin == pytest.approx(dead.start_s, abs=0.03)
    assert parse_iso(gap["ended_at"]) - origin == pytest.approx(dead.end_s, abs=0.03)
    # The call went on through the fault (4 s < the VOX hang): one recording holding all of it.
    (call,) = index.calls()
    first_voice = truth[1].voice_start_s
    samples, _ = audio.read(data_dir / call["path"])
    assert len(samples) / 8000 == pytest.approx(call["duration_s"], abs=0.05)
    assert parse_iso(call["started_at"]) - origin <= dead.start_s - 6 + 0.5
    assert parse_iso(call["ended_at"]) - origin >= dead.end_s + 6 - 0.5
    assert first_voice - 3 == pytest.approx(parse_iso(call["started_at"]) - origin, abs=0.5)
    types = [(e["type"], e.get("code")) for e in events if e["type"].startswith("alarm")]
    assert types == [("alarm_raised", "LINE_DEAD"), ("alarm_cleared", "LINE_DEAD")]


def test_a_quiet_but_live_line_raises_nothing_in_an_hour(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    pcm, _ = render([("idle", 3600)], seed=11)
    rec, pins, events = make(line, data_dir, tmp_path)
    # The hour goes in as fast as the pipeline takes it (~12 s idle), never further ahead of it
    # than 30 s of audio (the queue holds 120 s): a busy machine slows the feed, drops nothing.
    line.feed(pcm, on_sent=paced_by(lambda: handled_s(rec), lead_s=30.0))
    rec.start()
    try:
        fed(rec, 3600, timeout_s=180)
        rec.alarms.tick()
        assert rec.alarms.active() == []
        assert rec.leds.pattern("line1") == "slow_pulse"
    finally:
        rec.stop()
        line.feeder.stop()
    index = open_index(data_dir)
    assert index.query("select * from alarms") == []
    assert index.query("select * from gaps") == []
    assert index.calls() == []
    assert events == []


def test_a_stalled_pcm_is_alarmed_within_a_second_and_clears_when_frames_return(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    pcm, _ = render([("idle", 30)], seed=2)
    rec, pins, events = make(line, data_dir, tmp_path, clock=SystemClock())
    raised = threading.Event()
    rec.listeners.subscribe(lambda e: e["type"] == "alarm_raised" and raised.set())
    feeder = line.feed(pcm, speed=1.0)
    rec.start()
    try:
        wait_for(lambda: rec.line_calls["line1"].frames_seen >= 8000, timeout=5)
        feeder.pause()
        paused_at = time.time()
        assert raised.wait(3)
        latency = time.time() - paused_at
        assert latency <= 1.0, f"LINE_DEAD after {latency:.2f} s"
        wait_for(lambda: rec.leds.pattern("line1") == "fast_blink", timeout=0.5)
        time.sleep(0.5)
        feeder.resume()
        resumed_at = time.time()
        wait_for(lambda: not rec.alarms.is_active("LINE_DEAD", "line1"), timeout=5)
    finally:
        rec.stop()
        feeder.stop()
    index = open_index(data_dir)
    (alarm,) = index.query("select * from alarms where code = 'LINE_DEAD'")
    assert "stalled" in alarm["detail"]
    (gap,) = index.query("select * from gaps where reason = 'stalled'")
    # Bounded by the last frames before the stall and the first after it (a pipe buffers a little).
    assert parse_iso(gap["started_at"]) == pytest.approx(paused_at, abs=0.3)
    assert parse_iso(gap["ended_at"]) == pytest.approx(resumed_at, abs=0.3)


def test_a_vanished_pcm_is_alarmed_gapped_and_recovers_by_itself(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    pcm, _ = render([("idle", 4), ("call", 10), ("idle", 12)], seed=9)
    opens = {"n": 0}

    def factory(name, rate, channels, period):
        opens["n"] += 1
        if opens["n"] in (2, 3, 4):  # unplugged for three attempts (0.1 + 0.2 + 0.4 s back-off)
            raise DeviceGone(f"{name}: No such device")
        src = AlsaSource(name, rate, channels, period)
        return FlakySource(src, 8 * 50) if opens["n"] == 1 else src

    rec, pins, events = make(line, data_dir, tmp_path, clock=SystemClock(), source_factory=factory)
    line.feed(pcm, speed=4.0)
    rec.start()
    try:
        wait_for(lambda: rec.alarms.is_active("LINE_NO_DEVICE", "line1"), timeout=5)
        wait_for(lambda: rec.leds.pattern("line1") == "fast_blink", timeout=0.5)
        wait_for(lambda: opens["n"] >= 5 and rec.readers["line1"].is_open, timeout=5)
        wait_for(lambda: not rec.alarms.is_active("LINE_NO_DEVICE", "line1"), timeout=5)
        wait_for(lambda: rec.leds.pattern("line1") != "fast_blink", timeout=1)
    finally:
        rec.stop()
        line.feeder.stop()
    index = open_index(data_dir)
    (alarm,) = index.query("select * from alarms where code = 'LINE_NO_DEVICE'")
    assert "unplugged" in alarm["detail"] or "No such device" in alarm["detail"]
    (gap,) = index.query("select * from gaps where reason = 'no_device'")
    down_s = parse_iso(gap["ended_at"]) - parse_iso(gap["started_at"])
    assert 0.6 <= down_s <= 2.5  # the back-off it spent unplugged
    assert parse_iso(alarm["raised_at"]) == pytest.approx(parse_iso(gap["started_at"]), abs=0.05)
    rows = sorted(index.calls(), key=lambda r: r["id"])
    assert rows[0]["end_reason"] == "fault" and rows[0]["duration_s"] > 0  # kept up to the unplug


class FailingWriter(audio.AudioWriter):
    """The store seam: every write fails (ENOSPC) while ``failing()`` says so, as on a full card."""

    failing = staticmethod(lambda: False)

    def write(self, frames):
        if FailingWriter.failing():
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(frames)


def test_a_failing_write_keeps_the_call_in_ram_alarms_and_loses_nothing(alsa, data_dir, tmp_path, monkeypatch):
    import linetap.store.recordings as recordings
    (line,) = alsa.lines(1)
    pcm, truth = render([("idle", 4), ("call", 16), ("idle", 10)], seed=4)
    clock = AudioClock()
    monkeypatch.setattr(recordings.audio, "AudioWriter", FailingWriter)
    # The card refuses every write from 8 s to 12 s of audio.
    monkeypatch.setattr(FailingWriter, "failing", staticmethod(lambda: 1008 <= clock.mono() < 1012))
    rec, pins, events = make(line, data_dir, tmp_path, clock=clock, health=NO_STALL, storage={"codec": "flac"})
    feeder = feed_paused(line, pcm, 10.0)
    rec.start()
    try:
        fed(rec, 9.9)
        wait_for(lambda: rec.alarms.is_active("DISK_WRITE_FAILED", "line1"), timeout=2)
        wait_for(lambda: rec.leds.pattern("status") == "fast_blink", timeout=1)
        feeder.resume()
        fed(rec, 30)
        wait_for(lambda: not rec.alarms.is_active("DISK_WRITE_FAILED", "line1"), timeout=2)
    finally:
        rec.stop()
        feeder.stop()
    index = open_index(data_dir)
    (call,) = index.calls()
    samples, _ = audio.read(data_dir / call["path"])
    t = truth[1]
    expected = (t.voice_end_s + 8) - (t.voice_start_s - 3)  # pre-roll to hang time, all of it
    assert len(samples) / 8000 == pytest.approx(expected, abs=0.5)
    assert call["status"] == "complete" and call["duration_s"] == pytest.approx(expected, abs=0.5)
    (alarm,) = index.query("select * from alarms where code = 'DISK_WRITE_FAILED'")
    assert "No space left" in alarm["detail"]
    failed_s = parse_iso(alarm["cleared_at"]) - parse_iso(alarm["raised_at"])
    assert 4 <= failed_s <= 5.5  # 4 s of refusals, then the next retry (every second) got through


def test_a_disk_below_the_ring_buffer_floor_raises_disk_low_on_the_status_led(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    pcm, _ = render([("idle", 5)], seed=1)
    rec, pins, events = make(line, data_dir, tmp_path, storage={"keep_free_mb": 10_000_000})
    line.feed(pcm)
    rec.start()
    try:
        wait_for(lambda: rec.alarms.is_active("DISK_LOW"), timeout=5)
        wait_for(lambda: rec.leds.pattern("status") == "heartbeat", timeout=1)
        assert rec.leds.pattern("line1") == "slow_pulse"  # a warning: the line still shows what it does
        doc = rec.snapshot()
        assert doc["alarms"] == ["DISK_LOW"] and doc["disk"]["free_mb"] > 0
    finally:
        rec.stop()
        line.feeder.stop()
    (alarm,) = open_index(data_dir).query("select * from alarms where code = 'DISK_LOW'")
    assert alarm["severity"] == "warning"


def test_the_mute_button_silences_the_buzzer_until_a_new_critical_alarm(alsa, data_dir, tmp_path):
    (line,) = alsa.lines(1)
    pcm, _ = render([("idle", 30)], seed=1)
    rec, pins, _ = make(line, data_dir, tmp_path, leds={"buzzer": BUZZER_PIN, "mute_button": BUTTON_PIN})
    buzzer, button = pins.pin(BUZZER_PIN), pins.pin(BUTTON_PIN)
    line.feed(pcm)
    rec.start()
    try:
        wait_for(lambda: rec.leds.pattern("status") is not None, timeout=5)
        assert not buzzer.state
        # Critical alarms raised through the real alarm manager (their causes are tested above).
        rec.alarms.set("DISK_WRITE_FAILED", "line1", True, "injected: the card refuses writes")
        wait_for(lambda: buzzer.state, timeout=1)
        button.drive_low()  # pressed
        button.drive_high()
        wait_for(lambda: not buzzer.state, timeout=1)
        time.sleep(0.7)  # more than a health tick: the muted alarm stays silent
        assert not buzzer.state and rec.leds.pattern("status") == "fast_blink"  # the LEDs still say so
        rec.alarms.set("LINE_DEAD", "line1", True, "injected: a new critical alarm")
        wait_for(lambda: buzzer.state, timeout=1)  # the mute ends
    finally:
        rec.stop()
        line.feeder.stop()
