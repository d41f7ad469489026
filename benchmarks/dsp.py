"""CPU cost of the line detectors vs the Opus encoder, and DTMF talk-off on speech.

Run: ``.venv/bin/python benchmarks/dsp.py`` (three to five minutes on a 2-core x86 VM);
``.venv/bin/python benchmarks/dsp.py --callgrind`` for the instruction counts below (about ten minutes: valgrind runs
the whole process, start-up and audio synthesis included, some 50 times slower).

* As integrated (the figure that matters, printed first): ``LineAnalyzer`` (detect/analyzer.py),
  the per-line object the recorder feeds with each run the pipeline hands a line (``RUN_BLOCKS``
  capture blocks of 20 ms: 200 ms) and that batches the detectors internally (1 s), with and without
  ``mask_dtmf``; next to the Opus encoding of the same audio written in the same runs (as the
  recorder writes them), measured in the same run: the three (analyser, analyser with masking,
  Opus) in turn, five times, best of each, so that the machine's load moves them alike. Target:
  < 5 %. ``--integrated`` prints this table alone (about a minute).

* Cost: CPU time (time.process_time, all threads; best of three runs) per second of line audio,
  for each detector and for the wiring the recorder uses (DtmfMasker + FSK caller ID + DTMF
  caller ID parser fed with the masker's digits + tones), fed in 20 ms blocks (what the capture
  loop delivers), 100 ms and 1 s batches; next to libsndfile's Ogg Opus encoding of the same
  audio in the same blocks. "call" is a minute of speech with keys and a busy tone, "idle" a
  line with only -65 dBFS noise.
* Talk-off: false DTMF digits, tone events and caller IDs per hour of speech-like audio (an hour
  of synthetic speech, and espeak-ng speech when it is installed), and how much speech the masker
  would blank.

* Instructions (``--callgrind``): CPU time on a shared VM swings by +-20 % with the other
  processes' load, which moves a 5 % ratio by a point. The same two measured parts (the analyser fed
  the pipeline's runs with ``mask_dtmf``, and the Opus encoding of the same runs: a minute of the
  "call" audio and of the "idle" line at 8 kHz, the worst case) are run again, each in its own
  process under ``valgrind --tool=callgrind --toggle-collect='*operator_call*'``: the measured call
  alone runs inside ``operator.call``, so only its instructions are counted (not the start-up,
  imports, audio synthesis or warm-up). Instruction counts do not depend on the machine's load;
  their ratio is printed beside the CPU-time ratio of the same audio. (Under valgrind, OpenBLAS and
  libopus pick their code paths for valgrind's emulated CPU, so the counts are those of that CPU.)

BLAS is pinned to one thread: the matrices here are tiny, and OpenBLAS worker threads only burn CPU
spinning (process_time triples with them). The recorder should run with OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import operator  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from linetap.config import LineConfig  # noqa: E402
from linetap.sim import signals as sig  # noqa: E402
from linetap.detect.analyzer import BATCH_S, LineAnalyzer  # noqa: E402
from linetap.detect.callerid import CallerIdDecoder, CasDetector, DtmfCallerIdParser  # noqa: E402
from linetap.detect.dtmf import DtmfDetector, DtmfMasker  # noqa: E402
from linetap.detect.tones import ToneDetector  # noqa: E402
from linetap.pipeline import RUN_BLOCKS  # noqa: E402

COST_SECONDS = 60
REPEATS = 3
INTEGRATED_REPEATS = 5  # the figure that matters: more runs, interleaved (see integrated_table)


def cpu(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def call_audio(rate: int) -> np.ndarray:
    """A minute of a call: speech with line noise, a few keys, a busy tone at the end."""
    rng = np.random.default_rng(7)
    x = sig.speech_like(COST_SECONDS, rate, rng=rng, level_dbfs=-18)
    keys = sig.dtmf_string("4111111111111111", rate, -15, on_ms=80, off_ms=80)
    x[20 * rate : 20 * rate + len(keys)] = keys
    busy = sig.cadence_tone("busy", "us", 5, rate, -20)
    x[-len(busy) :] = busy
    return sig.to_pcm16(sig.add_noise(x, 35, rng=rng))


def idle_audio(rate: int) -> np.ndarray:
    return sig.to_pcm16(sig.add_noise(np.zeros(COST_SECONDS * rate), 0, reference_dbfs=-65))


def run_blocks(feed: Callable[[np.ndarray, int], object], x: np.ndarray, block: int) -> None:
    for i in range(0, len(x), block):
        feed(x[i : i + block], i)


def opus_cost(x: np.ndarray, rate: int, block: int) -> float:
    def encode() -> None:
        with sf.SoundFile(io.BytesIO(), "w", samplerate=rate, channels=1, format="OGG", subtype="OPUS") as f:
            for i in range(0, len(x), block):
                f.write(x[i : i + block])

    return cpu(encode)


def pipeline(rate: int) -> Callable[[np.ndarray, int], object]:
    """The recommended per-line wiring; returns its feed function."""
    masker = DtmfMasker(rate)
    fsk = CallerIdDecoder(rate, standards=("bell202", "v23"))
    parser = DtmfCallerIdParser(rate)
    tones = ToneDetector(rate, "us")

    def feed(block: np.ndarray, start: int) -> None:
        _out, _start, digits = masker.process(block, start)
        fsk.feed(block, start)
        parser.feed_digits(digits)
        tones.feed(block, start)

    return feed


def line_config(rate: int, mask: bool) -> LineConfig:
    return LineConfig(name="bench", pcm="null", rate=rate, mask_dtmf=mask, tone_set="us")


def analyzer_feed(rate: int, mask: bool, in_call: bool = False) -> Callable[[np.ndarray, int], object]:
    """What LineCalls does with the analyser for every run the pipeline hands it (frames are (n, 1)).

    ``in_call``: the audio is a call that began at frame 0; LineCalls rests the FSK caller ID
    decoder from 10 s into a call (no on-hook caller ID on an answered line)."""
    an = LineAnalyzer(line_config(rate, mask))

    def feed(block: np.ndarray, start: int) -> None:
        an.push(block, start)
        _ = an.released_to
        an.callerid_paused = in_call and start >= 10 * rate

    return feed


def integrated_table() -> None:
    print(f"As integrated: LineAnalyzer fed the pipeline's runs ({RUN_BLOCKS} capture blocks of 20 ms, batch "
          f"{BATCH_S:g} s) vs Opus written in the same runs, same run")
    print(f"{'audio':<7}{'rate':>6}{'analyzer':>10}{'+mask':>10}{'Opus':>9}{'ratio':>9}{'+mask':>9}   (ms CPU per s)")
    worst = 0.0
    for rate in (8000, 16000):
        block = rate // 50 * RUN_BLOCKS  # the pipeline hands LineCalls a line's blocks as one run
        warm = call_audio(rate)[: 5 * rate].reshape(-1, 1)
        run_blocks(analyzer_feed(rate, True), warm, block)
        opus_cost(warm, rate, block)
        for name, x in (("call", call_audio(rate)), ("idle", idle_audio(rate))):
            x = x.reshape(-1, 1)
            per_s = 1000.0 / (len(x) / rate)
            in_call = name == "call"
            # The three measured in turn, INTEGRATED_REPEATS times, best of each: a change in the
            # machine's load then reaches all three alike rather than one of them.
            plain = masked = opus = math.inf
            for _ in range(INTEGRATED_REPEATS):
                plain = min(plain, cpu(partial(run_blocks, analyzer_feed(rate, False, in_call), x, block)))
                masked = min(masked, cpu(partial(run_blocks, analyzer_feed(rate, True, in_call), x, block)))
                opus = min(opus, opus_cost(x, rate, block))
            worst = max(worst, masked / opus)
            print(f"{name:<7}{rate:>6}{plain * per_s:>10.3f}{masked * per_s:>10.3f}{opus * per_s:>9.3f}"
                  f"{plain / opus:>9.1%}{masked / opus:>9.1%}")
    print(f"worst ratio (mask on) {worst:.1%}: target < 5 % -> {'PASS' if worst < 0.05 else 'FAIL'}")
    print("analyzer = DTMF detector + FSK caller ID + DTMF caller ID + tones (+ ring and hold);"
          " +mask = with the DtmfMasker instead of the detector;\n'call' rests the FSK decoder after"
          " the call's first 10 s, as LineCalls does (only the call-waiting alert detector runs);"
          " 'idle' (on-hook) runs everything")


def cost_table() -> None:
    print("CPU per second of line audio (ms), time.process_time, OPENBLAS_NUM_THREADS="
          f"{os.environ['OPENBLAS_NUM_THREADS']}")
    cols = ["DTMF", "masker", "CID fsk", "CID all", "tones", "ALL", "Opus", "ALL/Opus"]
    print(f"{'audio':<7}{'rate':>6}{'block':>7} " + "".join(f"{c:>9}" for c in cols))
    for rate in (8000, 16000):
        warm = call_audio(rate)[: 5 * rate]  # first calls pay for lazy imports and caches
        run_blocks(pipeline(rate), warm, rate // 50)
        run_blocks(CallerIdDecoder(rate).feed, warm, rate // 50)
        opus_cost(warm, rate, rate // 50)
        for audio, x in (("call", call_audio(rate)), ("idle", idle_audio(rate))):
            for block_ms in (20, 100, 1000):
                block = rate * block_ms // 1000
                per_s = 1000.0 / (len(x) / rate)
                feeds: dict[str, Callable[[], Callable[[np.ndarray, int], object]]] = {
                    "DTMF": lambda: DtmfDetector(rate).feed,  # noqa: B023 - called at once
                    "masker": lambda: DtmfMasker(rate).process,  # noqa: B023
                    "CID fsk": lambda: CallerIdDecoder(rate, ("bell202", "v23")).feed,  # noqa: B023
                    "CID all": lambda: CallerIdDecoder(rate).feed,  # noqa: B023
                    "tones": lambda: ToneDetector(rate, "us").feed,  # noqa: B023
                    "ALL": lambda: pipeline(rate),  # noqa: B023
                }
                # Best of three runs on fresh objects: other processes on the machine only add time.
                d = {name: min(cpu(partial(run_blocks, make(), x, block)) for _ in range(REPEATS))
                     for name, make in feeds.items()}
                d["Opus"] = min(opus_cost(x, rate, block) for _ in range(REPEATS))
                row = [d[c] * per_s for c in cols[:-1]]
                ratio = d["ALL"] / d["Opus"]
                print(f"{audio:<7}{rate:>6}{block_ms:>5}ms " + "".join(f"{v:9.3f}" for v in row) + f"{ratio:9.1%}")
    print("ALL = DtmfMasker + CallerIdDecoder(bell202, v23) + DtmfCallerIdParser(masker digits) + ToneDetector")
    print("(CID all = CallerIdDecoder with its own DTMF detector; not used in ALL.)")


def talkoff_speech_like(hours: float, rate: int = 8000) -> dict[str, float]:
    det = DtmfDetector(rate)
    cid = CallerIdDecoder(rate, standards=("bell202", "v23"))
    cas = CasDetector(rate)  # the call-waiting alert, listened for during established calls
    cas_ends: list[int] = []
    tones = {ts: ToneDetector(rate, ts) for ts in ("us", "uk", "eu")}
    an = LineAnalyzer(line_config(rate, True))  # as integrated, masking: the masker's detector
    digits, spans, cids, tone_events, an_events = [], [], [], [], []
    gen = 0.0
    minutes = int(round(hours * 60))
    for minute in range(minutes):
        t = time.process_time()
        rng = np.random.default_rng(10_000 + minute)
        x = sig.speech_like(60, rate, rng=rng, level_dbfs=-10 - 6 * (minute % 5))
        pcm = sig.to_pcm16(sig.add_noise(x, (20, 30, 40)[minute % 3], rng=rng))
        gen += time.process_time() - t
        start = minute * 60 * rate
        for i in range(0, len(pcm), rate):
            digits += det.feed(pcm[i : i + rate], start + i)
            cids += cid.feed(pcm[i : i + rate], start + i)
            cas_ends += cas.feed(pcm[i : i + rate], start + i)
            for ts in tones.values():
                tone_events += ts.feed(pcm[i : i + rate], start + i)
        for i in range(0, len(pcm), rate // 50):
            an_events += an.push(pcm[i : i + rate // 50].reshape(-1, 1), start + i)
        spans += det.take_spans()
    digits += det.flush()
    spans += det.take_spans()
    an_events += an.drain()
    masked_ms = sum(b - a for a, b in spans) * 1000 / rate
    return {"minutes": minutes, "digits": len(digits), "spans": len(spans), "masked_ms": masked_ms,
            "cids": len(cids), "cas": len(cas_ends), "tones": len(tone_events), "gen_s": gen,
            "analyzer_events": [type(e).__name__ for e in an_events]}


ESPEAK_TEXT = (
    "Hello, this is Anna from the dental practice, calling about your appointment on Thursday. "
    "We had to move it to nine thirty in the morning; if that doesn't suit you, please call us back. "
    "Oh, and could you bring your insurance card? Thank you so much, and have a lovely afternoon. "
    "Yes? No, no, that's perfectly fine. Absolutely, I'll put a note in the system right away. "
    "Seventy-two, forty-one, nineteen; one hundred and six; eight hundred and fifty-five. Goodbye!"
)


def talkoff_espeak(rate: int = 8000) -> dict[str, float] | None:
    if shutil.which("espeak-ng") is None:
        return None
    det = DtmfDetector(rate)
    digits, spans, pos = [], [], 0
    voices = ["en", "en-us", "en+f2", "en+f4", "en+m3", "en+klatt", "de", "fr", "es", "it", "nl", "pt", "sv", "pl"]
    for voice in voices:
        for pitch, speed in ((10, 150), (50, 175), (90, 140), (99, 200)):
            wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, "-p", str(pitch), "-s", str(speed),
                                  ESPEAK_TEXT], capture_output=True, check=True).stdout
            with wave.open(io.BytesIO(wav)) as w:
                x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
                x = sig.resample(x, w.getframerate(), rate)
            pcm = sig.to_pcm16(sig.add_noise(0.5 * x, 30, rng=np.random.default_rng(pitch)))
            digits += det.feed(pcm, pos)
            spans += det.take_spans()
            pos += len(pcm)
    digits += det.flush()
    return {"minutes": pos / rate / 60, "digits": len(digits), "spans": len(spans),
            "masked_ms": sum(b - a for a, b in spans + det.take_spans()) * 1000 / rate}


CALLGRIND_PARTS = ("analyzer", "opus")


def measure_one(part: str, audio: str, rate: int = 8000) -> None:
    """The worker of ``--callgrind``: one measured part, inside ``operator.call`` (what callgrind's
    ``--toggle-collect`` counts), after the same warm-up as :func:`integrated_table`."""
    block = rate // 50 * RUN_BLOCKS
    warm = call_audio(rate)[: 5 * rate].reshape(-1, 1)
    x = (call_audio(rate) if audio == "call" else idle_audio(rate)).reshape(-1, 1)
    if part == "analyzer":
        run_blocks(analyzer_feed(rate, True), warm, block)
        feed = analyzer_feed(rate, True, audio == "call")
        operator.call(run_blocks, feed, x, block)  # type: ignore[attr-defined]
    else:
        opus_cost(warm, rate, block)

        def encode() -> None:
            with sf.SoundFile(io.BytesIO(), "w", samplerate=rate, channels=1, format="OGG", subtype="OPUS") as f:
                for i in range(0, len(x), block):
                    f.write(x[i : i + block])

        operator.call(encode)  # type: ignore[attr-defined]


def callgrind_instructions(part: str, audio: str) -> int:
    """Instructions of one measured part, counted by callgrind in a child process."""
    with tempfile.TemporaryDirectory(prefix="linetap-dsp-cg-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=*operator_call*",
                        f"--callgrind-out-file={out}", sys.executable, os.path.abspath(__file__),
                        "--measure", part, "--audio", audio],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            text = f.read()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if m is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {part}/{audio}")
    return int(m.group(1))


def callgrind_table() -> None:
    """CPU time and instructions, analyser (mask on) vs Opus, 8 kHz, same audio."""
    rate = 8000
    block = rate // 50 * RUN_BLOCKS
    print(f"Instructions (callgrind, --toggle-collect on the measured call) beside CPU time, {rate} Hz, mask_dtmf on,"
          f" {COST_SECONDS} s of audio")
    print(f"{'audio':<7}{'analyzer Minstr':>16}{'Opus Minstr':>13}{'ratio':>8}{'CPU ratio':>11}")
    run_blocks(analyzer_feed(rate, True), call_audio(rate)[: 5 * rate].reshape(-1, 1), block)
    for audio in ("call", "idle"):
        x = (call_audio(rate) if audio == "call" else idle_audio(rate)).reshape(-1, 1)
        masked = min(cpu(partial(run_blocks, analyzer_feed(rate, True, audio == "call"), x, block))
                     for _ in range(REPEATS))
        opus = min(opus_cost(x, rate, block) for _ in range(REPEATS))
        n_an = callgrind_instructions("analyzer", audio)
        n_op = callgrind_instructions("opus", audio)
        print(f"{audio:<7}{n_an / 1e6:>16.1f}{n_op / 1e6:>13.1f}{n_an / n_op:>8.2%}{masked / opus:>11.2%}")
    print("(instructions do not depend on the machine's load; the CPU ratio is best of three, this run)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--callgrind", action="store_true",
                    help="instruction counts under valgrind's callgrind beside the CPU-time ratio (8 kHz only)")
    ap.add_argument("--integrated", action="store_true",
                    help="only the first table, as integrated (about a minute): to compare versions quickly")
    ap.add_argument("--measure", choices=CALLGRIND_PARTS, help=argparse.SUPPRESS)  # --callgrind's worker
    ap.add_argument("--audio", choices=("call", "idle"), default="call", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure_one(args.measure, args.audio)
        return 0
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (Debian package valgrind)", file=sys.stderr)
            return 2
        callgrind_table()
        return 0
    wall = time.time()
    integrated_table()
    if args.integrated:
        print(f"(whole benchmark {time.time() - wall:.0f} s wall; load average {os.getloadavg()[0]:.2f} at the end)")
        return 0
    print()
    cost_table()
    print()
    print("Talk-off (8 kHz): false events on speech, 1 s batches")
    print(f"{'source':<28}{'minutes':>8}{'DTMF digits':>13}{'per hour':>10}{'tone events':>13}{'caller IDs':>12}"
          f"{'masked spans':>14}{'masked ms':>11}")
    r = talkoff_speech_like(1.0)
    per_h = r["digits"] * 60 / r["minutes"]
    print(f"{'speech-like (synthetic)':<28}{r['minutes']:>8.0f}{r['digits']:>13d}{per_h:>10.2f}{r['tones']:>13d}"
          f"{r['cids']:>12d}{r['spans']:>14d}{r['masked_ms']:>11.0f}   call-waiting alerts (CAS): {r['cas']}")
    ev = r["analyzer_events"]
    n_digits = ev.count("DtmfDigit")
    print(f"{'  as integrated (analyzer)':<28}{r['minutes']:>8.0f}{n_digits:>13d}"
          f"{n_digits * 60 / r['minutes']:>10.2f}{ev.count('ToneEvent'):>13d}{ev.count('CallerId'):>12d}"
          f"   (LineAnalyzer, mask_dtmf, tone_set us; target 0 digits per hour)")
    e = talkoff_espeak()
    if e is None:
        print(f"{'espeak-ng':<28} not installed: skipped")
    else:
        per_h = e["digits"] * 60 / e["minutes"]
        print(f"{'espeak-ng (14 voices x 4)':<28}{e['minutes']:>8.1f}{e['digits']:>13d}{per_h:>10.2f}{'-':>13}{'-':>12}"
              f"{e['spans']:>14d}{e['masked_ms']:>11.0f}")
    print()
    print(f"(synthesising the speech took {r['gen_s']:.1f} s CPU; whole benchmark {time.time() - wall:.0f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
