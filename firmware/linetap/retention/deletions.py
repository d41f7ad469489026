"""Deleting recordings, crash-safely, with a record of each deletion.

Three steps, so that a power cut at any point leaves nothing that looks like tampering:

1. intent: the calls to delete go into ``deleting`` (one transaction; held calls and calls still
   being written are refused here, under the write lock, so a hold placed a moment after the
   plan was made still wins). It is a *durable* transaction (``synchronous=FULL``, see
   :meth:`linetap.index.db.Index.durable_transaction`): the index otherwise runs
   ``synchronous=NORMAL``, and an intent lost to a power cut after its file's unlink reached
   the disk would make the next sweep find the file gone with no intent, and log a false
   "removed outside linetap" in the chain. Step 3 needs no FULL: if it is lost, the intent
   is still there and :func:`finish_pending` completes it as a recovery;
2. the files are unlinked (no lock held): every file of the recording
   (:func:`linetap.store.recordings.recording_files`: the audio, ``.part``, ``.unreadable``,
   ``.sealed``, sidecars);
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
from ..index import retention as db
from ..index.db import Index
from ..store.recordings import recording_files
from ..store.sidecar import SIDECAR

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
    clock = clock or SystemClock()
    items = list(items)
    for _, why in items:
        if why not in WHYS:
            raise ValueError(f"unknown deletion reason {why!r}")
    refused: list[Refused] = []
    queued = iso(clock.wall())
    with index.durable_transaction():  # on the disk before any unlink (module docstring)
        for call_id, why in items:
            row = db.deletion_candidate(index, call_id)
            if row is None:
                refused.append(Refused(call_id, "unknown"))
            elif row["held"] is not None:
                refused.append(Refused(call_id, "held"))
            elif row["status"] == "recording":
                refused.append(Refused(call_id, "recording"))
            else:
                db.intent_add(index, call_id, path=row["path"], why=why, by=by, detail=detail, queued_at=queued)
    for r in refused:
        if r.reason == "held":
            logger.info("call %d is on legal hold: not deleted", r.call_id)
    pending = db.intents(index, [c for c, _ in items])
    done = _finish(index, data_dir, pending, clock, recovering=False)
    return DeleteResult(tuple(done), tuple(refused))


def finish_pending(index: Index, data_dir: Path, clock: Clock | None = None) -> list[Deleted]:
    """Complete deletions a crash interrupted (their files may or may not be gone already)."""
    pending = db.intents(index)
    if not pending:
        return []
    logger.warning("finishing %d deletion(s) interrupted by a restart", len(pending))
    return _finish(index, data_dir, pending, clock or SystemClock(), recovering=True)


def _finish(index: Index, data_dir: Path, pending: list[dict[str, Any]], clock: Clock, *,
            recovering: bool) -> list[Deleted]:
    missing: dict[int, bool] = {}
    dirs: set[Path] = set()
    for p in pending:
        missing[p["call_id"]] = False
        if not p["path"]:
            continue
        f = data_dir / p["path"]
        if _unlink_all(recording_files(f)):
            dirs.add(f.parent)
        else:
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
            row = index.get_call(call_id) or {}
            kind = "erasure" if p["why"] == "request" else "deletion"
            db.deletion_logged(index, at=iso(at), call_id=call_id, line=row.get("line"),
                               started_at=row.get("started_at"), ended_at=row.get("ended_at"), path=p["path"],
                               bytes=row.get("bytes"), sha256=row.get("sha256"), why=p["why"], by=p["by"],
                               detail=_detail(p["detail"], missing[call_id]))
            chain.append_removal(index, kind, call_id, why=p["why"], by=p["by"], sha256=row.get("sha256"),
                                 file_missing=missing[call_id], at=at)
            db.call_forgotten(index, call_id)
            done.append(Deleted(call_id, p["path"], int(row.get("bytes") or 0), p["why"], missing[call_id]))
    for d in dirs:
        _prune_empty_dirs(d, data_dir / "recordings", at)
    return done


def _unlink_all(files: list[Path]) -> bool:
    """Unlink ``files``; True if any of its audio was there (a salvaged call may have only its
    ``.unreadable``). A sidecar alone does not count: it is a copy of the index's row, and audio
    gone while its sidecar stayed was removed behind linetap's back."""
    removed = False
    for f in files:
        try:
            f.unlink()
            removed = removed or not f.name.endswith(SIDECAR)
        except FileNotFoundError:
            pass
    return removed


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
