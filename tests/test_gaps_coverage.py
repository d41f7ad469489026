"""Gaps: one row per interval not captured; coverage per line over a window."""

from __future__ import annotations

import json

import pytest

from linetap.alarms import GapTracker, coverage, coverage_report, load_gaps
from linetap.cli.render import render_coverage, render_coverage_json
from linetap.clock import iso, parse_iso
from linetap.index.db import Index

T0 = parse_iso("2026-11-28T00:00:00Z")
HOUR = 3600.0
CLOCK_START = T0  # the conftest clock starts here


def rows(index: Index) -> list[dict]:
    return index.query("select line, started_at, ended_at, reason from gaps order by id")


def row(line: str, start: float, end: float | None, reason: str) -> dict:
    return {"line": line, "started_at": iso(start), "ended_at": None if end is None else iso(end),
            "reason": reason}


# --- the tracker ---

def test_a_gap_is_on_record_from_the_moment_it_opens(gaps, index):
    gaps.open("line1", "no_device", at=T0 + 10)
    assert rows(index) == [row("line1", T0 + 10, None, "no_device")]


def test_closing_a_gap_fills_in_its_end(gaps, index):
    gaps.open("line1", "no_device", at=T0 + 10)
    gaps.close("line1", at=T0 + 25.5)
    assert rows(index) == [row("line1", T0 + 10, T0 + 25.5, "no_device")]
    assert gaps.is_open("line1") is None


def test_opening_again_for_the_same_reason_keeps_the_first_start(gaps, index):
    gaps.open("line1", "dead", at=T0 + 1)
    gaps.open("line1", "dead", at=T0 + 2)
    gaps.close("line1", at=T0 + 3)
    assert rows(index) == [row("line1", T0 + 1, T0 + 3, "dead")]


def test_a_new_reason_ends_the_old_gap_and_starts_a_new_one(gaps, index):
    gaps.open("line1", "dead", at=T0 + 1)
    gaps.open("line1", "no_device", at=T0 + 5)
    gaps.close("line1", at=T0 + 9)
    assert rows(index) == [row("line1", T0 + 1, T0 + 5, "dead"), row("line1", T0 + 5, T0 + 9, "no_device")]


def test_closing_a_line_without_a_gap_does_nothing(gaps, index):
    gaps.close("line1", at=T0)
    assert rows(index) == []


def test_lines_have_their_own_gaps(gaps, index):
    gaps.open("line1", "stalled", at=T0 + 1)
    gaps.open("line2", "overrun", at=T0 + 2)
    gaps.close("line1", at=T0 + 3)
    assert gaps.is_open("line1") is None and gaps.is_open("line2") == "overrun"


def test_a_gap_still_open_at_shutdown_is_closed_at_shutdown_time(gaps, index, clock):
    gaps.open("line1", "no_device", at=T0 + 1)
    clock.advance(60)
    gaps.close_all()
    assert rows(index) == [row("line1", T0 + 1, T0 + 60, "no_device")]


def test_the_time_the_recorder_was_down_is_a_gap_on_every_line(gaps, index):
    gaps.recorder_down(["line1", "line2"], since=T0, until=T0 + 90)
    assert rows(index) == [row("line1", T0, T0 + 90, "recorder_down"),
                           row("line2", T0, T0 + 90, "recorder_down")]


def test_gaps_left_open_by_a_crash_are_closed_at_the_last_heartbeat(index, clock):
    crashed = GapTracker(index, clock)
    crashed.open("line1", "dead", at=T0 + 10)
    crashed.open("line2", "dead", at=T0 + 30)
    restarted = GapTracker(index, clock)
    assert restarted.close_stale(at=T0 + 20) == 2
    # line2's gap began after the last heartbeat: it ends where it began, never before.
    assert rows(index) == [row("line1", T0 + 10, T0 + 20, "dead"), row("line2", T0 + 30, T0 + 30, "dead")]


def test_a_gap_is_never_closed_before_it_opened(gaps, index):
    gaps.open("line1", "dead", at=T0 + 10)
    gaps.close("line1", at=T0 + 9)
    assert rows(index) == [row("line1", T0 + 10, T0 + 10, "dead")]


def test_without_an_index_the_tracker_still_knows_open_gaps(clock):
    gaps = GapTracker(None, clock)
    gaps.open("line1", "dead")
    assert gaps.is_open("line1") == "dead"


# --- coverage (pure) ---

def test_a_line_without_gaps_is_fully_covered():
    assert coverage([], T0, T0 + HOUR, "line1") == (1.0, [])


def test_six_minutes_missing_in_an_hour_is_ninety_percent():
    fraction, out = coverage([row("line1", T0 + 600, T0 + 960, "no_device")], T0, T0 + HOUR, "line1")
    assert fraction == pytest.approx(0.9)
    assert [(g.start, g.end, g.reason) for g in out] == [(T0 + 600, T0 + 960, "no_device")]


def test_gaps_are_clipped_to_the_window():
    fraction, out = coverage([row("line1", T0 - 100, T0 + 100, "dead"),
                              row("line1", T0 + HOUR - 50, T0 + HOUR + 500, "dead")], T0, T0 + HOUR, "line1")
    assert [(g.start, g.end) for g in out] == [(T0, T0 + 100), (T0 + HOUR - 50, T0 + HOUR)]
    assert fraction == pytest.approx(1 - 150 / HOUR)


def test_overlapping_and_touching_gaps_are_merged_with_both_reasons():
    gaps = [row("line1", T0 + 100, T0 + 200, "dead"), row("line1", T0 + 150, T0 + 300, "no_device"),
            row("line1", T0 + 300, T0 + 400, "no_device"), row("line1", T0 + 1000, T0 + 1001, "overrun")]
    fraction, out = coverage(gaps, T0, T0 + HOUR, "line1")
    assert [(g.start - T0, g.end - T0, g.reason) for g in out] == [(100, 400, "dead, no_device"),
                                                                   (1000, 1001, "overrun")]
    assert fraction == pytest.approx(1 - 301 / HOUR)


def test_an_open_gap_counts_until_the_end_of_the_window():
    fraction, out = coverage([row("line1", T0 + HOUR / 2, None, "stalled")], T0, T0 + HOUR, "line1")
    assert fraction == pytest.approx(0.5) and out[0].end == T0 + HOUR


def test_other_lines_gaps_do_not_count():
    assert coverage([row("line2", T0, T0 + HOUR, "dead")], T0, T0 + HOUR, "line1") == (1.0, [])


def test_gaps_outside_the_window_do_not_count():
    assert coverage([row("line1", T0 - 200, T0 - 100, "dead")], T0, T0 + HOUR, "line1") == (1.0, [])


# --- the report ---

@pytest.fixture
def report():
    gaps = [row("line1", T0 + 600, T0 + 660.25, "no_device"), row("line1", T0 + 1800, T0 + 1800.001, "overrun")]
    return coverage_report(gaps, ["line1", "line2"], T0, T0 + HOUR)


def test_the_table_lists_every_line_and_every_gap_with_its_reason(report):
    text = render_coverage(report)
    assert "coverage from 2026-11-28T00:00:00.000Z to 2026-11-28T01:00:00.000Z" in text
    assert "2026-11-28T00:10:00.000Z  2026-11-28T00:11:00.250Z    0:01:00.250  no_device" in text
    assert "2026-11-28T00:30:00.000Z  2026-11-28T00:30:00.001Z    0:00:00.001  overrun" in text
    assert "line2  100.000 % covered  (no gaps)" in text
    assert "line1   98.326 % covered  (0:01:00.251 missing in 2 gaps)" in text


def test_a_line_with_any_gap_never_shows_as_fully_covered():
    report = coverage_report([row("line1", T0, T0 + 0.001, "overrun")], ["line1"], T0, T0 + 24 * HOUR)
    assert "99.999 %" in render_coverage(report)


def test_the_json_report_has_fractions_and_gaps(report):
    doc = json.loads(render_coverage_json(report))
    assert doc["since"] == "2026-11-28T00:00:00.000Z"
    line1, line2 = doc["lines"]
    assert line2 == {"line": "line2", "covered_fraction": 1.0, "missing_s": 0.0, "gaps": []}
    assert line1["gaps"][0] == {"started_at": "2026-11-28T00:10:00.000Z", "ended_at": "2026-11-28T00:11:00.250Z",
                                "duration_s": 60.25, "reason": "no_device"}


def test_gaps_are_loaded_from_the_index_when_they_overlap_the_window(gaps, index):
    gaps.open("line1", "dead", at=T0 - 50)
    gaps.close("line1", at=T0 + 50)
    gaps.open("line1", "dead", at=T0 - 500)
    gaps.close("line1", at=T0 - 400)
    gaps.open("line2", "stalled", at=T0 + 100)  # still open
    loaded = load_gaps(index, T0, T0 + HOUR)
    assert [(r["line"], r["started_at"]) for r in loaded] == [("line1", iso(T0 - 50)), ("line2", iso(T0 + 100))]
    assert [r["line"] for r in load_gaps(index, T0, T0 + HOUR, line="line2")] == ["line2"]
