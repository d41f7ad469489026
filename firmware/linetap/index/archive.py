"""The archive's queries: which recordings still need copying off the box, and marking them done.

:mod:`linetap.archive` decides what to copy and when; these read and write ``calls.archived_at``
(migration 2 in :mod:`linetap.index.schema`).
"""

from __future__ import annotations

from typing import Any

from .db import Index

# Finished and chained (so sealed, if encryption is on): the file is final, and its chain entry
# goes into the sidecar.
_FINISHED = ("status != 'recording' and path is not null and sha256 is not null and exists "
             "(select 1 from chain where chain.kind = 'recording' and chain.call_id = calls.id)")


def unarchived(index: Index, limit: int, *, skip: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Up to ``limit`` finished recordings not archived yet, oldest first (not those in ``skip``)."""
    not_in = f" and id not in ({','.join('?' * len(skip))})" if skip else ""
    return index.query(f"select * from calls where archived_at is null and {_FINISHED}{not_in} "
                       "order by started_at, id limit ?", [*skip, limit])


def mark_archived(index: Index, call_id: int, *, at: str, sha256: str) -> bool:
    """Set ``archived_at`` if the row still holds the file that was copied (same sha256: it was not
    sealed or replaced meanwhile); False when it does not."""
    with index.write_transaction():
        rows = index.query("select sha256 from calls where id = ?", [call_id])
        if not rows or rows[0]["sha256"] != sha256:
            return False
        index.execute("update calls set archived_at = ? where id = ?", [at, call_id])
    return True


def backlog(index: Index) -> dict[str, Any]:
    """``{"count", "bytes", "oldest_ended_at"}`` of the finished recordings not archived yet."""
    row = index.query(f"select count(*) as count, coalesce(sum(bytes), 0) as bytes, min(ended_at) as oldest "
                      f"from calls where archived_at is null and {_FINISHED}")[0]
    return {"count": int(row["count"]), "bytes": int(row["bytes"]), "oldest_ended_at": row["oldest"]}


def archived(index: Index) -> list[dict[str, Any]]:
    """Every archived recording {id, path, bytes, sha256, archived_at}, by id (``linetap archive verify``)."""
    return index.query("select id, path, bytes, sha256, archived_at from calls where archived_at is not null "
                       "order by id")


def chain_seq_archived(index: Index) -> int:
    """The last chain entry already copied to the remote (0: none)."""
    return int(index.get_meta("archive_chain_seq") or 0)


def set_chain_seq_archived(index: Index, seq: int) -> None:
    index.set_meta("archive_chain_seq", str(seq))


def last_archived_at(index: Index) -> str | None:
    return index.query("select max(archived_at) as t from calls")[0]["t"]
