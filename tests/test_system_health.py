"""System health: NTP sync as the kernel reports it (disk space is tested with retention)."""

from __future__ import annotations

import os

import pytest

from linetap.health.system import STA_UNSYNC, TIME_ERROR, TimexState, clock_synchronized, read_adjtimex


def test_a_clock_disciplined_by_ntp_is_synchronised():
    assert clock_synchronized(adjtimex=lambda: TimexState(0, 0x2001, 100_000)) is True


def test_the_unsync_status_bit_means_not_synchronised():
    assert clock_synchronized(adjtimex=lambda: TimexState(0, STA_UNSYNC, 16_000_000)) is False


def test_time_error_means_not_synchronised():
    assert clock_synchronized(adjtimex=lambda: TimexState(TIME_ERROR, 0, 16_000_000)) is False


def test_without_adjtimex_synchronisation_is_unknown():
    assert clock_synchronized(adjtimex=lambda: None) is None


@pytest.mark.skipif(not hasattr(os, "uname") or os.uname().sysname != "Linux", reason="Linux only")
def test_the_real_kernel_answers_with_a_state():
    state = read_adjtimex()
    assert state is not None and 0 <= state.result <= 5
    assert clock_synchronized() in (True, False)
