"""The housekeeping thread's cadence: ``status.json`` at once when what it says changes, else
every ``STATUS_EVERY_S`` (pure rules, then the thread with a real index and files)."""

from __future__ import annotations

import json
import queue

from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock
from linetap.config import load_text
from linetap.health.board import StatusBoard
from linetap.housekeeping import STATUS_EVERY_S, STATUS_FILE, Housekeeping, status_due, status_key
from linetap.index.db import open_index


def _doc(*, state: str = "idle", level: float = -70.0, ts: str = "2026-12-07T05:00:00Z",
         alarms: tuple[str, ...] = (), free_mb: float | None = 100.0, synced: bool | None = True) -> dict:
    return {"ts": ts, "id": "r", "version": "1", "uptime_s": 5.0,
            "lines": {"line1": {"state": state, "level_dbfs": level, "last_audio_at": ts, "alarms": list(alarms)}},
            "disk": {"free_mb": free_mb, "used_mb": 1.0, "recordings": 3, "hours_left": None},
            "alarms": sorted(alarms), "alarm_details": [{"code": a, "line": "line1"} for a in alarms],
            "clock_synced": synced}


def test_status_key_ignores_levels_times_and_uptime():
    a = _doc()
    b = _doc(level=-12.5, ts="2026-12-07T05:00:04Z")
    b["uptime_s"] = 9.0
    assert status_key(a) == status_key(b)


def test_status_key_changes_with_a_state_an_alarm_the_disk_or_the_clock():
    base = status_key(_doc())
    for changed in (_doc(state="recording"), _doc(alarms=("LINE_DEAD",)), _doc(free_mb=99.0),
                    _doc(synced=False), _doc(synced=None)):
        assert status_key(changed) != base


def test_status_due_first_write_on_change_and_every_few_seconds():
    k1, k2 = status_key(_doc()), status_key(_doc(state="recording"))
    assert status_due(k1, None, 100.0, None)  # never written
    assert not status_due(k1, k1, 101.0, 100.0)  # 1 s later, nothing significant changed
    assert not status_due(k1, k1, 100.0 + STATUS_EVERY_S - 0.01, 100.0)
    assert status_due(k1, k1, 100.0 + STATUS_EVERY_S, 100.0)  # the levels and times, refreshed
    assert status_due(k2, k1, 100.5, 100.0)  # a call started: at once


def test_housekeeping_writes_status_when_it_changes_not_every_second(tmp_path):
    cfg = load_text(f"[recorder]\nid = 'r'\ndata_dir = '{tmp_path}'\n[[line]]\nname = 'line1'\npcm = 'x'\n")
    clock = FakeClock(wall=1_795_000_000.0)
    index = open_index(tmp_path)
    alarms = AlarmManager(index, clock, clear_after_s=30.0)
    board = StatusBoard(recorder_id="r", lines=cfg.lines, line_calls={}, alarms=alarms, clock=clock)
    hk = Housekeeping(index=index, data_dir=tmp_path, storage=cfg.storage, health=cfg.health, clock=clock,
                      alarms=alarms, sweeper=None, board=board, to_seal=queue.Queue(), heartbeat_s=1.0)
    path = tmp_path / STATUS_FILE
    try:
        hk.write_status()
        first = json.loads(path.read_text())
        clock.advance(1.0)
        hk.write_status()  # 1 s later, nothing changed: not rewritten
        assert json.loads(path.read_text()) == first
        alarms.set("DISK_LOW", None, True, "test")
        clock.advance(1.0)
        hk.write_status()  # an alarm: at once
        doc = json.loads(path.read_text())
        assert doc["alarms"] == ["DISK_LOW"] and doc["ts"] != first["ts"]
        clock.advance(STATUS_EVERY_S)
        hk.write_status()  # nothing changed, but the snapshot is refreshed every few seconds
        assert json.loads(path.read_text())["ts"] != doc["ts"]
    finally:
        index.close()


def test_the_boards_status_key_is_the_status_key_of_its_snapshot_without_making_it(tmp_path):
    """The housekeeping thread asks every second whether ``status.json`` is due from
    ``StatusBoard.status_key``, which does not make the document: it must be what ``status_key``
    makes of the document, in every state (a call, a line's alarm and a box's, the disk, the clock)."""
    from types import SimpleNamespace
    cfg = load_text(f"[recorder]\nid = 'r'\ndata_dir = '{tmp_path}'\n[[line]]\nname = 'line1'\npcm = 'x'\n"
                    "[[line]]\nname = 'line2'\npcm = 'y'\n[[line]]\nname = 'off'\npcm = 'z'\nenabled = false\n")
    clock = FakeClock(wall=1_795_000_000.0)
    index = open_index(tmp_path)
    alarms = AlarmManager(index, clock, clear_after_s=30.0)
    # What the board reads of a line's LineCalls: recording?, level, last audio.
    line1 = SimpleNamespace(recording=None, level_dbfs=-70.0, last_block_t=None)
    line2 = SimpleNamespace(recording=None, level_dbfs=-62.5, last_block_t=clock.wall())
    board = StatusBoard(recorder_id="r", lines=cfg.lines, line_calls={"line1": line1, "line2": line2},
                        alarms=alarms, clock=clock)
    try:
        keys = []

        def same() -> None:
            assert board.status_key() == status_key(board.snapshot())
            keys.append(board.status_key())
        same()
        line1.recording = object()
        same()
        alarms.set("LINE_DEAD", "line2", True, "no signal")
        same()
        alarms.set("DISK_LOW", None, True, "2.0 h left")
        same()
        board.disk = {"free_mb": 1234.5, "used_mb": 99.9, "recordings": 7, "hours_left": 2.04}
        same()
        board.clock_synced = False
        same()
        line2.level_dbfs, line2.last_block_t = -20.0, clock.wall() + 1  # levels and times: no change
        same()
        assert len(set(keys)) == len(keys) - 1
    finally:
        index.close()
