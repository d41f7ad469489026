#!/usr/bin/env python3
"""The least any recorder must spend beside the codec: a floor under the recorder-core ratio target.

    .venv/bin/python benchmarks/floor.py [--codecs opus,flac] [--seconds 120] [--trials 5] [--lines 32]

The recorder-core targets ask the whole pipeline to cost at most 1.5x the codec alone (libsndfile encoding the
same audio). Whatever else a recorder does, the requirements oblige it to do three things the codec
alone does not: read the line through ALSA in 20 ms periods, encode those periods as they come,
and push the file to the disk at least every second (flush + fsync; linetap does it every 0.4 s of
audio so a power cut costs under a second with every codec). This script measures those three and
nothing else, against the codec alone, in the same process and run, trial by trial:

  codec-only   the audio from memory through ``linetap.store.audio.AudioWriter`` in 20 ms writes
               (exactly the "codec-only" column of ``pipeline.py``)
  read         pyalsaaudio reading the audio in 20 ms periods through libasound (an ALSA ``file``
               PCM whose ``infile`` is a regular file, so reads never wait: as fast as possible);
               each period made a numpy array, as any analysis needs it
  read+codec   the two together, period by period
  +fsync 1.0s  and a flush + fsync every second of audio (the slowest allowed)
  +fsync 0.4s  and every 0.4 s (linetap's default ``storage.sync_interval_s``)
  N lines      per line: N lines read, encoded and pushed to the disk every 0.4 s, by an fsync of
               each file or together by one syncfs (the cheapest sync there is for many lines;
               what linetap does per pipeline round); "+ level"
               adds the least analysis a VOX recorder needs, each period's level, in numpy calls
               of ten periods (these rows play an eighth of the audio and are scaled to all of it)

The calls are pyalsaaudio and libsndfile directly (and linetap's two-line ``syncfs`` wrapper), with
no linetap code between them, so the figures are a floor for any implementation, not for linetap's.
Apart from the one level row, no analysis is included (no line health, no segmentation, no index,
no hand-over between threads): a real recorder costs more. CPU is the process's user + system
time (fsync is mostly system time). Each row is the median of the trials, with the range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from linetap.sim.feeder import asoundrc
from linetap.sim.line import render
from linetap.store.audio import AudioWriter

RATE = 8000
PERIOD = RATE // 50  # 20 ms
PCM = "floor"


def cpu() -> float:
    return time.process_time()


class Case:
    def __init__(self, work: Path, codec: str, audio: np.ndarray) -> None:
        self.work, self.codec, self.audio = work, codec, audio
        self.n = 0

    def _writer(self) -> AudioWriter:
        self.n += 1
        return AudioWriter(self.work / f"{self.n}.{self.codec}", self.codec, RATE, 1)

    def codec_only(self) -> float:
        w, x = self._writer(), self.audio.reshape(-1, 1)
        t = cpu()
        for i in range(0, len(x), PERIOD):
            w.write(x[i:i + PERIOD])
        w.close()
        return cpu() - t

    def captured(self, *, encode: bool, sync_every_s: float | None = None) -> float:
        import alsaaudio  # the one library under test; imported after $HOME points at our asoundrc
        pcm = alsaaudio.PCM(alsaaudio.PCM_CAPTURE, device=PCM, rate=RATE, channels=1,
                            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=PERIOD)
        w = self._writer() if encode else None
        sync_every = round(sync_every_s * RATE) if sync_every_s else 0
        frames = since_sync = 0
        t = cpu()
        while frames < len(self.audio):
            n, data = pcm.read()
            if n <= 0:
                raise SystemExit(f"ALSA read returned {n} after {frames} frames")
            block = np.frombuffer(data, dtype=np.int16).reshape(-1, 1)
            frames += n
            if w is not None:
                w.write(block)
                since_sync += n
                if sync_every and since_sync >= sync_every:
                    w.sync()
                    since_sync = 0
        if w is not None:
            w.close()
        used = cpu() - t
        pcm.close()
        return used


class Lines:
    """``n`` lines at once, the cheapest way a many-line recorder can push them to the disk: each
    line's PCM read a period at a time in turn, each period encoded, and one ``syncfs`` of the
    filesystem every 0.4 s of audio for all of them (``linetap.store.recordings.syncfs``, what
    linetap does per pipeline round). With ``level``, also each period's dBFS level, ten periods of
    a line at a time in one numpy call (the least a VOX recorder must compute)."""

    def __init__(self, work: Path, codec: str, audio: np.ndarray, n: int) -> None:
        # A line's share of the work does not grow with the lines: play an eighth of the audio
        # (at least 10 s) and scale the CPU to the whole, so 32 lines take as long as 4.
        self.periods = min(len(audio), max(10 * RATE, len(audio) // 8)) // PERIOD
        self.scale = len(audio) / (self.periods * PERIOD)
        self.work, self.codec, self.n = work, codec, n
        self.k = 0

    def run(self, *, level: bool = False, each: bool = False) -> float:
        import alsaaudio

        from linetap.store.recordings import syncfs
        pcms = [alsaaudio.PCM(alsaaudio.PCM_CAPTURE, device=f"{PCM}{i}", rate=RATE, channels=1,
                              format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=PERIOD) for i in range(self.n)]
        self.k += 1
        d = self.work / f"{self.codec}-lines{self.k}"
        d.mkdir()
        writers = [AudioWriter(d / f"{i}.{self.codec}", self.codec, RATE, 1) for i in range(self.n)]
        held: list[list[np.ndarray]] = [[] for _ in range(self.n)]
        sync_every = round(0.4 * RATE / PERIOD)
        t = cpu()
        for p in range(self.periods):
            for i, pcm in enumerate(pcms):
                got, data = pcm.read()
                if got <= 0:
                    raise SystemExit(f"ALSA read returned {got}")
                block = np.frombuffer(data, dtype=np.int16).reshape(-1, 1)
                writers[i].write(block)
                if level:
                    held[i].append(block)
                    if len(held[i]) == 10:
                        x = np.concatenate(held[i]).astype(np.float64).reshape(10, -1)
                        np.einsum("ij,ij->i", x, x)
                        held[i].clear()
            if (p + 1) % sync_every == 0:
                if each:
                    for w in writers:
                        w.sync()
                else:
                    syncfs(d)
        for w in writers:
            w.close()
        used = cpu() - t
        for pcm in pcms:
            pcm.close()
        return used / self.n * self.scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--codecs", default="opus,flac")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--lines", type=int, default=32, help="lines of the shared-sync rows (0: none)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="linetap-floor-") as tmp:
        work = Path(tmp)
        audio = render([("call", args.seconds)], rate=RATE, seed=7)[0].astype(np.int16)
        audio = audio[:len(audio) // PERIOD * PERIOD]
        raw = work / "line.raw"
        audio.tofile(raw)
        # libasound reads $HOME/.asoundrc when it first opens a PCM
        os.environ["HOME"] = str(work)
        os.environ.pop("XDG_CONFIG_HOME", None)
        (work / ".asoundrc").write_text(asoundrc({PCM: raw, **{f"{PCM}{i}": raw for i in range(args.lines)}}))

        print(f"{len(audio) / RATE:.0f} s of call audio, 20 ms periods, {args.trials} trials; "
              f"CPU s (user + system) per run, median [min-max]; ratio = median / codec-only median\n")
        print(f"{'codec':5} {'what':26} {'CPU s':>8} {'range':>17} {'ratio':>6}")
        print("-" * 66)
        for codec in args.codecs.split(","):
            case = Case(work, codec, audio)
            kinds = {
                "codec-only": case.codec_only,
                "read": lambda: case.captured(encode=False),
                "read+codec": lambda: case.captured(encode=True),
                "+fsync 1.0s": lambda: case.captured(encode=True, sync_every_s=1.0),
                "+fsync 0.4s": lambda: case.captured(encode=True, sync_every_s=0.4),
            }
            if args.lines:
                many = Lines(work, codec, audio, args.lines)
                kinds[f"{args.lines} lines, fsync each 0.4s"] = lambda: many.run(each=True)
                kinds[f"{args.lines} lines, syncfs 0.4s"] = lambda: many.run()
                kinds[f"... + level"] = lambda: many.run(level=True)
            got: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.trials):  # interleaved, so drift on a noisy VM hits every row alike
                for k, fn in kinds.items():
                    got[k].append(fn())
            base = statistics.median(got["codec-only"])
            for k, xs in got.items():
                m = statistics.median(xs)
                print(f"{codec:5} {k:26} {m:8.4f} {min(xs):8.4f}-{max(xs):<8.4f} {m / base:5.2f}x")
            print()
        print("The rows of N lines are per line. The recorder-core target: the whole pipeline <= 1.5x codec-only.\n"
              "The rows above are what any recorder meeting the other requirements must spend\n"
              "before any analysis (\"+ level\": the least of it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
