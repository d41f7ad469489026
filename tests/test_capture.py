"""The capture reader: a sound card read non-blocking in drains, a self-paced PCM as it comes.

No sound card here, so the card is a fake at the capture seam (``FakeCard``: a ring buffer
filled by the wall clock, as a card's DMA fills it, with ``avail``, EAGAIN and overrun as ALSA
has them); the self-paced PCM is the real ALSA ``file`` PCM reading a FIFO.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from linetap.capture import Block, Read, SourceError, SourceEvent
from linetap.capture.alsa import BUFFER_PERIODS, AlsaSource, drain_interval
from linetap.capture.reader import BlockQueue, CardDrainer, LineReader
from linetap.clock import SystemClock
from linetap.config import load_text
from helpers import wait_for

RATE = 8000
PERIOD = 160


@pytest.mark.parametrize("card_no, period_s, buffer_s, expected", [
    (0, 0.02, 0.5, 0.1),     # the 500 ms asked for: drain every 100 ms
    (1, 0.02, 0.32, 0.08),   # a card that gave 320 ms: a quarter of it
    (0, 0.02, 0.08, 0.02),   # ALSA's usual 4 periods: no less than a period
    (2, 0.02, 2.0, 0.1),     # a generous card: never more than 100 ms
    (-1, 0.02, 0.5, 0.02),   # no card behind it (file plugin): a period
])
def test_drain_interval(card_no, period_s, buffer_s, expected):
    assert drain_interval(card_no, period_s, buffer_s) == pytest.approx(expected)


class FakeCard:
    """A capture card's ring buffer, filled at ``RATE`` by the monotonic clock, read non-blocking.

    ``prebuffered_s``: the card had been capturing this long when the stream was handed over
    (frames the reader finds waiting on its first read, as after a late first wake-up)."""

    drain_s = 0.1

    def __init__(self, prebuffered_s: float = 0.0, buffer_periods: int = BUFFER_PERIODS,
                 stall_reader_at: tuple[int, ...] = ()) -> None:
        self.t0 = time.monotonic() - prebuffered_s
        self.wall0 = time.time() - prebuffered_s  # wall time of frame 0
        self.read_to = 0
        self.buffer = buffer_periods * PERIOD
        self.reads = self.empty_reads = self.overruns = 0
        self.served: list[int] = []  # the card's frame number of each period read
        self.stall_reader_at = stall_reader_at  # these reads keep the reader away for 0.7 s

    def true_wall(self, k: int) -> float:
        return self.wall0 + k / RATE

    def _captured(self) -> int:
        return int((time.monotonic() - self.t0) * RATE)

    def pending(self) -> int:
        return self._captured() - self.read_to

    def read(self) -> Read:
        self.reads += 1
        if self.reads in self.stall_reader_at:
            time.sleep(0.7)  # the reader descheduled for longer than the buffer holds
        avail = self.pending()
        if avail > self.buffer:  # not drained in time: ALSA says -EPIPE, the stream restarts
            self.overruns += 1
            self.read_to = self._captured()
            return Read(None, overrun=True)
        if avail < PERIOD:
            self.empty_reads += 1  # -EAGAIN
            return Read(None)
        k = self.read_to
        self.read_to += PERIOD
        self.served.append(k)
        frames = (np.arange(k, k + PERIOD) % 30000).astype(np.int16).reshape(-1, 1)
        return Read(frames)

    def close(self) -> None:
        pass


def _reader(source, *, max_sleep_s: float = 0.1) -> tuple[LineReader, BlockQueue]:
    (line,) = load_text("[recorder]\nid = 't'\ndata_dir = '/nonexistent'\n"
                        "[[line]]\nname = 'l1'\npcm = 'card'\n").lines
    q = BlockQueue()
    r = LineReader(line, q, source_factory=lambda *a: source, clock=SystemClock(), max_queued=10_000,
                   max_sleep_s=max_sleep_s)
    return r, q


def _run(reader: LineReader, seconds: float) -> float:
    reader.start()
    time.sleep(seconds)
    reader.stop()
    reader.join(timeout=2)
    assert not reader.is_alive()
    return seconds


def test_a_card_is_drained_every_100_ms_and_every_period_keeps_its_own_block_and_time():
    card = FakeCard(prebuffered_s=0.3)
    reader, q = _reader(card)
    seconds = _run(reader, 1.5)
    blocks = [x for x in q.take_all() if isinstance(x, Block)]
    # Every period, in order, none lost, none doubled, each a block of one period.
    assert [b.start_frame for b in blocks] == [PERIOD * i for i in range(len(blocks))]
    assert all(len(b.frames) == PERIOD for b in blocks)
    assert np.array_equal(np.concatenate([b.frames for b in blocks])[:, 0],
                          (np.arange(PERIOD * len(blocks)) % 30000).astype(np.int16))
    assert len(blocks) * PERIOD >= (seconds + 0.3 - 0.15) * RATE
    assert card.overruns == 0 and not any(b.overrun for b in blocks)
    # Dated from the sample count, anchored on what the card still held when the stream was
    # first read: the first block's audio is 300 ms older than that read.
    assert card.served == [b.start_frame for b in blocks]
    for b in blocks:
        assert b.t_wall == pytest.approx(card.true_wall(b.start_frame), abs=0.02)
    # Wake-ups: ~10 a second (an empty read ends each drain), not one per 20 ms period.
    assert card.empty_reads <= 13 * seconds
    assert card.reads == len(blocks) + card.empty_reads + card.overruns


def test_the_reader_sleeps_no_longer_than_it_is_allowed():
    """A short ``stall_after_ms`` caps the sleep: a drained reader must never look stalled."""
    card = FakeCard()
    reader, q = _reader(card, max_sleep_s=0.025)
    seconds = _run(reader, 1.0)
    assert card.empty_reads >= 25 * seconds  # woke every ~25 ms, not every 100 ms
    assert card.overruns == 0


def test_a_card_not_drained_in_time_reports_an_overrun_and_the_stream_goes_on():
    card = FakeCard(stall_reader_at=(10, 30))  # late twice: 700 ms of audio in a 500 ms buffer
    reader, q = _reader(card)
    _run(reader, 2.5)
    blocks = [x for x in q.take_all() if isinstance(x, Block)]
    assert card.overruns == 2 and reader.overruns == 2
    assert len(card.served) == len(blocks)
    marked = [(b, k) for b, k in zip(blocks, card.served) if b.overrun]
    assert len(marked) == card.overruns, "the block after lost samples carries the overrun"
    # After each overrun the stream is re-dated from the samples that follow, and the time
    # lost shows as a jump in the blocks' times (which the pipeline turns into a gap).
    for b, k in zip(blocks, card.served):
        assert b.t_wall == pytest.approx(card.true_wall(k), abs=0.02)


def test_the_file_pcm_is_read_as_it_comes_through_real_alsa(alsa):
    """The tests' and the demo's PCM has no card behind it: its reads wait on the FIFO, and
    ``avail`` says nothing about what the FIFO holds, so the reader neither sleeps nor trusts it."""
    (line,) = alsa.lines(1)
    audio = (np.arange(RATE) % 1000).astype(np.int16)
    feeder = line.feed(audio, speed=1.0, keep_open=True)
    src = AlsaSource(line.pcm, RATE, 1, PERIOD)
    try:
        assert src.card_no == -1
        assert src.drain_s == pytest.approx(0.02)
        assert src.buffer_s == pytest.approx(BUFFER_PERIODS * PERIOD / RATE)
        got = []
        t0 = time.monotonic()
        while len(got) < 25:
            r = src.read()
            if r.frames is not None:
                got.append(r.frames[:, 0].copy())
        took = time.monotonic() - t0
        assert src.pending() == 0
    finally:
        src.close()
        feeder.stop()
    # Paced by the FIFO's writer (real time): 25 periods take about 0.5 s, not an instant.
    assert 0.35 < took < 1.5
    assert np.array_equal(np.concatenate(got), audio[:25 * PERIOD])


def test_a_blocking_source_is_never_slept_on():
    """A source with no ``drain_s`` (a fake, or a self-paced PCM) is read again at once."""
    class Blocking:
        def __init__(self) -> None:
            self.calls = 0

        def read(self) -> Read:
            self.calls += 1
            if self.calls % 2:
                return Read(None)
            time.sleep(0.02)
            return Read(np.zeros((PERIOD, 1), dtype=np.int16))

        def close(self) -> None:
            pass

    src = Blocking()
    reader, q = _reader(src)
    _run(reader, 0.5)
    blocks = [x for x in q.take_all() if isinstance(x, Block)]
    assert len(blocks) >= 15  # ~25 in 0.5 s; with a 100 ms sleep per empty read it would be ~4


def test_the_recorder_lets_its_readers_sleep_a_quarter_of_the_stall_time_at_most(tmp_path):
    """With ``stall_after_ms = 200`` a card is drained every 50 ms: its frames arrive often enough
    that the sleeping reader never looks stalled."""
    from helpers import wait_for, write_config
    from linetap.config import load
    from linetap.recorder import Recorder

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "card1", "pcm": "hw:9"}],
                            health={"stall_after_ms": 200, "check_clock": False}))
    card = FakeCard()
    rec = Recorder(cfg, source_factory=lambda *a: card)
    rec.start()
    try:
        reader = rec.readers["card1"]
        assert reader.max_sleep_s == pytest.approx(0.05)
        wait_for(lambda: reader.frames_read >= RATE // 2, timeout=5)
        time.sleep(0.5)
        assert not rec.alarms.is_active("LINE_DEAD", "card1")  # frames flow: no stall
        # ~20 drains a second on an idle machine. What is promised: at least one per stall time (5 a
        # second; fewer and the line would look stalled, which the LINE_DEAD check above catches),
        # and never more than the 50 ms sleep allows (no spinning). A busy CI machine saw 12.
        assert 5 <= card.empty_reads / (time.monotonic() - card.t0) <= 25
    finally:
        rec.stop()


def test_a_stop_while_the_pipeline_is_stuck_in_a_write_leaves_its_open_call_to_recovery(tmp_path, caplog):
    """A disk stalled past the stop's drain and join timeouts: the pipeline thread is still inside a
    recording's write. Finalising the call from the stopping thread would close the file under that
    write (libsndfile's encoder freed mid-write: a segfault); the call
    is left open instead, and the next start recovers it as after a crash."""
    import logging

    from helpers import wait_for, write_config
    from linetap.config import load
    from linetap.index.db import open_index
    from linetap.recorder import Recorder
    from linetap.store.recordings import Recording

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "card1", "pcm": "hw:9"}],
                            health={"check_clock": False}))
    rec = Recorder(cfg, source_factory=lambda *a: FakeCard())  # a loud sawtooth: a call at once
    stuck, inside, release = [False], threading.Event(), threading.Event()
    write = Recording.write

    def stalling_write(self, *a, **k):
        if stuck[0]:
            inside.set()
            release.wait(10)
        return write(self, *a, **k)

    Recording.write = stalling_write
    try:
        rec.start()
        try:
            wait_for(lambda: rec.line_calls["card1"].recording is not None, timeout=10)
            stuck[0] = True
            assert inside.wait(5)
            with caplog.at_level(logging.ERROR, logger="linetap.capture.service"):
                rec.stop(drain_timeout_s=0.2)
        finally:
            release.set()
            rec.pipeline.join(5)
        assert not rec.pipeline.is_alive()
        assert "its open calls are left for recovery" in caplog.text
        index = open_index(data_dir)
        (row,) = index.calls()
        index.close()
        assert row["status"] == "recording"  # not finalised under the write: the next start's recovery's
    finally:
        Recording.write = write
    rec2 = Recorder(load(tmp_path / "c.toml"), source_factory=lambda *a: FakeCard())
    rec2.start()
    rec2.stop()
    index = open_index(data_dir)
    rows = {r["id"]: r for r in index.calls()}
    index.close()
    assert rows[row["id"]]["status"] != "recording"  # recovered


def assert_every_period_once_in_order_and_dated(card, blocks: list, *, at_least_s: float) -> None:
    """The blocks queued for ``card``: each period it served once, in order, at least ``at_least_s``
    of them, each dated from its sample count within 20 ms of the card's true time."""
    assert [b.start_frame for b in blocks] == [PERIOD * i for i in range(len(blocks))]
    assert card.served == [b.start_frame for b in blocks]
    assert len(blocks) * PERIOD >= at_least_s * RATE
    for b in blocks:
        assert b.t_wall == pytest.approx(card.true_wall(b.start_frame), abs=0.02)


class ThreadNotingCard(FakeCard):
    """A ``FakeCard`` that notes which threads read it, and can fail once (a card unplugged)."""

    def __init__(self, fail_at_read: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.threads: set[str] = set()
        self.fail_at_read = fail_at_read

    def read(self) -> Read:
        self.threads.add(threading.current_thread().name)
        if self.fail_at_read is not None and self.reads + 1 == self.fail_at_read:
            self.reads += 1
            raise SourceError("card: read failed (-EIO)")
        return super().read()


def _shared_readers(sources: dict[str, list], drainer: CardDrainer) -> tuple[dict[str, LineReader], BlockQueue]:
    """One reader per line name over the same queue; each line's factory hands out its sources in turn."""
    lines = load_text("[recorder]\nid = 't'\ndata_dir = '/nonexistent'\n" + "".join(
        f"[[line]]\nname = '{n}'\npcm = 'card-{n}'\n" for n in sources)).lines
    q = BlockQueue()
    readers = {ln.name: LineReader(ln, q, source_factory=lambda *a, s=iter(sources[ln.name]): next(s),
                                   clock=SystemClock(), max_queued=10_000, backoff_s=(0.05, 0.05),
                                   drainer=drainer)
               for ln in lines}
    return readers, q


def test_one_drainer_thread_reads_every_card_with_each_period_its_own_block_and_time():
    cards = {n: ThreadNotingCard(prebuffered_s=0.2) for n in ("a", "b", "c")}
    drainer = CardDrainer()
    readers, q = _shared_readers({n: [c] for n, c in cards.items()}, drainer)
    for r in readers.values():
        r.start()
    time.sleep(1.5)
    for r in readers.values():
        r.stop()
    for r in readers.values():
        r.join(timeout=2)
        assert not r.is_alive()
    items = q.take_all()
    for name, card in cards.items():
        assert card.threads == {"capture-cards"}, "only the drainer reads the cards"
        blocks = [x for x in items if isinstance(x, Block) and x.line == name]
        assert_every_period_once_in_order_and_dated(card, blocks, at_least_s=1.5 + 0.2 - 0.15)
        # Drained ~10 times a second (an empty read ends each drain), on one tick for all.
        assert card.empty_reads <= 13 * 1.5
        assert card.overruns == 0
    # With no stream left the drainer's thread ends.
    deadline = time.monotonic() + 2
    while any(t.name == "capture-cards" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "capture-cards" for t in threading.enumerate())


def test_a_card_that_fails_is_handed_back_and_reopened_while_the_others_go_on():
    failing = ThreadNotingCard(fail_at_read=8)
    again = ThreadNotingCard()
    steady = ThreadNotingCard()
    drainer = CardDrainer()
    readers, q = _shared_readers({"bad": [failing, again], "good": [steady]}, drainer)
    for r in readers.values():
        r.start()
    time.sleep(1.0)
    for r in readers.values():
        r.stop()
    for r in readers.values():
        r.join(timeout=2)
    items = q.take_all()
    events = [(x.line, x.kind, x.stream) for x in items if isinstance(x, SourceEvent)]
    assert ("bad", "lost", 1) in events and ("bad", "opened", 2) in events
    assert readers["bad"].outages == 1 and readers["bad"].stream == 2
    assert again.threads == {"capture-cards"} and len(again.served) > 10  # the reopened card is drained
    good = [x for x in items if isinstance(x, Block) and x.line == "good"]
    assert [b.start_frame for b in good] == [PERIOD * i for i in range(len(good))]  # never interrupted
    assert len(good) * PERIOD >= 0.85 * RATE


class StallingCard(ThreadNotingCard):
    """A card whose periods stop coming at ``stall()`` (its clock stopped: reads find none)."""

    stops_at = float("inf")

    def stall(self) -> None:
        self.stops_at = time.monotonic()

    def _captured(self) -> int:
        return int((min(time.monotonic(), self.stops_at) - self.t0) * RATE)


def test_the_drainer_wakes_the_health_thread_when_a_cards_frames_stop_and_not_while_they_come():
    """The health thread no longer ticks to find a stall coming (``StallWatch``): the drainer,
    which wakes anyway, checks after each sweep and wakes it once the stall is 0.3 s away (frames
    1.71 s old at a 2 s stall time: long, so that a busy machine's late drain is not taken for
    one), never for a card that delivers."""
    from linetap.health.loop import StallWatch
    drainer = CardDrainer()
    stalling = StallingCard()
    readers, _ = _shared_readers({"steady": [ThreadNotingCard()], "stalls": [stalling]}, drainer)
    woken = threading.Event()
    watch = StallWatch(readers, stall_after_s=2.0, wake=woken.set, clock=SystemClock())
    drainer.after_sweep = watch.check
    for r in readers.values():
        r.start()
    try:
        wait_for(lambda: all(r.last_frames_mono is not None for r in readers.values()), timeout=5)
        assert not woken.wait(1.0), "both cards deliver: no wake-up"
        stalling.stall()
        assert woken.wait(10), "the stalled card woke the health thread"
        assert time.monotonic() - readers["stalls"].last_frames_mono >= 1.7  # not before its frames were that old
        assert watch._reported == {"stalls"}
    finally:
        for r in readers.values():
            r.stop()
        for r in readers.values():
            r.join(timeout=2)


def test_a_self_paced_source_keeps_its_own_thread_beside_a_drainer():
    """A source that sleeps no longer than two periods between reads (the ``file`` PCM: its
    reads wait on the FIFO) could hold the other lines up: its reader thread reads it."""
    card = ThreadNotingCard()
    card.drain_s = 0.02
    drainer = CardDrainer()
    readers, q = _shared_readers({"fifo": [card]}, drainer)
    _run(readers["fifo"], 0.5)
    assert card.threads == {"capture-fifo"}
    assert len([x for x in q.take_all() if isinstance(x, Block)]) >= 15


def test_offer_all_queues_the_first_items_that_fit_and_says_how_many():
    q = BlockQueue()
    assert q.offer_all([1, 2, 3], limit=5) == 3
    assert q.offer_all([4, 5, 6], limit=5) == 2  # room for two
    assert q.offer_all([7], limit=5) == 0
    assert q.offer_all([], limit=5) == 0
    assert q.take_all() == [1, 2, 3, 4, 5]


def test_a_drained_card_with_the_queue_full_counts_its_drops_and_flags_the_next_block_queued():
    card = ThreadNotingCard(prebuffered_s=0.2)
    drainer = CardDrainer()
    readers, q = _shared_readers({"a": [card]}, drainer)
    r = readers["a"]
    r.max_queued = 5  # the pipeline far behind: a drain finds room for only part of what it read
    r.start()
    time.sleep(0.35)
    first = [x for x in q.take_all() if isinstance(x, Block)]
    time.sleep(0.3)
    r.stop()
    r.join(timeout=2)
    rest = [x for x in q.take_all() if isinstance(x, Block)]
    assert len(first) == 4  # the "opened" event took one place
    assert r.dropped_blocks > 0 and r.frames_read == PERIOD * len(card.served)
    assert len(first) + len(rest) + r.dropped_blocks == len(card.served)
    # The blocks queued stay dated from the sample count, with the dropped ones showing as a jump.
    assert rest[0].start_frame > first[-1].start_frame + PERIOD
    for b in first + rest:
        assert b.t_wall == pytest.approx(card.true_wall(b.start_frame), abs=0.02)


class ScriptedSource:
    """A blocking source: ``n`` periods at once (a feed far faster than the pipeline), then
    nothing until closed (a quiet FIFO blocks a read)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.closed = threading.Event()

    def read(self) -> Read:
        if self.left == 0:
            self.closed.wait()
            return Read(None)
        self.left -= 1
        return Read(np.zeros((PERIOD, 1), dtype=np.int16))

    def close(self) -> None:
        self.closed.set()


def test_a_pipeline_that_falls_behind_loses_whole_blocks_counted_and_the_times_stay_true():
    """What the paced feeds of the end-to-end tests (``helpers.paced_by``) keep from happening,
    on purpose here: the queue is full, the reader drops each new block and counts it; the
    blocks kept are the oldest, and the sample count still dates every one."""
    (line,) = load_text("[recorder]\nid = 't'\ndata_dir = '/nonexistent'\n"
                        "[[line]]\nname = 'l1'\npcm = 'card'\n").lines
    source = ScriptedSource(30)
    q = BlockQueue()
    reader = LineReader(line, q, source_factory=lambda *a: source, clock=SystemClock(), max_queued=10)
    reader.start()
    try:
        wait_for(lambda: reader.frames_read == 30 * PERIOD, timeout=10)
    finally:
        reader.stop()
        source.close()
        reader.join(timeout=2)
    items = q.take_all()
    blocks = [x for x in items if isinstance(x, Block)]
    assert len(items) == 10  # the queue's bound (the "opened" event takes a place too)
    kept = len(blocks)
    assert kept >= 9 and reader.dropped_blocks == 30 - kept
    assert [b.start_frame for b in blocks] == [PERIOD * i for i in range(kept)]
    assert [b.t_wall - blocks[0].t_wall for b in blocks] == pytest.approx([PERIOD * i / RATE for i in range(kept)])


def test_with_the_rounds_sweeping_the_drainer_ticks_only_between_them():
    from linetap.capture.reader import next_shared_tick_s
    rounds = (0.2, 0.05)  # pipeline.GATHER_S, ROUND_PHASE_S
    assert next_shared_tick_s(1000.03, 0.1, rounds) == pytest.approx(1000.15)
    assert next_shared_tick_s(1000.151, 0.1, rounds) == pytest.approx(1000.35)  # 1000.25 is a round's
    assert next_shared_tick_s(1000.26, 0.1, rounds) == pytest.approx(1000.35)
    # A shorter drain interval (a card with a small buffer): every point of its grid but the rounds'.
    assert next_shared_tick_s(1000.03, 0.05, rounds) == pytest.approx(1000.1)
    assert next_shared_tick_s(1000.201, 0.05, rounds) == pytest.approx(1000.3)
    # Rounds no oftener than the drains: nothing to leave out.
    assert next_shared_tick_s(1000.03, 0.2, rounds) == pytest.approx(1000.05)


def test_cards_swept_by_the_rounds_and_by_the_drainer_between_them_keep_every_period_once_in_order():
    """The recorder's pipeline drains the cards at the start of each round (``CardDrainer.sweep``,
    every 200 ms) and the drainer's own thread halfway between (``rounds``): each card is still
    drained about 10 times a second, the drainer's thread sweeps about 5 times; every period is
    queued once, in order, dated from the sample count. When the rounds stop sweeping (the
    pipeline held up by the disk) the drainer's sweeps every 200 ms alone lose nothing."""
    from linetap.pipeline import GATHER_S, ROUND_PHASE_S, next_round_s
    cards = {n: ThreadNotingCard(prebuffered_s=0.1) for n in ("a", "b")}
    drainer = CardDrainer()
    drainer.rounds = (GATHER_S, ROUND_PHASE_S)
    own_sweeps = []
    drainer.after_sweep = lambda: own_sweeps.append(time.monotonic())
    readers, q = _shared_readers({n: [c] for n, c in cards.items()}, drainer)
    held_up = threading.Event()
    done = threading.Event()

    def rounds() -> None:
        while not done.is_set():
            if not held_up.is_set():
                drainer.sweep()
            done.wait(max(0.0, next_round_s(time.monotonic(), GATHER_S, ROUND_PHASE_S) - time.monotonic()))
    pipeline = threading.Thread(target=rounds, name="pipeline")
    for r in readers.values():
        r.start()
    pipeline.start()
    try:
        time.sleep(1.5)
        swept_alone = len(own_sweeps)
        held_up.set()  # the rounds stop sweeping: the drainer's thread alone, every 200 ms
        time.sleep(1.0)
    finally:
        done.set()
        pipeline.join(timeout=2)
        for r in readers.values():
            r.stop()
        for r in readers.values():
            r.join(timeout=2)
    items = q.take_all()
    for name, card in cards.items():
        assert card.threads == {"capture-cards", "pipeline"}, "both the rounds and the drainer read the cards"
        blocks = [x for x in items if isinstance(x, Block) and x.line == name]
        assert_every_period_once_in_order_and_dated(card, blocks, at_least_s=2.5 + 0.1 - 0.25)
        assert card.overruns == 0
        # About 10 drains a second while the rounds sweep, 5 after (an empty read ends each drain).
        assert card.empty_reads <= 13 * 1.5 + 7 * 1.0
    # The drainer's own thread: about 5 sweeps a second (plus the first, at attach), not 10.
    assert swept_alone <= 5 * 1.5 + 4


class AudioCard(FakeCard):
    """A ``FakeCard`` whose periods are ``audio`` (the card's capture from its first frame)."""

    def __init__(self, audio: np.ndarray) -> None:
        super().__init__()
        self.audio = audio

    def read(self) -> Read:
        r = super().read()
        if r.frames is None:
            return r
        k = self.served[-1]
        return Read(self.audio[k:k + PERIOD] if k + PERIOD <= len(self.audio) else np.zeros((PERIOD, 1), np.int16))


def test_a_recorder_records_sound_cards_drained_as_periods_sample_for_sample(tmp_path):
    """In the recorder the cards' drains are queued as one ``Periods`` each and the runs' blocks
    made only when asked (``LazyBlocks``): a call on two cards, in real time, is recorded sample
    for sample as the cards captured it, dated from its first sample; nothing dropped, no overrun."""
    from linetap.clock import parse_iso
    from linetap.config import load
    from linetap.index.db import open_index
    from linetap.recorder import Recorder
    from linetap.sim.line import render
    from linetap.store import audio
    from helpers import write_config

    script = [("idle", 1.0), ("call", 2.5), ("idle", 1.5)]
    sounds = [render(script, rate=RATE, seed=s)[0].reshape(-1, 1) for s in (5, 6)]
    cards: dict[str, AudioCard] = {}

    def factory(pcm: str, rate: int, channels: int, period_frames: int) -> AudioCard:
        cards[pcm] = AudioCard(sounds[int(pcm[-1])])
        return cards[pcm]

    data_dir = tmp_path / "data"
    cfg = load(write_config(tmp_path / "c.toml", data_dir,
                            [{"name": f"line{i}", "pcm": f"card{i}", "vox_hang_s": 0.8, "preroll_s": 0.5} for i in (0, 1)],
                            storage={"codec": "wav"}))
    rec = Recorder(cfg, clock=SystemClock(), source_factory=factory, mqtt=False)
    assert rec.capture.drainer.queue_periods
    rec.start()
    try:
        wait_for(lambda: all(rec.line_calls[f"line{i}"].frames_seen >= 4.8 * RATE for i in (0, 1)), timeout=20)
    finally:
        rec.stop()
    rows = open_index(data_dir).calls()
    assert {r["line"] for r in rows} == {"line0", "line1"}
    for row in rows:
        i = int(row["line"][-1])
        card = cards[f"card{i}"]
        assert card.overruns == 0 and rec.readers[f"line{i}"].dropped_blocks == 0
        samples, rate = audio.read(data_dir / row["path"])
        assert rate == RATE and len(samples) > RATE
        x = np.asarray(samples).reshape(-1)
        if x.dtype != np.int16:
            x = np.round(x * 32768).astype(np.int16)
        src = sounds[i].reshape(-1)
        # Where in the card's capture the recording begins: its start time after the anchor.
        first = [k for k in range(0, len(src) - len(x) + 1) if np.array_equal(src[k:k + 64], x[:64])]
        assert len(first) == 1
        k = first[0]
        assert np.array_equal(src[k:k + len(x)], x), "every sample as the card captured it"
        # Dated from the sample count: the card's time of frame k.
        assert parse_iso(row["started_at"]) == pytest.approx(card.true_wall(k), abs=0.03)
