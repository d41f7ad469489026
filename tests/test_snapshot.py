"""The health snapshot: exactly the contract's document, written atomically, shown to humans."""

from __future__ import annotations

import json
import os
import stat

import pytest

from linetap.alarms import Alarm
from linetap.cli.render import render_status
from linetap.clock import iso, parse_iso
from linetap.health.snapshot import (DiskStatus, LineStatus, build_snapshot, line_state, line_states, read_snapshot,
                                     significant, significant_of, write_snapshot)

NOW = parse_iso("2026-11-28T15:30:00.125Z")
MB = 1024 * 1024


def alarm(code: str, line: str | None = None, severity: str = "critical", detail: str = "") -> Alarm:
    return Alarm(code, severity, line, NOW - 60, None, detail)


def snapshot(**kw):
    args = dict(
        recorder_id="shop-01", version="0.1.0", now=NOW, started_at=NOW - 3600.25,
        lines=[LineStatus("line1", recording=True, level_dbfs=-23.456, last_audio_at=NOW - 0.02),
               LineStatus("line2", level_dbfs=-120.0, last_audio_at=NOW - 65),
               LineStatus("line3", enabled=False)],
        alarms=[alarm("LINE_DEAD", "line2", detail="digital silence"),
                alarm("CLOCK_UNSYNCED", severity="warning")],
        disk=DiskStatus(free_bytes=2048 * MB, used_bytes=512 * MB + MB // 2, recordings=42, hours_left=123.456),
        clock_synced=False,
    )
    args.update(kw)
    return build_snapshot(**args)


def test_the_snapshot_has_the_contracts_fields():
    doc = snapshot()
    assert {"ts", "id", "version", "uptime_s", "lines", "disk", "alarms"} <= set(doc)
    assert (doc["ts"], doc["id"], doc["version"], doc["uptime_s"]) == \
        ("2026-11-28T15:30:00.125Z", "shop-01", "0.1.0", 3600.2)
    assert doc["disk"] == {"free_mb": 2048.0, "used_mb": 512.5, "recordings": 42, "hours_left": 123.5}
    assert doc["alarms"] == ["CLOCK_UNSYNCED", "LINE_DEAD"]
    assert doc["clock_synced"] is False


def test_each_line_has_state_level_last_audio_and_alarms():
    lines = snapshot()["lines"]
    assert lines["line1"] == {"state": "recording", "level_dbfs": -23.5,
                              "last_audio_at": iso(NOW - 0.02), "alarms": []}
    assert lines["line2"] == {"state": "fault", "level_dbfs": -120.0,
                              "last_audio_at": iso(NOW - 65), "alarms": ["LINE_DEAD"]}
    assert lines["line3"] == {"state": "disabled", "level_dbfs": None, "last_audio_at": None, "alarms": []}


def test_the_snapshot_is_plain_json():
    doc = snapshot()
    assert json.loads(json.dumps(doc)) == doc


def test_alarm_details_carry_severity_and_onset():
    details = snapshot()["alarm_details"]
    assert details[0]["code"] in ("LINE_DEAD", "CLOCK_UNSYNCED")
    assert {d["code"]: d["severity"] for d in details} == {"LINE_DEAD": "critical", "CLOCK_UNSYNCED": "warning"}


def test_unknown_disk_figures_are_null():
    assert snapshot(disk=None)["disk"] == {"free_mb": None, "used_mb": None, "recordings": None,
                                           "hours_left": None}
    assert snapshot(disk=DiskStatus(1, 1, 0, None))["disk"]["hours_left"] is None


@pytest.mark.parametrize("enabled, recording, alarms, state", [
    (False, True, ["LINE_DEAD"], "disabled"),
    (True, True, ["LINE_NO_DEVICE"], "fault"),
    (True, False, ["LINE_DEAD"], "fault"),
    (True, True, ["LINE_CLIPPING", "LINE_OVERRUN"], "recording"),
    (True, False, ["LINE_OVERRUN"], "idle"),
    (True, False, [], "idle"),
])
def test_a_line_is_in_fault_only_while_it_is_not_being_captured(enabled, recording, alarms, state):
    assert line_state(enabled, recording, alarms) == state


def test_a_change_of_state_or_alarms_is_significant_but_a_level_is_not():
    base = significant(snapshot())
    assert significant(snapshot(now=NOW + 5, lines=[
        LineStatus("line1", recording=True, level_dbfs=-40.0, last_audio_at=NOW),
        LineStatus("line2", level_dbfs=-120.0), LineStatus("line3", enabled=False)])) == base
    assert significant(snapshot(alarms=[alarm("CLOCK_UNSYNCED", severity="warning")])) != base
    assert significant(snapshot(lines=[LineStatus("line1"), LineStatus("line2"),
                                       LineStatus("line3", enabled=False)])) != base


@pytest.mark.parametrize("lines, alarms", [
    ([LineStatus("line1", recording=True), LineStatus("line2"), LineStatus("line3", enabled=False)],
     [alarm("LINE_DEAD", "line2"), alarm("CLOCK_UNSYNCED", severity="warning")]),
    ([LineStatus("b", recording=True), LineStatus("a")], []),
    ([LineStatus("b"), LineStatus("a", recording=True)],
     [Alarm("LINE_OVERRUN", "warning", "a", NOW - 5, None, ""), Alarm("LINE_NO_DEVICE", "critical", "b", NOW - 9, None, ""),
      Alarm("LINE_CLIPPING", "warning", "a", NOW - 9, None, ""), Alarm("DISK_LOW", "warning", None, NOW - 1, None, "")]),
])
def test_what_the_health_thread_compares_each_tick_is_the_documents_significant_part(lines, alarms):
    """The health thread decides "publish now?" and the LEDs from ``line_states`` and ``significant_of``
    ten times a second, without building the document: they must say exactly what the document would."""
    doc = snapshot(lines=lines, alarms=alarms)
    states = line_states(lines, alarms)
    assert significant_of(states, alarms) == significant(doc)
    assert {n: st for n, (st, _) in states.items()} == {n: ln["state"] for n, ln in doc["lines"].items()}
    assert {n: list(codes) for n, (_, codes) in states.items()} == {n: ln["alarms"] for n, ln in doc["lines"].items()}


# --- the file ---

def test_a_written_snapshot_reads_back_the_same(tmp_path):
    path = tmp_path / "health.json"
    write_snapshot(path, snapshot())
    assert read_snapshot(path) == snapshot()


def test_the_snapshot_file_is_readable_by_the_group_only(tmp_path):
    path = tmp_path / "health.json"
    write_snapshot(path, snapshot())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_writing_leaves_no_temporary_files_and_replaces_the_old_snapshot(tmp_path):
    path = tmp_path / "health.json"
    write_snapshot(path, snapshot(recorder_id="old"))
    write_snapshot(path, snapshot())
    assert os.listdir(tmp_path) == ["health.json"]
    assert read_snapshot(path)["id"] == "shop-01"


def test_no_snapshot_reads_as_none(tmp_path):
    assert read_snapshot(tmp_path / "health.json") is None


# --- for humans ---

def test_the_status_text_shows_lines_disk_clock_and_alarms():
    text = render_status(snapshot(), now=NOW + 2)
    assert "linetap shop-01  version 0.1.0  up 1h 00m  snapshot 2026-11-28T15:30:00.125Z (2 s ago)" in text
    assert "clock:  NOT synchronised" in text
    assert "disk:   2048 MB free, 512.5 MB in 42 recordings, about 123.5 h of recording left" in text
    assert "line2  fault      -120.0 dBFS  last audio 2026-11-28T15:28:55.125Z  LINE_DEAD" in text
    assert "line3  disabled        - dBFS  last audio never" in text
    assert "CRITICAL LINE_DEAD line2 since 2026-11-28T15:29:00.125Z: digital silence" in text


def test_a_stale_snapshot_says_the_recorder_is_not_updating_it():
    text = render_status(snapshot(), now=NOW + 300, stale_after_s=90)
    assert "WARNING: the snapshot is 300 s old" in text


def test_no_alarms_says_so():
    assert "alarms: none" in render_status(snapshot(alarms=[]))


def test_the_snapshot_carries_the_checkpoint_and_the_background_checks_last_full_pass():
    from linetap.health.snapshot import EvidenceStatus
    cp = {"id": "box", "ts": "2026-01-01T00:00:00.000Z", "length": 3, "head": "ab" * 32, "key": "cd" * 32,
          "signature": "ef" * 64}
    doc = snapshot(checkpoint=cp, evidence=EvidenceStatus("abcd-ef01-2345-6789", 1_767_225_600.0, True, 12))
    assert (doc["checkpoint"], doc["evidence"]) == (cp, {"key_fingerprint": "abcd-ef01-2345-6789",
                                                         "last_full_pass": "2026-01-01T00:00:00.000Z",
                                                         "last_full_pass_ok": True, "rehashed": 12})
    assert snapshot()["evidence"] == {"key_fingerprint": None, "last_full_pass": None, "last_full_pass_ok": None,
                                      "rehashed": 0}
