"""Special information tones (detect/sit.py): every North American code and the Q.35 SIT, from
libspandsp (``tests/spandsp_tones.py``, the independent oracle) and from ``linetap.sim.signals``.

Conditions as in the tone conformance grid: -10 and -45 dBm0 per tone, sample clock +-1.5 %,
15 dB SNR (white noise relative to the tone), 3 s of speech before the tone. A case passes when the
detector reports one ``"sit"`` event with the code's variant, starting within 60 ms of the tone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import spandsp_tones as sd
from linetap.detect import sit as sitmod
from linetap.detect.sit import NA_SIT_CODES, Q35_SEGMENTS, SitCode
from linetap.detect.tones import ToneDetector, ToneSpec
from linetap.sim import signals as sig
from linetap.sim.line import conversation, noise

RATE = 8000
SPEECH_S = 3.0
CONDITIONS = ((-10, 0.015), (-45, -0.015), (-45, 0.015))


def code_spec(code: SitCode) -> ToneSpec:
    """The code as a sequential tone the generators play: its three tones without gaps, 1 s off."""
    (f1, d1), (f2, d2), (f3, d3) = code.segments
    return ToneSpec((f1, f2, f3), (d1, 0.0, d2, 0.0, d3, 1.0), sequential=True)


def render(spec: ToneSpec, generator: str, level_dbm0: int, clock_error: float, seed: int) -> np.ndarray:
    seconds = 2 * sum(spec.cadence_s) + 0.5  # it repeats once: still one event
    if generator == "spandsp":
        tone = sd.spec_tone(spec, seconds, level_dbm0) / 32768.0
    else:
        tone = sig.spec_tone(spec, seconds, RATE, level_dbm0 + sd.DBM0_TO_DBFS)
    speech = sig.speech_like(SPEECH_S, RATE, rng=np.random.default_rng(seed), level_dbfs=-20.0)
    x = sig.resample_error(np.concatenate((speech, tone)), clock_error)
    x = sig.add_noise(x, 15.0, rng=np.random.default_rng(seed + 100), reference_dbfs=level_dbm0 + sd.DBM0_TO_DBFS)
    return sig.to_pcm16(x)


def detect(x: np.ndarray, tone_set: str, block: int = RATE // 50):
    det = ToneDetector(RATE, tone_set)
    events = []
    for i in range(0, len(x), block):
        events += det.feed(x[i : i + block], i)
    return events


@pytest.mark.parametrize("generator", ["spandsp", "own"])
@pytest.mark.parametrize("code", NA_SIT_CODES, ids=lambda c: c.name)
def test_every_north_american_sit_code_is_recognised_with_its_variant(code, generator):
    for seed, (level, err) in enumerate(CONDITIONS):
        x = render(code_spec(code), generator, level, err, seed)
        events = detect(x, "us")
        assert [(e.kind, e.variant) for e in events] == [("sit", code.name)], (level, err, events)
        onset = SPEECH_S * RATE / (1 + err)
        assert abs(events[0].start_frame - onset) <= 0.060 * RATE
        # Confirmed when the third tone ends: about a second after it began.
        assert events[0].confirmed_frame - events[0].start_frame <= 1.2 * RATE


@pytest.mark.parametrize("tone_set, segments", [("us", Q35_SEGMENTS), ("de", Q35_SEGMENTS), ("gb", Q35_SEGMENTS),
                                                ("at", ((950.0, 0.33), (1450.0, 0.33), (1850.0, 0.33)))])
@pytest.mark.parametrize("generator", ["spandsp", "own"])
def test_the_q35_sit_is_recognised_in_north_america_too_without_a_variant(tone_set, segments, generator):
    # Q.35: 330 ms tones with up to 30 ms between them, then 1 s off; PBXs send it in North America.
    (f1, d1), (f2, d2), (f3, d3) = segments
    spec = ToneSpec((f1, f2, f3), (d1, 0.03, d2, 0.03, d3, 1.0), sequential=True)
    for seed, (level, err) in enumerate(CONDITIONS):
        events = detect(render(spec, generator, level, err, 10 + seed), tone_set)
        assert [(e.kind, e.variant) for e in events] == [("sit", None)], (level, err, events)


def test_australias_plan_has_no_sit_and_reports_none_as_docs_line_signals_says():
    # docs/LINE-SIGNALS.md: no published Australian SIT was found; every other plan looks for Q.35's.
    from linetap.detect.tones import TONE_PLANS
    assert [k for k, plan in TONE_PLANS.items() if "sit" not in plan] == ["au"]
    (f1, d1), (f2, d2), (f3, d3) = Q35_SEGMENTS
    spec = ToneSpec((f1, f2, f3), (d1, 0.03, d2, 0.03, d3, 1.0), sequential=True)
    assert [e.kind for e in detect(render(spec, "spandsp", -10, 0.0, 30), "au")] == []


def test_a_sit_at_16_khz_and_fed_in_one_second_batches():
    spec = code_spec(NA_SIT_CODES[1])
    tone = sig.spec_tone(spec, 3.0, 16000, -30.0)
    x = sig.to_pcm16(sig.add_noise(np.concatenate((np.zeros(8000), tone)), 20, reference_dbfs=-30.0))
    det = ToneDetector(16000, "us")
    events = [e for i in range(0, len(x), 16000) for e in det.feed(x[i : i + 16000], i)]
    assert [(e.kind, e.variant) for e in events] == [("sit", "VC")]
    assert abs(events[0].start_frame - 8000) <= 0.06 * 16000


def test_three_tones_out_of_order_or_too_long_are_no_sit():
    # 1776.7 first, the NA tones each 600 ms, a SIT's first two tones only, a 1400 Hz recorder
    # warning tone (0.5 s every 15 s, here every 1.5 s).
    cases = [
        ToneSpec((1776.7, 1370.6, 913.8), (0.38, 0.0, 0.274, 0.0, 0.274, 1.0), sequential=True),
        ToneSpec((913.8, 1370.6, 1776.7), (0.6, 0.0, 0.6, 0.0, 0.6, 1.0), sequential=True),
        ToneSpec((913.8, 1370.6), (0.274, 0.0, 0.274, 1.0), sequential=True),
        ToneSpec((1400.0,), (0.5, 1.0)),
    ]
    for spec in cases:
        x = sig.spec_tone(spec, 6.0, RATE, -20.0)
        assert detect(sig.to_pcm16(sig.add_noise(x, 20, reference_dbfs=-20.0)), "us") == [], spec


def test_speech_gives_no_sit_and_seldom_opens_the_gate():
    """Ten minutes of the speech clips and of synthetic speech: no SIT, and the gate (the only
    per-frame cost while no tone is on) passes under 3 % of the frames, so the FFT of a run is rare."""
    rng = np.random.default_rng(7)
    clips, _, _ = conversation(300.0, RATE, rng)
    clips = sig.to_pcm16(clips + noise(len(clips), RATE, rng) / 32768.0)
    synth = sig.to_pcm16(sig.speech_like(300.0, RATE, rng=rng, level_dbfs=-20.0))
    for x in (clips, synth):
        for ts in ("us", "de"):
            det = ToneDetector(RATE, ts)
            sit = det._sit
            assert sit is not None
            gated = total = 0
            real_gate = sit.gate

            def counting_gate(*a, **k):
                nonlocal gated, total
                g, f = real_gate(*a, **k)
                gated += int(g.sum())
                total += len(g)
                return g, f

            sit.gate = counting_gate  # type: ignore[method-assign]
            events = [e for i in range(0, len(x), RATE) for e in det.feed(x[i : i + RATE], i)]
            assert [e for e in events if e.kind == "sit"] == [], ts
            assert total and gated / total < 0.03, (ts, gated, total)


def test_a_sit_in_progress_is_pending_from_its_start_until_confirmed():
    # The recorder holds back audio from pending_start, so a call ends where the SIT began.
    spec = code_spec(NA_SIT_CODES[0])
    speech = sig.speech_like(4.0, RATE, rng=np.random.default_rng(3), level_dbfs=-20)
    x = sig.to_pcm16(sig.add_noise(np.concatenate((speech, sig.spec_tone(spec, 2.0, RATE, -20))), 30,
                                   reference_dbfs=-20))
    det = ToneDetector(RATE, "us")
    seen = []
    step = RATE // 4
    for i in range(0, len(x), step):
        events = det.feed(x[i : i + step], i)
        seen.append((i + step, det.pending_start(("sit",)), [e.kind for e in events]))
    onset = len(speech)
    assert all(p is None for end, p, _ in seen if end <= onset - step)
    confirmed_at = next(end for end, _p, ev in seen if ev)
    pending = [p for end, p, _ev in seen if onset + step < end < confirmed_at]
    assert pending and all(p is not None and abs(p - onset) <= 0.05 * RATE for p in pending)
    assert any("sit" in ev for _end, _p, ev in seen)
    assert "sit" in det.active_kinds or det.pending_start(("sit",)) is None


def test_the_north_american_variants_are_told_apart_by_ratio_whatever_the_clock():
    # At +1.5 % the low second tone (1370.6 Hz) reads 1391 Hz, at -1.5 % the high one (1428.5)
    # 1407 Hz: 16 Hz apart. Their ratios to the third tone stay 0.771 and 0.804.
    lo = 1370.6 * 1.015
    hi = 1428.5 * 0.985
    assert hi - lo < 17
    assert math.isclose(lo / (1776.7 * 1.015), 1370.6 / 1776.7) and math.isclose(hi / (1776.7 * 0.985), 1428.5 / 1776.7)
    assert sitmod._NA_RATIO_TOL < 0.5 * (1428.5 / 1370.6 - 1)
