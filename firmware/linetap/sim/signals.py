"""Test-signal generators built from the standards' definitions.

Used by the tests, the benchmark and the simulated line demo. All generators return float64 arrays
with full scale = 1.0; :func:`to_pcm16` turns them into what an ALSA line delivers. Levels are dBFS
with a full-scale sine = 0 dBFS (AES17), always the *total* level of the signal while it is on.

What is generated:

* DTMF (ITU-T Q.23 frequencies), with frequency error and twist (``twist_db`` = high-group level
  minus low-group level, so negative = low group louder).
* On-hook FSK caller ID: Bell 202 (Telcordia GR-30-CORE: 1200 baud, mark 1200 Hz, space 2200 Hz) and
  V.23 (ETSI EN 300 659-1 / BT SIN 227: 1200 baud, mark 1300 Hz, space 2100 Hz), phase-continuous,
  with channel seizure (alternating 0/1), a mark run and async characters (start bit 0, 8 data bits
  LSB first, stop bit 1); SDMF (0x04) and MDMF (0x80) messages with a two's-complement checksum.
* DTMF caller ID strings (``A<number>C``, ``B00C``/``B10C``, ``D1C`` ...).
* The call-waiting alert (CAS / off-hook DT-AS, 2130 + 2750 Hz).
* Call-progress tones with their cadences, per country (from :data:`linetap.detect.tones.TONE_PLANS`),
  including amplitude-modulated tones (400 x 25 Hz) and the sequential special information tone.
* Speech-like audio: a small source-filter synthesiser (glottal pulse train with varying pitch,
  vowel formants with transitions, fricative noise, pauses, male/female/child speakers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..detect.tones import TONE_PLANS, ToneSpec

__all__ = [
    "DTMF_FREQS",
    "add_noise",
    "cadence_tone",
    "callerid_message",
    "cas_tone",
    "dtmf_callerid",
    "dtmf_string",
    "dtmf_tone",
    "fsk_callerid",
    "fsk_modulate",
    "resample",
    "resample_error",
    "silence",
    "spec_tone",
    "speech_like",
    "to_pcm16",
]

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
DTMF_FREQS: dict[str, tuple[float, float]] = {
    key: (DTMF_ROWS[r], DTMF_COLS[c]) for r, row in enumerate(DTMF_KEYS) for c, key in enumerate(row)
}

FSK_STANDARDS = {
    # standard: (mark Hz, space Hz, baud)
    "bell202": (1200.0, 2200.0, 1200.0),
    "v23": (1300.0, 2100.0, 1200.0),
}


def _amp(level_dbfs: float) -> float:
    """Peak amplitude of a sine at ``level_dbfs`` (full-scale sine = 0 dBFS)."""
    return 10 ** (level_dbfs / 20)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Round and clip a float signal (full scale 1.0) to int16 PCM."""
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)


def silence(ms: float, rate: int) -> np.ndarray:
    return np.zeros(int(round(ms * rate / 1000)))


# ---------------------------------------------------------------------------------------- DTMF
def dtmf_tone(
    digit: str,
    duration_ms: float,
    rate: int,
    level_dbfs: float = -10.0,
    freq_error: float | tuple[float, float] = 0.0,
    twist_db: float = 0.0,
    *,
    phases_rad: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """One DTMF tone of ``duration_ms``.

    ``freq_error`` is a relative error applied to both tones (0.015 = +1.5 %) or a
    (low group, high group) pair. ``level_dbfs`` is the total level of the pair.
    """
    f_lo, f_hi = DTMF_FREQS[digit.upper()]
    e_lo, e_hi = (freq_error, freq_error) if isinstance(freq_error, (int, float)) else freq_error
    f_lo *= 1 + e_lo
    f_hi *= 1 + e_hi
    total = 10 ** (level_dbfs / 10)  # sum of squared peak amplitudes
    ratio = 10 ** (twist_db / 10)  # power(high) / power(low)
    a_lo = math.sqrt(total / (1 + ratio))
    a_hi = math.sqrt(total * ratio / (1 + ratio))
    n = int(round(duration_ms * rate / 1000))
    t = np.arange(n) / rate
    return a_lo * np.sin(2 * math.pi * f_lo * t + phases_rad[0]) + a_hi * np.sin(
        2 * math.pi * f_hi * t + phases_rad[1]
    )


def dtmf_string(
    digits: str,
    rate: int,
    level_dbfs: float = -10.0,
    on_ms: float = 70.0,
    off_ms: float = 70.0,
    *,
    lead_ms: float = 100.0,
    tail_ms: float = 100.0,
    **tone_kwargs: object,
) -> np.ndarray:
    """A digit string with ``on_ms`` tones separated by ``off_ms`` of silence."""
    parts = [silence(lead_ms, rate)]
    for i, d in enumerate(digits):
        if i:
            parts.append(silence(off_ms, rate))
        parts.append(dtmf_tone(d, on_ms, rate, level_dbfs, **tone_kwargs))  # type: ignore[arg-type]
    parts.append(silence(tail_ms, rate))
    return np.concatenate(parts)


def dtmf_callerid(
    number: str | None = None,
    rate: int = 8000,
    level_dbfs: float = -10.0,
    *,
    number_absent: str | None = None,
    style: str = "A",
    on_ms: float = 70.0,
    off_ms: float = 70.0,
) -> np.ndarray:
    """DTMF caller ID as sent before the first ring in several countries.

    ``number`` -> ``A<number>C`` (``style="D"`` -> ``D<number>C``); ``number_absent`` ``"P"`` ->
    ``B10C`` (``style="D"``: ``D1C``), ``"O"`` -> ``B00C`` (``style="D"``: ``D2C``).
    """
    if number is not None:
        text = f"{style}{number}C"
    elif number_absent == "P":
        text = "D1C" if style == "D" else "B10C"
    elif number_absent == "O":
        text = "D2C" if style == "D" else "B00C"
    else:
        raise ValueError("give a number or number_absent='O'/'P'")
    return dtmf_string(text, rate, level_dbfs, on_ms, off_ms)


# ---------------------------------------------------------------------------------- FSK caller ID
def callerid_message(
    number: str | None = None,
    name: str | None = None,
    when: str | None = None,
    *,
    sdmf: bool = False,
    number_absent: str | None = None,
    name_absent: str | None = None,
    corrupt_checksum: bool = False,
) -> bytes:
    """The caller ID message bytes: type, length, payload, checksum.

    SDMF (type 0x04): ``MMDDHHMM`` then the number or a single ``O``/``P``. MDMF (type 0x80, the
    Bellcore and ETSI "call set-up" message) with parameters 0x01 date/time, 0x02 number,
    0x04 reason for absent number, 0x07 name, 0x08 reason for absent name.
    """
    if sdmf:
        if name is not None or name_absent is not None:
            raise ValueError("SDMF carries no name")
        payload = (when or "").encode("ascii") + (number or number_absent or "").encode("ascii")
        mtype = 0x04
    else:
        params = []
        if when is not None:
            params.append((0x01, when.encode("ascii")))
        if number is not None:
            params.append((0x02, number.encode("ascii")))
        if number_absent is not None:
            params.append((0x04, number_absent.encode("ascii")))
        if name is not None:
            params.append((0x07, name.encode("latin-1")))
        if name_absent is not None:
            params.append((0x08, name_absent.encode("ascii")))
        payload = b"".join(bytes([t, len(v)]) + v for t, v in params)
        mtype = 0x80
    if len(payload) > 255:
        raise ValueError("message too long")
    body = bytes([mtype, len(payload)]) + payload
    checksum = (-sum(body)) & 0xFF
    if corrupt_checksum:
        checksum ^= 0x5A
    return body + bytes([checksum])


def _uart_bits(data: bytes, stop_bits: int = 1) -> list[int]:
    bits: list[int] = []
    for byte in data:
        bits.append(0)
        bits.extend((byte >> i) & 1 for i in range(8))
        bits.extend([1] * stop_bits)
    return bits


def fsk_modulate(
    bits: Sequence[int], standard: str, rate: int, level_dbfs: float, phase_rad: float = 0.0
) -> np.ndarray:
    """Phase-continuous binary FSK of ``bits`` (1 = mark) at the standard's frequencies and baud."""
    mark, space, baud = FSK_STANDARDS[standard]
    bits_arr = np.asarray(bits, dtype=np.int8)
    n = int(math.floor(len(bits_arr) * rate / baud))
    idx = np.minimum((np.arange(n) * baud / rate).astype(np.int64), len(bits_arr) - 1)
    freq = np.where(bits_arr[idx] == 1, mark, space)
    phase = phase_rad + 2 * math.pi * np.cumsum(freq) / rate
    return _amp(level_dbfs) * np.sin(phase)


def fsk_callerid(
    number: str | None = None,
    name: str | None = None,
    when: str | None = None,
    standard: str = "bell202",
    rate: int = 8000,
    level_dbfs: float = -15.0,
    sdmf: bool = False,
    corrupt_checksum: bool = False,
    *,
    number_absent: str | None = None,
    name_absent: str | None = None,
    seizure_bits: int = 300,
    mark_bits: int = 180,
    stop_bits: int = 1,
    lead_ms: float = 100.0,
    tail_ms: float = 100.0,
    trailing_mark_bits: int = 4,
    phase_rad: float = 0.0,
) -> np.ndarray:
    """A complete on-hook caller ID burst: silence, channel seizure, mark run, message, silence.

    Bellcore sends 300 seizure bits and 180 mark bits; ETSI 300 seizure bits and 180 +- 25 mark
    bits; BT 96-315 seizure bits and 55-150 mark bits. ``stop_bits`` > 1 inserts extra marks between
    characters, as senders are allowed to.
    """
    if standard not in FSK_STANDARDS:
        raise ValueError(f"standard must be one of {', '.join(FSK_STANDARDS)}, not {standard!r}")
    msg = callerid_message(
        number, name, when, sdmf=sdmf, number_absent=number_absent, name_absent=name_absent,
        corrupt_checksum=corrupt_checksum,
    )
    bits = [i % 2 for i in range(seizure_bits)]  # starts with 0 (space), as sent
    bits += [1] * mark_bits
    bits += _uart_bits(msg, stop_bits)
    bits += [1] * trailing_mark_bits
    burst = fsk_modulate(bits, standard, rate, level_dbfs, phase_rad)
    return np.concatenate((silence(lead_ms, rate), burst, silence(tail_ms, rate)))


def cas_tone(rate: int, level_dbfs: float = -20.0, ms: float = 80.0) -> np.ndarray:
    """The CPE alerting signal announcing caller ID on call waiting: 2130 + 2750 Hz together for
    ``ms`` (Telcordia GR-30 CAS 80 +- 5 ms; ETSI EN 300 659-2 off-hook DT-AS 80 +- 5 ms), the two
    tones equal, ``level_dbfs`` their total."""
    t = np.arange(int(round(ms * rate / 1000))) / rate
    a = math.sqrt(10 ** (level_dbfs / 10) / 2)
    return np.asarray(a * (np.sin(2 * math.pi * 2130.0 * t) + np.sin(2 * math.pi * 2750.0 * t)))


# ------------------------------------------------------------------------------ call-progress tones
def cadence_tone(
    kind: str, tone_set: str, seconds: float, rate: int, level_dbfs: float = -20.0, *, am_depth: float = 1.0,
) -> np.ndarray:
    """``seconds`` of a country's call-progress tone with its cadence, starting at an "on"."""
    return spec_tone(TONE_PLANS[tone_set][kind], seconds, rate, level_dbfs, am_depth=am_depth)


def spec_tone(
    spec: ToneSpec, seconds: float, rate: int, level_dbfs: float = -20.0, *, am_depth: float = 1.0,
) -> np.ndarray:
    """``seconds`` of the tone ``spec`` describes, starting at the beginning of an "on".

    ``level_dbfs`` is the total level while the tone is on: the components share it equally; a
    modulated tone (``spec.am_hz``) is a carrier times ``1 + am_depth * sin(2 pi am_hz t)``, scaled
    so that carrier and sidebands together are at ``level_dbfs``. A sequential tone (the SIT) plays
    its frequencies one per "on", in turn. ``spec.on_levels_db`` sets each "on"'s level relative
    to the first (Australia's congestion: every other burst 10 dB lower).
    """
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    total = 10 ** (level_dbfs / 10)  # sum of squared peak amplitudes
    if spec.am_hz:
        a = math.sqrt(total / (1 + am_depth**2 / 2))
        x = a * (1 + am_depth * np.sin(2 * math.pi * spec.am_hz * t)) * np.sin(2 * math.pi * spec.freqs_hz[0] * t)
        tones = [x]
    elif spec.sequential:
        a = math.sqrt(total)
        tones = [a * np.sin(2 * math.pi * f * t) for f in spec.freqs_hz]
    else:
        a = math.sqrt(total / len(spec.freqs_hz))
        tones = [sum(a * np.sin(2 * math.pi * f * t) for f in spec.freqs_hz)]
    if not spec.cadence_s:
        return np.asarray(tones[0], dtype=np.float64)
    x = np.zeros(n)
    pos, i = 0.0, 0
    while pos < seconds:
        d = spec.cadence_s[i % len(spec.cadence_s)]
        if i % 2 == 0:  # even positions of a cadence are "on"
            sl = slice(int(round(pos * rate)), int(round((pos + d) * rate)))
            gain = 10 ** (spec.on_levels_db[(i // 2) % len(spec.on_levels_db)] / 20) if spec.on_levels_db else 1.0
            x[sl] = gain * tones[(i // 2) % len(tones)][sl]
        pos += d
        i += 1
    return x


# ------------------------------------------------------------------------------------ impairments
def add_noise(
    x: np.ndarray,
    snr_db: float,
    *,
    rng: np.random.Generator | None = None,
    reference_dbfs: float | None = None,
) -> np.ndarray:
    """White Gaussian noise ``snr_db`` below the signal.

    The signal power is measured over the samples that are not exactly zero (so silent gaps between
    tone bursts do not lower the reference) unless ``reference_dbfs`` is given.
    """
    rng = rng or np.random.default_rng(1)
    x = np.asarray(x, dtype=np.float64)
    if reference_dbfs is None:
        active = x[x != 0]
        p = float(np.mean(active**2)) if len(active) else 0.0
    else:
        p = 0.5 * 10 ** (reference_dbfs / 10)
    sigma = math.sqrt(p / 10 ** (snr_db / 10))
    return x + sigma * rng.standard_normal(len(x))


def resample_error(x: np.ndarray, ppm_or_fraction: float) -> np.ndarray:
    """Simulate a sample-clock error: every frequency in the result is scaled by (1 + error).

    ``ppm_or_fraction`` below 1 in magnitude is a fraction (0.01 = 1 %), otherwise ppm. Durations
    shrink by the same factor, as when the far end's clock runs fast relative to the capture clock.
    Band-limited (FFT) resampling, so start and end the signal with a little silence.
    """
    err = ppm_or_fraction if abs(ppm_or_fraction) < 1 else ppm_or_fraction * 1e-6
    x = np.asarray(x, dtype=np.float64)
    n_out = int(round(len(x) / (1.0 + err)))
    return _fft_resample(x, n_out)


def _fft_resample(x: np.ndarray, n_out: int) -> np.ndarray:
    spec = np.fft.rfft(x)
    m = n_out // 2 + 1
    if m <= len(spec):
        spec = spec[:m]
    else:
        spec = np.concatenate((spec, np.zeros(m - len(spec), dtype=complex)))
    return np.fft.irfft(spec, n_out) * (n_out / len(x))


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling of a finite clip (FFT based)."""
    x = np.asarray(x, dtype=np.float64)
    if src_rate == dst_rate:
        return x.copy()
    return _fft_resample(x, int(round(len(x) * dst_rate / src_rate)))


# ----------------------------------------------------------------------------------- speech-like
# Peterson & Barney (1952) average formants F1-F3 of adult male speakers, Hz.
_VOWELS = np.array(
    [
        (270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410),
        (730, 1090, 2440), (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240),
        (640, 1190, 2390), (490, 1350, 1690),
    ],
    dtype=np.float64,
)
# Speaker classes: (f0 low, f0 high, formant scale, probability)
_SPEAKERS = ((85.0, 155.0, 1.0, 0.4), (165.0, 255.0, 1.17, 0.4), (240.0, 400.0, 1.3, 0.2))


def _speech_tracks(n_ctl: int, ctl_s: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-control-frame synthesis parameters for a stream of phrases, words and syllables."""
    f0 = np.full(n_ctl, 120.0)
    av = np.zeros(n_ctl)
    an = np.zeros(n_ctl)
    fm = np.zeros((n_ctl, 4))
    fn = np.full(n_ctl, 3000.0)
    bn = np.full(n_ctl, 1000.0)
    i = 0
    speaker = _SPEAKERS[0]
    while i < n_ctl:
        # A phrase: one speaker, 1-4 s, then a pause.
        p = rng.random()
        acc = 0.0
        for spk in _SPEAKERS:
            acc += spk[3]
            if p <= acc:
                speaker = spk
                break
        lo, hi, scale, _ = speaker
        base = rng.uniform(lo, hi)
        phrase_len = int(rng.uniform(1.0, 4.0) / ctl_s)
        end = min(n_ctl, i + phrase_len)
        prev_formants = _VOWELS[rng.integers(len(_VOWELS))] * scale
        start_phrase = i
        while i < end:
            # Consonant.
            c = rng.random()
            if c < 0.35:  # fricative / aspiration
                d = int(rng.uniform(0.04, 0.14) / ctl_s)
                sl = slice(i, min(end, i + d))
                an[sl] = rng.uniform(0.05, 0.4)
                fn[sl] = rng.choice([1800.0, 2600.0, 3400.0, 1200.0]) * rng.uniform(0.9, 1.1)
                bn[sl] = rng.uniform(400, 1500)
                i += d
            elif c < 0.55:  # plosive: closure then burst
                i += int(rng.uniform(0.03, 0.07) / ctl_s)
                d = max(1, int(rng.uniform(0.01, 0.03) / ctl_s))
                sl = slice(i, min(end, i + d))
                an[sl] = rng.uniform(0.2, 0.6)
                fn[sl] = rng.uniform(800, 3500)
                bn[sl] = 2000.0
                i += d
            if i >= end:
                break
            # Vowel (sometimes sustained, sometimes with a nasal/voiced consonant onset).
            if rng.random() < 0.12:
                dur = rng.uniform(0.3, 0.8)
            else:
                dur = rng.uniform(0.06, 0.28)
            d = max(2, int(dur / ctl_s))
            sl_end = min(end, i + d)
            m = sl_end - i
            target = _VOWELS[rng.integers(len(_VOWELS))] * scale * rng.uniform(0.93, 1.07, 3)
            trans = min(m, max(1, int(rng.uniform(0.02, 0.06) / ctl_s)))
            ramp = np.ones(m)
            ramp[:trans] = np.linspace(0, 1, trans, endpoint=False)
            f123 = prev_formants[None, :] + (target - prev_formants)[None, :] * ramp[:, None]
            fm[i:sl_end, :3] = f123
            fm[i:sl_end, 3] = 3500.0 * scale
            prev_formants = target
            # Pitch: declination over the phrase, an accent glide per syllable, slow wobble.
            tpos = (np.arange(i, sl_end) - start_phrase) * ctl_s
            steady = rng.random() < 0.15
            glide = 0.0 if steady else rng.uniform(-0.15, 0.15)
            f0[i:sl_end] = base * (1 - 0.05 * tpos) * (1 + glide * np.linspace(0, 1, m))
            if not steady:
                f0[i:sl_end] *= 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * tpos + rng.uniform(0, 6.3))
            env = np.ones(m)
            k = min(m // 2, max(1, int(0.02 / ctl_s)))
            env[:k] = np.linspace(0.2, 1, k)
            env[m - k :] = np.linspace(1, 0.1, k)
            av[i:sl_end] = 10 ** (rng.uniform(-9, 0) / 20) * env
            i = sl_end
            if rng.random() < 0.3:  # word gap
                i += int(rng.uniform(0.03, 0.2) / ctl_s)
        # Phrase pause.
        i = end + int(rng.uniform(0.2, 0.9) / ctl_s)
    fm[fm[:, 0] == 0] = (500.0, 1500.0, 2500.0, 3500.0)
    return {"f0": np.clip(f0, 60, 500), "av": av, "an": an, "fm": fm, "fn": fn, "bn": bn}


def _resonator(freq: np.ndarray, bw: np.ndarray, z1: np.ndarray, rate: int) -> np.ndarray:
    """Complex response of a unity-DC-gain two-pole resonator at e^{-jw} = z1 (frames x bins)."""
    r = np.exp(-math.pi * bw / rate)[:, None]
    c = 2 * r * np.cos(2 * math.pi * freq / rate)[:, None]
    a = 1 - c + r * r
    response: np.ndarray = a / (1 - c * z1[None, :] + (r * r) * (z1 * z1)[None, :])
    return response


def speech_like(
    seconds: float,
    rate: int = 8000,
    *,
    rng: np.random.Generator | None = None,
    level_dbfs: float = -20.0,
) -> np.ndarray:
    """Speech-like audio: formant-filtered glottal pulses with varying pitch, fricatives, pauses.

    Not intelligible, but with the properties that matter to tone detectors: harmonic spectra with
    pitch from 60 to 500 Hz (male, female and child speakers, some sustained steady vowels),
    moving formants, noise bursts and silences. ``level_dbfs`` is the RMS level of the active parts.
    """
    rng = rng or np.random.default_rng(0)
    hop = max(1, int(round(rate * 0.008)))
    ctl_s = hop / rate
    n = int(round(seconds * rate))
    n_ctl = n // hop + 2
    tr = _speech_tracks(n_ctl, ctl_s, rng)
    # Excitation: glottal impulses at pitch epochs, plus white noise.
    f0_s = np.repeat(tr["f0"], hop)[: n_ctl * hop]
    av_s = np.repeat(tr["av"], hop)[: n_ctl * hop]
    phase = np.cumsum(f0_s / rate)
    pulses = np.zeros(n_ctl * hop)
    epochs = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    pulses[epochs] = av_s[epochs] * np.sqrt(rate / f0_s[epochs])  # unit RMS for av = 1
    noise = rng.standard_normal(n_ctl * hop) * np.repeat(tr["an"], hop)[: n_ctl * hop]
    # Frame-wise filtering by overlap-add: frames of 2 hops (Hann), FFT of 4 frames' length.
    L = 2 * hop
    nfft = 8 * hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / L)
    w = 2 * np.pi * np.arange(nfft // 2 + 1) / nfft
    z1 = np.exp(-1j * w)
    glottal = (1 - z1) / (1 - 0.96 * z1) ** 2  # -12 dB/oct source, +6 dB/oct radiation
    out = np.zeros((n_ctl + 8) * hop)
    chunk = 4096
    for c0 in range(0, n_ctl - 1, chunk):
        c1 = min(n_ctl - 1, c0 + chunk)
        k = c1 - c0
        idx = (np.arange(k)[:, None] + c0) * hop + np.arange(L)[None, :]
        ev = pulses[idx] * win
        en = noise[idx] * win
        fm = tr["fm"][c0:c1]
        h = np.ones((k, len(w)), dtype=complex) * glottal[None, :]
        for j, bw in enumerate((70.0, 90.0, 150.0, 250.0)):
            h *= _resonator(np.minimum(fm[:, j], 0.45 * rate), np.full(k, bw), z1, rate)
        hn = _resonator(np.minimum(tr["fn"][c0:c1], 0.45 * rate), tr["bn"][c0:c1], z1, rate) * (1 - z1)
        # Unit power gain per frame, so av and an set the levels of voiced and noise parts.
        h /= np.sqrt(np.mean(np.abs(h) ** 2, axis=1, keepdims=True))
        hn /= np.sqrt(np.mean(np.abs(hn) ** 2, axis=1, keepdims=True))
        y = np.fft.irfft(np.fft.rfft(ev, nfft) * h + np.fft.rfft(en, nfft) * hn, nfft)
        y = y.reshape(k, nfft // hop, hop)
        for j in range(nfft // hop):
            out[(c0 + j) * hop : (c1 + j) * hop] += y[:, j, :].reshape(-1)
    out = out[hop : hop + n]
    active = np.abs(out) > 1e-4 * (np.max(np.abs(out)) + 1e-12)
    rms = math.sqrt(float(np.mean(out[active] ** 2))) if active.any() else 1.0
    out *= _amp(level_dbfs) / math.sqrt(2) / rms
    return np.clip(out, -1.0, 1.0)
