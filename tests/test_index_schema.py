"""The index's schema: numbered migrations tracked by PRAGMA user_version.

An index made by the release before migrations (tests/data/index_schema_v0.sql, captured from
sqlite_master of that release's index) must open with every row intact and come out at the
latest version; an index from a newer release must be refused, untouched.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from linetap.index.schema import SchemaTooNew
from linetap.index import schema
from linetap.index.db import Index, public_call

PREVIOUS_RELEASE_DDL = (Path(__file__).parent / "data" / "index_schema_v0.sql").read_text()
CONTRACT_TABLES = ("calls", "alarms", "gaps", "meta")
TRIGGERS = sorted(f"{t}_no_{op}" for t in ("chain", "audit", "deletions", "web_audit") for op in ("update", "delete"))
# Tables later migrations add (empty after a migration): 2, the web interface; 4, its erasure requests.
LATER_TABLES = ("web_users", "web_sessions", "web_login_failures", "web_audit", "erase_requests")


def kept(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``after`` without the (empty) tables of later migrations and without the columns they
    appended (ALTER TABLE ADD COLUMN goes last), to compare with ``before``."""
    assert all(after[t] == [] for t in LATER_TABLES if t not in before)
    return {n: [r[:len(before[n][0])] if before[n] else r for r in rows] for n, rows in after.items() if n in before}


def master(path: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("select type, name, sql from sqlite_master where sql is not null "
                           "order by type, name").fetchall()
    finally:
        con.close()


def statements(ddl: str) -> list[str]:
    """The statements of a schema dump (a trigger's body holds a ';' of its own)."""
    out, cur = [], []
    for line in ddl.splitlines():
        if line.startswith("--"):
            continue
        cur.append(line)
        if line.endswith(";") and (not cur[0].startswith("CREATE TRIGGER") or line.endswith("END;")):
            out.append("\n".join(cur)[:-1])
            cur = []
    return out


def previous_release_index(path: Path, *, tables: tuple[str, ...] | None = None) -> None:
    """An index as the previous release left it: its exact DDL, user_version 0, rows in every table.

    ``tables``: only the statements on these tables (a box that never ran the evidence code).
    """
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    for s in statements(PREVIOUS_RELEASE_DDL):
        if tables is None or any(f'"{t}"' in s or f" ON {t} " in s for t in tables):
            con.execute(s)
    con.execute("insert into calls (id, line, started_at, ended_at, duration_s, path, codec, bytes, sha256, "
                "caller_number, end_reason, status, rate, channels) values (7, 'line1', "
                "'2026-11-28T15:30:00.125Z', '2026-11-28T15:31:00.125Z', 60.0, 'recordings/a.wav', 'wav', 960044, "
                "'ab', '5551234', 'onhook', 'complete', 8000, 1)")
    con.execute("insert into alarms (code, severity, line, raised_at, cleared_at, detail) values "
                "('LINE_DEAD', 'critical', 'line1', '2026-11-28T15:00:00.000Z', null, 'silence')")
    con.execute("insert into gaps (line, started_at, ended_at, reason) values "
                "('line1', '2026-11-28T15:00:00.000Z', null, 'dead')")
    con.execute("insert into meta (key, value) values ('heartbeat', '2026-11-28T15:31:00.000Z')")
    if tables is None:
        con.execute("insert into chain (seq, kind, call_id, at, payload, digest, prev_hash, hash) values "
                    "(1, 'recording', 7, '2026-11-28T15:31:00.200Z', '{}', 'd1', 'h0', 'h1')")
        con.execute("insert into chain_salts (call_id, salt) values (7, 'salt7')")
        con.execute("insert into holds (call_id, held_at, held_by, reason) values "
                    "(7, '2026-11-28T16:00:00.000Z', 'alice', 'court order')")
        con.execute("insert into audit (at, who, action, call_id, detail) values "
                    "('2026-11-28T16:00:00.000Z', 'alice', 'hold', 7, 'court order')")
        con.execute("insert into deletions (at, call_id, line, started_at, why, by) values "
                    "('2026-11-28T17:00:00.000Z', 3, 'line1', '2026-11-01T00:00:00.000Z', 'space', 'linetap')")
        con.execute("insert into deleting (call_id, path, why, by, queued_at, file_missing) values "
                    "(4, 'recordings/b.wav', 'space', 'linetap', '2026-11-28T17:00:00.000Z', 0)")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    con.close()


def dump(path: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        return {n: con.execute(f'select * from "{n}" order by rowid').fetchall() for n in names}
    finally:
        con.close()


def test_migration_1_creates_exactly_the_schema_of_the_previous_release(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "LATEST", 1)
    Index(tmp_path / "new.db").close()
    previous_release_index(tmp_path / "old.db")
    assert master(tmp_path / "new.db") == master(tmp_path / "old.db")


def test_a_fresh_index_is_at_the_latest_version(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.db")
    assert (index.schema_version(), schema.LATEST) == (len(schema.MIGRATIONS), len(schema.MIGRATIONS))


def test_an_index_of_the_previous_release_migrates_with_every_row_intact(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    previous_release_index(path)
    before = dump(path)
    index = Index(path)
    assert index.schema_version() == schema.LATEST
    index.close()
    assert kept(before, dump(path)) == before
    assert sorted(n for t, n, _ in master(path) if t == "trigger") == TRIGGERS


def test_the_append_only_triggers_still_guard_a_migrated_index(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    previous_release_index(path)
    index = Index(path)
    with pytest.raises(sqlite3.IntegrityError, match="chain is append-only"):
        index.execute("update chain set hash = 'x' where seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="deletions is append-only"):
        index.execute("delete from deletions")


def test_an_index_from_before_the_evidence_tables_gains_them_and_keeps_its_calls(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    previous_release_index(path, tables=CONTRACT_TABLES)
    assert {n for t, n, _ in master(path) if t == "table"} == set(CONTRACT_TABLES)
    before = dump(path)
    Index(path).close()
    after = dump(path)
    assert all(after[t] == [] for t in after if t not in before)  # the evidence tables, new and empty
    assert kept(before, after) == before
    assert master(path) == master(_fresh(tmp_path))


def _fresh(tmp_path: Path) -> Path:
    p = tmp_path / "fresh.db"
    Index(p).close()
    return p


def test_opening_a_migrated_index_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    previous_release_index(path)
    Index(path).close()
    schema_then, rows_then = master(path), dump(path)
    Index(path).close()
    assert (master(path), dump(path)) == (schema_then, rows_then)


def test_an_index_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    con.execute("create table calls (id integer primary key, future text)")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew, match=rf"schema version {schema.LATEST + 1}, newer than this linetap "
                                           rf"knows \({schema.LATEST}\)"):
        Index(path)
    con = sqlite3.connect(path)
    assert (con.execute("PRAGMA journal_mode").fetchone()[0], [n for _, n, _ in master(path)]) == ("delete", ["calls"])
    con.close()


def test_later_migrations_are_applied_in_order_after_the_ones_an_index_has(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.db"
    Index(path).close()  # at the latest version
    base = schema.LATEST
    extra = (("CREATE TABLE later (x INTEGER)", "INSERT INTO later VALUES (2)"),
             ("INSERT INTO later SELECT x + 1 FROM later",))
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + extra)
    monkeypatch.setattr(schema, "LATEST", len(schema.MIGRATIONS))
    index = Index(path)
    assert index.schema_version() == base + 2
    assert [r["x"] for r in index.query("select x from later order by x")] == [2, 3]


def test_a_failed_migration_leaves_the_index_at_its_old_version(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.db"
    Index(path).close()
    base = schema.LATEST
    broken = (("CREATE TABLE half (x INTEGER)", "INSERT INTO no_such_table VALUES (1)"),)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + broken)
    monkeypatch.setattr(schema, "LATEST", base + 1)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        Index(path)
    monkeypatch.undo()
    index = Index(path)
    assert (index.schema_version(), "half" in index.table_names()) == (base, False)


_RACE = """
import sys, time
from pathlib import Path
from linetap.index.db import Index, public_call
while time.time() < float(sys.argv[2]):  # all processes go at the same instant
    pass
Index(Path(sys.argv[1])).close()
"""


def test_processes_opening_an_old_index_together_migrate_it_once(tmp_path: Path) -> None:
    # The recorder and a CLI command started together right after an update.
    for attempt in range(2):
        path = tmp_path / f"index{attempt}.db"
        previous_release_index(path)
        before = dump(path)
        go = f"{time.time() + 2.0:.3f}"
        procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(path), go], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        index = Index(path)
        assert index.schema_version() == schema.LATEST
        index.close()
        assert kept(before, dump(path)) == before


def _index_before(migration: tuple, path: Path, monkeypatch: pytest.MonkeyPatch) -> sqlite3.Connection:
    """An index as a box on the release before ``migration`` made it (found by its text: its number may
    change at a merge), with one call in it; a connection to it for more rows."""
    number = schema.MIGRATIONS.index(migration) + 1
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:number - 1])
        m.setattr(schema, "LATEST", number - 1)
        Index(path).close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("insert into calls (id, line, started_at, status, caller_number, archived_at) values "
                "(7, 'line1', '2026-11-28T15:30:00.125Z', 'complete', '5551234', null)")
    return con


def test_the_erase_requests_migration_keeps_every_row_of_the_index_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.db"
    con = _index_before(schema._ERASE_REQUESTS, path, monkeypatch)  # before the web's erasure requests (4)
    con.execute("insert into web_audit (at, user, address, action) values ('2026-11-28T15:31:00.000Z', 'alice', "
                "'10.0.0.2', 'login')")
    con.close()
    before = dump(path)
    index = Index(path)
    assert index.schema_version() == schema.LATEST
    index.close()
    after = dump(path)
    assert after["erase_requests"] == [] and kept(before, after) == before
    assert master(path) == master(_fresh(tmp_path))


def test_the_caller_id_fields_migration_keeps_every_row_and_reads_old_calls_as_having_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.db"
    con = _index_before(schema._CALLER_ID_FIELDS, path, monkeypatch)  # before the caller-ID fields (5)
    con.execute("insert into erase_requests (requested_at, requested_by, reason, scope, call_id, state) values "
                "('2026-11-28T15:31:00.000Z', 'alice', 'asked', 'call', 7, 'pending')")
    con.close()
    before = dump(path)
    index = Index(path)
    assert index.schema_version() == schema.LATEST
    old = index.get_call(7)
    assert (old["caller_redirected_from"], old["waiting_callers"]) == (None, None)  # not kept then: none
    assert public_call(old)["waiting_callers"] == []
    index.update_call(7, caller_redirected_from="0307654321",
                      waiting_callers=[{"number": "5559876543", "name": None, "at_s": 3.5}])
    assert public_call(index.get_call(7))["waiting_callers"] == [{"number": "5559876543", "name": None, "at_s": 3.5}]
    index.update_call(7, caller_redirected_from=None, waiting_callers=[])  # as it was: null, not "[]"
    index.close()
    assert kept(before, dump(path)) == before
    assert master(path) == master(_fresh(tmp_path))


def test_the_erase_requests_table_refuses_an_unknown_scope_or_state_and_a_call_request_without_a_call(
        tmp_path: Path) -> None:
    index = Index(tmp_path / "index.db")
    row = "insert into erase_requests (requested_at, requested_by, reason, scope, call_id, state) values "
    index.execute(row + "('t', 'alice', 'r', 'call', 7, 'pending')")
    for bad in ("('t', 'alice', 'r', 'everything', 7, 'pending')", "('t', 'alice', 'r', 'call', 7, 'lost')",
                "('t', 'alice', 'r', 'call', null, 'pending')"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            index.execute(row + bad)
    index.close()
