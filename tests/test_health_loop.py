"""When the health thread ticks: at once when woken, else when something is due (``tick_wait_s``)."""

from __future__ import annotations

import pytest

import threading
from types import SimpleNamespace

from linetap.clock import FakeClock
from linetap.health.loop import (HEALTH_TICK_S, IDLE_TICK_S, STALL_LOOKAHEAD_S, STALL_MARGIN_S, WATCH_EARLY_S,
                                 StallWatch,
                                 stall_due_mono, tick_wait_s)
from linetap.supervisor import ReaderSnapshot

NOW = 1000.0


def test_before_ready_it_ticks_ten_times_a_second():
    assert tick_wait_s(NOW, ready=False, due_mono=[]) == HEALTH_TICK_S


def test_with_nothing_due_it_ticks_at_the_idle_rate():
    assert tick_wait_s(NOW, ready=True, due_mono=[]) == IDLE_TICK_S == 1.0


def test_it_ticks_when_the_earliest_thing_is_due():
    assert tick_wait_s(NOW, ready=True, due_mono=[NOW + 0.45, NOW + 0.3, NOW + 2.0]) == pytest.approx(0.3)


def test_never_sooner_than_the_fastest_tick_even_when_something_is_overdue():
    assert tick_wait_s(NOW, ready=True, due_mono=[NOW - 5.0]) == HEALTH_TICK_S


def test_a_line_is_due_for_a_stall_check_just_after_its_stall_time_from_its_last_frames():
    r = ReaderSnapshot(is_open=True, last_frames_mono=NOW - 0.1, opened_mono=NOW - 60.0)
    assert stall_due_mono(r, 0.5) == pytest.approx(NOW + 0.4 + STALL_MARGIN_S)


def test_a_line_that_opened_and_never_delivered_is_due_from_its_opening():
    r = ReaderSnapshot(is_open=True, last_frames_mono=None, opened_mono=NOW - 0.2)
    assert stall_due_mono(r, 0.5) == pytest.approx(NOW + 0.3 + STALL_MARGIN_S)


def test_a_closed_line_has_no_stall_due():
    assert stall_due_mono(ReaderSnapshot(is_open=False, last_frames_mono=NOW), 0.5) is None


def test_a_healthy_line_reading_every_100_ms_lets_the_thread_sleep_the_idle_time():
    """Its stall is 0.46 s away, farther than the look-ahead: the thread does not wake for it
    (it did, twice a second, the next frames always moving the stall further)."""
    r = ReaderSnapshot(is_open=True, last_frames_mono=NOW - 0.05, opened_mono=NOW - 60.0)
    assert tick_wait_s(NOW, ready=True, due_mono=[], stalls_mono=[stall_due_mono(r, 0.5)]) == IDLE_TICK_S


def test_a_line_whose_frames_are_late_is_ticked_at_its_exact_stall_time():
    """Frames 0.25 s old at 500 ms: the stall could be declared in 0.26 s, inside the look-ahead."""
    r = ReaderSnapshot(is_open=True, last_frames_mono=NOW - 0.25, opened_mono=NOW - 60.0)
    assert tick_wait_s(NOW, ready=True, due_mono=[], stalls_mono=[stall_due_mono(r, 0.5)]) == pytest.approx(0.26)


def test_what_the_stall_watch_reports_the_health_thread_schedules_even_a_moment_later():
    """The watch fires at WATCH_EARLY_S inside the look-ahead: the thread, reading its clock up to
    that much later, still counts the stall (it would otherwise sleep a whole idle tick)."""
    due = NOW + STALL_LOOKAHEAD_S - WATCH_EARLY_S
    assert tick_wait_s(NOW - WATCH_EARLY_S + 0.001, ready=True, due_mono=[], stalls_mono=[due]) < IDLE_TICK_S


def test_a_stalled_line_is_ticked_at_the_fastest_rate():
    assert tick_wait_s(NOW, ready=True, due_mono=[], stalls_mono=[NOW - 1.0]) == HEALTH_TICK_S


class _Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _reader(**kw) -> SimpleNamespace:
    """The four plain attributes a ``LineReader`` exposes to the watch."""
    return SimpleNamespace(**{"is_open": True, "last_frames_mono": None, "opened_mono": None} | kw)


def test_the_stall_watch_wakes_the_health_thread_once_when_a_lines_frames_get_old():
    clock = FakeClock(mono=NOW)
    r = _reader(last_frames_mono=NOW, opened_mono=NOW - 60.0)
    wakes = _Wakes()
    watch = StallWatch({"a": r}, stall_after_s=0.5, wake=wakes, clock=clock)
    watch.check()
    clock.advance(0.2)
    watch.check()
    assert wakes.count == 0  # 0.20 s old: its stall 0.31 s away, not yet
    clock.advance(0.02)
    watch.check()
    watch.check()
    assert wakes.count == 1  # 0.22 s old, 0.29 s from its stall: once, not at every round
    r.last_frames_mono = clock.mono()  # frames again
    watch.check()
    clock.advance(0.25)
    watch.check()
    assert wakes.count == 2  # quiet again: a new wake-up


def test_the_stall_watch_measures_a_line_that_never_delivered_from_its_opening_and_ignores_closed_lines():
    clock = FakeClock(mono=NOW)
    opened = _reader(opened_mono=NOW - 0.25)
    closed = _reader(is_open=False, last_frames_mono=NOW - 10.0, opened_mono=NOW - 60.0)
    wakes = threading.Event()
    StallWatch({"a": closed}, stall_after_s=0.5, wake=wakes.set, clock=clock).check()
    assert not wakes.is_set()
    StallWatch({"a": opened}, stall_after_s=0.5, wake=wakes.set, clock=clock).check()
    assert wakes.is_set()
