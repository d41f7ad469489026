"""The line's signals through the real capture path: caller ID, DTMF, masking, call-progress tones.

Audio is rendered from speech clips and the standards' test signals (sim/signals.py), fed
through pyalsaaudio -> libasound -> file PCM -> FIFO faster than real time (see
test_record_e2e.py), and the outcome is read back from the index and the stored files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from linetap.clock import FakeClock, parse_iso
from linetap.config import load
from linetap.sim import signals as sig
from linetap.detect.dtmf import DtmfDetector
from linetap.index.db import open_index
from linetap.recorder import Recorder
from linetap.sim.line import noise, render
from linetap.store import audio
import spandsp
import spandsp_tones as sd_tones
from helpers import write_config
from test_record_e2e import FAST, PERIOD_S, T0, run_until_fed

RATE = 8000
DTMF_HZ = (697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0)
KEYS = "4111#"
KEY_MS = 80.0


def pcm(x: np.ndarray, seed: int) -> np.ndarray:
    """A test signal (full scale 1.0) in int16 units with the line's noise floor under it."""
    return 32768.0 * np.asarray(x) + noise(len(x), RATE, np.random.default_rng(seed))


def keys(digits: str = KEYS) -> np.ndarray:
    """Keys pressed in a call: 80 ms tones, 80 ms apart, at -12 dBFS."""
    parts = []
    for d in digits:
        parts += [sig.dtmf_tone(d, KEY_MS, RATE, -12.0), sig.silence(KEY_MS, RATE)]
    return np.concatenate(parts[:-1])


def key_spans(start_s: float, digits: str = KEYS) -> list[tuple[int, int]]:
    """Frames [a, b) of each key in the fed audio, for a keys() segment starting at start_s."""
    n = int(round(KEY_MS * RATE / 1000))
    a0 = int(round(start_s * RATE))
    return [(a0 + 2 * i * n, a0 + 2 * i * n + n) for i in range(len(digits))]


def goertzel_db(x: np.ndarray) -> float:
    """Total power at the eight DTMF frequencies, in dB relative to a full-scale sine."""
    x = np.asarray(x, dtype=np.float64) / 32768.0
    t = np.arange(len(x))
    p = sum(abs(np.dot(x, np.exp(-2j * math.pi * f / RATE * t))) ** 2 for f in DTMF_HZ)
    return 10 * math.log10(max(p * 4 / len(x) ** 2 / 2, 1e-20))


def offset_in(fed: np.ndarray, recorded: np.ndarray) -> int:
    """Where a lossless recording's first samples lie in the fed audio (exact match), or -1."""
    needle, hay = recorded[:800].tobytes(), fed.tobytes()
    i = hay.find(needle)
    while i % 2:
        i = hay.find(needle, i + 1)
    return i // 2 if i >= 0 else -1


def record(alsa, data_dir, tmp_path, script, line_cfg: dict, *, codec: str = "flac", events=None):
    """Feed a script through ALSA into a recorder; the fed audio, its truth and the index rows.

    ``line_cfg``: the line's keys as written in the config file (e.g. ``tone_set``, any of
    ``detect.tones.TONE_SETS``, which config.py validates against). ``events``, a list, receives the
    recorder's events (what MQTT publishes)."""
    (line,) = alsa.lines(1)
    fed, truth = render(script, rate=RATE, seed=5)
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": line.pcm, **line_cfg}],
                            recorder=FAST, storage={"codec": codec}))
    rec = Recorder(cfg, clock=FakeClock(wall=T0))
    if events is not None:
        rec.listeners.subscribe(events.append)
    line.feed(fed)  # the FIFO has a writer before ALSA opens it
    rec.start()
    try:
        run_until_fed(rec, ["line1"], len(fed) / RATE)
    finally:
        rec.stop()
        line.feeder.stop()
    index = open_index(data_dir)
    rows = index.calls()
    index.close()
    return fed, truth, rows


def audio_s(row: dict, key: str) -> float:
    """A row's time as seconds into the fed audio."""
    return parse_iso(row[key]) - (T0 - PERIOD_S)


FSK_A = sig.fsk_callerid("5551234567", "ACME PIZZA", "11281530", "bell202", RATE, -15.0)
FSK_B = sig.fsk_callerid("0201234567", "J SMITH", "11281545", "v23", RATE, -18.0)


def cid_script() -> list[tuple]:
    return [
        ("idle", 5),
        ("raw", 0, pcm(FSK_A, 1)),     # caller ID between the rings; answered 4 s later
        ("idle", 4),
        ("call", 5),
        ("raw", 0, pcm(keys(), 2)),    # keys pressed in the call
        ("call", 5),
        ("idle", 12),
        ("raw", 0, pcm(FSK_B, 3)),     # V.23 caller ID 14 s before the next call starts
        ("idle", 14),
        ("call", 6),
        ("idle", 10),
    ]


def keys_start_s(truth) -> float:
    return [t for t in truth if t.kind == "raw"][1].start_s


def test_caller_id_before_a_call_and_keys_inside_it_land_in_the_index_row(alsa, data_dir, tmp_path):
    events: list[dict] = []
    fed, truth, rows = record(alsa, data_dir, tmp_path, cid_script(), {"callerid": ["bell202", "v23"]},
                              events=events)
    # The caller ID bursts alone are too short to be calls; the two conversations are two calls.
    assert len(rows) == 2, rows
    first, second = rows
    assert (first["caller_number"], first["caller_name"]) == ("5551234567", "ACME PIZZA")
    assert first["dtmf"] == KEYS
    # The event that leaves the box has the documented fields only (no path) and the keys masked:
    # mqtt.publish_dtmf is not set.
    ended = [e for e in events if e["type"] == "call_ended"]
    assert [set(e) for e in ended] == [{"type", "ts", "call_id", "line", "started_at", "ended_at", "duration_s",
                                        "caller_number", "caller_name", "caller_redirected_from", "waiting_callers",
                                        "dtmf", "end_reason", "checkpoint"}] * 2
    assert [(e["call_id"], e["dtmf"], e["caller_name"]) for e in ended] == [
        (first["id"], "*" * len(KEYS), "ACME PIZZA"), (second["id"], None, "J SMITH")]
    assert (second["caller_number"], second["caller_name"]) == ("0201234567", "J SMITH")
    assert second["dtmf"] is None
    assert [r["end_reason"] for r in rows] == ["vox_timeout", "vox_timeout"]
    # Nothing is lost or delayed on the way: each file is exactly the fed audio from its start on,
    # and its start is where the VOX put it (3 s of pre-roll before the first sound).
    fsk_a, call_b = truth[1], truth[-2]
    for row, onset in ((first, fsk_a.start_s + 0.1), (second, call_b.voice_start_s)):
        samples, _ = audio.read(data_dir / row["path"])
        off = offset_in(fed, samples[:, 0])
        assert off >= 0 and np.array_equal(samples[:, 0], fed[off:off + len(samples)])
        assert off / RATE == pytest.approx(onset - 3.0, abs=0.1)
        assert audio_s(row, "started_at") == pytest.approx(off / RATE, abs=0.05)
        assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.01)
    # The unmasked file still holds the keys: the detector used below to prove masking finds them.
    samples, _ = audio.read(data_dir / first["path"])
    found = DtmfDetector(RATE).feed(samples[:, 0], 0)
    assert "".join(d.digit for d in found) == KEYS


def test_masked_keys_never_reach_the_disk_and_the_speech_around_them_is_kept(alsa, data_dir, tmp_path):
    script = cid_script()[:7]
    events: list[dict] = []
    fed, truth, rows = record(alsa, data_dir, tmp_path, script, {"mask_dtmf": True}, events=events)
    (row,) = rows
    assert row["dtmf"] == "*" * len(KEYS)  # the count of keys, not their values
    (ended,) = [e for e in events if e["type"] == "call_ended"]
    assert (ended["call_id"], ended["dtmf"], ended["caller_number"]) == (row["id"], "*" * len(KEYS), "5551234567")
    assert (row["caller_number"], row["caller_name"]) == ("5551234567", "ACME PIZZA")
    samples, _ = audio.read(data_dir / row["path"])
    stored = samples[:, 0]
    off = offset_in(fed, stored)  # the pre-roll is unmasked noise: it locates the file exactly
    assert off >= 0
    assert off / RATE == pytest.approx(truth[1].start_s + 0.1 - 3.0, abs=0.1)
    assert audio_s(row, "ended_at") == pytest.approx(truth[5].voice_end_s + 8.0, abs=0.5)
    original = fed[off:off + len(stored)]
    assert len(stored) == len(original) and row["duration_s"] == pytest.approx(len(stored) / RATE, abs=0.01)
    # Our own detector hears no key in the stored file...
    assert DtmfDetector(RATE).feed(stored, 0) == []
    # ...and the spectrum agrees: at the eight DTMF frequencies, each key's span lost >= 40 dB.
    spans = [(a - off, b - off) for a, b in key_spans(keys_start_s(truth))]
    for a, b in spans:
        before, after = goertzel_db(original[a:b]), goertzel_db(stored[a:b])
        assert before > -20 and after < before - 40, (before, after)
    # Speech is touched only within 50 ms of a tone: every changed sample lies inside a guard.
    guard = int(0.050 * RATE)
    changed = np.flatnonzero(stored != original)
    assert len(changed) > 0
    inside = np.zeros(len(stored), dtype=bool)
    for a, b in spans:
        inside[max(0, a - guard):b + guard] = True
    assert inside[changed].all(), f"{np.count_nonzero(~inside[changed])} samples changed away from the keys"


def spandsp_burst(seed: int, level_dbm0: float, clock_error: float, *, dtmf: str = "", **adsi) -> np.ndarray:
    """Caller ID sent by libspandsp (tests/spandsp.py), at ``level_dbm0`` with 15 dB SNR white noise
    and a clock error, in int16 units over the line's noise floor."""
    x = spandsp.dtmf_audio(dtmf) if dtmf else spandsp.adsi_audio(**adsi)
    x = np.concatenate((np.zeros(RATE // 5), spandsp.scale_to_dbm0(x, level_dbm0), np.zeros(RATE // 5)))
    x = sig.resample_error(x, clock_error) if clock_error else x
    x = sig.add_noise(x, 15.0, rng=np.random.default_rng(seed), reference_dbfs=level_dbm0 + spandsp.DBM0_TO_DBFS)
    return pcm(x, seed)


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
@pytest.mark.parametrize("families", [("bell", "etsi", "dtmf"), ("mwi", "aclip", "jclip")])
def test_caller_id_of_every_family_from_spandsp_names_its_call_through_alsa(alsa, data_dir, tmp_path, families):
    """One of each family through the capture path (the grid of test_callerid_conformance.py
    runs the analyser directly): Bell 202 MDMF, ETSI/BT V.23 with a binary Call Type after a DT-AS
    alert, DTMF A...C, Australia's ACLIP and Japan's JCLIP; and an ETSI message-waiting burst (with a
    number in it) before a call it must not name. Speech (the calls) before and after each. Three
    families a recorder: six (127 s of audio) would pass the 120 s the test config lets queue
    (``queue_s``), which a loaded machine's pipeline can fall behind by when the FIFO is fed at once."""
    date, name = (1, b"11281545"), (7, b"BETA LTD")
    bursts = {
        "bell": (lambda: spandsp_burst(11, -45.0, 0.015, standard="class", message_type=0x80,
                                       fields=[date, (2, b"5551234567"), (7, b"ACME PIZZA")]),
                 ("5551234567", "ACME PIZZA")),
        "etsi": (lambda: spandsp_burst(12, -25.0, -0.015, standard="clip", message_type=0x80, alert=True,
                                       fields=[(0x11, b"\x01"), date, (2, b"0201234567"), name],
                                       preamble=(96, 55, 5, 1)),
                 ("0201234567", "BETA LTD")),
        "dtmf": (lambda: spandsp_burst(13, -10.0, 0.01, dtmf="A4512345678C"), ("4512345678", None)),
        "mwi": (lambda: spandsp_burst(14, -20.0, 0.0, standard="clip", message_type=0x82,
                                      fields=[date, (2, b"0309999999"), (0x0B, b"\xff"), (0x13, b"\x02")]),
                (None, None)),
        "aclip": (lambda: spandsp_burst(15, -35.0, 0.005, standard="aclip", message_type=0x80,
                                        fields=[date, (2, b"0398765432"), (7, b"GAMMA PTY")]),
                  ("0398765432", "GAMMA PTY")),
        "jclip": (lambda: spandsp_burst(16, -40.0, -0.01, standard="jclip", message_type=0x40,
                                        fields=[(2, b"0312345678")]),
                  ("0312345678", None)),
    }
    script = [("idle", 4)]
    for family in families:
        script += [("raw", 0, bursts[family][0]()), ("idle", 2), ("call", 5), ("idle", 12)]
    _, _, rows = record(alsa, data_dir, tmp_path, script, {"callerid": ["bell202", "v23", "dtmf"]})
    assert [(r["caller_number"], r["caller_name"]) for r in rows] == [bursts[f][1] for f in families]


@pytest.mark.parametrize("tone_set, kind, mask", [("us", "busy", False), ("uk", "reorder", True)])
def test_a_call_ended_by_a_busy_or_reorder_tone_ends_where_the_tone_began(
        alsa, data_dir, tmp_path, tone_set, kind, mask):
    tone = pcm(sig.cadence_tone(kind, tone_set, 12.0, RATE, -18.0), 4)
    script = [("idle", 5), ("call", 10), ("raw", 0, tone), ("idle", 12)]
    fed, truth, rows = record(alsa, data_dir, tmp_path, script, {"tone_set": tone_set, "mask_dtmf": mask})
    # One call, ended by the tone (not 8 s after the last sound), and none made of the tone itself.
    assert len(rows) == 1, rows
    (row,) = rows
    onset = truth[2].start_s
    assert row["end_reason"] == "tone"
    end = audio_s(row, "ended_at")
    # The file stops at the tone's start, or (unmasked audio is written as it comes) at most one
    # analysis batch (1 s) after it: the recording holds no more than a second of the tone.
    assert onset - 0.05 <= end <= onset + 1.1, (onset, end)
    if mask:  # masked audio waits for the analysis anyway: the cut is at the tone's start
        assert end == pytest.approx(onset, abs=0.05)
    samples, _ = audio.read(data_dir / row["path"])
    assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.01)


# One country per kind of plan: CEPT 425 Hz (Germany), Spain's congestion whose first bursts are
# its busy tone, India's 400 x 25 Hz modulated dial tone, the special information tone (North
# America's intercept code; Germany's Q.35 SIT, masked), at -30 dBm0 with the line's noise under
# it. Every country's tones are checked against the detector in test_tone_conformance.py; the
# capture path and the call logic do not depend on the country.
@pytest.mark.parametrize("country, kind, mask", [("de", "busy", False), ("es", "reorder", True), ("in", "dial", False),
                                                 ("us", "sit", False), ("de", "sit", True)])
def test_a_call_in_another_country_is_ended_by_that_countrys_tone(alsa, data_dir, tmp_path, country, kind, mask):
    tone = pcm(sig.cadence_tone(kind, country, 12.0, RATE, -30.0 - 3.14), 4)
    script = [("idle", 5), ("call", 10), ("raw", 0, tone), ("idle", 12)]
    fed, truth, rows = record(alsa, data_dir, tmp_path, script, {"mask_dtmf": mask, "tone_set": country})
    assert len(rows) == 1, rows
    (row,) = rows
    onset = truth[2].start_s
    assert row["end_reason"] == "tone"
    end = audio_s(row, "ended_at")
    assert onset - 0.05 <= end <= onset + 1.1, (onset, end)
    if mask:
        assert end == pytest.approx(onset, abs=0.05)


# --- the same rules at the LineCalls seam (no ALSA: a fake recording, blocks fed directly) ---------
class FakeRecording:
    def __init__(self, line, started_at: float, n: int) -> None:
        self.id, self.rate, self.started_at = n, line.rate, started_at
        self.frames = 0
        self.caller_number = self.caller_name = None
        self.dtmf = ""
        self.end_reason: str | None = None
        self.discarded = False

    def write(self, frames: np.ndarray) -> None:
        self.frames += len(frames)

    def set_caller(self, number, name) -> None:
        self.caller_number, self.caller_name = number, name

    def finish(self, end_reason: str, status: str = "complete") -> dict:
        self.end_reason = end_reason
        return {"id": self.id, "duration_s": self.frames / self.rate}

    def discard(self) -> None:
        self.discarded = True


def run_line(fed: np.ndarray, hook=None, **line_kw) -> list[FakeRecording]:
    from linetap.calls.line import LineCalls
    from linetap.capture import Block
    from linetap.config import LineConfig

    line = LineConfig(name="l", pcm="null", rate=RATE, **line_kw)
    made: list[FakeRecording] = []

    def open_recording(cfg, started_at):
        made.append(FakeRecording(cfg, started_at, len(made) + 1))
        return made[-1]

    calls = LineCalls(line, open_recording=open_recording, hook=(lambda: hook(calls.frames_seen)) if hook else None)
    for i in range(0, len(fed), RATE // 50):
        x = fed[i:i + RATE // 50].reshape(-1, 1)
        calls.on_block(Block("l", x, i, T0 + i / RATE, RATE))
    calls.shutdown()
    return [r for r in made if not r.discarded]


def test_dial_tone_at_the_start_of_a_call_does_not_end_it_but_busy_after_the_talk_does():
    script = [("idle", 3), ("raw", 0, pcm(sig.cadence_tone("dial", "us", 3.0, RATE, -18.0), 6)),
              ("raw", 0, pcm(keys("5551234"), 7)),
              ("raw", 0, pcm(sig.cadence_tone("ringback", "us", 6.0, RATE, -18.0), 8)),
              ("call", 8), ("raw", 0, pcm(sig.cadence_tone("busy", "us", 10.0, RATE, -18.0), 9)),
              ("idle", 12)]
    fed, truth = render(script, rate=RATE, seed=6)
    (rec,) = run_line(fed)
    assert rec.end_reason == "tone" and rec.dtmf == "5551234"
    busy_at = truth[5].start_s
    rec_start = truth[1].start_s - 3.0  # the dial tone started the call, with its pre-roll
    assert rec_start + rec.frames / RATE == pytest.approx(busy_at, abs=1.1)


def test_an_off_hook_call_ended_by_busy_tone_waits_for_on_hook_before_the_next_call():
    script = [("idle", 2), ("call", 8), ("raw", 0, pcm(sig.cadence_tone("busy", "us", 10.0, RATE, -18.0), 10)),
              ("idle", 5), ("call", 6), ("idle", 2)]
    fed, truth = render(script, rate=RATE, seed=8)
    # Off-hook from 1 s to 24 s (through the tone and the silence after it), again from 26 s.
    offhook = lambda frame: RATE <= frame < 24 * RATE or frame >= 26 * RATE  # noqa: E731
    first, second = run_line(fed, hook=offhook, trigger="offhook", offhook_gpio=17)
    assert first.end_reason == "tone"
    # The pre-roll reaches back to frame 0 (off-hook at 1 s): the file's length is where it ended.
    busy_at = truth[2].start_s
    assert busy_at - 0.05 <= first.frames / RATE <= busy_at + 1.1
    # No call while the phone stayed off-hook after the tone; the next off-hook (at 26 s) is a new
    # call with its pre-roll.
    assert second.end_reason == "shutdown" and second.started_at == pytest.approx(T0 + 26.0 - 3.0, abs=0.05)


@pytest.mark.parametrize("country, variant", [("us", "IC"), ("gb", "")])
def test_a_call_ended_by_a_sit_says_which_on_its_summary(country, variant):
    """The SIT (from libspandsp) after 8 s of talk ends the call where it began; its code (North
    America's intercept, or "" for the Q.35 SIT) is on the call's summary."""
    from linetap.detect.tones import TONE_PLANS

    tone = sd_tones.spec_tone(TONE_PLANS[country]["sit"], 6.0, -25) / 32768.0
    tone = sig.add_noise(sig.resample_error(tone, -0.015), 15.0, rng=np.random.default_rng(3),
                         reference_dbfs=-25 + spandsp.DBM0_TO_DBFS)
    script = [("idle", 3), ("call", 8), ("raw", 0, pcm(tone, 4)), ("idle", 12)]
    fed, truth = render(script, rate=RATE, seed=13)
    (summary,) = run_line_summaries(fed, tone_set=country)
    assert summary["sit"] == variant
    onset = truth[2].start_s - (truth[1].start_s - 3.0)  # into the recording (3 s pre-roll)
    assert onset - 0.05 <= summary["duration_s"] <= onset + 1.1


def test_a_long_call_split_at_max_length_keeps_its_caller_on_every_part():
    script = [("idle", 4), ("raw", 0, pcm(FSK_A, 1)), ("idle", 2), ("call", 24), ("idle", 10)]
    fed, _ = render(script, rate=RATE, seed=9)
    recs = run_line(fed, max_call_s=10.0, callerid=("bell202",))
    assert len(recs) >= 3 and [r.end_reason for r in recs][:2] == ["max_length", "max_length"]
    assert {(r.caller_number, r.caller_name) for r in recs} == {("5551234567", "ACME PIZZA")}


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_a_forwarded_call_split_at_max_length_keeps_its_original_number_on_every_part():
    fwd = spandsp_burst(33, -20.0, 0.0, standard="clip", message_type=0x80,
                        fields=[(1, b"11281545"), (2, b"0201234567"), (0x1A, b"0307654321")])
    script = [("idle", 4), ("raw", 0, fwd), ("idle", 2), ("call", 24), ("idle", 10), ("call", 4), ("idle", 10)]
    fed, _ = render(script, rate=RATE, seed=9)
    recs = run_line(fed, max_call_s=10.0, callerid=("v23",))
    reasons = [r.end_reason for r in recs]
    n = reasons.index("vox_timeout") + 1  # the forwarded call's parts; the next call's follow
    assert n >= 3 and reasons[:n - 1] == ["max_length"] * (n - 1) and len(recs) > n
    assert [(r.caller_number, r.caller_redirected_from) for r in recs] == \
        [("0201234567", "0307654321")] * n + [(None, None)] * (len(recs) - n)  # the next call is not forwarded


# --- caller ID on call waiting (CAS, the phone's acknowledgement, FSK during the call) ---------------
class Summaries:
    def __init__(self) -> None:
        self.ended: list[dict] = []

    def call_started(self, line, call_id, started_at) -> None:
        pass

    def call_ended(self, line, summary) -> None:
        self.ended.append(summary)


def call_waiting_burst(seed: int, *, cas: bool = True) -> np.ndarray:
    """What the line carries when a second caller rings during a call (Telcordia GR-30 type II):
    the CAS (80 ms), the phone's acknowledgement (DTMF D from spandsp), then spandsp's Bell 202
    MDMF without channel seizure (80 mark bits), at -25 dBm0 with 15 dB SNR and +1 % clock error."""
    gap = np.zeros(RATE // 10)
    alert = sig.cas_tone(RATE, -20.0) if cas else np.zeros(640)
    ack = spandsp.scale_to_dbm0(spandsp.dtmf_audio("D", on_ms=65, off_ms=0), -20.0)
    fsk = spandsp.scale_to_dbm0(spandsp.adsi_audio("class", 0x80, [(1, b"11281550"), (2, b"5559876543"),
                                                   (7, b"SECOND CALLER")], preamble=(0, 80, 5, 1)), -25.0)
    x = np.concatenate((gap, alert, gap, ack, 2 * gap, fsk, gap))
    x = sig.add_noise(sig.resample_error(x, 0.01), 15.0, rng=np.random.default_rng(seed),
                      reference_dbfs=-25.0 + spandsp.DBM0_TO_DBFS)
    return pcm(x, seed)


def run_line_summaries(fed: np.ndarray, **line_kw) -> list[dict]:
    from linetap.calls.line import LineCalls
    from linetap.capture import Block
    from linetap.config import LineConfig

    line = LineConfig(name="l", pcm="null", rate=RATE, **line_kw)
    made: list[FakeRecording] = []

    def open_recording(cfg, started_at):
        made.append(FakeRecording(cfg, started_at, len(made) + 1))
        return made[-1]

    listener = Summaries()
    calls = LineCalls(line, open_recording=open_recording, listener=listener)
    for i in range(0, len(fed), RATE // 50):
        calls.on_block(Block("l", fed[i:i + RATE // 50].reshape(-1, 1), i, T0 + i / RATE, RATE))
    calls.shutdown()
    for summary, rec in zip(listener.ended, [r for r in made if not r.discarded]):
        summary.update(caller=(rec.caller_number, rec.caller_name), dtmf=rec.dtmf)
    return listener.ended


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_call_waiting_caller_id_during_a_call_is_attached_to_it_as_a_second_caller():
    script = [("idle", 3), ("raw", 0, pcm(FSK_A, 1)), ("idle", 2), ("call", 14),
              ("raw", 0, call_waiting_burst(21)), ("call", 6), ("raw", 0, pcm(keys("12"), 22)), ("call", 2),
              ("idle", 12)]
    fed, truth = render(script, rate=RATE, seed=10)
    (summary,) = run_line_summaries(fed)
    # The call keeps its own (on-hook) caller; the second caller is attached to it, not a new call.
    assert summary["caller"] == ("5551234567", "ACME PIZZA")
    (waiting,) = summary["waiting_callers"]
    assert (waiting["number"], waiting["name"]) == ("5559876543", "SECOND CALLER")
    burst_s = truth[4].start_s - (truth[1].start_s + 0.1 - 3.0)  # into the recording (3 s pre-roll)
    assert burst_s < waiting["at_s"] < burst_s + 1.0
    # The phone's acknowledgement (D) was signalling; the keys pressed later in the call stay.
    assert summary["dtmf"] == "12"


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_without_the_alert_fsk_during_an_established_call_is_not_listened_to():
    script = [("idle", 3), ("call", 14), ("raw", 0, call_waiting_burst(23, cas=False)), ("call", 4), ("idle", 12)]
    fed, _ = render(script, rate=RATE, seed=11)
    (summary,) = run_line_summaries(fed)
    assert "waiting_callers" not in summary and summary["caller"] == (None, None)


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_a_redirected_calls_original_number_is_on_its_summary():
    fwd = spandsp_burst(31, -20.0, 0.0, standard="clip", message_type=0x80,
                        fields=[(1, b"11281545"), (2, b"0201234567"), (0x1A, b"0307654321")])
    script = [("idle", 3), ("raw", 0, fwd), ("idle", 2), ("call", 6), ("idle", 12), ("call", 4), ("idle", 12)]
    fed, _ = render(script, rate=RATE, seed=12)
    first, second = run_line_summaries(fed)
    assert first["caller"] == ("0201234567", None) and first["caller_redirected_from"] == "0307654321"
    assert second["caller"] == (None, None) and "caller_redirected_from" not in second


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_a_forwarded_calls_number_and_its_waiting_callers_are_kept_in_the_index_sidecar_and_event(
        alsa, data_dir, tmp_path):
    """Issue 18: the parsed caller-ID fields that mean something to the owner are kept, through ALSA:
    an ETSI call set-up with a redirecting number (0x1A) before a call during which a second caller is
    announced (CAS, Bell 202 MDMF), then spandsp's DTMF ``A<number>D<diverting number>C`` before a
    second call. Each lands in the index row, the sidecar, the ``call_ended`` event and, after the
    index is lost, the rebuilt row."""
    from linetap.index.db import public_call
    from linetap.index.rebuild import open_or_rebuild
    from linetap.store.sidecar import read_sidecar, sidecar_path
    fwd = spandsp_burst(31, -20.0, 0.0, standard="clip", message_type=0x80,
                        fields=[(1, b"11281545"), (2, b"0201234567"), (0x1A, b"0307654321")])
    dtmf = spandsp_burst(32, -15.0, 0.01, dtmf="A4512345678D4587654321C")
    script = [("idle", 3), ("raw", 0, fwd), ("idle", 2), ("call", 14), ("raw", 0, call_waiting_burst(21)),
              ("call", 6), ("idle", 12), ("raw", 0, dtmf), ("idle", 2), ("call", 5), ("idle", 12)]
    events: list[dict] = []
    _, truth, rows = record(alsa, data_dir, tmp_path, script, {"callerid": ["bell202", "v23", "dtmf"]},
                            events=events)
    first, second = (public_call(r) for r in rows)
    assert (first["caller_number"], first["caller_redirected_from"]) == ("0201234567", "0307654321")
    (waiting,) = first["waiting_callers"]
    assert (waiting["number"], waiting["name"]) == ("5559876543", "SECOND CALLER")
    burst_s = truth[4].start_s - (truth[1].start_s + 0.2 - 3.0)  # into the recording (3 s pre-roll)
    assert burst_s < waiting["at_s"] < burst_s + 1.0
    assert (second["caller_number"], second["caller_redirected_from"], second["waiting_callers"]) == \
        ("4512345678", "4587654321", [])
    ended = [e for e in events if e["type"] == "call_ended"]
    assert [(e["caller_redirected_from"], e["waiting_callers"]) for e in ended] == \
        [("0307654321", [waiting]), ("4587654321", [])]
    kept = ("caller_number", "caller_redirected_from", "waiting_callers")
    for row in (first, second):
        doc = read_sidecar(sidecar_path(data_dir / row["path"]))
        assert doc is not None and {k: doc[k] for k in kept} == {k: row[k] for k in kept}
    for name in ("index.db", "index.db-wal", "index.db-shm"):  # the index lost: rebuilt from the sidecars
        (data_dir / name).unlink(missing_ok=True)
    index, report = open_or_rebuild(data_dir, clock=FakeClock(wall=T0 + 3600))
    try:
        assert report is not None and report.from_sidecars == 2
        rebuilt = {r["path"]: public_call(r) for r in index.calls()}
    finally:
        index.close()
    assert [{k: rebuilt[r["path"]][k] for k in kept} for r in (first, second)] == \
        [{k: r[k] for k in kept} for r in (first, second)]


# --- call waiting in a call's first seconds (issue 18): the alert decides, not the 10 s window ------
def oracle_call_waiting(seed: int, standard: str) -> np.ndarray:
    """Call waiting from libspandsp alone: for Bell 202, spandsp's tone generator plays the CAS
    (2130 + 2750 Hz, 80 ms), then the phone's DTMF D and MDMF without seizure; for ETSI/BT V.23,
    spandsp's ADSI transmitter sends its own DT-AS before the call set-up. -25 dBm0, 15 dB SNR,
    -1.5 % clock."""
    fields = [(1, b"11281550"), (2, b"5559876543"), (7, b"SECOND CALLER")]
    gap = np.zeros(RATE // 10)
    if standard == "class":
        alert = sd_tones.tone((2130.0, 2750.0), (), 0.08, -23)
        ack = spandsp.scale_to_dbm0(spandsp.dtmf_audio("D", on_ms=65, off_ms=0), -20.0)
        fsk = spandsp.scale_to_dbm0(spandsp.adsi_audio("class", 0x80, fields, preamble=(0, 80, 5, 1)), -25.0)
        x = np.concatenate((gap, alert / 32768.0, gap, ack, 2 * gap, fsk, gap))
    else:
        burst = spandsp.adsi_audio("clip", 0x80, fields, alert=True, preamble=(0, 80, 5, 1))
        x = np.concatenate((gap, spandsp.scale_to_dbm0(burst, -25.0), gap))
    x = sig.add_noise(sig.resample_error(x, -0.015), 15.0, rng=np.random.default_rng(seed),
                      reference_dbfs=-25.0 + spandsp.DBM0_TO_DBFS)
    return pcm(x, seed)


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
@pytest.mark.parametrize("standard", ["class", "clip"])
@pytest.mark.parametrize("own_caller", [False, True])
def test_call_waiting_in_the_first_seconds_of_a_call_is_a_second_caller_not_the_calls(standard, own_caller):
    """3 s into a call (inside the first 10 s, where a caller ID can still name the call), an
    alerted call set-up is the second caller's: it never names the call, with or without the call's
    own on-hook caller ID (BT style: DT-AS, then V.23 without seizure, from spandsp) before it."""
    before: list[tuple] = [("idle", 3)]
    if own_caller:
        before += [("raw", 0, spandsp_burst(41, -20.0, 0.01, standard="clip", message_type=0x80, alert=True,
                                            fields=[(1, b"11281545"), (2, b"0201234567"), (7, b"BETA LTD")],
                                            preamble=(0, 80, 5, 1))), ("idle", 2)]
    script = [*before, ("call", 3), ("raw", 0, oracle_call_waiting(42, standard)), ("call", 5), ("idle", 12)]
    fed, truth = render(script, rate=RATE, seed=14)
    (summary,) = run_line_summaries(fed, callerid=("bell202", "v23"))
    assert summary["caller"] == (("0201234567", "BETA LTD") if own_caller else (None, None))
    (waiting,) = summary["waiting_callers"]
    assert (waiting["number"], waiting["name"]) == ("5559876543", "SECOND CALLER")
    if standard == "class":
        assert summary["dtmf"] == ""  # the phone's acknowledgement was signalling


@pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")
def test_an_alerted_on_hook_caller_id_that_starts_a_vox_call_still_names_it():
    """BT: DT-AS, then the caller ID, then the call at once; under VOX the alert itself starts the
    recording, so it lies at the call's onset: the caller ID is the call's own, not call waiting."""
    burst = spandsp_burst(43, -15.0, -0.01, standard="clip", message_type=0x80, alert=True,
                          fields=[(1, b"11281545"), (2, b"0201234567"), (7, b"BETA LTD")], preamble=(0, 80, 5, 1))
    script = [("idle", 3), ("raw", 0, burst), ("call", 6), ("idle", 12)]
    fed, _ = render(script, rate=RATE, seed=15)
    (summary,) = run_line_summaries(fed, callerid=("bell202", "v23"))
    assert summary["caller"] == ("0201234567", "BETA LTD")
    assert "waiting_callers" not in summary
