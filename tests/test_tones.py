"""Call-progress tones and their cadences, per tone set."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest

import spandsp_tones as sd
from linetap.sim import signals as sig
from linetap.detect.tones import KINDS, TONE_PLANS, TONE_SETS, ToneDetector, ToneEvent, reported_kind

# The first three tone sets, at 8 and 16 kHz; every country's plan is in test_tone_conformance.py.
FIRST_SETS = ("us", "uk", "eu")
ALL = [(ts, kind) for ts in FIRST_SETS for kind in ("dial", "busy", "reorder", "ringback")]
DISTINCT = [ts for i, ts in enumerate(TONE_SETS) if all(TONE_PLANS[ts] is not TONE_PLANS[t] for t in TONE_SETS[:i])]


def detect(x: np.ndarray, tone_set: str, rate: int = 8000, block: int | None = None) -> list[ToneEvent]:
    """The events of ``x`` fed in 1 s batches, as the recorder's LineAnalyzer feeds the detector
    (``batch_s``); events carry stream frames and do not depend on the block size
    (``test_block_size_does_not_change_the_events``, which also feeds 20 ms capture blocks)."""
    pcm = sig.to_pcm16(x)
    block = block or rate
    det = ToneDetector(rate, tone_set)
    events: list[ToneEvent] = []
    for i in range(0, len(pcm), block):
        events += det.feed(pcm[i : i + block], i)
    return events


def gated(freqs: tuple[float, ...], cadence: list[float], seconds: float, rate: int = 8000) -> np.ndarray:
    """A tone built here from the published figures (independently of TONE_PLANS)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = sum(0.1 * np.sin(2 * np.pi * f * t) for f in freqs)
    if not cadence:
        return x
    gate = np.zeros(n, dtype=bool)
    pos, i = 0.0, 0
    while pos < seconds:
        if i % 2 == 0:
            gate[int(pos * rate) : int((pos + cadence[i % len(cadence)]) * rate)] = True
        pos += cadence[i % len(cadence)]
        i += 1
    return np.where(gate, x, 0.0)


@pytest.mark.parametrize(("tone_set", "kind"), ALL)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_each_tone_is_reported_once_as_its_own_kind_with_noise_levels_and_clock_error(tone_set, kind, rate):
    rng = np.random.default_rng(rate)
    for level_dbfs, clock_error in ((-10, 0.0), (-25, 0.01), (-40, -0.01)):
        x = np.concatenate((np.zeros(rate // 2), sig.cadence_tone(kind, tone_set, 14, rate, level_dbfs)))
        if clock_error:
            x = sig.resample_error(x, clock_error)
        events = detect(sig.add_noise(x, 20, rng=rng), tone_set, rate)
        assert [e.kind for e in events] == [kind], (level_dbfs, clock_error)
        assert abs(events[0].start_frame - rate // 2) <= 0.05 * rate


@pytest.mark.parametrize(
    ("tone_set", "freqs", "cadence", "kind", "confirmed_by_s"),
    [
        ("us", (350, 440), [], "dial", 1.6),
        ("us", (480, 620), [0.5, 0.5], "busy", 2.6),
        ("us", (480, 620), [0.25, 0.25], "reorder", 1.6),
        ("us", (440, 480), [2.0, 4.0], "ringback", 6.6),
        ("uk", (350, 440), [], "dial", 1.6),
        ("uk", (400,), [0.375, 0.375], "busy", 2.1),
        ("uk", (400,), [0.4, 0.35, 0.225, 0.525], "reorder", 3.6),
        ("uk", (400, 450), [0.4, 0.2, 0.4, 2.0], "ringback", 3.6),
        ("eu", (425,), [], "dial", 2.1),
        ("eu", (425,), [0.5, 0.5], "busy", 2.6),
        ("eu", (425,), [0.25, 0.25], "reorder", 1.6),
        ("eu", (425,), [0.2, 0.2], "reorder", 1.4),  # the 0.2/0.2 national variant
        ("eu", (425,), [1.0, 4.0], "ringback", 5.6),
    ],
)
def test_tones_from_the_published_figures_are_confirmed_after_their_cadence(
    tone_set, freqs, cadence, kind, confirmed_by_s
):
    x = sig.add_noise(gated(freqs, cadence, 14), 20)
    events = detect(x, tone_set)
    assert [e.kind for e in events] == [kind]
    assert events[0].confirmed_frame <= confirmed_by_s * 8000
    assert events[0].start_frame <= 0.05 * 8000


def test_busy_is_confirmed_only_after_two_cycles():
    x = gated((480, 620), [0.5, 0.5], 1.6)  # one and a half cycles
    assert detect(sig.add_noise(x, 20), "us") == []


def test_dial_tone_is_not_reported_before_one_second():
    assert detect(sig.add_noise(gated((350, 440), [], 0.9), 20), "us") == []


def test_a_tone_is_reported_again_only_after_it_stopped_and_restarted():
    busy = gated((480, 620), [0.5, 0.5], 6)
    x = sig.add_noise(np.concatenate((busy, np.zeros(16000), busy)), 20)
    events = detect(x, "us")
    assert [e.kind for e in events] == ["busy", "busy"]
    assert events[1].start_frame >= 6 * 8000 + 16000 - 400


def test_continuous_dial_tone_is_reported_once_in_a_minute():
    assert [e.kind for e in detect(sig.add_noise(gated((350, 440), [], 60), 20), "us")] == ["dial"]


def test_eu_ringback_is_not_mistaken_for_dial_tone_though_both_are_425_hz():
    assert [e.kind for e in detect(gated((425,), [1.0, 4.0], 14), "eu")] == ["ringback"]


def test_uk_ringback_is_not_mistaken_for_busy_though_both_contain_400_hz():
    assert [e.kind for e in detect(gated((400, 450), [0.4, 0.2, 0.4, 2.0], 14), "uk")] == ["ringback"]


def test_a_tone_of_another_tone_set_is_not_reported():
    assert detect(gated((425,), [0.5, 0.5], 6), "us") == []
    assert detect(gated((480, 620), [0.5, 0.5], 6), "eu") == []


def test_block_size_does_not_change_the_events():
    x = sig.add_noise(np.concatenate((np.zeros(4000), gated((400,), [0.375, 0.375], 5))), 20)
    reference = detect(x, "uk")
    assert [e.kind for e in reference] == ["busy"]
    for block in (37, 160, 1000, len(x)):  # 160: one 20 ms capture block
        assert detect(x, "uk", block=block) == reference, block


def test_tones_are_not_detected_in_speech_like_audio():
    detectors = {ts: ToneDetector(8000, ts) for ts in DISTINCT}
    events = []
    for minute in range(4):
        x = sig.speech_like(60, 8000, rng=np.random.default_rng(300 + minute), level_dbfs=-12 - 8 * (minute % 3))
        pcm = sig.to_pcm16(sig.add_noise(x, 30, rng=np.random.default_rng(minute)))
        for det in detectors.values():
            events += det.feed(pcm, minute * 480_000)
    assert events == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tones_are_not_detected_in_espeak_speech():
    text = ("Good morning. I'm calling about the order you placed last week; one of the items is "
            "out of stock until Monday, so we could ship the rest now, or wait and send it all together.")
    detectors = {ts: ToneDetector(8000, ts) for ts in DISTINCT}
    events, pos = [], 0
    for voice, pitch in (("en", 20), ("en+f4", 60), ("it", 90)):
        wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, "-p", str(pitch), text],
                             capture_output=True, check=True).stdout
        with wave.open(io.BytesIO(wav)) as w:
            x = sig.resample(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0, w.getframerate(), 8000)
        pcm = sig.to_pcm16(0.5 * x)
        for det in detectors.values():
            events += det.feed(pcm, pos)
        pos += len(pcm)
    assert events == []


def test_unknown_tone_set_is_refused():
    with pytest.raises(ValueError, match="tone_set must be one of at, au, be, .*, us, za, not 'xx'"):
        ToneDetector(8000, "xx")


def test_tone_plans_have_the_four_basic_kinds_and_only_known_kinds():
    assert set(TONE_PLANS) == set(TONE_SETS)
    for ts, plan in TONE_PLANS.items():
        assert {"dial", "busy", "reorder", "ringback"} <= set(plan) <= set(KINDS), ts


def test_countries_are_iso_codes_and_the_first_tone_sets_are_still_accepted():
    for code in ("us", "ca", "mx", "br", "gb", "ie", "de", "fr", "it", "es", "pt", "nl", "be", "ch", "at", "se",
                 "no", "dk", "fi", "pl", "au", "nz", "jp", "in", "za", "sg", "uk", "eu"):
        assert code in TONE_SETS
    assert TONE_PLANS["uk"] is TONE_PLANS["gb"] and TONE_PLANS["ca"] is TONE_PLANS["us"]


def test_a_congestion_tone_that_is_the_busy_tone_is_reported_as_busy():
    # Mexico, Poland and Japan send the same tone for both: one event, "busy", not two. (Australia's
    # differs in level: test_australian_busy_and_congestion_are_told_apart_by_the_bursts_levels.)
    for ts in ("mx", "pl", "jp"):
        assert reported_kind(ts, "reorder") == "busy"
        events = detect(sig.cadence_tone("reorder", ts, 6, 8000, -20), ts)
        assert [e.kind for e in events] == ["busy"], ts
    assert reported_kind("de", "reorder") == "reorder"


def test_spanish_busy_waits_until_it_cannot_be_congestion_and_congestion_is_not_taken_for_busy():
    # Busy 0.2/0.2; congestion 0.2 on/off three times then 0.6 off: both begin the same way.
    busy = detect(np.concatenate((np.zeros(4000), gated((425,), [0.2, 0.2], 6))), "es")
    assert [e.kind for e in busy] == ["busy"]
    assert abs(busy[0].start_frame - 4000) <= 0.03 * 8000  # the event starts where the tone did
    assert busy[0].confirmed_frame - 4000 >= 6 * 1600 - 40  # after the 0.2 s "off" that rules congestion out
    congestion = detect(gated((425,), [0.2, 0.2, 0.2, 0.2, 0.2, 0.6], 8), "es")
    assert [e.kind for e in congestion] == ["reorder"]


def test_italian_cadenced_dial_tone_is_dial_not_congestion():
    events = detect(sig.add_noise(gated((425,), [0.2, 0.2, 0.6, 1.0], 6), 20), "it")
    assert [e.kind for e in events] == ["dial"]
    assert [e.kind for e in detect(gated((425,), [0.2, 0.2], 4), "it")] == ["reorder"]


def test_a_single_tone_between_a_dual_tones_frequencies_is_not_that_dual_tone():
    # UK number unobtainable (400 Hz continuous) lies between dial tone's 350 and 440 Hz.
    for err in (-0.015, 0.0, 0.015):
        x = sig.resample_error(np.concatenate((np.zeros(4000), gated((400,), [], 4))), err)
        assert [e.kind for e in detect(sig.add_noise(x, 15), "uk")] == ["unobtainable"], err


def test_the_special_information_tone_is_reported_as_a_sit_and_not_mistaken_for_any_other_tone():
    for ts, variant in (("us", "IC"), ("de", None), ("at", None)):
        events = detect(sig.add_noise(sig.cadence_tone("sit", ts, 8, 8000, -15), 20), ts)
        assert [(e.kind, e.variant) for e in events] == [("sit", variant)], ts  # once, though it repeats


@pytest.mark.parametrize("generator", ["spandsp", "own"])
@pytest.mark.parametrize("clean", [True, False])
def test_australian_busy_and_congestion_are_told_apart_by_the_bursts_levels(clean, generator):
    """Both are 425 Hz 0.375 on / 0.375 off; congestion's every other burst is 10 dB lower. With
    the weak bursts heard (40 dB SNR) the levels decide; under noise that hides them (15 dB SNR:
    the weak bursts are 5 dB above it) congestion is its strong bursts, 0.375 on / 1.125 off."""
    snr = 40 if clean else 15
    for kind in ("busy", "reorder"):
        if generator == "spandsp":  # -20 dBFS is -16.86 dBm0: spandsp takes whole dB
            tone = sd.spec_tone(TONE_PLANS["au"][kind], 6.0, -17) / 32768.0
        else:
            tone = sig.cadence_tone(kind, "au", 6, 8000, -20)
        x = np.concatenate((np.zeros(4000), tone))
        events = detect(sig.add_noise(x, snr, reference_dbfs=-20), "au")
        assert [e.kind for e in events] == [kind], (kind, snr)
        assert abs(events[0].start_frame - 4000) <= 0.03 * 8000
        # busy after two cycles (1.5 s); congestion too when its weak bursts are heard, else after
        # two cycles of its strong bursts (3 s).
        want = 1.5 if kind == "busy" or clean else 3.0
        assert (events[0].confirmed_frame - 4000) / 8000 == pytest.approx(want, abs=0.1)


def test_a_detector_measures_only_its_own_countrys_frequencies():
    # The per-frame DFT grows with the plan of the line's country, not with the number of plans.
    assert ToneDetector(8000, "us")._nf == ToneDetector(8000, "us")._nf
    widths = {ts: ToneDetector(8000, ts)._nf for ts in DISTINCT}
    assert max(widths.values()) <= 2 * widths["us"], widths


def test_a_busy_tone_in_progress_is_pending_from_its_start_until_confirmed():
    # The recorder holds back audio from pending_start, so a call can end where the tone began.
    from linetap.sim import signals as sig

    rate = 8000
    rng = np.random.default_rng(3)
    speech = sig.speech_like(4.0, rate, rng=rng, level_dbfs=-20)
    busy = sig.cadence_tone("busy", "us", 4.0, rate, -20)
    x = sig.to_pcm16(sig.add_noise(np.concatenate((speech, busy)), 30, reference_dbfs=-20))
    det = ToneDetector(rate, "us")
    seen = []
    for i in range(0, len(x), rate // 2):
        events = det.feed(x[i : i + rate // 2], i)
        seen.append((i + rate // 2, det.pending_start(("dial", "busy", "reorder")), [e.kind for e in events]))
    onset = len(speech)
    assert all(p is None for end, p, _ in seen if end <= onset)  # nothing pending during speech
    pending = [p for end, p, ev in seen if onset < end <= onset + 2 * rate and not ev]
    assert pending and all(abs(p - onset) <= 0.01 * rate for p in pending)
    confirmed = [end for end, _, ev in seen if "busy" in ev]
    assert confirmed and det.pending_start(("busy",)) is None and "busy" in det.active_kinds
