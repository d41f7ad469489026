"""Every country's call-progress tones, from libspandsp and from our own generator, through the detector.

The grid: each tone of each country's plan (``linetap.detect.tones.TONE_PLANS``), generated
twice, by libspandsp (``tests/spandsp_tones.py``, an implementation that knows nothing of ours) and
by ``linetap.sim.signals``, at three conditions chosen to span what a line delivers:

* -10 dBm0 per component, sample clock +1.5 %;
* -25 dBm0, clock -1.5 %;
* -45 dBm0 (-48.1 dBFS, just above the detector's -50 dBFS floor), clock +1.5 %;

each with 15 dB SNR (white noise, relative to the tone) and 3 s of speech-like audio before the
tone. A cell passes when the detector reports exactly the tone's kind (``reported_kind``: the kind
of the first identical tone, e.g. MX congestion is its busy tone), once, starting within 60 ms of
where the tone began, and nothing during the speech; a SIT also with its code (North America's
plan plays the intercept code, ``"IC"``; the Q.35 SIT has none). Every North American SIT code is
checked in ``tests/test_sit.py``.

The grid runs through ``ToneDetector`` directly, in 1 s batches (798 cells, some 6000 s of audio
in about 10 s): the detector is the only part that depends on the country. The capture path and the call
logic are the same for every plan, so ``tests/test_line_dsp_e2e.py`` takes a few countries
through ALSA and the recorder to a call ended with ``end_reason = "tone"``.

The results are the table at the end of ``docs/LINE-SIGNALS.md``, between the
``tone-conformance`` markers; the test compares the computed table with it, and
``LINETAP_UPDATE_DOCS=1`` rewrites it.
"""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import spandsp_tones as sd
from linetap.detect.tones import KINDS, TONE_PLANS, TONE_SETS, ToneDetector, ToneSpec, reported_kind
from linetap.sim import signals as sig

RATE = sd.RATE
DOC = Path(__file__).resolve().parents[1] / "docs" / "LINE-SIGNALS.md"
START, END = "<!-- tone-conformance:start -->", "<!-- tone-conformance:end -->"
SPEECH_S = 3.0
SNR_DB = 15.0
AM_DEPTH = 0.8  # no table gives a modulation depth; 80 % is between the detector's 45 % floor and 100 %
CONDITIONS = ((-10, 0.015), (-25, -0.015), (-45, 0.015))  # (dBm0 per component, clock error)
GENERATORS = ("spandsp", "own")
START_TOL_S = 0.060
# The recorder's LineAnalyzer feeds the detector ~1 s batches (``batch_s``), and the events do not
# depend on the block size (``test_block_size_does_not_change_the_events`` in tests/test_tones.py):
# 1 s batches give the table 20 ms blocks give, at a third of the grid's time (numpy overhead per call).
BATCH = RATE


def countries() -> list[str]:
    """Each distinct plan once, under its ISO code ("us" for US/CA, "gb" for the UK), then "eu"."""
    seen: list[int] = []
    out = []
    for ts in TONE_SETS:
        if id(TONE_PLANS[ts]) not in seen:
            seen.append(id(TONE_PLANS[ts]))
            out.append(ts)
    return out


def tone_seconds(kind: str, spec: ToneSpec) -> float:
    """Long enough for the confirmation (two cycles of busy/reorder, one of the others) and a second more."""
    if not spec.cadence_s:
        return 5.0
    cycles = 2 if kind in ("busy", "reorder", "sit") else 1
    longest = max(sum(p) for p in (spec.cadence_s, *spec.alt_cadences))  # AU congestion without its weak bursts
    return cycles * longest + spec.cadence_s[0] + 1.0


def component_to_total_db(spec: ToneSpec) -> float:
    """Total level of a tone over the level of one of its components (or of a modulated carrier)."""
    if spec.am_hz:
        return 10 * math.log10(1 + AM_DEPTH**2 / 2)
    if spec.sequential:
        return 0.0
    return 10 * math.log10(len(spec.freqs_hz))


@cache
def speech(seed: int) -> np.ndarray:
    return sig.speech_like(SPEECH_S, RATE, rng=np.random.default_rng(seed), level_dbfs=-20.0)


def render(ts: str, kind: str, generator: str, level_dbm0: int, clock_error: float, seed: int) -> np.ndarray:
    """Speech, then the tone, with the clock error and the noise: what the line would deliver."""
    spec = TONE_PLANS[ts][kind]
    seconds = tone_seconds(kind, spec)
    if generator == "spandsp":
        tone = sd.spec_tone(spec, seconds, level_dbm0, am_depth_pct=round(100 * AM_DEPTH)) / 32768.0
    else:
        total_dbfs = level_dbm0 + sd.DBM0_TO_DBFS + component_to_total_db(spec)
        tone = sig.spec_tone(spec, seconds, RATE, total_dbfs, am_depth=AM_DEPTH)
    x = np.concatenate((speech(seed % 3), tone))
    x = sig.resample_error(x, clock_error)
    tone_dbfs = level_dbm0 + sd.DBM0_TO_DBFS + component_to_total_db(spec)
    rng = np.random.default_rng(seed)
    return sig.add_noise(x, SNR_DB, rng=rng, reference_dbfs=tone_dbfs)


def sit_variant(ts: str) -> str | None:
    """The code the detector gives the plan's SIT: the intercept code in North America."""
    return "IC" if TONE_PLANS[ts] is TONE_PLANS["us"] else None


def cell(ts: str, kind: str, generator: str, level_dbm0: int, clock_error: float, seed: int) -> str:
    """"yes" when the detector got it right, else what it reported."""
    x = sig.to_pcm16(render(ts, kind, generator, level_dbm0, clock_error, seed))
    det = ToneDetector(RATE, ts)
    events = []
    for i in range(0, len(x), BATCH):
        events += det.feed(x[i : i + BATCH], i)
    onset = SPEECH_S * RATE / (1 + clock_error)
    want = reported_kind(ts, kind)
    if ([e.kind for e in events] == [want] and abs(events[0].start_frame - onset) <= START_TOL_S * RATE
            and (kind != "sit" or events[0].variant == sit_variant(ts))):
        return "yes"
    return "NO: " + ("+".join(f"{e.kind}@{e.start_frame / RATE:.2f}s" for e in events) or "nothing")


def fmt_tone(spec: ToneSpec) -> str:
    f = "/".join if spec.sequential else "+".join
    freqs = f(f"{x:g}" for x in spec.freqs_hz)
    if spec.am_hz:
        freqs += f" x {spec.am_hz:g}"
    cadence = "/".join(f"{d:g}" for d in spec.cadence_s) if spec.cadence_s else "continuous"
    if spec.on_levels_db:
        cadence += ", bursts at " + "/".join(f"{d:g}" for d in spec.on_levels_db) + " dB"
    for alt in spec.alt_cadences:
        cadence += " or " + "/".join(f"{d:g}" for d in alt)
    return f"{freqs} Hz, {cadence}"


def grid() -> tuple[str, list[str]]:
    """The markdown table and the failing cells."""
    head = ["country", "tone", "Hz, cadence (s on/off)", "source", "reported as"]
    cols = [f"{g} {lvl} dBm0 {err * 100:+.1f} %" for g in GENERATORS for lvl, err in CONDITIONS]
    lines = ["| " + " | ".join(head + cols) + " |", "|" + "---|" * (len(head) + len(cols))]
    failures = []
    seed = 0
    for ts in countries():
        plan = TONE_PLANS[ts]
        for kind in KINDS:
            if kind not in plan:
                continue
            spec = plan[kind]
            shown = reported_kind(ts, kind)
            if kind == "sit" and sit_variant(ts):
                shown += f" ({sit_variant(ts)})"
            row = [f"{plan.country} (`{ts}`)", kind, fmt_tone(spec), plan.source, shown]
            for g in GENERATORS:
                for lvl, err in CONDITIONS:
                    seed += 1
                    c = cell(ts, kind, g, lvl, err, seed)
                    if c.startswith("NO"):
                        failures.append(f"{ts} {kind} {g} {lvl} dBm0 {err:+.3f}: {c}")
                    row.append(c)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), failures


def committed_table() -> str:
    text = DOC.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip("\n")


def test_every_countrys_tones_from_spandsp_and_our_generator_are_recognised_as_what_they_are():
    table, failures = grid()
    if os.environ.get("LINETAP_UPDATE_DOCS") == "1":
        text = DOC.read_text()
        a, b = text.index(START) + len(START), text.index(END)
        DOC.write_text(text[:a] + "\n" + table + "\n" + text[b:])
    assert failures == []
    assert table == committed_table(), "docs/LINE-SIGNALS.md is out of date: run with LINETAP_UPDATE_DOCS=1"


def test_the_grid_covers_25_countries_and_every_kind_they_define():
    assert len([ts for ts in countries() if ts != "eu"]) >= 25
    for ts in countries():
        assert {"dial", "busy", "reorder", "ringback"} <= set(TONE_PLANS[ts]), ts


def test_spandsp_levels_follow_g711():
    # 0 dBm0 is a sine 3.14 dB below full scale (G.711's +3.14 dBm0 full-scale sine).
    x = sd.tone((1000.0,), (), 1.0, 0) / 32768.0
    assert 10 * math.log10(2 * float(np.mean(x**2))) == pytest.approx(sd.DBM0_TO_DBFS, abs=0.05)
    x = sd.tone((1000.0,), (), 1.0, -30) / 32768.0
    assert 10 * math.log10(2 * float(np.mean(x**2))) == pytest.approx(-30 + sd.DBM0_TO_DBFS, abs=0.1)


def test_spandsp_plays_the_cadence_it_is_given():
    # UK congestion: 0.4 on, 0.35 off, 0.225 on, 0.525 off (two spandsp on/off pairs).
    x = sd.tone((400.0,), (0.4, 0.35, 0.225, 0.525), 3.0, -10).astype(float)
    frames = np.abs(x[: len(x) // 40 * 40]).reshape(-1, 40).max(axis=1) > 100  # 5 ms frames
    edges = np.flatnonzero(np.diff(frames.astype(int))) + 1
    assert np.allclose(edges * 0.005, [0.4, 0.75, 0.975, 1.5, 1.9, 2.25, 2.475], atol=0.006)


@pytest.mark.parametrize("ts", ["au", "in", "za", "sg", "jp"])
@pytest.mark.parametrize("depth", [0.5, 1.0])
def test_modulated_tones_are_recognised_from_half_to_full_depth(ts, depth):
    plan = TONE_PLANS[ts]
    kind = next(k for k in ("dial", "ringback") if plan[k].am_hz)
    spec = plan[kind]
    for err in (-0.015, 0.015):
        tone = sig.spec_tone(spec, tone_seconds(kind, spec), RATE, -20, am_depth=depth)
        x = np.concatenate((np.zeros(RATE // 2), tone))
        x = sig.to_pcm16(sig.add_noise(sig.resample_error(x, err), 20))
        events = ToneDetector(RATE, ts).feed(x, 0)
        assert [e.kind for e in events] == [kind], err
