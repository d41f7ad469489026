"""Alarm catalogue and manager: raise at once, clear after a quiet period, one row per fault."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from linetap.alarms import CATALOGUE, CODES, Alarm, AlarmManager, severity
from linetap.clock import iso
from linetap.index.db import Index

CONTRACT_CODES = {"LINE_NO_DEVICE", "LINE_DEAD", "LINE_OVERRUN", "LINE_CLIPPING", "DISK_LOW",
                  "DISK_WRITE_FAILED", "CLOCK_UNSYNCED", "BROKER_UNREACHABLE", "RECORDER_RESTARTED",
                  "EVIDENCE_INTEGRITY",  # contract "Additions", Evidence
                  "INDEX_REBUILT",  # CONTRACT.md "Additions"
                  "DELETION_HELD",  # README "Alarms": a mass deletion waiting for storage.confirm_deletion
                  # the contract's additions (docs/CONTRACT.md "Alarm codes"), as they are built
                  "EVIDENCE_FAILED", "CONFIG_REJECTED", "CONFIG_ROLLED_BACK",
                  # LEDs or buzzer that cannot be driven (README "Alarms, gaps and LEDs")
                  "GPIO_FAILED",
                  "ARCHIVE_BEHIND"}


class Recorder:
    """A listener that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Alarm]] = []

    def alarm_raised(self, alarm: Alarm) -> None:
        self.events.append(("raised", alarm))

    def alarm_cleared(self, alarm: Alarm) -> None:
        self.events.append(("cleared", alarm))

    def kinds(self) -> list[tuple[str, str]]:
        return [(k, a.code) for k, a in self.events]


@pytest.fixture
def listener() -> Recorder:
    return Recorder()


@pytest.fixture
def alarms(index, clock, listener) -> AlarmManager:
    return AlarmManager(index, clock, clear_after_s=2.0, listener=listener)


def rows(index: Index) -> list[dict]:
    return index.query("select code, severity, line, raised_at, cleared_at, detail from alarms order by id")


# --- catalogue ---

def test_catalogue_has_exactly_the_contract_codes():
    assert set(CODES) == CONTRACT_CODES


def test_every_code_has_a_severity_and_a_meaning():
    for spec in CATALOGUE.values():
        assert spec.severity in ("critical", "warning")
        assert spec.scope in ("line", "system")
        assert spec.meaning


def test_lost_audio_is_critical_and_degraded_audio_a_warning():
    assert [severity(c) for c in ("LINE_NO_DEVICE", "LINE_DEAD", "DISK_WRITE_FAILED", "RECORDER_RESTARTED")] \
        == ["critical"] * 4
    assert [severity(c) for c in ("LINE_OVERRUN", "LINE_CLIPPING", "DISK_LOW", "CLOCK_UNSYNCED",
                                  "BROKER_UNREACHABLE")] == ["warning"] * 5


def test_an_unknown_code_is_refused(alarms):
    with pytest.raises(ValueError, match="unknown alarm code"):
        alarms.set("LINE_ON_FIRE", "line1", True)


def test_a_line_alarm_without_a_line_is_refused(alarms):
    with pytest.raises(ValueError, match="needs the line"):
        alarms.set("LINE_DEAD", None, True)


# --- raising ---

def test_the_first_active_report_raises_at_once_with_the_onset_time(alarms, clock, listener, index):
    onset = clock.wall() - 0.5
    alarms.set("LINE_DEAD", "line1", True, "digital silence", at=onset)
    assert listener.kinds() == [("raised", "LINE_DEAD")]
    alarm = listener.events[0][1]
    assert (alarm.code, alarm.severity, alarm.line, alarm.raised_at, alarm.cleared_at, alarm.detail) == \
        ("LINE_DEAD", "critical", "line1", onset, None, "digital silence")
    assert rows(index) == [{"code": "LINE_DEAD", "severity": "critical", "line": "line1",
                            "raised_at": iso(onset), "cleared_at": None, "detail": "digital silence"}]


def test_the_onset_defaults_to_the_clock(alarms, clock, listener):
    alarms.set("CLOCK_UNSYNCED", None, True)
    assert listener.events[0][1].raised_at == clock.wall()


def test_repeated_active_reports_raise_only_once(alarms, listener, index):
    for _ in range(50):
        alarms.set("LINE_DEAD", "line1", True)
    assert listener.kinds() == [("raised", "LINE_DEAD")]
    assert len(rows(index)) == 1


def test_the_same_code_on_two_lines_is_two_alarms(alarms, listener):
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("LINE_DEAD", "line2", True)
    assert [(a.code, a.line) for a in alarms.active()] == [("LINE_DEAD", "line1"), ("LINE_DEAD", "line2")]
    assert alarms.active_codes("line2") == ["LINE_DEAD"]
    assert alarms.active_codes() == ["LINE_DEAD"]


def test_an_inactive_report_for_an_alarm_never_raised_does_nothing(alarms, listener, index):
    alarms.set("LINE_DEAD", "line1", False)
    alarms.tick()
    assert listener.events == [] and rows(index) == []


def test_alarms_are_messages_that_cannot_be_changed(alarms):
    alarms.set("DISK_LOW", None, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        alarms.active()[0].detail = "x"  # type: ignore[misc]


# --- clearing with hysteresis ---

def test_an_alarm_clears_only_after_the_condition_was_quiet_for_clear_after_s(alarms, clock, listener):
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("LINE_DEAD", "line1", False)
    clock.advance(1.9)
    alarms.tick()
    assert alarms.is_active("LINE_DEAD", "line1")
    clock.advance(0.1)
    alarms.tick()
    assert not alarms.is_active("LINE_DEAD", "line1")
    assert listener.kinds() == [("raised", "LINE_DEAD"), ("cleared", "LINE_DEAD")]


def test_cleared_at_is_when_the_condition_ended_not_when_the_quiet_period_ran_out(alarms, clock, index):
    start = clock.wall()
    alarms.set("LINE_NO_DEVICE", "line1", True, at=start)
    clock.advance(10)
    ended = clock.wall()
    alarms.set("LINE_NO_DEVICE", "line1", False, at=ended)
    clock.advance(5)
    alarms.tick()
    assert rows(index)[0]["raised_at"] == iso(start)
    assert rows(index)[0]["cleared_at"] == iso(ended)


def test_a_flapping_fault_produces_one_raise_and_one_clear(alarms, clock, listener, index):
    for _ in range(20):  # on 0.5 s, off 1 s: never quiet for the 2 s it takes to clear
        alarms.set("LINE_DEAD", "line1", True)
        clock.advance(0.5)
        alarms.set("LINE_DEAD", "line1", False)
        clock.advance(1.0)
        alarms.tick()
    clock.advance(2.0)
    alarms.tick()
    assert listener.kinds() == [("raised", "LINE_DEAD"), ("cleared", "LINE_DEAD")]
    assert len(rows(index)) == 1 and rows(index)[0]["cleared_at"] is not None


def test_a_report_also_clears_other_alarms_that_are_due(alarms, clock, listener):
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("LINE_DEAD", "line1", False)
    clock.advance(3)
    alarms.set("DISK_LOW", None, True)  # no tick() needed
    assert alarms.active_codes() == ["DISK_LOW"]


def test_with_clear_after_zero_an_alarm_clears_at_the_inactive_report(index, clock, listener):
    alarms = AlarmManager(index, clock, clear_after_s=0.0, listener=listener)
    alarms.set("BROKER_UNREACHABLE", None, True)
    alarms.set("BROKER_UNREACHABLE", None, False)
    assert listener.kinds() == [("raised", "BROKER_UNREACHABLE"), ("cleared", "BROKER_UNREACHABLE")]


def test_a_cleared_alarm_is_raised_again_as_a_new_row(alarms, clock, index):
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("LINE_DEAD", "line1", False)
    clock.advance(3)
    alarms.tick()
    alarms.set("LINE_DEAD", "line1", True)
    assert [r["cleared_at"] is None for r in rows(index)] == [False, True]


def test_a_clear_is_never_dated_before_its_raise(alarms, clock, index):
    alarms.set("LINE_DEAD", "line1", True, at=clock.wall())
    alarms.set("LINE_DEAD", "line1", False, at=clock.wall() - 5)
    clock.advance(3)
    alarms.tick()
    assert rows(index)[0]["cleared_at"] == rows(index)[0]["raised_at"]


def test_clear_all_clears_everything_at_once_for_shutdown(alarms, clock, listener, index):
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("DISK_LOW", None, True)
    alarms.clear_all()
    assert alarms.active() == []
    assert all(r["cleared_at"] == iso(clock.wall()) for r in rows(index))


# --- details, momentary faults, past intervals ---

def test_a_later_detail_updates_the_row_without_a_new_event(alarms, listener, index):
    alarms.set("LINE_OVERRUN", "line1", True, "160 samples lost")
    alarms.set("LINE_OVERRUN", "line1", True, "480 samples lost")
    assert listener.kinds() == [("raised", "LINE_OVERRUN")]
    assert alarms.active()[0].detail == "480 samples lost"
    assert rows(index)[0]["detail"] == "480 samples lost"


def test_a_momentary_fault_raises_once_and_clears_after_the_quiet_period(alarms, clock, listener):
    alarms.momentary("LINE_OVERRUN", "line1", "160 samples lost")
    clock.advance(1)
    alarms.momentary("LINE_OVERRUN", "line1", "320 samples lost")
    clock.advance(1.5)
    alarms.tick()
    assert alarms.is_active("LINE_OVERRUN", "line1")
    clock.advance(0.5)
    alarms.tick()
    assert listener.kinds() == [("raised", "LINE_OVERRUN"), ("cleared", "LINE_OVERRUN")]


def test_record_interval_writes_a_past_fault_raised_and_cleared(alarms, clock, listener, index):
    down_from, down_to = clock.wall() - 600, clock.wall()
    alarms.record_interval("RECORDER_RESTARTED", None, down_from, down_to, "down for 600 s")
    assert rows(index) == [{"code": "RECORDER_RESTARTED", "severity": "critical", "line": None,
                            "raised_at": iso(down_from), "cleared_at": iso(down_to),
                            "detail": "down for 600 s"}]
    assert listener.kinds() == [("raised", "RECORDER_RESTARTED"), ("cleared", "RECORDER_RESTARTED")]
    assert listener.events[0][1].cleared_at is None
    assert alarms.active() == []


def test_as_dict_gives_iso_times(alarms, clock):
    alarms.set("DISK_LOW", None, True, "3 h left")
    d = alarms.active()[0].as_dict()
    assert d == {"code": "DISK_LOW", "severity": "warning", "line": None, "raised_at": iso(clock.wall()),
                 "cleared_at": None, "detail": "3 h left"}


# --- robustness ---

def test_without_an_index_alarms_are_still_tracked_and_reported(clock, listener):
    alarms = AlarmManager(None, clock, clear_after_s=1.0, listener=listener)
    alarms.set("LINE_DEAD", "line1", True)
    assert alarms.active_codes() == ["LINE_DEAD"] and listener.kinds() == [("raised", "LINE_DEAD")]


def test_a_failing_listener_never_reaches_the_caller(index, clock):
    class Broken:
        def alarm_raised(self, alarm):
            raise RuntimeError("mqtt is down")

        def alarm_cleared(self, alarm):
            raise RuntimeError("mqtt is down")

    alarms = AlarmManager(index, clock, clear_after_s=0.0, listener=Broken())
    alarms.set("LINE_DEAD", "line1", True)
    alarms.set("LINE_DEAD", "line1", False)
    assert len(rows(index)) == 1


def test_an_index_that_cannot_be_written_never_reaches_the_caller_and_the_row_is_written_later(
        index, clock, listener):
    real_raise = index.alarm_raised
    index.alarm_raised = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))  # type: ignore[method-assign]
    alarms = AlarmManager(index, clock, clear_after_s=0.0, listener=listener)
    alarms.set("DISK_WRITE_FAILED", None, True, "ENOSPC")
    assert listener.kinds() == [("raised", "DISK_WRITE_FAILED")]
    index.alarm_raised = real_raise  # type: ignore[method-assign]
    clock.advance(4)
    alarms.set("DISK_WRITE_FAILED", None, False)
    (row,) = rows(index)
    assert row["code"] == "DISK_WRITE_FAILED" and row["cleared_at"] == iso(clock.wall())


def test_reports_from_many_threads_give_one_alarm_per_key(index, clock, listener):
    alarms = AlarmManager(index, clock, clear_after_s=2.0, listener=listener)

    def report(line: str) -> None:
        for i in range(200):
            alarms.set("LINE_DEAD", line, i % 2 == 0)
            alarms.tick()

    threads = [threading.Thread(target=report, args=(f"line{i % 4}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.line for a in alarms.active()) == ["line0", "line1", "line2", "line3"]
    assert len(rows(index)) == 4
    assert sorted(a.line for k, a in listener.events if k == "raised") == ["line0", "line1", "line2", "line3"]


def test_a_listener_may_ask_the_manager_and_even_report_from_its_callback(index, clock):
    seen: list[list[str]] = []

    class Curious:
        def alarm_raised(self, alarm):
            seen.append(manager.active_codes())
            if alarm.code == "DISK_WRITE_FAILED":
                manager.set("DISK_LOW", None, True)  # re-entrant report: must not deadlock

        def alarm_cleared(self, alarm):
            pass

    manager = AlarmManager(index, clock, clear_after_s=2.0, listener=Curious())
    manager.set("DISK_WRITE_FAILED", None, True)
    assert seen == [["DISK_WRITE_FAILED"], ["DISK_LOW", "DISK_WRITE_FAILED"]]


def test_alarms_a_crashed_run_left_raised_end_at_its_last_heartbeat_never_before_raised(index: Index) -> None:
    index.alarm_raised("LINE_DEAD", "critical", "line1", "2026-11-28T15:00:00.000Z", "silence")
    index.alarm_raised("DISK_LOW", "warning", None, "2026-11-28T15:20:00.000Z", "low")
    done = index.alarm_raised("LINE_OVERRUN", "warning", "line1", "2026-11-28T14:00:00.000Z", "x")
    index.alarm_cleared(done, "2026-11-28T14:05:00.000Z")
    assert index.alarms_clear_left_open("2026-11-28T15:10:00.000Z") == 2
    assert [(r["code"], r["cleared_at"]) for r in rows(index)] == [
        ("LINE_DEAD", "2026-11-28T15:10:00.000Z"),
        ("DISK_LOW", "2026-11-28T15:20:00.000Z"),
        ("LINE_OVERRUN", "2026-11-28T14:05:00.000Z"),
    ]
