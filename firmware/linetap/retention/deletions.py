"""Deleting recordings, crash-safely, with a record of each deletion.

Three steps, so that a power cut at any point leaves nothing that looks like tampering:

1. intent: the calls to delete go into ``deleting`` (one transaction; held calls and calls still
   being written are refused here, under the write lock, so a hold placed a moment after the
   plan was made still wins);
2. the files are unlinked (no lock held);
3. one transaction per batch: a ``deletions`` row (what, when, why, by) and a chain entry
   (``deletion``, or ``erasure`` for a privacy request) per call, the calls row and its
   commitment salt removed, the intent cleared.

:func:`finish_pending` completes steps 2-3 for intents left by a crash; the sweeper runs
it first on every sweep (it is one indexed query when there is nothing to do).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..clock import Clock, SystemClock, iso
from ..evidence import chain
from ..evidence.tables import ensure_tables
from ..index.db import Index

logger = logging.getLogger(__name__)

WHYS = ("space", "retention", "request")


@dataclass(frozen=True, slots=True)
class Deleted:
    call_id: int
    path: str | None
    bytes: int
    why: str
    file_missing: bool


@dataclass(frozen=True, slots=True)
class Refused:
    call_id: int
    reason: str  # held | recording | unknown


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: tuple[Deleted, ...]
    refused: tuple[Refused, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(d.bytes for d in self.deleted)


def delete_recordings(index: Index, data_dir: Path, items: Iterable[tuple[int, str]], *, by: str,
                      detail: str | None = None, clock: Clock | None = None) -> DeleteResult:
    """Delete recordings ``(call_id, why)``; never a held one or one still being written."""
    ensure_tables(index)
    clock = clock or SystemClock()
    items = list(items)
    for _, why in items:
        if why not in WHYS:
            raise ValueError(f"unknown deletion reason {why!r}")
    refused: list[Refused] = []
    queued = iso(clock.wall())
    with index.write_transaction():
        for call_id, why in items:
            rows = index.query("select c.path, c.status, h.call_id as held from calls c "
                               "left join holds h on h.call_id = c.id where c.id = ?", [call_id])
            if not rows:
                refused.append(Refused(call_id, "unknown"))
            elif rows[0]["held"] is not None:
                refused.append(Refused(call_id, "held"))
            elif rows[0]["status"] == "recording":
                refused.append(Refused(call_id, "recording"))
            else:
                index.execute("insert or replace into deleting (call_id, path, why, by, detail, queued_at, "
                              "file_missing) values (?, ?, ?, ?, ?, ?, 0)",
                              [call_id, rows[0]["path"], why, by, detail, queued])
    for r in refused:
        if r.reason == "held":
            logger.info("call %d is on legal hold: not deleted", r.call_id)
    pending = _pending(index, [c for c, _ in items])
    done = _finish(index, data_dir, pending, clock, recovering=False)
    return DeleteResult(tuple(done), tuple(refused))


def finish_pending(index: Index, data_dir: Path, clock: Clock | None = None) -> list[Deleted]:
    """Complete deletions a crash interrupted (their files may or may not be gone already)."""
    ensure_tables(index)
    pending = index.query("select * from deleting order by call_id")
    if not pending:
        return []
    logger.warning("finishing %d deletion(s) interrupted by a restart", len(pending))
    return _finish(index, data_dir, pending, clock or SystemClock(), recovering=True)


def _pending(index: Index, ids: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        out += index.query(f"select * from deleting where call_id in ({','.join('?' * len(chunk))})", chunk)
    return out


def _finish(index: Index, data_dir: Path, pending: list[dict[str, Any]], clock: Clock, *,
            recovering: bool) -> list[Deleted]:
    missing: dict[int, bool] = {}
    dirs: set[Path] = set()
    for p in pending:
        missing[p["call_id"]] = False
        if not p["path"]:
            continue
        f = data_dir / p["path"]
        try:
            f.unlink()
            dirs.add(f.parent)
        except FileNotFoundError:
            # After a crash we may have unlinked it ourselves; otherwise it went behind our back.
            missing[p["call_id"]] = not recovering and not bool(p["file_missing"])
            if missing[p["call_id"]]:
                logger.error("recording %s of call %d was already gone when linetap deleted it",
                             p["path"], p["call_id"])
    at = clock.wall()
    done: list[Deleted] = []
    with index.write_transaction():
        for p in pending:
            call_id = p["call_id"]
            rows = index.query("select * from calls where id = ?", [call_id])
            row = rows[0] if rows else {}
            kind = "erasure" if p["why"] == "request" else "deletion"
            index.execute(
                "insert into deletions (at, call_id, line, started_at, ended_at, path, bytes, sha256, why, by, "
                "detail) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [iso(at), call_id, row.get("line"), row.get("started_at"), row.get("ended_at"), p["path"],
                 row.get("bytes"), row.get("sha256"), p["why"], p["by"],
                 _detail(p["detail"], missing[call_id])])
            chain.append_removal(index, kind, call_id, why=p["why"], by=p["by"], sha256=row.get("sha256"),
                                 file_missing=missing[call_id], at=at)
            index.execute("delete from calls where id = ?", [call_id])
            index.execute("delete from chain_salts where call_id = ?", [call_id])
            index.execute("delete from deleting where call_id = ?", [call_id])
            done.append(Deleted(call_id, p["path"], int(row.get("bytes") or 0), p["why"], missing[call_id]))
    for d in dirs:
        _prune_empty_dirs(d, data_dir / "recordings", at)
    return done


def _detail(detail: str | None, file_missing: bool) -> str | None:
    if not file_missing:
        return detail
    note = "file was already missing (removed outside linetap)"
    return f"{detail}; {note}" if detail else note


def _prune_empty_dirs(d: Path, root: Path, now: float) -> None:
    """Remove empty day/month/year directories (recordings/<line>/YYYY/MM/DD) of the past.

    Only directories whose date is safely past are touched: the recorder creates today's
    directories and then opens a file in them, and must not find one removed in between.
    """
    try:
        parts = d.relative_to(root).parts
    except ValueError:
        return
    if len(parts) != 4:
        return
    today = datetime.fromtimestamp(now, tz=timezone.utc).date()
    try:
        day = date(int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return
    levels = [(d, (today - day).days >= 2),
              (d.parent, (day.year, day.month) < (today.year, today.month)),
              (d.parent.parent, day.year < today.year)]
    for path, past in levels:
        if not past:
            return
        try:
            os.rmdir(path)
        except OSError:
            return  # not empty (or already gone): stop climbing
