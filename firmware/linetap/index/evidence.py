"""The evidence tables' queries: the hash chain, its salts, legal holds and the access audit.

Named by what they mean; :mod:`linetap.evidence` decides, these read and write. The tables
and their append-only triggers are in :mod:`linetap.index.schema`. Writes that belong
together run inside the caller's :meth:`Index.write_transaction`.
"""

from __future__ import annotations

import json
from typing import Any

from .db import Index, json_list, json_list_text

# --- chain ---


def chain_head(index: Index) -> dict[str, Any] | None:
    """{seq, hash} of the newest chain entry, None for an empty chain."""
    rows = index.query("select seq, hash from chain order by seq desc limit 1")
    return rows[0] if rows else None


def chain_append(index: Index, *, seq: int, kind: str, call_id: int | None, at: str, payload: str,
                 digest: str, prev_hash: str, hash: str) -> None:
    """Insert one chain entry (``payload`` already canonical JSON)."""
    index.execute("insert into chain (seq, kind, call_id, at, payload, digest, prev_hash, hash) "
                  "values (?, ?, ?, ?, ?, ?, ?, ?)", [seq, kind, call_id, at, payload, digest, prev_hash, hash])


def chain_newest_recording(index: Index, call_id: int) -> dict[str, Any] | None:
    """The newest ``recording`` entry of ``call_id`` (ids can be reused once a call is deleted)."""
    rows = index.query("select * from chain where call_id = ? and kind = 'recording' "
                       "order by seq desc limit 1", [call_id])
    return rows[0] if rows else None


def chain_newest_for_call(index: Index, call_id: int) -> dict[str, Any] | None:
    """The newest entry for ``call_id`` that changes whether it exists (recording, deletion, erasure;
    not a hold, release or audit entry that merely names it)."""
    rows = index.query("select * from chain where call_id = ? and kind in ('recording', 'deletion', 'erasure') "
                       "order by seq desc limit 1", [call_id])
    return rows[0] if rows else None


def chain_newest_of_kind(index: Index, kind: str) -> dict[str, Any] | None:
    """The newest entry of ``kind`` (e.g. the last ``config`` applied)."""
    rows = index.query("select * from chain where kind = ? order by seq desc limit 1", [kind])
    return rows[0] if rows else None


def chain_entries(index: Index, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` entries after ``after_seq``, in order (one page of a full read)."""
    return index.query("select * from chain where seq > ? order by seq limit ?", [after_seq, limit])


def chain_links_after(index: Index, seq: int) -> list[dict[str, Any]]:
    """{seq, digest, hash} of every entry after ``seq``."""
    return index.query("select seq, digest, hash from chain where seq > ? order by seq", [seq])


def calls_unchained(index: Index) -> list[int]:
    """Ids of finished calls whose newest chain entry is not a ``recording`` one (never chained,
    or chained before a deletion freed the id), oldest first."""
    rows = index.query(
        "select id from calls c where c.status != 'recording' and coalesce((select kind from chain "
        "where chain.call_id = c.id and kind in ('recording', 'deletion', 'erasure') order by seq desc limit 1), '') "
        "!= 'recording' order by id")
    return [r["id"] for r in rows]


# --- a number as another call's forwarded-from number or waiting caller (privacy erasure) ---


def clear_number_from_other_calls(index: Index, number: str) -> list[int]:
    """Null ``number`` where it is not a call's caller but its ``caller_redirected_from`` or one of
    its ``waiting_callers`` (that entry's number and name; when it came, ``at_s``, stays). Returns
    the ids of the calls changed, oldest first. One write transaction. The rows are found by the
    number's JSON text in the column, then checked entry by entry (a hand-edited row with other
    spacing is still found)."""
    with index.write_transaction():
        rows = index.query("select id, caller_redirected_from, waiting_callers from calls "
                           "where caller_redirected_from = ? or instr(waiting_callers, ?) > 0 order by id",
                           [number, json.dumps(number)])
        changed: list[int] = []
        for r in rows:
            waiting = json_list(r["waiting_callers"])
            cleared = [{**w, "number": None, "name": None} if isinstance(w, dict) and w.get("number") == number
                       else w for w in waiting]
            if r["caller_redirected_from"] != number and cleared == waiting:
                continue
            redirected = None if r["caller_redirected_from"] == number else r["caller_redirected_from"]
            index.execute("update calls set caller_redirected_from = ?, waiting_callers = ? where id = ?",
                          [redirected, json_list_text(cleared), r["id"]])
            changed.append(r["id"])
    return changed


# --- salts of the commitments to callers' numbers ---


def salt_set(index: Index, call_id: int, salt: str) -> None:
    index.execute("insert or replace into chain_salts (call_id, salt) values (?, ?)", [call_id, salt])


def salt_of(index: Index, call_id: int) -> str | None:
    rows = index.query("select salt from chain_salts where call_id = ?", [call_id])
    return rows[0]["salt"] if rows else None


def salts(index: Index) -> dict[int, str]:
    """Every salt, by call id."""
    return {r["call_id"]: r["salt"] for r in index.query("select call_id, salt from chain_salts")}


# --- legal holds ---


def call_exists(index: Index, call_id: int) -> bool:
    return bool(index.query("select 1 from calls where id = ?", [call_id]))


def is_held(index: Index, call_id: int) -> bool:
    return bool(index.query("select 1 from holds where call_id = ?", [call_id]))


def hold_add(index: Index, call_id: int, *, held_at: str, held_by: str, reason: str | None) -> None:
    index.execute("insert into holds (call_id, held_at, held_by, reason) values (?, ?, ?, ?)",
                  [call_id, held_at, held_by, reason])


def hold_remove(index: Index, call_id: int) -> None:
    index.execute("delete from holds where call_id = ?", [call_id])


def hold_of(index: Index, call_id: int) -> dict[str, Any] | None:
    """The hold on ``call_id`` {call_id, held_at, held_by, reason}, or None."""
    rows = index.query("select * from holds where call_id = ?", [call_id])
    return rows[0] if rows else None


def holds(index: Index) -> list[dict[str, Any]]:
    """Every hold {call_id, held_at, held_by, reason}, by call id."""
    return index.query("select * from holds order by call_id")


# --- access audit ---


def audit_append(index: Index, *, at: str, who: str, action: str, call_id: int | None,
                 detail: str | None) -> None:
    index.execute("insert into audit (at, who, action, call_id, detail) values (?, ?, ?, ?, ?)",
                  [at, who, action, call_id, detail])


def audit_rows(index: Index, call_id: int | None = None) -> list[dict[str, Any]]:
    """Audit rows in the order written; only those of ``call_id`` if given."""
    if call_id is None:
        return index.query("select * from audit order by id")
    return index.query("select * from audit where call_id = ? order by id", [call_id])


# --- checkpoints and the background check ---


def chain_entry(index: Index, seq: int) -> dict[str, Any] | None:
    """The entry ``seq`` (every column), None if the chain has no such entry."""
    rows = index.query("select * from chain where seq = ?", [seq])
    return rows[0] if rows else None


def chain_recordings_after(index: Index, seq: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` ``recording`` entries after ``seq`` whose call was not removed since (the files
    the background check re-hashes, a slice at a time)."""
    return index.query(
        "select c.* from chain c where c.seq > ? and c.kind = 'recording' and not exists (select 1 from chain r "
        "where r.call_id = c.call_id and r.seq > c.seq and r.kind in ('recording', 'deletion', 'erasure')) "
        "order by c.seq limit ?", [seq, limit])


def finished_calls_count(index: Index) -> int:
    """How many finished recordings the index holds (sizes the background check's slice)."""
    return int(index.query("select count(*) as n from calls where status != 'recording'")[0]["n"])


# --- erasures asked for on the web (table erase_requests, migration 4) ---


def erase_request_add(index: Index, *, requested_at: str, requested_by: str, address: str | None, reason: str,
                      scope: str, call_id: int | None, number: str | None) -> int:
    """Insert a pending request; returns its id. Call inside the caller's write transaction (the id
    is ``last_insert_rowid()`` of this connection, read under the same lock)."""
    index.execute("insert into erase_requests (requested_at, requested_by, address, reason, scope, call_id, number, "
                  "state) values (?, ?, ?, ?, ?, ?, ?, 'pending')",
                  [requested_at, requested_by, address, reason, scope, call_id, number])
    return int(index.query("select last_insert_rowid() as id")[0]["id"])


def erase_request(index: Index, request_id: int) -> dict[str, Any] | None:
    rows = index.query("select * from erase_requests where id = ?", [request_id])
    return rows[0] if rows else None


def erase_requests_page(index: Index, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """(total, one page newest first) of every request."""
    total = int(index.query("select count(*) as n from erase_requests")[0]["n"])
    return total, index.query("select * from erase_requests order by id desc limit ? offset ?", [limit, offset])


def erase_requests_pending(index: Index, *, with_errors: bool) -> list[dict[str, Any]]:
    """Pending requests, oldest first; those whose last attempt failed only if ``with_errors``
    (one indexed lookup when there are none: the housekeeping thread asks every second)."""
    return index.query("select * from erase_requests where state = 'pending'"
                       + ("" if with_errors else " and error is null") + " order by id")


def erase_request_progress(index: Index, request_id: int, *, result: str | None, error: str | None) -> None:
    """A pending request's partial result (some calls still recording) or its last error."""
    index.execute("update erase_requests set result = ?, error = ? where id = ? and state = 'pending'",
                  [result, error, request_id])


def erase_request_done(index: Index, request_id: int, *, done_at: str, result: str) -> None:
    """Mark a request done with its result, and forget the number it named."""
    index.execute("update erase_requests set state = 'done', done_at = ?, result = ?, error = null, number = null "
                  "where id = ?", [done_at, result, request_id])


def call_ids_of_number_started_before(index: Index, number: str, before: str) -> list[int]:
    """Ids of the calls from ``number`` that started before ``before`` (ISO UTC), oldest first: what an
    erasure of the number asked for at ``before`` covers."""
    return [r["id"] for r in index.query("select id from calls where caller_number = ? and started_at < ? "
                                         "order by id", [number, before])]


def call_states(index: Index, call_ids: list[int]) -> dict[int, dict[str, Any]]:
    """{call id: {status, held}} of those of ``call_ids`` the index still holds."""
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(call_ids), 500):  # a statement's bound parameters stay few
        chunk = call_ids[i:i + 500]
        rows = index.query("select c.id, c.status, h.call_id is not null as held from calls c left join holds h "
                           f"on h.call_id = c.id where c.id in ({','.join('?' * len(chunk))})", chunk)
        out.update({r["id"]: {"status": r["status"], "held": bool(r["held"])} for r in rows})
    return out
