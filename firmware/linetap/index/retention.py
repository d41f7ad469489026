"""The retention queries: deletion intents and log, and what the sweeper measures.

:mod:`linetap.retention` decides what to delete and when; these read and write. Writes
that belong together run inside the caller's :meth:`Index.write_transaction` (or
:meth:`Index.durable_transaction` for a deletion intent, see
:mod:`linetap.retention.deletions`).
"""

from __future__ import annotations

from typing import Any, Iterable

from .db import Index

# SQLite's default limit on host parameters is 999 on older builds; 500 ids a query stays under it.
_IDS_PER_QUERY = 500


# --- deletions ---


def deletion_candidate(index: Index, call_id: int) -> dict[str, Any] | None:
    """{path, status, held} of a call about to be deleted (``held`` not None when on hold);
    None if there is no such call."""
    rows = index.query("select c.path, c.status, h.call_id as held from calls c "
                       "left join holds h on h.call_id = c.id where c.id = ?", [call_id])
    return rows[0] if rows else None


def intent_add(index: Index, call_id: int, *, path: str | None, why: str, by: str, detail: str | None,
               queued_at: str) -> None:
    """Step 1 of a deletion: the intent (replaces an older one of the same call)."""
    index.execute("insert or replace into deleting (call_id, path, why, by, detail, queued_at, "
                  "file_missing) values (?, ?, ?, ?, ?, ?, 0)", [call_id, path, why, by, detail, queued_at])


def intents(index: Index, call_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Deletion intents not yet completed (all, or those of ``call_ids``)."""
    if call_ids is None:
        return index.query("select * from deleting order by call_id")
    ids = list(call_ids)
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[i:i + _IDS_PER_QUERY]
        out += index.query(f"select * from deleting where call_id in ({','.join('?' * len(chunk))})", chunk)
    return out


def deletion_logged(index: Index, *, at: str, call_id: int, line: str | None, started_at: str | None,
                    ended_at: str | None, path: str | None, bytes: int | None, sha256: str | None, why: str,
                    by: str | None, detail: str | None) -> None:
    """Append to the ``deletions`` log (append-only)."""
    index.execute(
        "insert into deletions (at, call_id, line, started_at, ended_at, path, bytes, sha256, why, by, "
        "detail) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [at, call_id, line, started_at, ended_at, path, bytes, sha256, why, by, detail])


def call_forgotten(index: Index, call_id: int) -> None:
    """Step 3 of a deletion: the calls row, its commitment salt and its intent go."""
    index.execute("delete from calls where id = ?", [call_id])
    index.execute("delete from chain_salts where call_id = ?", [call_id])
    index.execute("delete from deleting where call_id = ?", [call_id])


def deletions_log(index: Index) -> list[dict[str, Any]]:
    """Every logged deletion, in the order logged."""
    return index.query("select * from deletions order by id")


# --- what the sweeper measures ---


def paths_being_recorded(index: Index) -> list[str]:
    return [r["path"] for r in index.query("select path from calls where status = 'recording' and path is not null")]


def count_being_recorded(index: Index) -> int:
    return int(index.query("select count(*) as n from calls where status = 'recording'")[0]["n"])


def finished_totals(index: Index) -> tuple[int, int]:
    """(number, bytes) of finished recordings: one full pass over calls."""
    r = index.query("select count(*) as n, coalesce(sum(bytes), 0) as b from calls "
                    "where status != 'recording'")[0]
    return int(r["n"]), int(r["b"])


def bytes_recorded_since(index: Index, since: str) -> int:
    """Bytes of every finished recording started at or after ``since``, deleted ones included."""
    done = index.query("select coalesce(sum(bytes), 0) as b from calls where started_at >= ? "
                       "and status != 'recording'", [since])[0]["b"]
    gone = index.query("select coalesce(sum(bytes), 0) as b from deletions where started_at >= ?", [since])[0]["b"]
    return int(done) + int(gone)


def first_recording_start(index: Index) -> str | None:
    """The earliest started_at of any recording, deleted ones included (None: never recorded)."""
    firsts = [r["t"] for r in (index.query("select min(started_at) as t from calls")[0],
                               index.query("select min(started_at) as t from deletions")[0]) if r["t"]]
    return min(firsts) if firsts else None


_PAGE = ("select c.id, c.line, c.started_at, c.bytes, c.status, c.archived_at, h.call_id as held from calls c "
         "left join holds h on h.call_id = c.id ")


def recordings_from(index: Index, started_at: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` recordings {id, line, started_at, bytes, status, held} started at or after
    ``started_at``, oldest first. (``>=`` seeks the started_at index; a row-value comparison
    would make SQLite scan from the start every page.)"""
    return index.query(_PAGE + "where c.started_at >= ? order by c.started_at, c.id limit ?", [started_at, limit])


def recordings_at(index: Index, started_at: str, after_id: int) -> list[dict[str, Any]]:
    """Every recording started exactly at ``started_at`` with an id above ``after_id``, by id."""
    return index.query(_PAGE + "where c.started_at = ? and c.id > ? order by c.id", [started_at, after_id])


def held_finished_bytes(index: Index) -> int:
    return int(index.query("select coalesce(sum(c.bytes), 0) as b from holds h join calls c on c.id = h.call_id "
                           "where c.status != 'recording'")[0]["b"])


_UNHELD = "c.status != 'recording' and c.id not in (select call_id from holds)"


def unheld_bytes_since(index: Index, since: str, *, line: str | None = None,
                       other_than: Iterable[str] = ()) -> int:
    """Bytes of finished, unheld recordings started after ``since``: of ``line`` if given, else of
    every line not in ``other_than``."""
    if line is not None:
        sql, params = "c.line = ? and ", [line]
    else:
        others = list(other_than)
        sql = f"c.line not in ({','.join('?' * len(others))}) and " if others else ""
        params = others
    return int(index.query(f"select coalesce(sum(bytes), 0) as b from calls c where {sql}"
                           f"c.started_at > ? and {_UNHELD}", [*params, since])[0]["b"])
