"""Losing the index without losing the recordings: sidecars, the rebuild, the chain's honest break.

Real files, a real SQLite index; the recorder process itself is in tests/test_index_rebuild_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap.clock import FakeClock, parse_iso
from linetap.config import StorageConfig
from linetap.evidence import chain, hold
from linetap.evidence.finalize import finalize_pending, finalize_recording
from linetap.evidence.verify import verify
from linetap.index.db import Index, open_index
from linetap.index.rebuild import move_aside, open_or_rebuild, problem
from linetap.retention import deletions
from linetap.store.recordings import SIDECAR, Recording, read_sidecar, sidecar_path

RATE = 8000
PLAIN = StorageConfig(codec="wav")


def make_call(index: Index, data_dir: Path, clock: FakeClock, *, number: str | None = None,
              seconds: float = 1.0, finalize: bool = True) -> dict[str, Any]:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.set_caller(number, "ALICE" if number else None)
    rec.dtmf = "12#"
    tone = (np.sin(np.arange(int(seconds * RATE)) * 0.3) * 8000).astype(np.int16).reshape(-1, 1)
    rec.write(tone)
    row = rec.finish("onhook")
    if finalize:
        finalize_recording(index, data_dir, row, PLAIN, clock=clock)
    clock.advance(60)
    return index.get_call(row["id"]) or {}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def three(index: Index, data_dir: Path, clock: FakeClock) -> list[dict[str, Any]]:
    """Three finished, chained recordings; the second on legal hold."""
    rows = [make_call(index, data_dir, clock, number=f"555000{i}", seconds=0.5 + i) for i in range(3)]
    hold.hold(index, rows[1]["id"], reason="court order 7", who="alice", clock=clock)
    return rows


def calls_by_path(data_dir: Path) -> dict[str, dict[str, Any]]:
    idx = open_index(data_dir)
    try:
        return {r["path"]: r for r in idx.calls()}
    finally:
        idx.close()


# --- sidecars --------------------------------------------------------------------------------------

def test_a_finished_recording_has_a_sidecar_with_its_row_hold_and_chain_entry(index, data_dir, three):
    row = three[1]
    doc = json.loads(sidecar_path(data_dir / row["path"]).read_text())
    entry = chain.live_entry(index, row["id"])
    assert entry is not None
    assert {k: doc[k] for k in ("line", "started_at", "ended_at", "duration_s", "path", "codec", "caller_number",
                                "caller_name", "dtmf", "end_reason", "status", "sha256", "bytes", "call_id")} == \
        {"line": "line1", "started_at": row["started_at"], "ended_at": row["ended_at"],
         "duration_s": row["duration_s"], "path": row["path"], "codec": "wav", "caller_number": "5550001",
         "caller_name": "ALICE", "dtmf": "12#", "end_reason": "onhook", "status": "complete",
         "sha256": sha(data_dir / row["path"]), "bytes": (data_dir / row["path"]).stat().st_size,
         "call_id": row["id"]}
    assert (doc["rate"], doc["channels"]) == (RATE, 1)
    assert (doc["held"], doc["hold_reason"], doc["held_by"]) == (True, "court order 7", "alice")
    assert (doc["chain_seq"], doc["chain_hash"]) == (entry.seq, entry.hash)


def test_the_sidecar_is_0640_and_is_named_after_the_audio(data_dir, three):
    audio = data_dir / three[0]["path"]
    side = audio.with_name(audio.name + SIDECAR)
    assert side.is_file() and (side.stat().st_mode & 0o777) == 0o640
    assert sidecar_path(audio.with_name(audio.name + ".sealed")) == side


def test_releasing_a_hold_rewrites_the_sidecar(index, data_dir, clock, three):
    hold.release(index, three[1]["id"], who="alice", clock=clock)
    doc = read_sidecar(sidecar_path(data_dir / three[1]["path"]))
    assert doc is not None and (doc["held"], doc["hold_reason"]) == (False, None)


def test_a_deleted_recording_takes_its_sidecar_with_it(index, data_dir, three):
    audio = data_dir / three[0]["path"]
    deletions.delete_recordings(index, data_dir, [(three[0]["id"], "request")], by="test")
    assert not audio.exists() and not sidecar_path(audio).exists()


def test_verify_counts_sidecars_as_part_of_their_recording(index, data_dir, three):
    assert verify(index, data_dir).problems == ()


# --- detecting a corrupt index ---------------------------------------------------------------------

def test_a_sound_index_has_no_problem_and_a_garbage_one_has(index, data_dir, three):
    path = data_dir / "index.db"
    assert problem(path) is None
    index.close()
    path.write_bytes(b"this is not a database, it is SD card bit-rot" * 100)
    assert "not a database" in (problem(path) or "")


def test_a_database_with_a_damaged_page_fails_the_quick_check(index, data_dir, clock):
    for i in range(200):
        index.set_meta(f"k{i}", "x" * 200)
    index.checkpoint_wal()
    index.close()
    path = data_dir / "index.db"
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2: page * 2 + 200] = b"\xa5" * 200  # a torn write in the middle of the file
    path.write_bytes(bytes(data))
    assert problem(path) is not None


def test_a_missing_index_is_no_problem_by_itself(data_dir):
    assert problem(data_dir / "index.db") is None


def test_moving_aside_keeps_the_database_with_its_wal_and_shm(data_dir):
    path = data_dir / "index.db"
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).write_bytes(b"x" + suffix.encode())
    moved = move_aside(path, parse_iso("2026-12-07T05:04:03.250Z"))
    assert moved == "index.db.corrupt-20261207T050403Z"
    assert sorted((p.name, p.read_bytes()) for p in data_dir.iterdir()) == [
        ("index.db.corrupt-20261207T050403Z", b"x"), ("index.db.corrupt-20261207T050403Z-shm", b"x-shm"),
        ("index.db.corrupt-20261207T050403Z-wal", b"x-wal")]


# --- rebuilding ------------------------------------------------------------------------------------

def corrupt(index: Index, data_dir: Path) -> None:
    index.close()
    (data_dir / "index.db").write_bytes(os.urandom(8192))


def test_a_sound_index_is_opened_as_it_is(index, data_dir, clock, three):
    index.close()
    idx, report = open_or_rebuild(data_dir, clock=clock)
    idx.close()
    assert report is None


def test_a_new_box_without_recordings_builds_no_index_from_nothing(data_dir, clock):
    idx, report = open_or_rebuild(data_dir, clock=clock)
    idx.close()
    assert report is None


def test_a_corrupt_index_is_kept_aside_and_rebuilt_with_every_recording(index, data_dir, clock, three):
    before = {r["path"]: r for r in three}
    corrupt(index, data_dir)
    garbage = (data_dir / "index.db").read_bytes()
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        assert report is not None
        assert (report.why, report.recordings, report.from_sidecars, report.held) == ("corrupt", 3, 3, 1)
        assert (data_dir / str(report.moved_to)).read_bytes() == garbage
        rows = {r["path"]: r for r in idx.calls()}
        fields = ("line", "started_at", "ended_at", "duration_s", "codec", "bytes", "sha256", "caller_number",
                  "caller_name", "dtmf", "end_reason", "status")
        assert {p: {k: r[k] for k in fields} for p, r in rows.items()} == \
            {p: {k: r[k] for k in fields} for p, r in before.items()}
        held = [h for h in hold.holds(idx)]
        assert [(rows_id_path(rows, h.call_id), h.reason, h.held_by) for h in held] == \
            [(three[1]["path"], "court order 7", "alice")]
    finally:
        idx.close()


def rows_id_path(rows: dict[str, dict[str, Any]], call_id: int) -> str:
    return next(p for p, r in rows.items() if r["id"] == call_id)


def test_the_chain_records_the_break_and_commits_to_the_files_found(index, data_dir, clock, three):
    old_head = chain.head(index)
    corrupt(index, data_dir)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        first = next(chain.entries(idx))
        assert (first.seq, first.kind, first.call_id, report.chain_seq) == (1, "rebuild", None, 1)
        lines = sorted(f"{r['path']} {sha(data_dir / r['path'])}" for r in three)
        p = first.payload
        assert (p["why"], p["recordings"], p["from_sidecars"], p["held"], p["moved_to"]) == \
            ("corrupt", 3, 3, 1, report.moved_to)
        assert p["files_sha256"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
        # The newest position of the lost chain any sidecar knew: the last recording's entry
        # (the hold came after it; it is a chain entry too, but sidecars keep their recording's).
        last = three[-1]
        doc = read_sidecar(sidecar_path(data_dir / last["path"]))
        assert doc is not None and p["previous"] == {"seq": doc["chain_seq"], "hash": doc["chain_hash"]}
        assert p["previous"]["seq"] == old_head[0] - 1  # the hold's entry is the old head
        # The start-up finalisation chains the rebuilt rows after the break; then all verifies.
        assert len(finalize_pending(idx, data_dir, PLAIN, clock=clock)) == 3
        assert [e.kind for e in chain.entries(idx)] == ["rebuild", "recording", "recording", "recording"]
        assert verify(idx, data_dir).problems == ()
    finally:
        idx.close()


def test_a_deleted_index_is_noticed_and_rebuilt_when_recordings_exist(index, data_dir, clock, three):
    index.close()
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"index.db{suffix}").unlink(missing_ok=True)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        assert report is not None and (report.why, report.moved_to, report.recordings) == ("missing", None, 3)
        assert sorted(r["path"] for r in idx.calls()) == sorted(r["path"] for r in three)
    finally:
        idx.close()


def test_an_empty_index_made_by_the_cli_is_rebuilt_too(index, data_dir, clock, three):
    index.close()
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"index.db{suffix}").unlink(missing_ok=True)
    open_index(data_dir).close()  # `linetap calls` on a box whose index was deleted
    idx, report = open_or_rebuild(data_dir, clock=clock)
    idx.close()
    assert report is not None and report.recordings == 3


def test_a_recording_without_a_sidecar_comes_back_from_its_name_and_header(index, data_dir, clock, three):
    lost = data_dir / three[2]["path"]
    sidecar_path(lost).unlink()
    corrupt(index, data_dir)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        assert report is not None and (report.recordings, report.from_sidecars) == (3, 2)
        (row,) = [r for r in idx.calls() if r["path"] == three[2]["path"]]
        assert (row["id"], row["line"], row["started_at"], row["codec"], row["status"], row["end_reason"]) == \
            (three[2]["id"], "line1", three[2]["started_at"], "wav", "recovered", "recovered")
        assert (row["duration_s"], row["ended_at"]) == (three[2]["duration_s"], three[2]["ended_at"])
        assert (row["bytes"], row["sha256"]) == (lost.stat().st_size, sha(lost))
        assert row["caller_number"] is None  # only the sidecar knew it
    finally:
        idx.close()


def test_a_file_that_changed_since_its_sidecar_is_indexed_as_it_is_now(index, data_dir, clock, three):
    f = data_dir / three[0]["path"]
    with open(f, "ab") as out:
        out.write(b"\0" * 10)
    corrupt(index, data_dir)
    idx, _ = open_or_rebuild(data_dir, clock=clock)
    try:
        (row,) = [r for r in idx.calls() if r["path"] == three[0]["path"]]
        assert (row["bytes"], row["sha256"]) == (f.stat().st_size, sha(f))
    finally:
        idx.close()


def test_a_salvaged_recordings_part_file_is_left_to_the_salvage(index, data_dir, clock, three):
    open_rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1,
                         started_at=clock.wall(), sync_interval_s=0.5)
    open_rec.write(np.zeros((800, 1), dtype=np.int16))
    open_rec.sync_now()
    corrupt(index, data_dir)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    idx.close()
    assert report is not None and report.recordings == 3
    assert open_rec.part.exists()


def test_a_sealed_recording_comes_back_sealed_with_its_caller_from_the_sidecar(index, data_dir, clock, tmp_path):
    from linetap import crypto
    public, _private = crypto.generate_keypair(tmp_path / "keys")
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.set_caller("5559876", "BOB")
    rec.write(np.zeros((RATE, 1), dtype=np.int16))
    row = rec.finish("onhook")
    finalize_recording(index, data_dir, row, StorageConfig(codec="wav", encrypt_to=public), clock=clock)
    sealed = index.get_call(row["id"]) or {}
    assert sealed["path"].endswith(".sealed")
    side = sidecar_path(data_dir / sealed["path"])
    assert side.name == Path(row["path"]).name + SIDECAR and not (data_dir / row["path"]).exists()
    corrupt(index, data_dir)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        assert report is not None and report.from_sidecars == 1
        (back,) = idx.calls()
        assert (back["path"], back["sha256"], back["bytes"], back["caller_number"], back["caller_name"]) == \
            (sealed["path"], sha(data_dir / sealed["path"]), sealed["bytes"], "5559876", "BOB")
    finally:
        idx.close()


def test_an_id_claimed_twice_gets_a_new_one_that_no_unfinished_file_holds(index, data_dir, clock, three):
    # A copy of call 1's file a year earlier (no sidecar): two files named with id 1.
    src = data_dir / three[0]["path"]
    assert src.name.startswith("line1_2026") and src.name.endswith("_1.wav")
    dup = src.with_name(src.name.replace("line1_2026", "line1_2025"))
    dup.write_bytes(src.read_bytes())
    # An unfinished recording with id 4 (the next free one): the salvage will index it by that id.
    open_rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1,
                         started_at=clock.wall(), sync_interval_s=0.5)
    open_rec.write(np.zeros((800, 1), dtype=np.int16))
    open_rec.sync_now()
    assert open_rec.id == 4
    corrupt(index, data_dir)
    idx, report = open_or_rebuild(data_dir, clock=clock)
    try:
        assert report is not None and report.recordings == 4
        assert sorted((r["id"], r["path"] == str(dup.relative_to(data_dir))) for r in idx.calls()) == \
            [(1, False), (2, False), (3, False), (5, True)]  # the sidecar's claim first
    finally:
        idx.close()


def test_a_locked_index_is_not_taken_for_a_corrupt_one(tmp_path):
    import sqlite3
    path = tmp_path / "index.db"
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")  # rollback-journal mode: readers are locked out
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            problem(path, timeout_s=0.05)
    finally:
        holder.execute("rollback")
        holder.close()
    assert problem(path) is None
