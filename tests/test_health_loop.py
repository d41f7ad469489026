"""When the health thread ticks: at once when woken, else when something is due (``tick_wait_s``)."""

from __future__ import annotations

import pytest

from linetap.health.loop import HEALTH_TICK_S, IDLE_TICK_S, STALL_MARGIN_S, stall_due_mono, tick_wait_s
from linetap.supervisor import ReaderSnapshot

NOW = 1000.0


def test_before_ready_it_ticks_ten_times_a_second():
    assert tick_wait_s(NOW, ready=False, due_mono=[]) == HEALTH_TICK_S


def test_with_nothing_due_it_ticks_at_the_idle_rate():
    assert tick_wait_s(NOW, ready=True, due_mono=[]) == IDLE_TICK_S == 0.5


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
    r = ReaderSnapshot(is_open=True, last_frames_mono=NOW - 0.05, opened_mono=NOW - 60.0)
    assert tick_wait_s(NOW, ready=True, due_mono=[stall_due_mono(r, 0.5)]) == pytest.approx(0.46)
