"""Render a line's audio from a script of segments, with the truth of what is where.

Segments: ``("idle", s)`` analog noise floor around -70 dBFS; ``("call", s)`` a
conversation of recorded speech clips with natural pauses over the noise floor;
``("tone", s, hz)``; ``("zeros", s)`` digital silence (a dead line);
``("stuck", s, value)`` a constant sample value; ``("clip", s)`` a clipping signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

NOISE_DBFS = -70.0


@dataclass(frozen=True, slots=True)
class Truth:
    kind: str
    start_s: float
    end_s: float
    voice_start_s: float | None = None  # for calls: first and last voiced sample
    voice_end_s: float | None = None


@lru_cache(maxsize=4)
def speech_clips(rate: int) -> tuple[np.ndarray, ...]:
    """The committed speech clips (espeak-ng, 8 kHz), resampled to ``rate``, trimmed of silence."""
    from ..store.audio import read
    d = resources.files("linetap") / "data" / "speech"
    clips = []
    for p in sorted(Path(str(d)).glob("clip*.flac")):
        x, r = read(p)
        x = x[:, 0].astype(np.float32)
        if r != rate:
            t = np.arange(int(len(x) * rate / r)) * (r / rate)
            x = np.interp(t, np.arange(len(x)), x).astype(np.float32)
        loud = np.flatnonzero(np.abs(x) > 300)
        if len(loud):
            x = x[loud[0]: loud[-1] + 1]
        clips.append(x)
    return tuple(clips)


def noise(n: int, rate: int, rng: np.random.Generator, dbfs: float = NOISE_DBFS) -> np.ndarray:
    """Analog line noise: band-limited Gaussian noise at ``dbfs`` RMS (never constant, never all zero)."""
    amp = 32768.0 * 10 ** (dbfs / 20)
    w = rng.standard_normal(n + 2).astype(np.float32)
    w = (w[2:] + w[1:-1] + w[:-2]) / np.sqrt(3.0)  # a little low-pass, like a real line
    return w * amp


def conversation(seconds: float, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Speech clips with 0.3-1.2 s pauses filling ``seconds``; returns (audio, first voice s, last voice s)."""
    n = int(round(seconds * rate))  # as render() counts a segment
    out = np.zeros(n, dtype=np.float32)
    clips = speech_clips(rate)
    pos = 0
    last_end = 0
    while True:
        clip = clips[int(rng.integers(len(clips)))]
        if pos + len(clip) > n:
            room = n - pos
            if room > rate // 2:
                out[pos:pos + room] = clip[:room]
                last_end = n
            break
        out[pos:pos + len(clip)] = clip
        last_end = pos + len(clip)
        pos += len(clip) + int(rng.uniform(0.3, 1.2) * rate)
    return out, 0.0, last_end / rate


def render(script: list[tuple], rate: int = 8000, seed: int = 1) -> tuple[np.ndarray, list[Truth]]:
    """The int16 audio of a script and the truth of each segment (times in seconds from the start)."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    truth: list[Truth] = []
    t = 0.0
    for seg in script:
        kind, seconds = seg[0], float(seg[1])
        n = int(round(seconds * rate))
        if kind == "idle":
            x = noise(n, rate, rng)
            truth.append(Truth("idle", t, t + n / rate))
        elif kind == "call":
            speech, v0, v1 = conversation(seconds, rate, rng)
            x = speech[:n] + noise(n, rate, rng)
            truth.append(Truth("call", t, t + n / rate, t + v0, t + v1))
        elif kind == "tone":
            hz = float(seg[2]) if len(seg) > 2 else 1000.0
            level = float(seg[3]) if len(seg) > 3 else -20.0
            x = np.sin(2 * np.pi * hz * np.arange(n) / rate) * 32768 * 10 ** (level / 20) * np.sqrt(2)
            x = x + noise(n, rate, rng)
            truth.append(Truth("tone", t, t + n / rate, t, t + n / rate))
        elif kind == "zeros":
            x = np.zeros(n, dtype=np.float32)
            truth.append(Truth("zeros", t, t + n / rate))
        elif kind == "stuck":
            value = int(seg[2]) if len(seg) > 2 else 1234
            x = np.full(n, value, dtype=np.float32)
            truth.append(Truth("stuck", t, t + n / rate))
        elif kind == "clip":
            x = np.sin(2 * np.pi * 400 * np.arange(n) / rate) * 60000.0
            truth.append(Truth("clip", t, t + n / rate, t, t + n / rate))
        elif kind == "raw":
            x = np.asarray(seg[2], dtype=np.float32)
            n = len(x)
            truth.append(Truth("raw", t, t + n / rate, t, t + n / rate))
        else:
            raise ValueError(f"unknown segment kind {kind!r}")
        parts.append(np.asarray(x, dtype=np.float32))
        t += n / rate
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16), truth
