"""The pipeline thread: queued audio -> runs -> line health -> calls -> files, one round at a time.

Each round first drains the sound cards (``sweep``: the ``CardDrainer``'s, which takes the ticks
between the rounds on its own thread), then takes everything the capture readers queued (``BlockQueue.take_all``), joins
each line's consecutive blocks into runs (``runs``), hands every run to the line
supervisor (dead / clipping / lost samples) and to the line's ``LineCalls`` (segmenter,
DSP, the recording's writes), then pushes the round's due syncs to the disk together
(``SyncBatch``: one ``syncfs``, not an fsync per file). Nothing here waits on the
broker, the chain or a deletion: those are the health and housekeeping threads' work.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, Mapping

from .calls.line import LineCalls
from .capture import Block, Periods, Run, SourceEvent
from .capture.reader import BlockQueue, Wake
from .health.sdnotify import ProgressWatchdog
from .store.recordings import SyncBatch
from .supervisor import LineSupervisor

logger = logging.getLogger(__name__)

RUN_BLOCKS = 10  # a line's queued blocks handled as one run: at most 200 ms of its audio (GATHER_S)
GATHER_S = 0.2  # with no backlog, a round every 200 ms: what was queued meanwhile (an empty queue too)
# Rounds at the monotonic times 0.05 s past a multiple of GATHER_S. Each round drains the cards
# itself (``sweep``) and the card drainer's thread drains them halfway between two rounds
# (capture.reader.next_shared_tick_s): each round then finds exactly two drains of every card, one
# run of 10 blocks a line. (A drainer no round sweeps for drains on the multiples of its 100 ms,
# capture.reader.next_tick_s: two drains between two rounds, the last 50 ms before it.)
ROUND_PHASE_S = 0.05
LOGGED_ERRORS = 5  # the first errors are logged in full, then one in 1000


def next_round_s(now_s: float, every_s: float, phase_s: float) -> float:
    """The first time after ``now_s`` that is ``phase_s`` past a multiple of ``every_s``."""
    return now_s + every_s - ((now_s - phase_s) % every_s)


def runs(items: list[Block | Periods | SourceEvent], max_blocks: int) -> Iterator[Run | SourceEvent]:
    """Queued items as the pipeline handles them: each line's consecutive blocks (same stream,
    no sample lost, at most ``max_blocks``) joined into runs, in the order they came.

    A line's items keep their order (a source event comes after the line's blocks before it and
    before those after it); lines are interleaved as their runs began. A run's blocks are joined
    as it is taken, so a backlog is not copied all at once. A card's drain (``Periods``) counts
    as its periods, each a block: it joins a run of drains as its blocks would (and is split
    where a run is full); the run's blocks are then made only when asked for (``Run.of_periods``)."""
    out: list[list[Block] | Periods | SourceEvent] = []
    open_runs: dict[str, list[Block] | Periods] = {}  # per line: its run still taking blocks
    for item in items:
        if isinstance(item, Block):
            blocks = open_runs.get(item.line)
            if blocks is not None and isinstance(blocks, list):
                prev = blocks[-1]
                if (len(blocks) < max_blocks and item.stream == prev.stream and not item.overrun
                        and item.start_frame == prev.start_frame + len(prev.frames)):  # continues()
                    blocks.append(item)
                    continue
            open_runs[item.line] = blocks = [item]
            out.append(blocks)
        elif isinstance(item, Periods):
            run = open_runs.get(item.line)
            if (run is not None and isinstance(run, Periods) and item.start_frame == run.end_frame
                    and not item.overrun and item.stream == run.stream and item.anchor == run.anchor):
                room = max_blocks - len(run.arrays)
                if room >= len(item.arrays):
                    run.arrays = run.arrays + item.arrays
                    run.end_frame = item.end_frame
                    continue
                if room > 0:
                    head = item.arrays[:room]
                    run.arrays = run.arrays + head
                    run.end_frame = run.end_frame + sum(map(len, head))
                    item = Periods(item.line, item.arrays[room:], run.end_frame, item.end_frame, item.anchor,
                                   item.rate, False, item.stream)
            while len(item.arrays) > max_blocks:  # a late drain: more than a run's periods
                head = item.arrays[:max_blocks]
                end = item.start_frame + sum(map(len, head))
                out.append(Periods(item.line, head, item.start_frame, end, item.anchor, item.rate, item.overrun,
                                   item.stream))
                item = Periods(item.line, item.arrays[max_blocks:], end, item.end_frame, item.anchor, item.rate,
                               False, item.stream)
            # A copy: the run may yet take the next drain's periods, and the queued item stays as it came.
            open_runs[item.line] = run = Periods(item.line, item.arrays, item.start_frame, item.end_frame,
                                                 item.anchor, item.rate, item.overrun, item.stream)
            out.append(run)
        else:
            open_runs.pop(item.line, None)
            out.append(item)
    for x in out:
        if isinstance(x, Periods):
            yield Run.of_periods(x)
        elif isinstance(x, list):
            yield Run.of(x)
        else:
            yield x


class Pipeline(threading.Thread):
    """The one thread between the capture queue and the files.

    ``stop`` ends it after the round in progress; ``drain`` (before ``stop``, at shutdown)
    waits until the queue is empty, so the last captured audio is recorded."""

    def __init__(self, blocks: BlockQueue, line_calls: Mapping[str, LineCalls], *,
                 supervisor: LineSupervisor, syncs: SyncBatch, watchdog: ProgressWatchdog,
                 on_source_event: Callable[[], None] = lambda: None,
                 after_round: Callable[[], None] = lambda: None,
                 sweep: Callable[[], None] = lambda: None) -> None:
        super().__init__(name="pipeline", daemon=True)
        self.blocks = blocks
        self.line_calls = line_calls
        self.supervisor = supervisor
        self.syncs = syncs
        self.watchdog = watchdog
        self.on_source_event = on_source_event  # a PCM lost or reopened: the health thread looks at once
        self.after_round = after_round  # after each round that leaves no backlog (the recorder's: a StallWatch's check)
        # Before each round: the recorder's ``CardDrainer.sweep`` (the cards' periods due, queued
        # now): the thread is awake anyway, so the drainer's own thread need not wake for this tick.
        self.sweep = sweep
        self.stopping = threading.Event()
        self._wake = Wake()  # the sleep between rounds, cut short by ``stop`` (cheaper than an Event's)
        self.blocks_processed = 0
        self.errors = 0  # runs whose handling failed, and failed round syncs

    def run(self) -> None:
        q, behind = self.blocks, 2 * RUN_BLOCKS * len(self.line_calls)
        handle, progress = self._handle, self.watchdog.progress  # (looked up once, not per run)
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the drainer's thread drains the cards too: record what is queued
                logger.exception("draining the cards before the round failed")
            items, weight = q.take_all_weighed()
            for item in runs(items, RUN_BLOCKS):
                handle(item)
                progress("pipeline")
            if items:
                self._sync()
                if weight >= behind:
                    continue  # two rounds' worth queued (a backlog, a burst): the next round at once
            else:
                self.watchdog.progress("pipeline")
            try:
                self.after_round()
            except Exception:  # noqa: BLE001 - a watch's failure is not the recording's
                logger.exception("after the round")
            # In real time a line's next block comes 20 ms later: a round every GATHER_S, so that
            # each line's blocks are handled as a run (one numpy call, one write), not one by one,
            # and the thread wakes 5 times a second. (Fault onsets are dated from the samples;
            # only the alarm comes this much later.)
            delay = next_round_s(started, GATHER_S, ROUND_PHASE_S) - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until everything queued has been taken."""
        # Real time, not the injected clock: a test's fake clock may never move.
        deadline = threading.Event()
        timer = threading.Timer(timeout_s, deadline.set)
        timer.start()
        try:
            while not self.blocks.empty() and not deadline.wait(0.01):
                pass
        finally:
            timer.cancel()

    def _sync(self) -> None:
        """The round's due syncs, together (``SyncBatch``)."""
        try:
            self.syncs.flush()
        except Exception:  # noqa: BLE001 - a sync failure is the recording's, never the pipeline's end
            self.errors += 1
            logger.exception("syncing the recordings failed")

    def _handle(self, item: Run | SourceEvent) -> None:
        try:
            if isinstance(item, Run):
                self.supervisor.check_run(item)
                self.line_calls[item.line].on_block(item)
                self.blocks_processed += len(item.blocks)
            else:
                if item.kind == "lost" and item.line in self.line_calls:
                    self.line_calls[item.line].source_lost()
                self.on_source_event()
        except Exception:  # noqa: BLE001 - one bad run must not stop every line
            self.errors += 1
            if self.errors <= LOGGED_ERRORS or self.errors % 1000 == 0:
                logger.exception("pipeline error on line %s (%d so far)", item.line, self.errors)
