"""The SQLite adapter: the only module that imports ``sqlite_utils``.

One ``Index`` per process, shared by threads under a lock (writes are rare:
a call's start and end, alarms, a heartbeat a second). WAL mode lets the CLI
read while the recorder writes. Other modules that need a table of their own
use ``Index.table(name)`` / ``Index.query`` instead of importing sqlite_utils.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

CALL_COLUMNS = {
    "id": int, "line": str, "started_at": str, "ended_at": str, "duration_s": float, "path": str,
    "codec": str, "bytes": int, "sha256": str, "caller_number": str, "caller_name": str,
    "dtmf": str, "end_reason": str, "status": str,
}
CONTRACT_FIELDS = tuple(CALL_COLUMNS)
SCHEMA_TABLES = ("calls", "alarms", "gaps", "meta")


class Index:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        new = not self.path.exists()
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0,
                               isolation_level=None)
        if new:
            os.chmod(self.path, 0o640)
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        with self.lock:
            self._wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            if not set(SCHEMA_TABLES) <= set(self.db.table_names()):
                # Another process (the recorder, ``linetap calls``) may be creating the schema
                # right now: take the write lock first, so "no table -> create it" cannot race.
                # (Only then: a reader of a complete index never takes the write lock.)
                with self.write_transaction():
                    self._schema()

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """One write transaction on the shared connection.

        Holds ``lock`` throughout: the connection is shared by threads, and another thread's
        statement must not land inside this transaction. BEGIN IMMEDIATE takes SQLite's write
        lock at once, so two processes (the recorder and a CLI command) writing are serialised.
        """
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _wal(self) -> None:
        # Switching a new database to WAL does not wait on the busy timeout: a second process
        # opening the index at that moment (``linetap calls`` while the recorder starts) gets
        # "database is locked" at once. Retry for a while instead of failing the start.
        for attempt in range(100):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.02)

    def _schema(self) -> None:
        db = self.db
        if "calls" not in db.table_names():
            db["calls"].create({**CALL_COLUMNS, "rate": int, "channels": int}, pk="id",
                               not_null={"line", "started_at", "status"})
            db["calls"].create_index(["started_at"])
            db["calls"].create_index(["line", "started_at"])
            db["calls"].create_index(["caller_number"])
            db["calls"].create_index(["status"])
        if "alarms" not in db.table_names():
            db["alarms"].create({"id": int, "code": str, "severity": str, "line": str,
                                 "raised_at": str, "cleared_at": str, "detail": str}, pk="id")
            db["alarms"].create_index(["raised_at"])
        if "gaps" not in db.table_names():
            db["gaps"].create({"id": int, "line": str, "started_at": str, "ended_at": str,
                               "reason": str}, pk="id")
            db["gaps"].create_index(["line", "started_at"])
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")

    # --- generic access for other modules (no sqlite_utils import elsewhere) ---
    def table(self, name: str) -> Any:
        return self.db[name]

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.db.query(sql, params))

    def execute(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> None:
        with self.lock:
            self.db.execute(sql, params)

    # --- calls ---
    def call_started(self, **row: Any) -> int:
        with self.lock:
            return int(self.db["calls"].insert({**row, "status": "recording"}).last_pk)

    def update_call(self, call_id: int, **fields: Any) -> None:
        with self.lock:
            self.db["calls"].update(call_id, fields)

    def delete_call(self, call_id: int) -> None:
        with self.lock:
            self.db["calls"].delete(call_id)

    def get_call(self, call_id: int) -> dict[str, Any] | None:
        rows = self.query("select * from calls where id = ?", [call_id])
        return rows[0] if rows else None

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

    # --- alarms and gaps ---
    def alarm_raised(self, code: str, severity: str, line: str | None, raised_at: str, detail: str) -> int:
        with self.lock:
            return int(self.db["alarms"].insert({"code": code, "severity": severity, "line": line,
                                                 "raised_at": raised_at, "cleared_at": None,
                                                 "detail": detail}).last_pk)

    def alarm_cleared(self, alarm_id: int, cleared_at: str) -> None:
        self.update_table("alarms", alarm_id, cleared_at=cleared_at)

    def gap(self, line: str, started_at: str, ended_at: str, reason: str) -> int:
        with self.lock:
            return int(self.db["gaps"].insert({"line": line, "started_at": started_at,
                                               "ended_at": ended_at, "reason": reason}).last_pk)

    def update_table(self, table: str, pk: Any, **fields: Any) -> None:
        with self.lock:
            self.db[table].update(pk, fields)

    # --- meta (heartbeat etc.) ---
    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def get_meta(self, key: str) -> str | None:
        rows = self.query("select value from meta where key = ?", [key])
        return rows[0]["value"] if rows else None

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()


def open_index(data_dir: Path) -> Index:
    return Index(Path(data_dir) / "index.db")


def public_call(row: dict[str, Any]) -> dict[str, Any]:
    """A calls row with exactly the contract's fields (what ``linetap calls --json`` prints)."""
    return {k: row.get(k) for k in CONTRACT_FIELDS}
