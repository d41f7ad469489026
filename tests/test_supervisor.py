"""The line-health rules, without threads or ALSA: runs and reader snapshots in, alarms and gaps out.

Each test drives a ``LineSupervisor`` (or ``account_for_downtime``) with hand-made audio runs
or capture-reader snapshots, and reads the decisions back from a real ``AlarmManager`` and
``GapTracker`` writing a real SQLite index, on a fake clock.
"""

from __future__ import annotations

import numpy as np
import pytest

from linetap.capture import Block, Run
from linetap.clock import FakeClock, iso, parse_iso
from linetap.config import HealthConfig, LineConfig
from linetap.index.db import Index
from linetap.supervisor import LineSupervisor, ReaderSnapshot, account_for_downtime, starved

T0 = parse_iso("2026-11-28T00:00:00Z")
RATE = 8000
N = RATE // 50  # frames in a 20 ms period
LINE = "line1"
CLOCK_START = T0  # the conftest clock starts here


@pytest.fixture
def sup(alarms, gaps) -> LineSupervisor:
    return LineSupervisor([LineConfig(LINE, "null"), LineConfig("line2", "null")],
                          HealthConfig(dead_after_ms=500, stall_after_ms=500), alarms=alarms, gaps=gaps)


def live(n: int, seed: int = 1) -> np.ndarray:
    """A live line's samples: a little noise, never one value for long."""
    return np.random.default_rng(seed).integers(-300, 300, size=(n, 1), dtype=np.int16)


def silent(n: int) -> np.ndarray:
    return np.zeros((n, 1), dtype=np.int16)


def run(frames: np.ndarray, start_frame: int, *, stream: int = 1, overrun: bool = False,
        line: str = LINE) -> Run:
    """``frames`` as a run of 20 ms blocks of ``line``, the first at ``start_frame`` (T0 = frame 0)."""
    blocks = [Block(line, frames[i:i + N], start_frame + i, T0 + (start_frame + i) / RATE, RATE,
                    overrun=overrun and i == 0, stream=stream) for i in range(0, len(frames), N)]
    return Run.of(blocks)


def gap_rows(index: Index) -> list[tuple[str, str, str | None, str]]:
    return [(r["line"], r["started_at"], r["ended_at"], r["reason"])
            for r in index.query("select line, started_at, ended_at, reason from gaps order by id")]


def alarm_rows(index: Index) -> list[tuple[str, str | None, str, str | None]]:
    return [(r["code"], r["line"], r["raised_at"], r["cleared_at"])
            for r in index.query("select code, line, raised_at, cleared_at from alarms order by id")]


def feed(sup: LineSupervisor, frames: np.ndarray, start_frame: int, **kw) -> int:
    """Feed ``frames`` in runs of 10 blocks (200 ms) as the pipeline does; returns the next frame."""
    step = 10 * N
    for a in range(0, len(frames), step):
        sup.check_run(run(frames[a:a + step], start_frame + a, **kw))
    return start_frame + len(frames)


# --- LINE_DEAD from the audio ---

def test_a_live_line_raises_nothing_and_opens_no_gap(sup, alarms, index):
    feed(sup, live(5 * RATE), 0)
    assert alarms.active() == [] and gap_rows(index) == []


def test_digital_silence_raises_line_dead_dated_at_its_onset_with_a_dead_gap(sup, alarms, index):
    f = feed(sup, live(RATE), 0)
    feed(sup, silent(RATE), f)  # 1 s of exact zeros from T0 + 1 s
    assert alarms.is_active("LINE_DEAD", LINE)
    assert alarm_rows(index) == [("LINE_DEAD", LINE, iso(T0 + 1.0), None)]
    assert gap_rows(index) == [(LINE, iso(T0 + 1.0), None, "dead")]


def test_the_audio_coming_back_ends_the_dead_gap_where_it_came_back(sup, alarms, gaps, index):
    f = feed(sup, silent(RATE), 0)
    feed(sup, live(RATE), f)  # back at T0 + 1 s
    assert gap_rows(index) == [(LINE, iso(T0), iso(T0 + 1.0), "dead")]
    assert gaps.is_open(LINE) is None


def test_the_dead_alarm_clears_after_its_quiet_time_dated_when_the_audio_came_back(sup, alarms, clock, index):
    f = feed(sup, silent(RATE), 0)
    feed(sup, live(RATE), f)
    clock.advance(2.5)  # clear_after_s = 2 without a repeat
    alarms.tick()
    assert not alarms.is_active("LINE_DEAD", LINE)
    assert alarm_rows(index) == [("LINE_DEAD", LINE, iso(T0), iso(T0 + 1.0))]


def test_silence_shorter_than_dead_after_raises_nothing(sup, alarms, index):
    f = feed(sup, live(RATE), 0)
    f = feed(sup, silent(int(0.4 * RATE)), f)
    feed(sup, live(RATE), f)
    assert alarms.active() == [] and gap_rows(index) == []


def test_a_dead_line_does_not_touch_another_line(sup, alarms):
    feed(sup, silent(RATE), 0)
    feed(sup, live(RATE), 0, line="line2")
    assert alarms.is_active("LINE_DEAD", LINE) and not alarms.is_active("LINE_DEAD", "line2")


# --- LINE_OVERRUN ---

def test_samples_missing_between_runs_are_an_overrun_alarm_and_an_overrun_gap(sup, alarms, index):
    f = feed(sup, live(RATE), 0)  # ends at T0 + 1 s
    feed(sup, live(RATE, seed=2), f + 800)  # 100 ms (800 samples) later than it should
    assert alarms.is_active("LINE_OVERRUN", LINE)
    [(code, line, raised_at, _)] = alarm_rows(index)
    assert (code, line, raised_at) == ("LINE_OVERRUN", LINE, iso(T0 + 1.0))
    assert "800 samples lost" in alarms.active()[0].detail
    assert gap_rows(index) == [(LINE, iso(T0 + 1.0), iso(T0 + 1.1), "overrun")]


def test_an_overrun_reported_by_alsa_alone_is_an_alarm_without_a_gap(sup, alarms, index):
    f = feed(sup, live(RATE), 0)
    feed(sup, live(RATE, seed=2), f, overrun=True)
    assert alarms.is_active("LINE_OVERRUN", LINE)
    assert alarms.active()[0].detail == "ALSA reported an overrun: samples were lost"
    assert gap_rows(index) == []


def test_one_period_late_is_not_lost_audio(sup, alarms, index):
    f = feed(sup, live(RATE), 0)
    feed(sup, live(RATE, seed=2), f + N)  # 20 ms: within 1.5 periods
    assert alarms.active() == [] and gap_rows(index) == []


def test_an_overrun_clears_by_itself_after_its_quiet_time(sup, alarms, clock):
    f = feed(sup, live(RATE), 0)
    feed(sup, live(RATE, seed=2), f + 800)
    clock.advance(2.5)
    alarms.tick()
    assert alarms.active() == []


def test_a_reopened_stream_starting_over_is_not_an_overrun(sup, alarms, index):
    feed(sup, live(RATE), 0, stream=1)
    feed(sup, live(RATE, seed=2), 0, stream=2)  # frame 0 again, its time earlier than the last end
    assert alarms.active() == [] and gap_rows(index) == []


def test_a_reopened_stream_ends_the_old_streams_dead_state(sup, alarms, index):
    feed(sup, silent(RATE), 0, stream=1)
    feed(sup, live(RATE), 2 * RATE, stream=2)  # reopened at T0 + 2 s
    assert gap_rows(index) == [(LINE, iso(T0), iso(T0 + 2.0), "dead")]


# --- LINE_NO_DEVICE ---

def test_a_pcm_that_cannot_be_opened_raises_no_device_from_when_it_failed(sup, alarms, index, clock):
    sup.check_reader(LINE, ReaderSnapshot(error="no such card", error_at=T0 - 3.0), clock.mono(), clock.wall())
    assert alarms.is_active("LINE_NO_DEVICE", LINE)
    assert alarm_rows(index) == [("LINE_NO_DEVICE", LINE, iso(T0 - 3.0), None)]
    assert gap_rows(index) == [(LINE, iso(T0 - 3.0), None, "no_device")]


def test_a_missing_device_is_raised_once_however_many_ticks_see_it(sup, index, clock):
    for _ in range(5):
        sup.check_reader(LINE, ReaderSnapshot(error="no such card", error_at=T0), clock.mono(), clock.wall())
        clock.advance(0.1)
    assert len(alarm_rows(index)) == 1 and len(gap_rows(index)) == 1


def test_the_device_coming_back_ends_the_gap_and_clears_the_alarm_where_it_reopened(sup, alarms, index, clock):
    sup.check_reader(LINE, ReaderSnapshot(error="no such card", error_at=T0), clock.mono(), clock.wall())
    clock.advance(4.0)
    back = ReaderSnapshot(outages=1, last_outage=(T0, T0 + 3.0, "no such card"), is_open=True,
                          last_frames_mono=clock.mono(), opened_mono=clock.mono() - 1.0)
    sup.check_reader(LINE, back, clock.mono(), clock.wall())
    assert gap_rows(index) == [(LINE, iso(T0), iso(T0 + 3.0), "no_device")]
    clock.advance(2.5)
    alarms.tick()
    assert alarm_rows(index) == [("LINE_NO_DEVICE", LINE, iso(T0), iso(T0 + 3.0))]


def test_an_outage_between_two_ticks_is_still_an_alarm_interval_and_a_gap(sup, alarms, index, clock):
    glitch = ReaderSnapshot(outages=1, last_outage=(T0 - 0.05, T0 - 0.02, "USB reset"), is_open=True,
                            last_frames_mono=clock.mono(), opened_mono=clock.mono())
    sup.check_reader(LINE, glitch, clock.mono(), clock.wall())
    assert alarm_rows(index) == [("LINE_NO_DEVICE", LINE, iso(T0 - 0.05), iso(T0 - 0.02))]
    assert gap_rows(index) == [(LINE, iso(T0 - 0.05), iso(T0 - 0.02), "no_device")]
    sup.check_reader(LINE, glitch, clock.mono(), clock.wall())  # the same outage seen again
    assert len(alarm_rows(index)) == 1 and len(gap_rows(index)) == 1


# --- LINE_DEAD from a stall ---

def open_reader(clock: FakeClock, frames_ago_s: float) -> ReaderSnapshot:
    return ReaderSnapshot(is_open=True, last_frames_mono=clock.mono() - frames_ago_s,
                          opened_mono=clock.mono() - 60.0)


def test_frames_that_stop_coming_raise_line_dead_from_the_last_frame_with_a_stalled_gap(sup, alarms, index, clock):
    sup.check_reader(LINE, open_reader(clock, 0.4), clock.mono(), clock.wall())
    assert alarms.active() == []
    sup.check_reader(LINE, open_reader(clock, 0.8), clock.mono(), clock.wall())
    assert alarm_rows(index) == [("LINE_DEAD", LINE, iso(T0 - 0.8), None)]
    assert gap_rows(index) == [(LINE, iso(T0 - 0.8), None, "stalled")]


def test_frames_coming_back_end_the_stall(sup, index, clock):
    sup.check_reader(LINE, open_reader(clock, 1.0), clock.mono(), clock.wall())
    clock.advance(2.0)
    sup.check_reader(LINE, open_reader(clock, 0.0), clock.mono(), clock.wall())
    assert gap_rows(index) == [(LINE, iso(T0 - 1.0), iso(T0 + 2.0), "stalled")]


def test_a_stalled_line_losing_its_device_is_no_device_not_dead(sup, alarms, index, clock):
    sup.check_reader(LINE, open_reader(clock, 1.0), clock.mono(), clock.wall())
    clock.advance(1.0)
    sup.check_reader(LINE, ReaderSnapshot(error="I/O error", error_at=clock.wall()), clock.mono(), clock.wall())
    assert gap_rows(index) == [(LINE, iso(T0 - 1.0), iso(T0 + 1.0), "stalled"),
                               (LINE, iso(T0 + 1.0), None, "no_device")]
    clock.advance(2.5)
    alarms.tick()
    assert [a.code for a in alarms.active()] == ["LINE_NO_DEVICE"]


def test_a_starved_tick_is_half_the_stall_time_late():
    assert not starved(0.25, 0.5) and starved(0.26, 0.5) and not starved(0.0, 0.5)


def test_a_late_tick_after_the_process_was_starved_raises_no_stall(sup, alarms, index, clock):
    # Nothing ran for 2 s (the reader included): the tick comes 1.6 s late and sees old frames.
    sup.check_reader(LINE, open_reader(clock, 2.0), clock.mono(), clock.wall(), late_s=1.6)
    assert alarms.active() == [] and gap_rows(index) == []
    # The next, on-time tick: the reader has run again and frames are fresh.
    clock.advance(0.1)
    sup.check_reader(LINE, open_reader(clock, 0.02), clock.mono(), clock.wall())
    assert alarms.active() == [] and gap_rows(index) == []


def test_a_real_stall_is_still_raised_after_a_starved_tick_one_stall_time_later(sup, alarms, index, clock):
    sup.check_reader(LINE, open_reader(clock, 2.0), clock.mono(), clock.wall(), late_s=1.6)
    starved_at = clock.wall()
    clock.advance(0.4)  # on time, but no frames since: not yet 0.5 s since the process ran again
    sup.check_reader(LINE, open_reader(clock, 2.4), clock.mono(), clock.wall())
    assert alarms.active() == []
    clock.advance(0.2)
    sup.check_reader(LINE, open_reader(clock, 2.6), clock.mono(), clock.wall())
    # Raised, dated from when the process ran again (what was missing before proves nothing).
    assert alarm_rows(index) == [("LINE_DEAD", LINE, iso(starved_at), None)]
    assert gap_rows(index) == [(LINE, iso(starved_at), None, "stalled")]


def test_a_stall_already_raised_is_not_cleared_by_a_starved_tick(sup, alarms, index, clock):
    sup.check_reader(LINE, open_reader(clock, 0.8), clock.mono(), clock.wall())
    assert alarms.is_active("LINE_DEAD", LINE)
    clock.advance(2.0)
    sup.check_reader(LINE, open_reader(clock, 2.8), clock.mono(), clock.wall(), late_s=1.9)
    assert gap_rows(index) == [(LINE, iso(T0 - 0.8), None, "stalled")]
    clock.advance(0.1)
    sup.check_reader(LINE, open_reader(clock, 2.9), clock.mono(), clock.wall())
    assert gap_rows(index) == [(LINE, iso(T0 - 0.8), None, "stalled")]


def test_an_on_time_tick_sees_a_stall_as_before(sup, alarms, index, clock):
    sup.check_reader(LINE, open_reader(clock, 0.51), clock.mono(), clock.wall(), late_s=0.05)
    assert alarm_rows(index) == [("LINE_DEAD", LINE, iso(T0 - 0.51), None)]


def test_line_dead_stays_while_either_cause_lasts(sup, alarms, clock, index):
    feed(sup, silent(RATE), 0)  # dead audio from T0
    sup.check_reader(LINE, open_reader(clock, 1.0), clock.mono(), clock.wall())  # and a stall
    sup.check_reader(LINE, open_reader(clock, 0.0), clock.mono(), clock.wall())  # the stall ends
    clock.advance(2.5)
    alarms.tick()
    assert alarms.is_active("LINE_DEAD", LINE)
    assert gap_rows(index) == [(LINE, iso(T0), None, "dead")]


# --- RECORDER_RESTARTED ---

def start(index, gaps, alarms, now: float) -> None:
    account_for_downtime(index, gaps=gaps, alarms=alarms, lines=[LINE, "line2"], now=now)


def test_the_first_start_is_no_downtime(index, gaps, alarms):
    start(index, gaps, alarms, T0)
    assert alarm_rows(index) == [] and gap_rows(index) == []
    assert index.get_meta("first_started_at") == iso(T0) and index.get_meta("heartbeat") == iso(T0)


def test_a_crash_is_a_recorder_down_gap_on_every_line_from_the_last_heartbeat(index, gaps, alarms):
    index.set_meta("heartbeat", iso(T0))
    start(index, gaps, alarms, T0 + 60.0)
    assert gap_rows(index) == [(LINE, iso(T0), iso(T0 + 60.0), "recorder_down"),
                               ("line2", iso(T0), iso(T0 + 60.0), "recorder_down")]
    assert alarm_rows(index) == [("RECORDER_RESTARTED", None, iso(T0), iso(T0 + 60.0))]
    [detail] = [r["detail"] for r in index.query("select detail from alarms")]
    assert detail == "the recorder crashed, was killed or lost power and was down for 60.0 s"


def test_a_clean_restart_is_downtime_too_and_says_so(index, gaps, alarms):
    index.set_meta("heartbeat", iso(T0))
    index.set_meta("stopped", "clean")
    start(index, gaps, alarms, T0 + 5.0)
    [detail] = [r["detail"] for r in index.query("select detail from alarms")]
    assert detail == "the recorder stopped cleanly and was down for 5.0 s"
    assert index.get_meta("stopped") == ""  # this run has not stopped cleanly (yet)


def test_a_restart_within_half_a_second_of_the_heartbeat_is_no_gap(index, gaps, alarms):
    index.set_meta("heartbeat", iso(T0))
    start(index, gaps, alarms, T0 + 0.4)
    assert alarm_rows(index) == [] and gap_rows(index) == []


def test_what_a_crashed_run_left_open_ends_at_its_last_heartbeat(index, gaps, alarms):
    index.set_meta("heartbeat", iso(T0 + 10.0))
    index.gap(LINE, iso(T0), None, "dead")  # type: ignore[arg-type]
    index.alarm_raised("LINE_DEAD", "critical", LINE, iso(T0), "silence")
    start(index, gaps, alarms, T0 + 70.0)
    assert gap_rows(index)[0] == (LINE, iso(T0), iso(T0 + 10.0), "dead")
    assert alarm_rows(index)[0] == ("LINE_DEAD", LINE, iso(T0), iso(T0 + 10.0))


def test_an_unreadable_heartbeat_is_ignored(index, gaps, alarms):
    index.set_meta("heartbeat", "not a time")
    start(index, gaps, alarms, T0)
    assert alarm_rows(index) == [] and gap_rows(index) == []
    assert index.get_meta("heartbeat") == iso(T0)
