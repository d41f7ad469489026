"""DTMF detection and masking, against signals built from ITU-T Q.23/Q.24 definitions."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest

from linetap.sim import signals as sig
from linetap.detect.dtmf import DtmfDetector, DtmfDigit, DtmfMasker, mask_dtmf

KEYS = "0123456789*#ABCD"
DTMF_HZ = np.array([697, 770, 852, 941, 1209, 1336, 1477, 1633], dtype=float)


def detect(x: np.ndarray, rate: int = 8000, block: int | None = None, start: int = 0) -> list[DtmfDigit]:
    """Feed a signal the way the recorder does: int16 blocks of 20 ms (by default)."""
    pcm = sig.to_pcm16(x) if x.dtype.kind == "f" else x
    block = block or rate // 50
    det = DtmfDetector(rate)
    digits: list[DtmfDigit] = []
    for i in range(0, len(pcm), block):
        digits += det.feed(pcm[i : i + block], start + i)
    return digits + det.flush()


def keys(digits: list[DtmfDigit]) -> str:
    return "".join(d.digit for d in digits)


def espeak(text: str, voice: str, pitch: int, rate: int) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-p", str(pitch), text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        src = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
    return sig.resample(x, src, rate)


# ----------------------------------------------------------------------------- basic detection
def test_every_key_is_detected_once_with_its_start_and_end_to_within_2_ms():
    x = sig.dtmf_string(KEYS, 8000, -10, on_ms=70, off_ms=70, lead_ms=100)
    digits = detect(x)
    assert keys(digits) == KEYS
    for i, d in enumerate(digits):
        start = 800 + i * 1120
        assert abs(d.start_frame - start) <= 16
        assert abs(d.end_frame - (start + 560)) <= 16


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("level_dbfs", [-10, -25, -40])
def test_40_ms_digits_from_minus_10_to_minus_40_dbfs_in_20_db_snr_noise_are_all_detected(rate, level_dbfs):
    rng = np.random.default_rng(level_dbfs + rate)
    for twist_db in (-8.0, 0.0, 4.0):
        x = sig.dtmf_string(KEYS, rate, level_dbfs, on_ms=40, off_ms=40, twist_db=twist_db,
                            phases_rad=tuple(rng.uniform(0, 2 * np.pi, 2)))
        assert keys(detect(sig.add_noise(x, 20, rng=rng), rate)) == KEYS, twist_db


@pytest.mark.parametrize("error", [0.01, -0.01])
def test_a_1_percent_sample_rate_error_is_tolerated(error):
    x = sig.resample_error(sig.dtmf_string(KEYS, 8000, -20, on_ms=40, off_ms=40), error)
    assert keys(detect(sig.add_noise(x, 20))) == KEYS


# ---------------------------------------------------------------------------- frequency limits
@pytest.mark.parametrize("error", [0.015, -0.015, (0.015, -0.015), (-0.015, 0.015)])
def test_frequency_error_of_1_5_percent_is_accepted(error):
    x = sig.dtmf_string(KEYS, 8000, -20, on_ms=40, off_ms=40, freq_error=error)
    assert keys(detect(sig.add_noise(x, 20))) == KEYS


@pytest.mark.parametrize("error", [0.035, -0.035, (0.035, 0.0), (0.0, -0.035), (-0.035, 0.0), (0.0, 0.035)])
def test_frequency_error_of_3_5_percent_is_rejected(error):
    x = sig.dtmf_string(KEYS, 8000, -20, on_ms=100, off_ms=60, freq_error=error)
    assert detect(sig.add_noise(x, 20)) == []


# ----------------------------------------------------------------------------- duration limits
@pytest.mark.parametrize("rate", [8000, 16000])
def test_40_ms_tones_are_accepted_at_every_alignment_to_the_analysis_frames(rate):
    for offset in range(0, rate // 125, max(1, rate // 2000)):  # one 8 ms frame, in 0.5 ms steps
        x = np.concatenate((np.zeros(offset), sig.dtmf_string("159#", rate, -20, on_ms=40, off_ms=40)))
        assert keys(detect(sig.add_noise(x, 20, rng=np.random.default_rng(offset)), rate)) == "159#", offset


@pytest.mark.parametrize("duration_ms", [10, 15, 19.5])
def test_tones_shorter_than_20_ms_are_rejected_at_every_alignment(duration_ms):
    for offset in range(0, 64, 4):
        x = np.concatenate((np.zeros(offset), sig.dtmf_string("5555", 8000, -10, on_ms=duration_ms, off_ms=60)))
        assert detect(x) == [], offset


def test_a_repeated_digit_separated_by_a_40_ms_pause_counts_twice():
    x = sig.dtmf_string("55", 8000, -20, on_ms=60, off_ms=40)
    assert keys(detect(sig.add_noise(x, 20))) == "55"


def test_an_interruption_of_10_ms_inside_a_tone_does_not_split_the_digit():
    tone = sig.dtmf_tone("8", 120, 8000, -20)
    x = np.concatenate((np.zeros(800), tone[:480], np.zeros(80), tone[560:], np.zeros(800)))
    assert keys(detect(sig.add_noise(x, 20))) == "8"


# -------------------------------------------------------------------------------- twist limits
@pytest.mark.parametrize("twist_db", [-8.0, 4.0])
def test_twist_of_8_db_normal_and_4_db_reverse_is_accepted(twist_db):
    x = sig.dtmf_string(KEYS, 8000, -20, on_ms=40, off_ms=40, twist_db=twist_db)
    assert keys(detect(sig.add_noise(x, 20))) == KEYS


@pytest.mark.parametrize("twist_db", [-11.0, 7.0])
def test_twist_beyond_the_limits_is_rejected(twist_db):
    x = sig.dtmf_string(KEYS, 8000, -20, on_ms=60, off_ms=60, twist_db=twist_db)
    assert detect(sig.add_noise(x, 20)) == []


# ---------------------------------------------------------------------------- streaming shape
def test_block_size_and_sample_format_do_not_change_the_result():
    x = sig.add_noise(sig.dtmf_string("2580", 8000, -20, on_ms=50, off_ms=50), 25)
    reference = detect(x, block=160)
    assert keys(reference) == "2580"
    for block in (1, 37, 1000, len(x)):
        assert detect(x, block=block) == reference, block
    floats = sig.to_pcm16(x) / 32768.0
    assert detect(floats, block=160) == reference


@pytest.mark.parametrize("rate", [8000, 16000])
def test_frames_classified_one_by_one_or_all_at_once_give_the_same_digits_and_masked_spans(rate, monkeypatch):
    """The screened frames of a batch are classified in Python floats when they are few
    (speech) and with numpy when they are many (a key press): both must decide alike, down to
    each digit's edges and the spans the masker blanks. Speech with keys at the edges of the
    acceptance limits (frequency, twist, level, duration) in 15-25 dB SNR noise, fed in 1 s batches
    as the line analyser does, once with every batch one way and once the other."""
    import linetap.detect.dtmf as dtmf_module

    rng = np.random.default_rng(rate)
    x = sig.speech_like(20, rate, rng=rng, level_dbfs=-18)
    at = rate
    for kw in ({"freq_error": 0.02}, {"freq_error": -0.03}, {"twist_db": -8.5}, {"twist_db": 4.5},
               {"twist_db": -3.0}, {}, {"freq_error": (0.015, -0.025)}):
        for level, on_ms in ((-15, 60), (-35, 35), (-48, 45)):
            keys_x = sig.dtmf_string("1A5#", rate, level, on_ms=on_ms, off_ms=45, **kw)
            x[at : at + len(keys_x)] = keys_x
            at += len(keys_x) + rate // 3
    assert at < len(x)
    pcm = sig.to_pcm16(sig.add_noise(x, 20, rng=rng))

    def run(scalar_frames: int) -> tuple[list[DtmfDigit], list[tuple[int, int]]]:
        monkeypatch.setattr(dtmf_module, "_SCALAR_FRAMES", scalar_frames)
        det = DtmfDetector(rate)
        digits, spans = [], []
        for i in range(0, len(pcm), rate):
            digits += det.feed(pcm[i : i + rate], i)
            spans += det.take_spans()
        return digits + det.flush(), spans + det.take_spans()

    by_numpy, by_python = run(0), run(10**6)
    # A real mix of hits and near misses: 84 keys, of which those 3 % off frequency, the ones at
    # -48 dBFS (under the noise) and most at -35 dBFS are rejected; about 20 are digits.
    assert 15 <= len(by_numpy[0]) <= 60
    assert by_python == by_numpy


def test_digits_carry_the_stream_sample_index_given_by_the_caller():
    x = sig.dtmf_string("7", 8000, -20, on_ms=60, lead_ms=100)
    (d,) = detect(x, start=1_000_000)
    assert abs(d.start_frame - 1_000_800) <= 16


def test_a_gap_in_the_sample_index_ends_the_digit_in_progress():
    tone = sig.to_pcm16(sig.dtmf_tone("3", 100, 8000, -20))
    det = DtmfDetector(8000)
    first = det.feed(tone, 0)
    at_gap = det.feed(tone[:80], 10_000)
    assert first == [] and keys(at_gap) == "3"
    assert at_gap[0].end_frame <= 800 + 16


def test_no_digit_on_silence_noise_or_a_single_tone():
    rng = np.random.default_rng(3)
    noise = sig.add_noise(np.zeros(16000), 0, rng=rng, reference_dbfs=-30)
    t = np.arange(16000) / 8000
    single = 0.3 * np.sin(2 * np.pi * 941 * t)
    dial = 0.1 * (np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t))
    for x in (np.zeros(16000), noise, single, dial):
        assert detect(x) == []


# ----------------------------------------------------------------------------------- talk-off
def test_no_false_digits_in_ten_minutes_of_speech_like_audio():
    det = DtmfDetector(8000)
    found: list[DtmfDigit] = []
    for minute in range(10):
        x = sig.speech_like(60, 8000, rng=np.random.default_rng(100 + minute), level_dbfs=-12 - 6 * (minute % 4))
        pcm = sig.to_pcm16(sig.add_noise(x, 30, rng=np.random.default_rng(minute)))
        found += det.feed(pcm, minute * 480_000)
    assert found + det.flush() == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_no_false_digits_on_espeak_speech_in_several_voices():
    text = ("Hello, thanks for calling back. The meeting moved to Thursday at half past three, "
            "so we will need the room a little longer. Is that all right with you?")
    det = DtmfDetector(8000)
    pos = 0
    found: list[DtmfDigit] = []
    for voice, pitch in (("en", 30), ("en+f3", 70), ("en+f5", 99), ("de", 50), ("fr", 80)):
        pcm = sig.to_pcm16(sig.add_noise(0.5 * espeak(text, voice, pitch, 8000), 30))
        found += det.feed(pcm, pos)
        pos += len(pcm)
    assert found + det.flush() == []


# ------------------------------------------------------------------------------------ masking
def _speech_with_keys(rate: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Speech with a card number typed into its pauses (speech as close as 0-30 ms), line noise
    at -50 dBFS added; returns (pcm, the line noise alone, tone spans)."""
    rng = np.random.default_rng(seed)
    x = sig.speech_like(20, rate, rng=rng, level_dbfs=-20)
    spans = []
    pos = rate
    for digit in "4111111111111111":
        n = int(rng.uniform(40, 150) * rate / 1000)
        before, after = (int(rng.uniform(0, 30) * rate / 1000) for _ in range(2))
        x[pos - before : pos + n + after] = 0.0
        x[pos : pos + n] += sig.dtmf_tone(digit, n * 1000 / rate, rate, rng.uniform(-25, -10),
                                          freq_error=rng.uniform(-0.015, 0.015), twist_db=rng.uniform(-8, 4),
                                          phases_rad=tuple(rng.uniform(0, 6.3, 2)))
        spans.append((pos, pos + n))
        pos += n + int(rng.uniform(45, 900) * rate / 1000)
    noise = sig.add_noise(np.zeros(len(x)), 0, rng=rng, reference_dbfs=-50)
    return sig.to_pcm16(x + noise), sig.to_pcm16(noise), spans


def _tone_energy_dbfs(x: np.ndarray, rate: int) -> float:
    """Strongest of the eight DTMF frequencies in ``x`` (int16), as a sine level in dBFS."""
    t = np.arange(len(x)) / rate
    amp = np.abs(np.exp(-2j * np.pi * DTMF_HZ[:, None] * t[None, :]) @ (x / 32768.0)) * 2 / len(x)
    return float(20 * np.log10(amp.max() + 1e-12))


@pytest.mark.parametrize(("rate", "block"), [(8000, 160), (8000, 1000), (16000, 320)])
def test_masker_silences_every_tone_and_leaves_speech_beyond_50_ms_untouched(rate, block):
    x, line_noise, spans = _speech_with_keys(rate, seed=rate + block)
    masker = DtmfMasker(rate)
    outs, digits = [], []
    for i in range(0, len(x), block):
        out, out_start, found = masker.process(x[i : i + block], i)
        assert out_start == sum(len(o) for o in outs)  # contiguous, delayed output
        outs.append(out)
        digits += found
    out, _, found = masker.flush()
    y = np.concatenate(outs + [out])
    digits += found
    assert len(y) == len(x) and y.dtype == x.dtype
    assert keys(digits) == "4111111111111111"
    near = np.zeros(len(x), dtype=bool)
    for a, b in spans:
        near[max(0, a - rate // 20) : b + rate // 20] = True
    assert np.array_equal(y[~near], x[~near])  # speech > 50 ms from a tone: bit-exact
    # No DTMF energy survives: in each tone span, at most the line noise's own at those frequencies.
    for a, b in spans:
        noise_floor = _tone_energy_dbfs(line_noise[a:b], rate)
        assert _tone_energy_dbfs(x[a:b], rate) > noise_floor + 20  # the tone was there to remove
        assert _tone_energy_dbfs(y[a:b], rate) <= noise_floor + 3
    assert detect(y, rate) == []


def test_masker_output_is_the_input_delayed_when_there_are_no_tones():
    x = sig.to_pcm16(sig.speech_like(3, 8000, rng=np.random.default_rng(4)))
    masker = DtmfMasker(8000, delay_ms=80)
    first, start, _ = masker.process(x[:1600], 0)
    assert start == 0 and len(first) == 1600 - 640
    rest, start2, _ = masker.process(x[1600:], 1600)
    tail, start3, _ = masker.flush()
    assert start2 == 960 and start3 == len(x) - 640
    assert np.array_equal(np.concatenate((first, rest, tail)), x)


def test_masker_releases_audio_before_a_gap_and_continues_after_it():
    x = sig.to_pcm16(sig.add_noise(np.zeros(8000), 0, reference_dbfs=-50))
    masker = DtmfMasker(8000)
    out1, s1, _ = masker.process(x[:4000], 0)
    out2, s2, _ = masker.process(x[4000:], 100_000)  # overrun: 96000 samples lost
    out3, s3, _ = masker.flush()
    assert (s1, len(out1)) == (0, 4000 - 640)
    assert (s2, len(out2)) == (4000 - 640, 640)
    assert (s3, len(out3)) == (100_000, 4000)


def test_mask_dtmf_blanks_each_digit_with_its_guard_and_nothing_else():
    x = np.full(8000, 1000, dtype=np.int16)
    y = mask_dtmf(x, [DtmfDigit("5", 2000, 2400)], start_frame=1000, guard_ms=20, rate=8000)
    assert y.dtype == np.int16 and np.array_equal(x, np.full(8000, 1000))  # input untouched
    span = slice(2000 - 1000 - 160, 2400 - 1000 + 160)
    assert np.all(y[span][16:-16] == 0)  # silent inside, 2 ms fades at the outer edges
    assert np.all(y[: span.start] == 1000) and np.all(y[span.stop :] == 1000)


# ------------------------------------------------------------------------ independent decoder
@pytest.mark.skipif(shutil.which("multimon-ng") is None, reason="multimon-ng not installed")
def test_generated_dtmf_is_what_multimon_ng_decodes_too():
    x = sig.dtmf_string(KEYS, 22050, -10, on_ms=70, off_ms=70)
    raw = sig.to_pcm16(np.concatenate((x, np.zeros(22050)))).tobytes()
    out = subprocess.run(["multimon-ng", "-q", "-t", "raw", "-a", "DTMF", "-"], input=raw,
                         capture_output=True, check=True).stdout.decode()
    assert "".join(line.split(": ")[1] for line in out.splitlines() if line.startswith("DTMF")) == KEYS


def test_stereo_masker_blanks_both_directions_when_one_carries_a_tone():
    rate = 8000
    speech = sig.to_pcm16(sig.speech_like(4, rate, rng=np.random.default_rng(8), level_dbfs=-20))
    tones = sig.dtmf_string("95", rate, -10, lead_ms=0, tail_ms=0)
    keys_side = np.zeros(len(speech), dtype=np.int16)
    keys_side[2 * rate : 2 * rate + len(tones)] = sig.to_pcm16(tones)
    echo = (keys_side * 0.05).astype(np.int16)  # the other direction hears the tones 26 dB down
    x = np.stack((keys_side, speech // 4 + echo), axis=1)
    masker = DtmfMasker(rate, channels=2)
    outs, digits = [], []
    for i in range(0, len(x), 160):
        out, _, found = masker.process(x[i : i + 160], i)
        outs.append(out)
        digits += found
    out, _, found = masker.flush()
    y = np.concatenate(outs + [out])
    assert keys(digits + found) == "95" and y.shape == x.shape
    tone_span = slice(2 * rate, 2 * rate + 240 * rate // 1000)  # two 70 ms tones with a 70 ms pause
    assert np.all(y[tone_span, 0] == 0) and np.all(y[tone_span, 1] == 0)
    assert np.array_equal(y[: rate, 1], x[: rate, 1])  # far from the tones: untouched
