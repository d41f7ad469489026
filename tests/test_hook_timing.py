"""Exact hang-ups: hook edges stamped when they happen, mapped to frames, whatever the pipeline's delay.

A real ``gpio.HookInput`` on gpiozero's MockFactory, its pin driven from a thread at known
instants; a capture thread makes 20 ms blocks in real time (stamped like ``LineReader``
stamps them: ``t_mono``/``t_wall`` from the sample count); the "pipeline" hands them to a
real ``LineCalls`` late (0.3 s behind, in runs of 10 blocks, as under backlog). The call must
start and end within 20 ms of the edges (it is exact to the frame the edge maps to; the
margin is the scheduling of the driving thread, not of the pipeline).
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from linetap.calls.hook import HookEdges, hook_at
from linetap.calls.line import LineCalls
from linetap.capture import Block, Run
from linetap.config import LineConfig
from linetap.gpio import HookInput

RATE = 8000
N = 160  # 20 ms
T0_WALL = 1_800_000_000.0
HOOK_PIN = 17
TOLERANCE_S = 0.020


class Rec:
    def __init__(self, started_at: float) -> None:
        self.id, self.started_at, self.frames = 1, started_at, 0
        self.caller_number = self.caller_name = None
        self.dtmf = ""
        self.end_reason: str | None = None

    def write(self, frames) -> None:
        self.frames += len(frames)

    def set_caller(self, number, name) -> None:
        pass

    def finish(self, end_reason: str, status: str = "complete") -> dict:
        self.end_reason = end_reason
        return {"id": self.id, "duration_s": self.frames / RATE}

    def discard(self) -> None:
        self.end_reason = "discarded"


def test_hook_at_answers_the_state_at_a_time_and_the_edge_that_made_it():
    times, states = [1.0, 2.0, 2.01], [True, False, True]
    assert hook_at(times, states, False, 0.5) == (False, None)
    assert hook_at(times, states, False, 1.0) == (True, 1.0)
    assert hook_at(times, states, False, 2.005) == (False, 2.0)
    assert hook_at(times, states, False, 9.0) == (True, 2.01)


def test_repeated_states_are_no_edges_and_forgotten_edges_keep_their_state():
    e = HookEdges(False)
    e.add(1.0, False)
    assert e.at(5.0) == (False, None)
    for k in range(600):  # more than are kept: the oldest go, the state they led to stays
        e.add(10.0 + k, k % 2 == 0)
    # 512 are kept: edges 0..87 are forgotten, and the last of them (87: odd, to False) is
    # the state before the oldest kept one.
    assert e.at(9.0) == (False, None) and e.at(98.0) == (True, 98.0)
    assert e.at(700.0) == (False, 609.0)


@pytest.mark.parametrize("delay_s", [0.0, 0.3, 1.0])
def test_a_call_starts_and_ends_within_20_ms_of_the_hook_edges_with_the_pipeline_delayed(delay_s):
    factory = MockFactory()
    hook = HookInput(HOOK_PIN, pin_factory=factory, mono=time.monotonic)
    line = LineConfig(name="l", pcm="null", rate=RATE, trigger="offhook", offhook_gpio=HOOK_PIN,
                      offhook_debounce_ms=60, preroll_s=0.5, min_call_s=1.0)
    made: list[Rec] = []

    def open_recording(_cfg, started_at):
        made.append(Rec(started_at))
        return made[-1]

    calls = LineCalls(line, open_recording=open_recording, hook=hook)
    blocks: queue.Queue[Block | None] = queue.Queue()
    t0 = time.monotonic()
    edges: dict[str, tuple[float, float]] = {}  # when each drive began and returned (s after t0)
    total_blocks = int(3.4 / 0.02)

    def capture() -> None:  # blocks in real time, each handed over once its audio "exists"
        rng = np.random.default_rng(1)
        for k in range(total_blocks):
            t_mono = t0 + k * N / RATE
            time.sleep(max(0.0, t_mono + N / RATE - time.monotonic()))
            x = (rng.standard_normal((N, 1)) * 300).astype(np.int16)
            blocks.put(Block("l", x, k * N, T0_WALL + k * N / RATE, RATE, t_mono=t_mono))
        blocks.put(None)

    def drive(name: str, at_s: float, high: bool) -> None:
        time.sleep(max(0.0, t0 + at_s - time.monotonic()))
        before = time.monotonic()
        factory.pin(HOOK_PIN).drive_high() if high else factory.pin(HOOK_PIN).drive_low()
        edges[name] = (before - t0, time.monotonic() - t0)

    def phone() -> None:
        drive("bounce_on", 0.49, True)  # contact bounce, shorter than the debounce
        drive("bounce_off", 0.50, False)
        drive("off_hook", 0.513, True)
        drive("bounce_off2", 1.6, False)  # a 20 ms bounce mid-call: not a hang-up
        drive("bounce_on2", 1.62, True)
        drive("on_hook", 2.737, False)

    threads = [threading.Thread(target=capture), threading.Thread(target=phone)]
    for t in threads:
        t.start()
    pending: list[Block] = []
    done = False
    while not done:
        b = blocks.get()
        if b is None:
            done = True
        else:
            pending.append(b)
        # The pipeline runs ``delay_s`` behind the line, 10 blocks at a time (a backlog).
        if pending and (done or len(pending) >= 10):
            time.sleep(max(0.0, pending[-1].t_mono + delay_s - time.monotonic()))
            calls.on_block(Run.of(pending))
            pending = []
    for t in threads:
        t.join()
    calls.shutdown()
    hook.close()
    factory.reset()

    (rec,) = made
    assert rec.end_reason == "onhook"
    start_s = rec.started_at - T0_WALL + line.preroll_s  # the call's onset: the pre-roll before it
    end_s = rec.started_at - T0_WALL + rec.frames / RATE
    # The edge happened while the pin was being driven: between ``before`` and the return.
    assert edges["off_hook"][0] - TOLERANCE_S <= start_s <= edges["off_hook"][1] + TOLERANCE_S, (start_s, edges)
    assert edges["on_hook"][0] - TOLERANCE_S <= end_s <= edges["on_hook"][1] + TOLERANCE_S, (end_s, edges)
