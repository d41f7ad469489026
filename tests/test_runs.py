"""The pipeline handles a line's queued blocks as runs: exactly as if they came one by one.

Runs only change how often numpy and the codec are called, never a decision: the same
recordings (start time, every sample, end reason, DTMF, caller ID), the same health changes
at the same times, the same levels, the same sync positions on disk. Each test feeds the
same audio block by block and in runs of irregular lengths, and compares everything.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from linetap.calls.line import LineCalls
from linetap.capture import Block, Run, SourceEvent
from linetap.config import LineConfig
from linetap.sim import signals as sig
from linetap.detect.dead import LineHealthDetector
from linetap.detect.level import block_dbfs, dbfs
from linetap.pipeline import runs
from linetap.sim.line import noise, render

RATE = 8000
N = RATE // 50
T0 = 1_795_000_000.0


def pcm(x: np.ndarray, seed: int) -> np.ndarray:
    return 32768.0 * np.asarray(x) + noise(len(x), RATE, np.random.default_rng(seed))


def keys(digits: str) -> np.ndarray:
    parts = []
    for d in digits:
        parts += [sig.dtmf_tone(d, 80.0, RATE, -12.0), sig.silence(80.0, RATE)]
    return np.concatenate(parts[:-1])


def blocks_of(fed: np.ndarray, stream: int = 1, drop: set[int] = frozenset()) -> list[Block]:
    """20 ms blocks, timed from the sample count; ``drop``: indices of blocks lost on the way."""
    x = fed.reshape(-1, 1)
    return [Block("l", x[i:i + N], i, T0 + i / RATE, RATE, False, stream)
            for k, i in enumerate(range(0, len(x) - N + 1, N)) if k not in drop]


def in_runs(blocks: list[Block], seed: int, longest: int = 12) -> list[Run]:
    """Irregular runs (1 to ``longest`` blocks), split where blocks are not contiguous."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(blocks):
        k = int(rng.integers(1, longest + 1))
        part = [blocks[i]]
        for b in blocks[i + 1:i + k]:
            if b.start_frame != part[-1].start_frame + len(part[-1].frames):
                break
            part.append(b)
        out.append(Run.of(part))
        i += len(part)
    return out


class Recorded:
    """A fake recording that keeps every sample written to it."""

    def __init__(self, started_at: float, n: int) -> None:
        self.id, self.started_at = n, started_at
        self.parts: list[np.ndarray] = []
        self.caller_number = self.caller_name = None
        self.dtmf = ""
        self.end_reason: str | None = None
        self.discarded = False

    @property
    def frames(self) -> int:
        return sum(len(p) for p in self.parts)

    def write(self, frames: np.ndarray) -> None:
        self.parts.append(np.array(frames, copy=True))

    def set_caller(self, number, name) -> None:
        self.caller_number, self.caller_name = number, name

    def finish(self, end_reason: str, status: str = "complete") -> dict:
        self.end_reason = end_reason
        return {"id": self.id, "duration_s": self.frames / RATE}

    def discard(self) -> None:
        self.discarded = True

    def summary(self) -> tuple:
        audio = np.concatenate(self.parts) if self.parts else np.zeros((0, 1), np.int16)
        return (self.started_at, self.frames, hashlib.sha256(audio.tobytes()).hexdigest(), self.end_reason,
                self.dtmf, self.caller_number, self.caller_name, self.discarded)


def record(items: list, hook=None, **line_kw) -> tuple[list[tuple], list[tuple]]:
    """Feed a LineCalls; returns its recordings and its (level, frames seen) after each item."""
    line = LineConfig(name="l", pcm="null", rate=RATE, **line_kw)
    made: list[Recorded] = []

    def open_recording(_cfg, started_at):
        made.append(Recorded(started_at, len(made) + 1))
        return made[-1]

    calls = LineCalls(line, open_recording=open_recording,
                      hook=(lambda: hook(calls.frames_seen)) if hook else None)
    seen = []
    for item in items:
        calls.on_block(item)
        seen.append((calls.level_dbfs, calls.frames_seen, calls.last_block_t))
    calls.shutdown()
    return [r.summary() for r in made], seen


BUSY = [("idle", 3), ("raw", 0, pcm(sig.cadence_tone("dial", "us", 3.0, RATE, -18.0), 6)),
        ("raw", 0, pcm(keys("5551234"), 7)), ("call", 8),
        ("raw", 0, pcm(sig.cadence_tone("busy", "us", 10.0, RATE, -18.0), 9)), ("idle", 12)]
FSK = [("idle", 4), ("raw", 0, pcm(sig.fsk_callerid("5551234567", "ACME PIZZA", "11281530", "bell202",
                                                   RATE, -15.0), 1)),
       ("idle", 2), ("call", 24), ("idle", 4), ("call", 0.4), ("idle", 10)]
CASES = {
    "vox, keys, busy tone ends the call": (BUSY, {}),
    "vox, keys masked": (BUSY, {"mask_dtmf": True}),
    "vox, caller ID, max length splits, a blip too short to keep": (FSK, {"max_call_s": 10.0, "callerid": ("bell202",)}),
    "continuous": ([("idle", 3), ("call", 20), ("idle", 5)], {"trigger": "continuous", "segment_s": 7.0}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [1, 2])
def test_a_line_fed_in_runs_records_exactly_what_it_records_block_by_block(case, seed):
    script, line_kw = CASES[case]
    fed, _ = render(script, rate=RATE, seed=seed)
    blocks = blocks_of(fed, drop={700, 701, 1402})  # and blocks lost on the way
    one_by_one, seen_one = record(blocks, **line_kw)
    assert one_by_one and any(r[1] for r in one_by_one)
    ran, seen_runs = record(in_runs(blocks, seed), **line_kw)
    assert ran == one_by_one
    # After each run the line shows what it showed after that run's last block.
    ends = np.cumsum([len(r.blocks) for r in in_runs(blocks, seed)]) - 1
    assert seen_runs == [seen_one[i] for i in ends]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_analyser_gets_the_same_batches_in_the_same_state_from_runs(monkeypatch, seed):
    """Runs stepped at once (``LineCalls._vox_run``) are cut where a batch completes: the analyser
    must see the same batches, with caller ID resting or not as block by block (it rests from
    10 s into a call), and the call's onset. The call begins 0.85 s into a 1 s batch, so the
    10 s mark falls in the last 150 ms before a batch completes: in the same run as that
    batch's last block, for some of the runs."""
    from linetap.detect.analyzer import LineAnalyzer

    script, line_kw = [("idle", 4.75), *FSK[1:]], {"callerid": ("bell202",)}
    fed, _ = render(script, rate=RATE, seed=seed)
    blocks = blocks_of(fed)
    seen: list[tuple] = []
    analyze = LineAnalyzer._analyze
    monkeypatch.setattr(LineAnalyzer, "_analyze", lambda self: (
        seen.append((self._batch_start, self._batch_frames, self.callerid_paused, self.call_onset)), analyze(self))[1])
    record(blocks, **line_kw)
    one_by_one, seen[:] = list(seen), []
    assert any(p for _, _, p, _ in one_by_one) and not all(p for _, _, p, _ in one_by_one)
    for runs_seed in range(8):  # the 10 s mark falls in a different run each time
        record(in_runs(blocks, 10 * seed + runs_seed, 12), **line_kw)
        assert seen == one_by_one
        seen.clear()


def test_an_off_hook_line_fed_in_runs_records_what_it_records_block_by_block():
    script = [("idle", 2), ("call", 8), ("raw", 0, pcm(sig.cadence_tone("busy", "us", 10.0, RATE, -18.0), 10)),
              ("idle", 5), ("call", 6), ("idle", 2)]
    fed, _ = render(script, rate=RATE, seed=8)
    offhook = lambda frame: RATE <= frame < 24 * RATE or frame >= 26 * RATE  # noqa: E731
    blocks = blocks_of(fed)
    one_by_one, _ = record(blocks, hook=offhook, trigger="offhook", offhook_gpio=17)
    assert len(one_by_one) == 2
    assert record(in_runs(blocks, 3), hook=offhook, trigger="offhook", offhook_gpio=17)[0] == one_by_one


def test_levels_of_many_blocks_at_once_are_the_levels_of_each():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((16 * N, 2)) * np.geomspace(1, 30000, 16 * N)[:, None]).astype(np.int16)
    x[:N] = 0
    x[5 * N:6 * N] = 32767
    assert block_dbfs(x, 16) == [dbfs(x[i * N:(i + 1) * N]) for i in range(16)]


def health_changes(detector: LineHealthDetector, items: list) -> list:
    out = []
    for item in items:
        if isinstance(item, Run):
            out += detector.feed_blocks(item.blocks, item.frames, item.period)
        else:
            out += detector.feed(item.frames, item.t_wall)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_line_health_fed_in_runs_changes_exactly_when_it_changes_block_by_block(seed):
    script = [("idle", 2), ("zeros", 0.7), ("call", 3), ("stuck", 0.45), ("idle", 1), ("stuck", 2.0),
              ("call", 2), ("zeros", 0.49), ("idle", 1), ("clip", 3), ("call", 1), ("clip", 0.5), ("idle", 2)]
    fed, _ = render(script, rate=RATE, seed=seed)
    blocks = blocks_of(fed)
    one_by_one = health_changes(LineHealthDetector(RATE, 1, clipping_after_s=1.0), blocks)
    assert {c.code for c in one_by_one} == {"LINE_DEAD", "LINE_CLIPPING"}
    assert health_changes(LineHealthDetector(RATE, 1, clipping_after_s=1.0), in_runs(blocks, seed)) == one_by_one


def test_queued_blocks_join_into_runs_per_line_in_order_and_a_source_event_ends_a_run():
    def b(line: str, k: int, stream: int = 1, overrun: bool = False) -> Block:
        return Block(line, np.zeros((N, 1), np.int16), k * N, T0 + k * N / RATE, RATE, overrun, stream)

    lost = SourceEvent("a", "lost", T0)
    items = [b("a", 0), b("b", 0), b("a", 1), b("b", 1), b("a", 2), lost, b("a", 3, stream=2),
             b("a", 4, stream=2), b("a", 6, stream=2), b("a", 7, stream=2, overrun=True), b("b", 2)]
    out = list(runs(items, max_blocks=10))
    shape = [(x.line, [(blk.stream, blk.start_frame // N) for blk in x.blocks]) if isinstance(x, Run) else x.kind
             for x in out]
    assert shape == [("a", [(1, 0), (1, 1), (1, 2)]), ("b", [(1, 0), (1, 1), (1, 2)]), "lost",
                     ("a", [(2, 3), (2, 4)]), ("a", [(2, 6)]), ("a", [(2, 7)])]
    assert [len(x.blocks) for x in runs([b("a", k) for k in range(25)], max_blocks=10)] == [10, 10, 5]
    assert all(isinstance(x, Run) and len(x.frames) == N * len(x.blocks) for x in out if not isinstance(x, SourceEvent))


@pytest.mark.parametrize("codec", ["flac", "opus"])
def test_a_recording_written_in_runs_is_synced_at_the_same_audio_positions(tmp_path, monkeypatch, codec):
    from linetap.index.db import open_index
    from linetap.store import audio
    from linetap.store.recordings import Recording

    synced: list[int] = []
    sync = audio.AudioWriter.sync
    monkeypatch.setattr(audio.AudioWriter, "sync", lambda self: (synced.append(self.frames), sync(self)))
    fed = render([("call", 3.3)], rate=RATE, seed=5)[0].reshape(-1, 1)
    positions = []
    for k, chunks in enumerate([[N] * (len(fed) // N), [N * 7, N * 13, N * 3, N * 40, 1, N * 200]]):
        synced.clear()
        (tmp_path / str(k)).mkdir()
        index = open_index(tmp_path / str(k))
        rec = Recording(tmp_path / str(k), index, line="l", codec=codec, rate=RATE, channels=1, started_at=T0 + k,
                        sync_interval_s=0.5)
        at = 0
        for n in chunks:
            rec.write(fed[at:at + n])
            at += n
        rec.finish("shutdown")
        index.close()
        positions.append(list(synced))
    assert positions[0] == [4000 * i for i in range(1, 7)]
    assert positions[1] == positions[0]


def test_rounds_fall_50_ms_after_each_pair_of_drains():
    from linetap.capture.reader import next_tick_s
    from linetap.pipeline import GATHER_S, ROUND_PHASE_S, next_round_s

    assert next_tick_s(1000.03, 0.1) == pytest.approx(1000.1)
    assert next_tick_s(1000.101, 0.1) == pytest.approx(1000.2)  # just after a tick: the next one
    assert next_round_s(1000.03, 0.2, 0.05) == pytest.approx(1000.05)
    assert next_round_s(1000.051, 0.2, 0.05) == pytest.approx(1000.25)
    assert next_round_s(1000.24, 0.2, 0.05) == pytest.approx(1000.25)
    # However late a round starts, the next falls on the grid: between it and the one before,
    # exactly two drains of 100 ms happen (at 1000.3 and 1000.4 for the round at 1000.45).
    r = next_round_s(1000.27, GATHER_S, ROUND_PHASE_S)
    assert r == pytest.approx(1000.45)
    ticks = [round(t, 3) for t in (1000.3, 1000.4) if r - GATHER_S < t < r]
    assert ticks == [1000.3, 1000.4]


class _ScriptedCard:
    """A card read non-blocking from a script: each drain's reads (periods of ``sizes``, then
    none), overruns where asked; ``pending`` as a card says it."""

    drain_s = 0.1

    def __init__(self, drains: list[list], seed: int) -> None:
        self.drains = [list(d) + [None] for d in drains]
        self.rng = np.random.default_rng(seed)
        self.k = 0

    def read(self):
        from linetap.capture import Read
        step = self.drains[0].pop(0)
        if step is None:
            self.drains.pop(0)
            return Read(None)
        if step == "overrun":
            return Read(None, overrun=True)
        x = (self.rng.standard_normal((step, 1)) * 3000).astype(np.int16)
        self.k += step
        return Read(x)

    def pending(self) -> int:
        return 37

    def close(self) -> None:
        pass


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_card_drains_queued_as_periods_make_the_same_runs_and_blocks_as_drains_queued_block_by_block(seed):
    """The recorder queues each card drain as one ``Periods`` (``CardDrainer.queue_periods``) and
    makes a run's blocks only when asked (``LazyBlocks``): every block must be the one the drain
    queued one by one would have made (samples, frame, times to the last bit, overrun, stream),
    in the same runs, including drains split over two runs, overruns inside a drain, periods of
    another size, and a queue too full for a whole drain."""
    from linetap.capture.reader import BlockQueue, CardDrainer, LineReader, _Stream
    from linetap.clock import FakeClock
    from linetap.config import load_text

    rng = np.random.default_rng(seed)
    drains = []
    for _ in range(40):
        d = [N] * int(rng.integers(0, 13))
        if rng.random() < 0.15 and d:
            d.insert(int(rng.integers(0, len(d))), "overrun")
        if rng.random() < 0.1 and d:
            d[int(rng.integers(0, len(d)))] = N // 2  # a short period
        drains.append(d)
    (line,) = load_text("[recorder]\nid = 't'\ndata_dir = '/nonexistent'\n[[line]]\nname = 'l'\npcm = 'c'\n").lines

    def queued(as_periods: bool, limit: int) -> tuple[list, int]:
        clock = FakeClock(wall=T0)
        drainer = CardDrainer()
        drainer.queue_periods = as_periods
        q = BlockQueue()
        reader = LineReader(line, q, source_factory=None, clock=clock, max_queued=limit, drainer=drainer)
        reader.stream = 3
        stream = _Stream(reader, _ScriptedCard(drains, seed))
        out = []
        for i in range(len(drains)):
            clock.advance(0.1)
            stream.drain(together=True)
            if i % 2:  # a round every second drain
                out += list(runs(q.take_all(), max_blocks=10))
        return out, reader.dropped_blocks

    for limit in (10_000, 7):
        by_block, dropped_b = queued(False, limit)
        by_periods, dropped_p = queued(True, limit)
        assert dropped_b == dropped_p and (dropped_b > 0) == (limit == 7)
        assert limit == 7 or any(len(r.blocks) == 10 for r in by_block)  # full runs: drains split over two
        assert [len(r.blocks) for r in by_periods] == [len(r.blocks) for r in by_block]
        for a, b in zip(by_block, by_periods):
            assert (a.line, a.stream, a.start_frame, a.period) == (b.line, b.stream, b.start_frame, b.period)
            assert np.array_equal(a.frames, b.frames)
            assert b.blocks[-1] == b.blocks[len(b.blocks) - 1] and list(b.blocks[:2]) == list(b.blocks)[:2]
            for x, y in zip(a.blocks, b.blocks):
                assert (x.line, x.start_frame, x.t_wall, x.rate, x.overrun, x.stream, x.t_mono) == \
                       (y.line, y.start_frame, y.t_wall, y.rate, y.overrun, y.stream, y.t_mono)
                assert np.array_equal(x.frames, y.frames)
        assert any(r.blocks[0].overrun for r in by_block)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sweep_queues_its_cards_drains_together_exactly_as_the_drains_one_by_one(seed):
    """A ``CardDrainer.sweep`` in the recorder holds each card's ``Periods`` and queues them all
    under one lock at its end (``_queue_held``): the queue must get the same items in the same
    order, and every reader the same counts (dropped, overruns, frames) and the same overrun
    flag for its next period, as when each drain queues its own at once; with overruns inside
    drains (which queue what came before at once, after the sweep's earlier cards') and a queue
    too small for a round's drains."""
    from linetap.capture import Periods
    from linetap.capture.reader import BlockQueue, CardDrainer, LineReader, _Stream
    from linetap.clock import FakeClock
    from linetap.config import load_text

    rng = np.random.default_rng(seed)
    scripts = []
    for _ in range(3):  # three cards
        drains = []
        for _ in range(30):
            d = [N] * int(rng.integers(0, 8))
            if rng.random() < 0.2 and d:
                d.insert(int(rng.integers(0, len(d) + 1)), "overrun")
            drains.append(d)
        scripts.append(drains)
    text = "[recorder]\nid = 't'\ndata_dir = '/nonexistent'\n" + "".join(
        f"[[line]]\nname = 'l{i}'\npcm = 'c{i}'\n" for i in range(3))
    lines = load_text(text).lines

    def swept(together: bool, limit: int) -> tuple[list, list]:
        clock = FakeClock(wall=T0)
        drainer = CardDrainer()
        drainer.queue_periods = True
        q = BlockQueue()
        streams = []
        for i, line in enumerate(lines):
            reader = LineReader(line, q, source_factory=None, clock=clock, max_queued=limit, drainer=drainer)
            reader.stream = 2
            streams.append(_Stream(reader, _ScriptedCard(scripts[i], seed + i)))
            drainer._streams[reader] = (streams[-1], 0.1)  # attached, with no thread of its own
        out = []
        for k in range(30):
            clock.advance(0.1)
            if together:
                drainer.sweep()
            else:
                for s in streams:
                    s.drain(together=True)  # each drain queued at once
            if k % 2:
                out += q.take_all()
        assert all(isinstance(x, Periods) for x in out)
        counts = [(s.reader.dropped_blocks, s.reader.overruns, s.reader.frames_read, s.overrun) for s in streams]
        return out, counts

    for limit in (10_000, 9):
        alone, counts_alone = swept(False, limit)
        together, counts_together = swept(True, limit)
        assert counts_together == counts_alone
        assert (sum(c[0] for c in counts_alone) > 0) == (limit == 9)
        assert any(c[1] for c in counts_alone)
        assert [(p.line, p.start_frame, p.end_frame, p.anchor, p.rate, p.overrun, p.stream, len(p.arrays))
                for p in together] == \
               [(p.line, p.start_frame, p.end_frame, p.anchor, p.rate, p.overrun, p.stream, len(p.arrays))
                for p in alone]
        assert all(np.array_equal(a, b) for p, r in zip(alone, together) for a, b in zip(p.arrays, r.arrays))


@pytest.mark.parametrize("channels", [1, 2])
def test_a_run_of_periods_joins_them_as_a_concatenation_would(channels):
    """``Run.of_periods`` joins the periods' samples as bytes (cheaper than ``np.concatenate``):
    the same samples, shape and dtype, writable, a run of its own; periods not contiguous in
    memory (no bytes to join) are concatenated."""
    from linetap.capture import Periods
    rng = np.random.default_rng(channels)
    audio = (rng.standard_normal((10 * N, 2 * channels)) * 3000).astype(np.int16)
    for contiguous, source in ((True, audio[:, :channels].copy()), (False, audio[:, ::2])):  # strided views
        arrays = [source[i * N:(i + 1) * N] for i in range(10)]
        assert all(a.flags.c_contiguous for a in arrays) == contiguous
        run = Run.of_periods(Periods("l", arrays, 0, 10 * N, (T0, 5.0, 0), RATE, False, 1))
        expected = np.concatenate(arrays)
        assert run.frames.shape == expected.shape and run.frames.dtype == expected.dtype
        assert np.array_equal(run.frames, expected) and run.frames.flags.writeable and run.period == N
        other = Run.of_periods(Periods("l", arrays, 0, 10 * N, (T0, 5.0, 0), RATE, False, 1))
        assert not np.shares_memory(run.frames, other.frames) and not np.shares_memory(run.frames, source)
        assert np.array_equal(run.blocks[3].frames, arrays[3])
