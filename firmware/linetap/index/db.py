"""The SQLite adapter: the only module that imports ``sqlite_utils``, and with the rest of
:mod:`linetap.index` the only place that holds SQL (``tests/test_architecture.py`` enforces both).

One ``Index`` per process, shared by threads under a lock (writes are rare:
a call's start and end, alarms, a heartbeat a second). WAL mode lets the CLI
read while the recorder writes. The schema (every table, with numbered migrations)
is :mod:`linetap.index.schema`, applied here when the index opens. Callers use the
named operations below and in :mod:`linetap.index.evidence` / :mod:`linetap.index.retention`
(what a query means, not how it is written); :meth:`Index.query` and :meth:`Index.execute`
remain for those modules and for tests that inspect the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from . import schema

CALL_COLUMNS = {
    "id": int, "line": str, "started_at": str, "ended_at": str, "duration_s": float, "path": str,
    "codec": str, "bytes": int, "sha256": str, "caller_number": str, "caller_name": str,
    "dtmf": str, "end_reason": str, "status": str, "archived_at": str,
    "caller_redirected_from": str, "waiting_callers": list,
}
CONTRACT_FIELDS = tuple(CALL_COLUMNS)
# Held in the index as JSON text (migration 5); given and returned as a list (``[]``: none).
JSON_LIST_COLUMNS = ("waiting_callers",)

INDEX_FILE = "index.db"  # in the data directory

# PRAGMA synchronous levels (sqlite.org/pragma.html#pragma_synchronous).
SYNC_NORMAL = 1
SYNC_FULL = 2


class Index:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        new = not self.path.exists()
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0,
                               isolation_level=None)
        if new:
            # Group linetap writes too: the web interface (its own user in that group, see
            # systemd/linetap-web.service) adds its users, sessions, holds and audit rows. (w-web)
            os.chmod(self.path, 0o660)
        self._db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        try:
            self._open()
        except BaseException:
            conn.close()  # refused (SchemaTooNew) or failed: leave no connection behind
            raise

    @classmethod
    def snapshot(cls, path: Path) -> Index:
        """The index file as it is on the disk, read-only, creating no file (SQLite ``immutable=1``:
        no WAL, no -shm, no locks). For a process that must not leave files the recorder cannot
        write (first boot runs as root) and only needs an estimate: commits still in a WAL (a
        crash before the last checkpoint) are not seen. Not while the recorder runs."""
        self = cls.__new__(cls)
        self.path = Path(path)
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(self.path))}?immutable=1", uri=True,
                               check_same_thread=False, isolation_level=None)
        self._db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        try:
            schema.check_known(schema.version(conn))
        except BaseException:
            conn.close()
            raise
        return self

    def _open(self) -> None:
        with self.lock:
            schema.check_known(schema.version(self._db.conn))  # before any write, even the WAL switch
            self._wal()
            # NORMAL in WAL mode: a commit may be lost to a power cut until the next WAL sync,
            # but the file never corrupts. Writes that must survive use durable_transaction().
            self._db.execute(f"PRAGMA synchronous={SYNC_NORMAL:d}")
            self._db.execute("PRAGMA busy_timeout=10000")
            if schema.version(self._db.conn) < schema.LATEST:
                # Another process (the recorder, ``linetap calls``) may be creating or migrating the
                # schema right now: take the write lock first (migrate() re-reads the version under
                # it), so "old version -> migrate" cannot race. A reader of an index already at
                # LATEST never takes the write lock.
                with self.write_transaction():
                    schema.migrate(self._db.conn)

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """One write transaction on the shared connection.

        Holds ``lock`` throughout: the connection is shared by threads, and another thread's
        statement must not land inside this transaction. BEGIN IMMEDIATE takes SQLite's write
        lock at once, so two processes (the recorder and a CLI command) writing are serialised.
        """
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def durable_transaction(self) -> Iterator[None]:
        """A write transaction that is on the disk when it returns (``synchronous=FULL``).

        The index runs ``synchronous=NORMAL``: in WAL mode a commit then reaches the disk only at
        the next WAL sync, so a power cut can lose the last commits. That is harmless for most
        writes, not for one whose effect outside the database follows at once: a deletion intent
        lost while the file's unlink reached the disk would make the next sweep log a false
        "removed outside linetap" chain entry. FULL syncs the WAL at this commit (and with it
        every earlier commit); the setting is per connection and cannot change inside a
        transaction, so it is set before BEGIN and put back after COMMIT, under the lock.
        """
        with self.lock:
            self._db.execute(f"PRAGMA synchronous={SYNC_FULL:d}")
            try:
                with self.write_transaction():
                    yield
            finally:
                self._db.execute(f"PRAGMA synchronous={SYNC_NORMAL:d}")

    def synchronous(self) -> int:
        """The connection's current ``PRAGMA synchronous`` level (1 NORMAL, 2 FULL)."""
        return int(self.query("PRAGMA synchronous")[0]["synchronous"])

    def schema_version(self) -> int:
        return int(self.query("PRAGMA user_version")[0]["user_version"])

    def _wal(self) -> None:
        # Switching a new database to WAL does not wait on the busy timeout: a second process
        # opening the index at that moment (``linetap calls`` while the recorder starts) gets
        # "database is locked" at once. Retry for a while instead of failing the start.
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.02)

    # --- raw SQL: for linetap.index's own modules and for tests that inspect the file ---
    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._db.query(sql, params))

    def execute(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> None:
        with self.lock:
            self._db.execute(sql, params)

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        if table == "calls":
            row = _calls_in(row)
        with self.lock:
            return int(self._db[table].insert(row).last_pk)

    def _update(self, table: str, pk: Any, fields: dict[str, Any]) -> None:
        if table == "calls":
            fields = _calls_in(fields)
        with self.lock:
            self._db[table].update(pk, fields)

    def table_names(self) -> list[str]:
        with self.lock:
            return list(self._db.table_names())

    # --- calls ---
    def call_started(self, **row: Any) -> int:
        return self._insert("calls", {**row, "status": "recording"})

    def call_recovered(self, **row: Any) -> None:
        """Insert a calls row the salvage rebuilt from a file (with its id and final fields)."""
        self._insert("calls", row)

    def call_rebuilt(self, **row: Any) -> int:
        """Insert a calls row an index rebuild found on the disk (with its old id, if given)."""
        return self._insert("calls", row)

    def update_call(self, call_id: int, **fields: Any) -> None:
        self._update("calls", call_id, fields)

    def delete_call(self, call_id: int) -> None:
        with self.lock:
            self._db["calls"].delete(call_id)

    def get_call(self, call_id: int) -> dict[str, Any] | None:
        rows = self.query("select * from calls where id = ?", [call_id])
        return rows[0] if rows else None

    def calls_by_id(self) -> list[dict[str, Any]]:
        """Every calls row, by id (``linetap verify`` walks them against the chain)."""
        return self.query("select * from calls order by id")

    def call_ids_by_number(self, number: str) -> list[int]:
        """Ids of every call from ``number``, oldest first (a privacy erasure)."""
        return [r["id"] for r in self.query("select id from calls where caller_number = ? order by id", [number])]

    def calls(self, *, line: str | None = None, since: str | None = None, until: str | None = None,
              number: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if line:
            where.append("line = ?"); params.append(line)
        if since:
            where.append("coalesce(ended_at, '9999') >= ?"); params.append(since)
        if until:
            where.append("started_at < ?"); params.append(until)
        if number:
            where.append("caller_number = ?"); params.append(number)
        if status:
            where.append("status = ?"); params.append(status)
        sql = "select * from calls" + (" where " + " and ".join(where) if where else "") + \
              " order by started_at, id"
        return self.query(sql, params)

    def last_call(self) -> dict[str, Any] | None:
        """The most recently ended call (the health document's ``last_call``), or None."""
        rows = self.query("select * from calls where ended_at is not null order by ended_at desc, id desc limit 1")
        return rows[0] if rows else None

    def count_calls_since(self, since: str) -> int:
        """How many calls started at or after ``since`` (ISO, the index's form)."""
        return int(self.query("select count(*) as n from calls where started_at >= ?", [since])[0]["n"])

    # --- alarms and gaps ---
    def alarm_raised(self, code: str, severity: str, line: str | None, raised_at: str, detail: str) -> int:
        return self._insert("alarms", {"code": code, "severity": severity, "line": line,
                                       "raised_at": raised_at, "cleared_at": None, "detail": detail})

    def alarm_cleared(self, alarm_id: int, cleared_at: str) -> None:
        self._update("alarms", alarm_id, {"cleared_at": cleared_at})

    def alarm_detail(self, alarm_id: int, detail: str) -> None:
        """The latest detail of a raised alarm (e.g. the growing count of lost samples)."""
        self._update("alarms", alarm_id, {"detail": detail})

    def alarms_clear_left_open(self, at: str) -> int:
        """At start-up: end every alarm a crashed run left raised at ``at`` (its last heartbeat;
        never before the alarm's own raising). Returns how many."""
        with self.write_transaction():
            n = self.query("select count(*) as n from alarms where cleared_at is null")[0]["n"]
            # ISO strings of one format compare in time order, so max() is the later time.
            self.execute("update alarms set cleared_at = max(raised_at, ?) where cleared_at is null", [at])
        return int(n)

    def gap(self, line: str, started_at: str, ended_at: str | None, reason: str) -> int:
        """Insert a gap (``ended_at`` None while it lasts)."""
        return self._insert("gaps", {"line": line, "started_at": started_at, "ended_at": ended_at,
                                     "reason": reason})

    def gap_closed(self, gap_id: int, ended_at: str) -> None:
        self._update("gaps", gap_id, {"ended_at": ended_at})

    def gaps_close_left_open(self, at: str) -> int:
        """At start-up: complete every gap a crashed run left open at ``at`` (never before the
        gap's own start). Returns how many."""
        with self.write_transaction():
            n = self.query("select count(*) as n from gaps where ended_at is null")[0]["n"]
            self.execute("update gaps set ended_at = max(started_at, ?) where ended_at is null", [at])
        return int(n)

    def gaps_overlapping(self, since: str, until: str, line: str | None = None) -> list[dict[str, Any]]:
        """Gaps (line, started_at, ended_at, reason) overlapping [since, until), by line and start;
        an open gap (``ended_at`` null) lasts until now."""
        sql = ("select line, started_at, ended_at, reason from gaps "
               "where started_at < ? and coalesce(ended_at, '9999') > ?")
        params: list[Any] = [until, since]
        if line:
            sql += " and line = ?"
            params.append(line)
        return self.query(sql + " order by line, started_at", params)

    # --- maintenance ---
    def secure_delete(self, on: bool = True) -> None:
        """From now on, overwrite deleted content with zeros (a privacy erasure); ``on=False`` puts
        SQLite's default back (the recorder's connection lives on after an erasure it carried out,
        and its retention deletions need not zero their pages)."""
        self.execute(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")

    def checkpoint_wal(self) -> None:
        """Copy the WAL into the database and truncate it (so erased rows leave no copy in the WAL)."""
        self.query("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- meta (heartbeat etc.) ---
    def set_meta(self, key: str, value: str) -> None:
        """One statement, one commit. (sqlite-utils' ``upsert`` looked the table up in the schema
        and wrote it in two statements: 1.5 ms of CPU per call on this VM, for the heartbeat every
        second half the housekeeping thread's CPU at 4 lines.)"""
        self.execute('INSERT INTO "meta" ("key", "value") VALUES (?, ?) '
                     'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value"', [key, value])

    def get_meta(self, key: str) -> str | None:
        rows = self.query("select value from meta where key = ?", [key])
        return rows[0]["value"] if rows else None

    def close(self) -> None:
        with self.lock:
            self._db.conn.close()


def open_index(data_dir: Path) -> Index:
    return Index(Path(data_dir) / INDEX_FILE)


def public_call(row: dict[str, Any]) -> dict[str, Any]:
    """A calls row with exactly the contract's fields (what ``linetap calls --json`` prints);
    ``waiting_callers`` as a list (``[]``: none), whether the row holds it as the index's JSON text or
    already as a list."""
    out = {k: row.get(k) for k in CONTRACT_FIELDS}
    for k in JSON_LIST_COLUMNS:
        out[k] = json_list(out[k])
    return out


def json_list(value: Any) -> list[Any]:
    """A JSON-list column's value as a list: ``[]`` for null, or for text that is not a JSON list
    (a row edited by hand must not stop ``linetap calls``)."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def _calls_in(row: dict[str, Any]) -> dict[str, Any]:
    """A calls row (or some of its fields) as the index stores it: a JSON-list column's list as JSON
    text, null when empty (the common case: no call waiting)."""
    if not any(k in row for k in JSON_LIST_COLUMNS):
        return row
    row = dict(row)
    for k in JSON_LIST_COLUMNS:
        if k in row:
            row[k] = json_list_text(row[k])
    return row


def json_list_text(value: Any) -> str | None:
    """A JSON-list column's value as the index stores it: compact JSON text, null when empty."""
    v = json_list(value)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False) if v else None
