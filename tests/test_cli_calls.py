"""``linetap calls``: listing recordings from a real index, filtered, as text or as the contract's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linetap.cli import main
from linetap.clock import iso, parse_iso
from linetap.index.db import open_index
from linetap.store.recordings import Recording
from helpers import write_config

CONTRACT_FIELDS = ["id", "line", "started_at", "ended_at", "duration_s", "path", "codec", "bytes", "sha256",
                   "caller_number", "caller_name", "dtmf", "end_reason", "status", "archived_at",
                   "caller_redirected_from", "waiting_callers"]
T = parse_iso("2026-11-28T15:00:00Z")


@pytest.fixture
def cfg(tmp_path: Path, data_dir: Path) -> Path:
    return write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": "null"},
                                                              {"name": "line2", "pcm": "null"}],
                        storage={"codec": "flac"})


def record(data_dir: Path, index, line: str, start: float, seconds: float, *, number: str | None = None,
           name: str | None = None, dtmf: str = "", end_reason: str = "vox_timeout", finish: bool = True,
           redirected_from: str | None = None, waiting: list[dict] | None = None) -> int:
    # A finished call syncs once (the listing reads the index, not the sync points: 390 fsyncs a test otherwise).
    rec = Recording(data_dir, index, line=line, codec="flac", rate=8000, channels=1, started_at=start,
                    sync_interval_s=seconds if finish else 0.5)
    rec.caller_number, rec.caller_name, rec.dtmf = number, name, dtmf
    rec.caller_redirected_from, rec.waiting_callers = redirected_from, waiting or []
    rec.write(np.zeros((int(seconds * 8000), 1), dtype=np.int16))
    if finish:
        rec.finish(end_reason)
    return rec.id


@pytest.fixture
def calls(data_dir: Path) -> dict[str, int]:
    """Five calls on two lines over an afternoon; the last still being recorded."""
    index = open_index(data_dir)
    ids = {
        "a": record(data_dir, index, "line1", T + 0.125, 60, number="0123456789", name="ALICE", dtmf="12#",
                    redirected_from="0307654321",
                    waiting=[{"number": "5559876543", "name": "BOB", "at_s": 12.5}]),
        "b": record(data_dir, index, "line2", T + 600, 30, number="0987654321"),
        "c": record(data_dir, index, "line1", T + 3600, 90, number="0123456789", end_reason="onhook"),
        "d": record(data_dir, index, "line2", T + 7200, 10),
        "e": record(data_dir, index, "line1", T + 9000, 5, finish=False),
    }
    index.close()
    return ids


def calls_json(capsys, cfg: Path, *args: str) -> list[dict]:
    assert main(["calls", "-c", str(cfg), "--json", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "one JSON document on one line"
    return json.loads(out)


def ids_of(rows: list[dict], calls: dict[str, int]) -> list[str]:
    names = {v: k for k, v in calls.items()}
    return [names[r["id"]] for r in rows]


def test_json_has_exactly_the_contract_fields_with_their_types(capsys, cfg, calls, data_dir):
    rows = calls_json(capsys, cfg)
    assert ids_of(rows, calls) == ["a", "b", "c", "d", "e"]
    for row in rows:
        assert list(row) == CONTRACT_FIELDS
    a = rows[0]
    assert isinstance(a["id"], int) and isinstance(a["duration_s"], float) and isinstance(a["bytes"], int)
    assert a["line"] == "line1" and a["codec"] == "flac"
    assert a["started_at"] == "2026-11-28T15:00:00.125Z"
    assert a["ended_at"] == "2026-11-28T15:01:00.125Z"
    assert a["duration_s"] == 60.0
    assert (a["caller_number"], a["caller_name"], a["dtmf"]) == ("0123456789", "ALICE", "12#")
    # A forwarded call's original number and its call-waiting callers (kept since migration 5).
    assert a["caller_redirected_from"] == "0307654321"
    assert a["waiting_callers"] == [{"number": "5559876543", "name": "BOB", "at_s": 12.5}]
    assert (a["end_reason"], a["status"]) == ("vox_timeout", "complete")
    assert a["path"].startswith("recordings/line1/2026/11/28/") and not a["path"].startswith("/")
    assert a["bytes"] == (data_dir / a["path"]).stat().st_size
    assert len(a["sha256"]) == 64
    b = rows[1]
    assert (b["caller_name"], b["dtmf"]) == (None, None)
    assert (b["caller_redirected_from"], b["waiting_callers"]) == (None, [])  # none: a list all the same
    e = rows[4]
    assert e["status"] == "recording"
    assert (e["ended_at"], e["duration_s"], e["sha256"], e["end_reason"]) == (None, None, None, None)
    assert e["waiting_callers"] == []


def test_line_filter(capsys, cfg, calls):
    assert ids_of(calls_json(capsys, cfg, "--line", "line2"), calls) == ["b", "d"]
    assert calls_json(capsys, cfg, "--line", "line9") == []


def test_since_keeps_calls_still_going_at_that_time(capsys, cfg, calls):
    # "c" runs 16:00:00 - 16:01:30: still going at 16:01, so it is listed; "e" has no end yet.
    assert ids_of(calls_json(capsys, cfg, "--since", "2026-11-28T16:01:00Z"), calls) == ["c", "d", "e"]
    assert ids_of(calls_json(capsys, cfg, "--since", "2026-11-28T16:01:31Z"), calls) == ["d", "e"]


def test_until_keeps_calls_that_started_before_it(capsys, cfg, calls):
    assert ids_of(calls_json(capsys, cfg, "--until", "2026-11-28T16:00:00Z"), calls) == ["a", "b"]
    assert ids_of(calls_json(capsys, cfg, "--until", "2026-11-28T16:00:00.001Z"), calls) == ["a", "b", "c"]


def test_times_with_an_offset_or_a_bare_date_are_utc_instants(capsys, cfg, calls):
    # 17:00+01:00 is 16:00Z.
    assert ids_of(calls_json(capsys, cfg, "--until", "2026-11-28T17:00:00+01:00"), calls) == ["a", "b"]
    assert ids_of(calls_json(capsys, cfg, "--since", "2026-11-29"), calls) == ["e"]
    assert ids_of(calls_json(capsys, cfg, "--until", "2026-11-28"), calls) == []


def test_number_filter_is_an_exact_match(capsys, cfg, calls):
    assert ids_of(calls_json(capsys, cfg, "--number", "0123456789"), calls) == ["a", "c"]
    assert calls_json(capsys, cfg, "--number", "012345") == []


def test_filters_combine(capsys, cfg, calls):
    rows = calls_json(capsys, cfg, "--line", "line1", "--number", "0123456789", "--since", "2026-11-28T15:30:00Z",
                      "--until", "2026-11-28T18:00:00Z")
    assert ids_of(rows, calls) == ["c"]


def test_text_output_lists_one_line_per_call(capsys, cfg, calls):
    assert main(["calls", "-c", str(cfg), "--line", "line1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 3  # a heading, then a, c, e
    assert "2026-11-28T15:00:00.125Z" in out[1] and "0123456789" in out[1] and "complete" in out[1]
    assert "recording" in out[3]


def test_no_index_yet_is_an_empty_list(capsys, cfg):
    assert calls_json(capsys, cfg) == []
    assert main(["calls", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == "no recordings match\n"


@pytest.mark.parametrize("arg", ["--since", "--until"])
def test_a_bad_time_is_one_line_and_exit_2(capsys, cfg, arg):
    assert main(["calls", "-c", str(cfg), arg, "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{arg}: not an ISO 8601 date/time: 'yesterday'" in err


def test_as_a_process_while_the_index_is_in_use(cfg, calls, data_dir):
    index = open_index(data_dir)  # the recorder holds the index open (WAL) while the CLI reads it
    try:
        record(data_dir, index, "line2", T + 9500, 1, finish=False)
        p = subprocess.run([sys.executable, "-m", "linetap", "calls", "-c", str(cfg), "--json", "--line", "line2"],
                           capture_output=True, text=True, timeout=30)
    finally:
        index.close()
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["status"] for r in rows] == ["complete", "complete", "recording"]
    assert rows[-1]["started_at"] == iso(T + 9500)
