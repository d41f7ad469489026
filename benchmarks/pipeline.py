#!/usr/bin/env python3
"""The whole recorder pipeline at 1, 4, 16 and 32 lines, beside the codec alone.

    .venv/bin/python benchmarks/pipeline.py [--lines 1,4,16,32] [--codecs opus,flac] [--seconds 120]
    .venv/bin/python benchmarks/pipeline.py --realtime 120 [--lines 4,32] [--codecs opus,flac] [--reader drain|blocking] [--idle]

Each (codec, lines) case runs in a fresh process, so its peak RSS is its own. In it, the real
``linetap.recorder.Recorder`` (capture reader threads, level and DSP analysis, segmentation,
codec, disk with fsync, SQLite index) records N simulated lines. The lines enter at the capture
seam: a ``source_factory`` of in-memory sources returning 20 ms blocks of realistic line audio
(``linetap.sim.line.render``: a noise floor at -70 dBFS, calls of recorded speech, gaps) as fast
as the pipeline takes them; a source stays at most ``AHEAD_S`` ahead of its line's progress, so
nothing is dropped and the queue does not become the memory figure. The pipeline takes each line's
queued blocks as runs of at most ``linetap.pipeline.RUN_BLOCKS`` (200 ms), the runs it also makes in
real time (where it lets ``GATHER_S``, 200 ms, of blocks gather), so these figures stand for real time.

Then, in the same process, the same audio goes through the codec alone: every segment the
pipeline recorded (found from the index) is encoded again with libsndfile through
``linetap.store.audio.AudioWriter`` in the same 20 ms writes, without the rest of the pipeline.
The headline figure is the ratio of the two CPU times.

``--realtime SECONDS`` runs each case in real time instead and reports the process's CPU as % of a
core. Its sources model a sound card read non-blocking (``linetap.capture.alsa``): periods gather in
the card's buffer by the wall clock, a read takes one or finds none, and the reader sleeps between
drains (100 ms). ``--reader blocking`` models the other kind of source instead, a read that waits for
each period (one wake-up per 20 ms per line; this is how the ``file`` PCM of the tests behaves). The
audio is the same 120 s script as above (about 60 % in calls); use SECONDS >= 120 to measure all of it.
The codec floor is measured twice, and the recorder's CPU over each is printed as "recorder / codec"
(the fixed cost of running shows as the excess over 1):
- alongside (``PacedCodec``, the headline): during the run, a second process, a codec-only recorder,
  encodes the same calls as the audio comes, 200 ms a line at a time by the same wall clock, its CPU
  read at the same instants as the recorder's. On this shared VM a floor measured minutes apart moved
  by 2.8-3.8 % of a core at 4 lines between runs, more than the whole fixed cost; measured alongside,
  the machine's load reaches both alike;
- after (the figure of earlier rounds): in the same process right after the run, libsndfile alone
  encodes what the recorder recorded inside the measured window, in a tight loop.
Both write 200 ms pieces (``FLOOR_WRITE_FRAMES``), the recorder's own runs and the cheapest writes for
libsndfile: encoding 20 s of call audio with Opus took 1,421 M instructions in 20 ms writes, 1,386 M
in 200 ms writes and 1,385 M in 1 s writes (``valgrind --tool=callgrind``), so 20 ms writes would
flatter the ratio by about 2.5 %. ``--repeat N`` runs each case N times (fresh processes) and prints
the median with the range. ``--idle``:
the lines carry only their noise floor (no call), for the fixed cost alone.
The "32 lines RT" column of the main table is 32 x the per-line cost at full speed, which leaves
out what only real time costs (the readers' wake-ups, a pipeline round every 200 ms).

In real time each thread role's CPU is printed too, and its wake-ups a second: the voluntary
context switches of its threads (``/proc/self/task/<tid>/status``), every sleep it woke from (a
tick, a wait for the GIL or for the disk).

CPU time is the whole process's (``resource.getrusage``: user + system, every thread). The
recorder-core targets: pipeline <= 1.5x codec-only; 32 lines in real time under 35 % of one core with Opus,
under 10 % with FLAC; peak RSS under 80 MB at 4 lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# As the recorder runs (systemd/linetap.service): OpenBLAS on one thread. Its worker threads, if
# started, spin between the detectors' small matrix products; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

RATE = 8000
BLOCK = RATE // 50  # 20 ms, the capture period
FLOOR_WRITE_FRAMES = 10 * BLOCK  # the real-time codec floor's writes: 200 ms, a pipeline run (see above)
AHEAD_S = 5.0  # how far a source may run ahead of its line's processing
T0 = 1_795_000_000.0
DISTINCT = 4  # distinct renders, shared by the lines (read-only), so the source audio stays small


def script(seconds: float) -> list[tuple]:
    """About 60 % of the time in calls, the rest idle, in the proportions of a busy office line."""
    k = seconds / 120.0
    return [("idle", 20 * k), ("call", 30 * k), ("idle", 30 * k), ("call", 20 * k), ("idle", 20 * k)]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's live threads (each thread's own CPU clock), summed by role:
    the name up to its first "-" (``capture-line3`` -> ``capture``; the recorder names its threads)."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            used = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, TypeError):  # the thread just ended
            continue
        role = t.name.split("-")[0]
        out[role] = out.get(role, 0.0) + used
    return out


def thread_wakeups() -> dict[str, int]:
    """Voluntary context switches of this process's live threads (``/proc/self/task/<tid>/status``),
    summed by role as ``thread_cpu_s`` sums them: each is a sleep the thread woke from."""
    out: dict[str, int] = {}
    for t in threading.enumerate():
        try:
            status = Path(f"/proc/self/task/{t.native_id}/status").read_text()
        except (OSError, TypeError):  # the thread just ended
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                role = t.name.split("-")[0]
                out[role] = out.get(role, 0) + int(line.split()[1])
    return out


def peak_rss_mb() -> float:
    """Peak RSS since the last ``reset_peak_rss`` (VmHWM), else since the process began."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Forget the peak so far (the rendering of the test audio), Linux >= 4.0."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- one case, in its own process -------------------------------------------------

def run_case(n_lines: int, codec: str, seconds: float, keep: Path | None, profile_to: str | None = None) -> dict:

    from linetap.capture import Read
    from linetap.clock import FakeClock, parse_iso
    from linetap.config import load_text
    from linetap.index.db import open_index
    from linetap.recorder import Recorder
    from linetap.sim.line import render
    from linetap.store.audio import AudioWriter

    work_dir = Path(tempfile.mkdtemp(prefix="linetap-bench-", dir=keep))
    data_dir = work_dir / "data"
    renders = [render(script(seconds), rate=RATE, seed=100 + i)[0].reshape(-1, 1) for i in range(DISTINCT)]
    audio_of = {f"line{i}": renders[i % DISTINCT] for i in range(n_lines)}
    total_frames = len(renders[0]) // BLOCK * BLOCK

    text = (f'[recorder]\nid = "bench"\ndata_dir = "{data_dir}"\n[storage]\ncodec = "{codec}"\n'
            f'keep_free_mb = 0\n[health]\ncheck_clock = false\n')
    text += "".join(f'[[line]]\nname = "{name}"\npcm = "{name}"\n' for name in audio_of)
    cfg = load_text(text)

    rec_box: list = []
    source_cpu = [0.0]
    source_lock = threading.Lock()

    class MemorySource:
        """20 ms blocks of one line's audio, as fast as the pipeline takes them."""

        def __init__(self, pcm: str, rate: int, channels: int, period_frames: int) -> None:
            assert (rate, channels, period_frames) == (RATE, 1, BLOCK)
            self.name, self.audio, self.pos = pcm, audio_of[pcm], 0

        def read(self) -> Read:
            ahead = self.pos - rec_box[0].line_calls[self.name].frames_seen
            if self.pos >= total_frames or ahead > AHEAD_S * RATE:
                time.sleep(0.02)  # fed out, or far enough ahead: like a blocked ALSA read
                return Read(None)
            t = time.thread_time()
            block = self.audio[self.pos:self.pos + BLOCK]
            self.pos += BLOCK
            with source_lock:
                source_cpu[0] += time.thread_time() - t
            return Read(block)

        def close(self) -> None:
            pass

    import gc
    gc.collect()
    _malloc_trim()  # give back what rendering the audio took (glibc keeps freed memory otherwise)
    peak_reset = reset_peak_rss()
    rss_before = peak_rss_mb()
    source_mb = sum(x.nbytes for x in renders) / 2**20
    rec = Recorder(cfg, clock=FakeClock(wall=T0), source_factory=MemorySource)
    rec_box.append(rec)
    profile = None
    if profile_to is not None:
        import cProfile
        profile = cProfile.Profile()
        work = rec.pipeline.run

        def profiled_work() -> None:  # the pipeline thread, under the profiler
            profile.enable()
            try:
                work()
            finally:
                profile.disable()
        rec.pipeline.run = profiled_work  # type: ignore[method-assign]
    wall0, cpu0, sys0 = time.perf_counter(), cpu_s(), sys_s()
    rec.start()
    try:
        while not all(rec.line_calls[n].frames_seen >= total_frames for n in audio_of):
            time.sleep(0.05)
    finally:
        rec.stop()
    pipeline_cpu, pipeline_wall, pipeline_sys = cpu_s() - cpu0, time.perf_counter() - wall0, sys_s() - sys0
    rss_pipeline = peak_rss_mb()
    dropped = sum(r.dropped_blocks for r in rec.readers.values())
    if profile is not None:
        import pstats
        with open(profile_to, "w") as f:
            pstats.Stats(profile, stream=f).sort_stats("tottime").print_stats(40)

    # The same segments through the codec alone.
    index = open_index(data_dir)
    rows = [r for r in index.calls() if r["status"] == "complete"]
    index.close()
    segments = []
    for r in rows:
        first = round((parse_iso(r["started_at"]) - (T0 - BLOCK / RATE)) * RATE)
        frames = round(r["duration_s"] * RATE)
        segments.append((audio_of[r["line"]], max(0, first), frames))
    codec_dir = work_dir / "codec-only"
    codec_dir.mkdir()
    cpu1 = cpu_s()
    for i, (x, first, frames) in enumerate(segments):
        w = AudioWriter(codec_dir / f"{i}.{codec}", codec, RATE, 1)
        seg = x[first:first + frames]
        for j in range(0, len(seg), BLOCK):
            w.write(seg[j:j + BLOCK])
        w.close()
    codec_cpu = cpu_s() - cpu1
    recorded_s = sum(f for _, _, f in segments) / RATE
    if keep is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {"lines": n_lines, "codec": codec, "audio_s_per_line": total_frames / RATE,
            "recordings": len(rows), "recorded_s": recorded_s, "pipeline_cpu_s": pipeline_cpu, "pipeline_sys_s": pipeline_sys,
            "pipeline_wall_s": pipeline_wall, "codec_cpu_s": codec_cpu, "source_cpu_s": source_cpu[0],
            "rss_before_mb": rss_before, "rss_peak_mb": rss_pipeline, "source_audio_mb": source_mb,
            "peak_reset": peak_reset, "dropped_blocks": dropped,
            "pipeline_errors": rec.pipeline.errors}


class PartTimer:
    """The pipeline thread's CPU (``time.thread_time``) by part, for ``--parts``: each part's method
    wrapped on its class, timed only when the pipeline thread calls it. Parts nest (the codec's
    write is inside a call's), so ``split`` subtracts: codec (libsndfile's writes), detectors
    (``LineAnalyzer.push``), calls (``LineCalls.on_block`` less those two: levels, segmenter,
    filing, the recording's bookkeeping), line health (``LineSupervisor.check_run``), the round's
    sync (``SyncBatch.flush``), and the round itself (the rest of the thread: the queue, ``runs``,
    the watchdog, the StallWatch, waking up)."""

    WRAPPED = (("linetap.store.audio", "AudioWriter", "write", "codec"),
               ("linetap.detect.analyzer", "LineAnalyzer", "push", "detectors"),
               ("linetap.calls.line", "LineCalls", "on_block", "on_block"),
               ("linetap.supervisor", "LineSupervisor", "check_run", "line health"),
               ("linetap.store.recordings", "SyncBatch", "flush", "sync"))

    def __init__(self) -> None:
        import importlib
        self.cpu = {part: 0.0 for *_, part in self.WRAPPED}
        for module, cls_name, method, part in self.WRAPPED:
            cls = getattr(importlib.import_module(module), cls_name)
            setattr(cls, method, self._timed(getattr(cls, method), part))

    def _timed(self, fn, part: str):
        cpu, thread_time, current = self.cpu, time.thread_time, threading.current_thread

        def timed(*a, **k):
            if current().name != "pipeline":
                return fn(*a, **k)
            t = thread_time()
            try:
                return fn(*a, **k)
            finally:
                cpu[part] += thread_time() - t
        return timed

    def snapshot(self) -> dict[str, float]:
        return dict(self.cpu)

    @staticmethod
    def split(before: dict[str, float], after: dict[str, float], pipeline_s: float, wall: float) -> dict[str, float]:
        """% of one core per part over ``wall`` seconds; ``pipeline_s``: the thread's CPU meanwhile."""
        d = {k: after[k] - before[k] for k in after}
        parts = {"codec": d["codec"], "detectors": d["detectors"],
                 "calls": d["on_block"] - d["codec"] - d["detectors"], "line health": d["line health"],
                 "sync": d["sync"], "round": pipeline_s - d["on_block"] - d["line health"] - d["sync"]}
        return {k: 100 * v / wall for k, v in parts.items()}


def run_realtime(n_lines: int, codec: str, seconds: float, reader: str = "drain", idle: bool = False,
                 parts: bool = False) -> dict:
    """The same recorder and audio, but each source's periods come by the wall clock, one every
    20 ms, as a sound card's do: read non-blocking from the card's buffer (``drain``) or waited
    for one by one (``blocking``). Returns the whole process's CPU as % of one core, over the run
    less its first 2.5 s and last 2 s. ``idle``: the lines carry only their noise floor (no call).
    ``parts``: the pipeline thread's CPU by part too (``PartTimer``; the timing adds its own cost)."""
    from linetap.capture import Read
    from linetap.clock import FakeClock
    from linetap.config import load_text
    from linetap.recorder import Recorder
    from linetap.sim.line import render

    plan = [("idle", max(seconds, 120.0))] if idle else script(max(seconds, 120.0))
    rendered = [render(plan, rate=RATE, seed=100 + i) for i in range(DISTINCT)]
    renders = [audio.reshape(-1, 1) for audio, _ in rendered]
    work_dir = Path(tempfile.mkdtemp(prefix="linetap-bench-rt-"))
    data_dir = work_dir / "data"
    text = (f'[recorder]\nid = "bench"\ndata_dir = "{data_dir}"\n[storage]\ncodec = "{codec}"\n'
            f'keep_free_mb = 0\n[health]\ncheck_clock = false\n')
    text += "".join(f'[[line]]\nname = "line{i}"\npcm = "line{i}"\n' for i in range(n_lines))

    class BlockingSource:
        """Each read waits until its period is due."""

        def __init__(self, pcm: str, rate: int, channels: int, period_frames: int) -> None:
            self.audio, self.pos = renders[int(pcm[4:]) % DISTINCT], 0

        def read(self) -> Read:
            due = t0 + (self.pos + BLOCK) / RATE - time.monotonic()
            if due > 0:
                time.sleep(due)
            if self.pos + BLOCK > len(self.audio):
                time.sleep(0.02)
                return Read(None)
            block = self.audio[self.pos:self.pos + BLOCK]
            self.pos += BLOCK
            return Read(block)

        def close(self) -> None:
            pass

    class CardSource(BlockingSource):
        """A card's buffer, read non-blocking: a period if one is due, else none (EAGAIN)."""
        drain_s = 0.1

        def read(self) -> Read:
            if t0 + (self.pos + BLOCK) / RATE > time.monotonic() or self.pos + BLOCK > len(self.audio):
                return Read(None)
            block = self.audio[self.pos:self.pos + BLOCK]
            self.pos += BLOCK
            return Read(block)

        def pending(self) -> int:
            return max(0, int((time.monotonic() - t0) * RATE) - self.pos)

    factory = CardSource if reader == "drain" else BlockingSource
    timer = PartTimer() if parts else None
    rec = Recorder(load_text(text), clock=FakeClock(wall=T0), source_factory=factory)
    paced = None if idle else PacedCodec(n_lines, codec, seconds)
    t0 = time.monotonic() + 0.5  # the sources' and the paced codec's start
    if paced is not None:
        paced.go(t0)
    rec.start()
    try:
        time.sleep(2.5)
        paced0 = paced.cpu_s() if paced is not None else 0.0
        cpu0, wall0, threads0, wakes0 = cpu_s(), time.monotonic(), thread_cpu_s(), thread_wakeups()
        syncs0 = rec.syncs.filesystem_syncs
        parts0 = timer.snapshot() if timer else {}
        time.sleep(max(1.0, seconds - 4.5))
        cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
        paced_cpu = paced.cpu_s() - paced0 if paced is not None else 0.0
        syncfs_per_s = (rec.syncs.filesystem_syncs - syncs0) / wall
        threads = {k: 100 * (v - threads0.get(k, 0.0)) / wall for k, v in thread_cpu_s().items()}
        by_part = (PartTimer.split(parts0, timer.snapshot(), threads.get("pipeline", 0.0) * wall / 100, wall)
                   if timer else {})
        wakes = {k: (v - wakes0.get(k, 0)) / wall for k, v in thread_wakeups().items()
                 if k in ("capture", "pipeline", "health", "housekeeping", "sync")}
    finally:
        rec.stop()
        if paced is not None:
            paced.close()  # it ends with its schedule, about 2 s after the window
    window = (round((wall0 - t0) * RATE), round((wall0 + wall - t0) * RATE))
    paced_pct = paced_scale = 0.0
    try:
        codec_cpu, recorded_s = (0.0, 0.0) if idle else codec_alone_s(
            data_dir, codec, lambda line: renders[int(line[4:]) % DISTINCT], window_frames=window,
            out_dir=work_dir / "codec-only")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if recorded_s < 1.0:  # no call in the window (a short run): no floor to compare with
        codec_cpu = 0.0
    elif paced is not None:
        paced_s = sum(max(0, min(e, window[1]) - max(s, window[0]))
                      for i in range(n_lines) for s, e in call_frames(rendered[i % DISTINCT][1])) / RATE
        paced_scale = recorded_s / paced_s if paced_s else 0.0
        paced_pct = 100 * paced_cpu * paced_scale / wall
    return {"lines": n_lines, "codec": codec, "core_pct": 100 * cpu / wall, "threads_pct": threads,
            "wakeups_per_s": wakes, "syncfs_per_s": syncfs_per_s, "pipeline_parts_pct": by_part,
            "codec_pct": 100 * codec_cpu / wall, "paced_codec_pct": paced_pct, "paced_scale": paced_scale,
            "recorded_s": recorded_s,
            "dropped_blocks": sum(r.dropped_blocks for r in rec.readers.values()),
            "overruns": sum(r.overruns for r in rec.readers.values())}


class PacedCodec:
    """The codec floor measured alongside the recorder: a second process, a codec-only recorder, that
    encodes the same lines' calls (each rendered call, ``Truth`` kind "call") with libsndfile through
    ``AudioWriter`` as the audio comes by the same wall clock: every ``FLOOR_WRITE_FRAMES`` (200 ms, a
    pipeline round) it writes what each line in a call took meanwhile, line after line, as the
    pipeline's round does. It sleeps between its writes as the recorder does, so it pays what any
    encoder in real time pays (caches gone cold between two rounds) and nothing else; and it runs in
    the same seconds as the recorder, so a change in the machine's load reaches both. Its CPU is read
    from ``/proc/<pid>/task/*/schedstat`` (nanoseconds) at the same instants as the recorder's own.

    It encodes the rendered calls, the recorder what its VOX segmenter recorded (with pre-roll and
    hangover): the floor is scaled to the recorder's recorded seconds in the window (the scale is
    printed; about 1)."""

    def __init__(self, n_lines: int, codec: str, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--paced-codec", str(n_lines), codec,
                                      "--realtime", str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":  # it has rendered the audio
            raise RuntimeError("the paced codec process did not start")

    def go(self, t0: float) -> None:
        self.proc.stdin.write(f"{t0!r}\n")
        self.proc.stdin.flush()

    def cpu_s(self) -> float:
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that just ended
                pass
        return total / 1e9

    def close(self) -> dict:
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def call_frames(truth) -> list[tuple[int, int]]:
    """What the recorder records of one line's rendered calls, as frame spans: from the pre-roll
    before the first voiced sample to the VOX hang time after the last (the config's defaults)."""
    from linetap.config import LineConfig

    cfg = LineConfig(name="line", pcm="line")
    return [(round((t.voice_start_s - cfg.preroll_s) * RATE), round((t.voice_end_s + cfg.vox_hang_s) * RATE))
            for t in truth if t.kind == "call"]


def run_paced_codec(n_lines: int, codec: str, seconds: float) -> dict:
    """The worker of :class:`PacedCodec` (``--paced-codec``)."""
    from linetap.sim.line import render
    from linetap.store.audio import AudioWriter

    plan = script(max(seconds, 120.0))
    lines = []
    for i in range(DISTINCT):
        audio, truth = render(plan, rate=RATE, seed=100 + i)
        lines.append((audio.reshape(-1, 1), call_frames(truth)))
    out_dir = Path(tempfile.mkdtemp(prefix="linetap-bench-paced-"))
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())
    writers: dict[int, object] = {}
    written = tick = 0
    try:
        while True:
            tick += 1
            due = t0 + tick * FLOOR_WRITE_FRAMES / RATE
            if due > t0 + seconds:
                break
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            a, b = (tick - 1) * FLOOR_WRITE_FRAMES, tick * FLOOR_WRITE_FRAMES
            for line in range(n_lines):
                audio, spans = lines[line % DISTINCT]
                for s, e in spans:
                    lo, hi = max(a, s), min(b, e)
                    if lo >= hi:
                        continue
                    w = writers.get(line)
                    if w is None:
                        w = writers[line] = AudioWriter(out_dir / f"{line}-{s}.{codec}", codec, RATE, 1)
                    w.write(audio[lo:hi])
                    written += hi - lo
                    if hi == e:
                        writers.pop(line).close()
    finally:
        for w in writers.values():
            w.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    return {"written_s": written / RATE, "ticks": tick - 1}


def codec_alone_s(data_dir: Path, codec: str, audio_of, *, window_frames: tuple[int, int],
                  out_dir: Path) -> tuple[float, float]:
    """CPU seconds that libsndfile alone takes to encode what the recorder recorded inside the
    measured window (each recording's part of it, found from the index; the source's frame ``f``
    is the window's time ``f / RATE`` after the sources' start), in writes of
    ``FLOOR_WRITE_FRAMES`` (200 ms, the recorder's runs; the cheapest for libsndfile): the codec
    floor of the real-time run, measured in the same process right after it."""
    from linetap.clock import parse_iso
    from linetap.index.db import open_index
    from linetap.store.audio import AudioWriter

    index = open_index(data_dir)
    rows = [r for r in index.calls() if r["duration_s"]]
    index.close()
    w0, w1 = window_frames
    out_dir.mkdir()
    recorded = 0
    cpu0 = cpu_s()
    for i, r in enumerate(rows):
        first = round((parse_iso(r["started_at"]) - T0) * RATE)
        a, b = max(first, w0), min(first + round(r["duration_s"] * RATE), w1)
        if b <= a:
            continue
        w = AudioWriter(out_dir / f"{i}.{codec}", codec, RATE, 1)
        seg = audio_of(r["line"])[a:b]
        recorded += len(seg)
        for j in range(0, len(seg), FLOOR_WRITE_FRAMES):
            w.write(seg[j:j + FLOOR_WRITE_FRAMES])
        w.close()
    return cpu_s() - cpu0, recorded / RATE


# --- the table ---------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", default="1,4,16,32")
    ap.add_argument("--codecs", default="opus,flac")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio per line (default 120)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    ap.add_argument("--keep", type=Path, help="keep the recordings under this directory")
    ap.add_argument("--profile", metavar="FILE", help="with --one: cProfile the pipeline thread into FILE")
    ap.add_argument("--realtime", type=float, metavar="SECONDS",
                    help="instead: each case in real time for SECONDS (sources paced like a sound card; "
                         "120 covers the whole script)")
    ap.add_argument("--reader", default="drain", choices=["drain", "blocking"],
                    help="with --realtime: how the sources are read (default: drain, as a sound card is)")
    ap.add_argument("--idle", action="store_true",
                    help="with --realtime: the lines stay idle (noise floor, no call): the recorder's fixed cost")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="with --realtime: run each case N times and print the median and range")
    ap.add_argument("--parts", action="store_true",
                    help="with --realtime: the pipeline thread's CPU by part (codec, detectors, calls, line "
                         "health, sync, the round itself); the timing adds its own cost")
    ap.add_argument("--one", nargs=2, metavar=("LINES", "CODEC"), help=argparse.SUPPRESS)
    ap.add_argument("--one-rt", nargs=2, metavar=("LINES", "CODEC"), help=argparse.SUPPRESS)
    ap.add_argument("--paced-codec", nargs=2, metavar=("LINES", "CODEC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import logging
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(run_case(int(args.one[0]), args.one[1], args.seconds, args.keep, args.profile)))
        return 0

    if args.paced_codec:
        print(json.dumps(run_paced_codec(int(args.paced_codec[0]), args.paced_codec[1], args.realtime)))
        return 0

    if args.one_rt:
        n, codec = int(args.one_rt[0]), args.one_rt[1]
        r = (run_wakeups(n, args.realtime, args.reader) if codec == "wakeups" else
             run_realtime(n, codec, args.realtime, args.reader, args.idle, args.parts))
        print(json.dumps(r))
        return 0

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if args.realtime:
        return realtime_table(args, env)
    results = []
    for codec in args.codecs.split(","):
        for n in (int(x) for x in args.lines.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), codec, "--seconds", str(args.seconds)]
            if args.keep:
                cmd += ["--keep", str(args.keep)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
            results.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"  done: {codec} x {n} lines", file=sys.stderr)

    print(f"\n{args.seconds:g} s of line audio per line (about 60 % in calls), 20 ms blocks, as fast as possible; "
          f"{os.cpu_count()} CPUs: {_cpu_model()}\n")
    head = (f"{'codec':<5} {'lines':>5} {'audio s/CPU s':>13} {'per line':>9} {'%core/line':>10} "
            f"{'codec-only':>10} {'ratio':>6} {'32 lines RT':>11} {'RSS MB':>7} {'wall s':>7} {'drops':>5}")
    print(head)
    print("-" * len(head))
    # (sys: the part of the pipeline's CPU spent in the kernel: fsync, file and SQLite writes)
    for r in results:
        line_audio = r["lines"] * r["audio_s_per_line"]
        per_cpu = line_audio / r["pipeline_cpu_s"]
        pct_line = 100 * r["pipeline_cpu_s"] / line_audio
        codec_pct_line = 100 * r["codec_cpu_s"] / line_audio
        print(f"{r['codec']:<5} {r['lines']:>5} {per_cpu:>13.0f} {per_cpu / r['lines']:>9.0f} {pct_line:>9.3f}% "
              f"{codec_pct_line:>9.3f}% {r['pipeline_cpu_s'] / r['codec_cpu_s']:>5.2f}x {32 * pct_line:>10.1f}% "
              f"{r['rss_peak_mb']:>7.1f} {r['pipeline_wall_s']:>7.1f} {r['dropped_blocks']:>5}")
    print("\naudio s/CPU s: line-audio seconds processed per CPU second (all lines); per line: the same / lines;")
    print("%core/line: one line in real time; codec-only: the recorded segments through libsndfile alone,")
    print("as %core/line; ratio: pipeline CPU / codec-only CPU; 32 lines RT: 32 x %core/line.")
    print("Targets: ratio <= 1.5x; 32 lines RT < 35 % (opus), < 10 % (flac); RSS < 80 MB at 4 lines.")
    for r in results:
        if r["dropped_blocks"] or r["pipeline_errors"]:
            print(f"WARNING: {r['codec']} x {r['lines']}: {r['dropped_blocks']} blocks dropped, "
                  f"{r['pipeline_errors']} pipeline errors")
    base = [r["rss_before_mb"] for r in results]
    print(f"RSS MB: peak of the process while recording, including before the recorder starts "
          f"{min(base):.1f}-{max(base):.1f} MB (interpreter, every linetap module and library, and "
          f"{results[0]['source_audio_mb']:.1f} MB of source audio){'' if all(r['peak_reset'] for r in results) else ' (peak not reset: includes rendering the audio)'}.")
    print(f"In-memory source CPU (included above): "
          f"{max(100 * r['source_cpu_s'] / r['pipeline_cpu_s'] for r in results):.1f} % at most.")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def run_wakeups(n_lines: int, seconds: float, reader: str = "drain") -> dict:
    """The floor under any thread-per-line capture: N threads that only wake every 100 ms and queue
    the five blocks (slices) due (``blocking``: every 20 ms, one block), and one consumer draining
    the queue every 100 ms. No recorder."""
    per_wake = 5 if reader == "drain" else 1
    import queue
    import numpy as np
    audio = np.zeros(RATE * 30, dtype=np.int16)
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    t0 = time.monotonic() + 0.5

    def reader() -> None:
        pos = 0
        while not stop.is_set():
            time.sleep(max(0.0, t0 + (pos + per_wake * BLOCK) / RATE - time.monotonic()))
            for _ in range(per_wake):
                start = pos % (len(audio) - BLOCK)
                q.put_nowait(audio[start:start + BLOCK])
                pos += BLOCK

    def consumer() -> None:
        while not stop.wait(0.1):
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(n_lines)]
    threads.append(threading.Thread(target=consumer, daemon=True))
    for t in threads:
        t.start()
    time.sleep(2.5)
    cpu0, wall0 = cpu_s(), time.monotonic()
    time.sleep(max(1.0, seconds - 4.5))
    cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
    stop.set()
    return {"lines": n_lines, "codec": "-", "core_pct": 100 * cpu / wall, "dropped_blocks": 0}


def realtime_table(args: argparse.Namespace, env: dict[str, str]) -> int:
    how = ("read non-blocking from a card's buffer, drained every 100 ms" if args.reader == "drain" else
           "each read waiting for its period (one wake-up per period)")
    print(f"{args.realtime:g} s per case in real time, 20 ms periods paced by the wall clock, {how}; "
          f"{os.cpu_count()} CPUs: {_cpu_model()}\n")
    if args.realtime < 120:
        print("(shorter than the 120 s script: the figures cover only its first part)\n")
    head = f"{'codec':<7} {'lines':>5} {'% core':>7} {'%core/line':>10} {'drops':>5} {'overruns':>8}"
    print(head)
    print("-" * len(head))
    by_thread: list[str] = []
    vs_codec: list[str] = []
    for codec in ["wakeups"] + args.codecs.split(","):
        for n in (int(x) for x in args.lines.split(",")):
            cmd = [sys.executable, __file__, "--one-rt", str(n), codec, "--realtime", str(args.realtime),
                   "--reader", args.reader] + (["--idle"] if args.idle else []) + (["--parts"] if args.parts else [])
            results = []
            for _ in range(max(1, args.repeat) if codec != "wakeups" else 1):
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    print(p.stderr, file=sys.stderr)
                    return 1
                results.append(json.loads(p.stdout.strip().splitlines()[-1]))
            results.sort(key=lambda r: r["core_pct"])
            r = results[len(results) // 2]  # the median run (of the whole process's CPU)
            print(f"{codec:<7} {n:>5} {r['core_pct']:>6.1f}% {r['core_pct'] / n:>9.3f}% "
                  f"{max(x['dropped_blocks'] for x in results):>5} {max(x.get('overruns', 0) for x in results):>8}")
            if r.get("codec_pct"):
                vs_codec.append(f"{codec} x {n}: " + floors_line(results))
            if r.get("threads_pct"):
                by_thread.append(f"{codec} x {n}: " + ", ".join(
                    f"{k} {v:.2f} %" for k, v in sorted(r["threads_pct"].items(), key=lambda kv: -kv[1])
                    if k in ("capture", "pipeline", "health", "housekeeping")))
            if r.get("wakeups_per_s"):
                by_thread.append(f"{codec} x {n}: wake-ups a second " + ", ".join(
                    f"{k} {v:.1f}" for k, v in sorted(r["wakeups_per_s"].items(), key=lambda kv: -kv[1]))
                    + (f"; filesystem syncs a second {r['syncfs_per_s']:.2f}" if "syncfs_per_s" in r else ""))
            if r.get("pipeline_parts_pct"):
                by_thread.append(f"{codec} x {n}: pipeline thread by part " + ", ".join(
                    f"{k} {v:.2f} %" for k, v in r["pipeline_parts_pct"].items()))
    wakes = "10 times a second" if args.reader == "drain" else "50 times a second"
    print("\n% core: the whole process (every thread) while recording in real time. Unlike the")
    if args.reader == "drain":
        print("as-fast-as-possible table, it includes what only real time costs: the cards are drained every 100 ms,")
        print("by the pipeline at each of its rounds (every 200 ms) and by the card drainer's thread between them")
        print("(5 wake-ups a second). Recorder-core targets: 32 lines < 35 % (opus), < 10 % (flac).")
    else:
        print(f"as-fast-as-possible table, it includes what only real time costs: every reader thread wakes {wakes},")
        print("and the pipeline runs in rounds of 200 ms. Recorder-core targets: 32 lines < 35 % (opus), < 10 % (flac).")
    print(f"wakeups (the baseline, same run): N bare threads waking {wakes} to queue the blocks due, one")
    print("consumer every 100 ms, no recorder: the floor under any thread-per-line capture.")
    if vs_codec:
        runs = f"median of {args.repeat} runs [range]" if args.repeat > 1 else "one run"
        print(f"\nBeside the codec alone, libsndfile encoding the same calls in {1000 * FLOOR_WRITE_FRAMES // RATE} ms "
              f"writes ({runs}): alongside, a codec-only process\nin real time during the same seconds; after, in the "
              "same process right after the run, in a tight loop. Ratio: the whole recorder's CPU over the codec's.")
        for line in vs_codec:
            print("  " + line)
    if by_thread:
        print("\nBy thread (% of one core, same window; capture: every line's reader, with its simulated card):")
        for line in by_thread:
            print("  " + line)
    return 0


def floors_line(results: list[dict]) -> str:
    """The codec floors of a case's runs and the recorder's ratio to each: the median, and the range
    when there are several runs (each run's ratio to its own floors)."""
    def fig(values: list[float], fmt: str) -> str:
        values = sorted(values)
        mid = values[len(values) // 2]
        return fmt.format(mid) + (f" [{fmt.format(values[0])}-{fmt.format(values[-1])}]" if len(values) > 1 else "")

    out = []
    for key, name in (("paced_codec_pct", "alongside"), ("codec_pct", "after")):
        if all(r.get(key) for r in results):
            out.append(f"codec {name} {fig([r[key] for r in results], '{:.2f}')} % of a core, recorder / codec "
                       f"{fig([r['core_pct'] / r[key] for r in results], '{:.2f}')}x")
    return "; ".join(out)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
