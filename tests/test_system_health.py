"""System health: disk space, hours of recording left, the recording rate, NTP sync."""

from __future__ import annotations

import os

import pytest

from linetap.health.system import (STA_UNSYNC, TIME_ERROR, RateMeter, TimexState, clock_synchronized,
                                   disk_low, disk_usage, hours_left, read_adjtimex)

MB = 1024 * 1024
GB = 1024 * MB


class FakeStatvfs:
    f_frsize = 4096
    f_blocks = 1_000_000
    f_bavail = 250_000
    f_bfree = 300_000  # includes the root reserve, which the recorder may not use


# --- disk ---

def test_disk_usage_counts_the_space_an_unprivileged_process_may_use():
    assert disk_usage("/data", statvfs=lambda p: FakeStatvfs()) == (250_000 * 4096, 1_000_000 * 4096)


def test_disk_usage_of_a_real_directory_is_plausible(tmp_path):
    free, total = disk_usage(tmp_path)
    assert 0 <= free <= total


def test_hours_left_is_unknown_until_a_rate_is_known():
    assert hours_left(10 * GB, 512 * MB, None) is None
    assert hours_left(10 * GB, 512 * MB, 0.0) is None


def test_hours_left_is_the_space_above_the_floor_over_the_rate():
    assert hours_left(1024 * MB, 512 * MB, 64 * MB) == 8.0


def test_hours_left_is_never_negative():
    assert hours_left(100 * MB, 512 * MB, 64 * MB) == 0.0


def test_space_the_ring_buffer_may_evict_counts_as_left():
    assert hours_left(512 * MB, 512 * MB, 64 * MB, reclaimable_bytes=3200 * MB) == 50.0


def test_the_disk_is_low_below_the_ring_buffers_floor():
    assert disk_low(500 * MB, 512 * MB, hours_left=None, low_hours=24)


def test_the_disk_is_low_with_fewer_hours_left_than_disk_low_hours():
    assert disk_low(2 * GB, 512 * MB, hours_left=23.9, low_hours=24)


def test_the_disk_is_not_low_with_room_and_time():
    assert not disk_low(2 * GB, 512 * MB, hours_left=24.0, low_hours=24)
    assert not disk_low(2 * GB, 512 * MB, hours_left=None, low_hours=24)


def test_a_full_ring_buffer_with_evictable_recordings_is_not_low():
    assert not disk_low(500 * MB, 512 * MB, hours_left=100.0, low_hours=24, reclaimable_bytes=GB)


# --- recording rate ---

def test_the_rate_is_unknown_before_min_span_s_has_been_observed():
    meter = RateMeter(min_span_s=600, start_t=0.0)
    meter.add(10.0, 1000)
    assert meter.bytes_per_hour(599.0) is None


def test_the_rate_is_bytes_over_the_observed_time():
    meter = RateMeter(min_span_s=600, start_t=0.0)
    for minute in range(60):
        meter.add(minute * 60.0, 10 * MB)
    assert meter.bytes_per_hour(3600.0) == pytest.approx(600 * MB)


def test_quiet_time_lowers_the_rate():
    meter = RateMeter(min_span_s=600, start_t=0.0)
    meter.add(100.0, 60 * MB)
    assert meter.bytes_per_hour(3600.0) == pytest.approx(60 * MB)
    assert meter.bytes_per_hour(7200.0) == pytest.approx(30 * MB)


def test_old_samples_leave_the_window():
    meter = RateMeter(window_s=3600, min_span_s=600, start_t=0.0)
    meter.add(100.0, 100 * MB)
    meter.add(3700.0, 10 * MB)
    assert meter.bytes_per_hour(4000.0) == pytest.approx(10 * MB)


def test_the_first_sample_starts_the_observation_when_no_start_is_given():
    meter = RateMeter(min_span_s=600)
    meter.add(1000.0, 0)
    meter.add(1300.0, 5 * MB)
    assert meter.bytes_per_hour(1599.0) is None
    assert meter.bytes_per_hour(2200.0) == pytest.approx(15 * MB)


def test_samples_close_together_share_a_bucket():
    meter = RateMeter(bucket_s=60, start_t=0.0, min_span_s=0)
    for i in range(600):
        meter.add(i * 0.1, 100)
    assert len(meter._buckets) == 1


# --- clock ---

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
