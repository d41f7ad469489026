"""The evidence and retention tables in the index (writes go through ``Index.write_transaction``).

``chain``, ``audit`` and ``deletions`` are append-only: SQLite triggers refuse
UPDATE and DELETE on them, so no code path of linetap can rewrite history by
mistake. (Someone with write access to ``index.db`` can drop a trigger; the
hash chain is what makes that visible, see :mod:`linetap.evidence.verify`.)

``deleting`` is the intent log of deletions in progress: a deletion is written
there first, then the file is unlinked, then the deletion is logged and the row
removed in one transaction. A crash in between is finished by the next sweep.
"""

from __future__ import annotations

import logging
import weakref

from ..index.db import Index

logger = logging.getLogger(__name__)

APPEND_ONLY = ("chain", "audit", "deletions")

_ready: "weakref.WeakSet[Index]" = weakref.WeakSet()


def ensure_tables(index: Index) -> None:
    """Create the evidence/retention tables, indexes and triggers if missing (idempotent, cheap)."""
    if index in _ready:
        return
    # BEGIN IMMEDIATE: the recorder and a CLI command (or two CLI commands) may
    # start on a fresh index together; "no table -> create it" must not race.
    with index.write_transaction():
        names = set(index.db.table_names())
        if "chain" not in names:
            index.table("chain").create(
                {"seq": int, "kind": str, "call_id": int, "at": str, "payload": str, "digest": str,
                 "prev_hash": str, "hash": str},
                pk="seq", not_null={"kind", "payload", "digest", "prev_hash", "hash"})
            index.table("chain").create_index(["call_id", "kind"])
        if "chain_salts" not in names:
            # Salts for the commitment to a call's private fields (caller number...). Deleting a
            # salt makes the commitment in the chain unlinkable: erasure without breaking the chain.
            index.table("chain_salts").create({"call_id": int, "salt": str}, pk="call_id")
        if "holds" not in names:
            index.table("holds").create({"call_id": int, "held_at": str, "held_by": str, "reason": str},
                                        pk="call_id")
        if "audit" not in names:
            index.table("audit").create({"id": int, "at": str, "who": str, "action": str, "call_id": int,
                                         "detail": str}, pk="id", not_null={"at", "who", "action"})
            index.table("audit").create_index(["call_id"])
            index.table("audit").create_index(["at"])
        if "deletions" not in names:
            index.table("deletions").create(
                {"id": int, "at": str, "call_id": int, "line": str, "started_at": str, "ended_at": str,
                 "path": str, "bytes": int, "sha256": str, "why": str, "by": str, "detail": str},
                pk="id", not_null={"at", "call_id", "why"})
            index.table("deletions").create_index(["started_at"])
            index.table("deletions").create_index(["call_id"])
        if "deleting" not in names:
            index.table("deleting").create(
                {"call_id": int, "path": str, "why": str, "by": str, "detail": str, "queued_at": str,
                 "file_missing": int}, pk="call_id")
        for table in APPEND_ONLY:
            for op in ("UPDATE", "DELETE"):
                index.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    _ready.add(index)
