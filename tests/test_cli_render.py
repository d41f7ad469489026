"""``linetap calls``' table, exactly (the status and coverage tables: test_snapshot.py, test_gaps_coverage.py)."""

from __future__ import annotations

from linetap.cli.render import render_calls


def row(**kw):
    base = {"id": 7, "line": "line1", "started_at": "2026-11-28T15:30:00.125Z", "duration_s": 61.04,
            "caller_number": "0123456789", "caller_name": "ALICE", "status": "complete",
            "path": "line1/2026/11/28/x.opus"}
    return {**base, **kw}


def test_one_line_per_call_under_a_heading():
    assert render_calls([row(), row(id=12, duration_s=None, caller_number=None, status="recording")]) == (
        "    id  line       started (UTC)               dur s  caller           status     path\n"
        "     7  line1      2026-11-28T15:30:00.125Z     61.0  0123456789       complete   line1/2026/11/28/x.opus\n"
        "    12  line1      2026-11-28T15:30:00.125Z        -  ALICE            recording  line1/2026/11/28/x.opus\n")


def test_no_calls_says_so():
    assert render_calls([]) == "no recordings match\n"
