"""Losing the index without losing the recordings: the recorder's index-open step.

At start, before anything writes to it, ``index.db`` is checked (:func:`problem`: it opens, is a
database, and ``PRAGMA quick_check`` says ``ok``). A corrupt one (SD bit-rot, a torn write) is moved
aside with its ``-wal``/``-shm``, kept for forensics as ``index.db.corrupt-<UTC>``; a missing one
(or an empty one: the CLI creates an empty index when it finds none) is noticed when recordings
exist. Either way the index is rebuilt from the files under ``recordings/``:

- a recording with a sidecar (``<name>.<ext>.json``, :mod:`linetap.store.recordings`) gets its
  row back from it: line, times, caller ID (with a redirected call's original number and the
  call-waiting callers), DTMF (as stored), end reason, status, hash, size, and its legal hold. Its hash is trusted when the file's size matches the sidecar's: hashing
  every file would keep the recorder from recording for minutes on a full card (a 32 GB card
  read at 40 MB/s: ~13 min); ``linetap verify`` re-hashes them all.
- one without (a sidecar lost, or a recording older than sidecars) from its file name (line,
  start, codec) and its audio header (duration, rate, channels), hashed, ``status = "recovered"``;
  a sealed one without a sidecar has no readable header, so no duration.

The chain records the break instead of restarting as if nothing had happened: one ``rebuild``
entry (:func:`linetap.evidence.chain.append_rebuild`) says why, names the file kept aside, gives
the newest chain position any sidecar remembered (how far the lost chain had got), and commits to
the set of recordings found (``files_sha256``: sha256 over the sorted ``"<path> <sha256>"`` lines).
The rebuilt rows are then chained as ordinary ``recording`` entries by the start-up
finalisation (``finalize_pending``), which also rewrites their sidecars. Call ids are kept
where the file name gives one (they may differ otherwise); paths and sha256 never change.

Costs (``benchmarks/index_check.py``, this machine): the check at every start is one
``quick_check``, which reads every page once: 0.03 s for an index of 100 000 calls (32 MiB) from the
page cache; cold from an SD card, reading 32 MiB takes about a second. A rebuild of 2000 recordings
from their sidecars took 0.3 s, chaining them afresh at start-up 1.9 s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..clock import Clock, iso
from . import evidence
from .db import INDEX_FILE, Index, open_index

logger = logging.getLogger(__name__)

CORRUPT = ".corrupt-"
MISSING = ".missing-"  # a -wal/-shm left without its database: not replayed into a new one
WHY_CORRUPT = "corrupt"
WHY_MISSING = "missing"
AUDIO_EXTENSIONS = (".flac", ".wav", ".opus")


@dataclass(frozen=True, slots=True)
class Found:
    """A recording found on the disk, as a calls row to insert (``id`` None: a new one)."""

    row: dict[str, Any]
    hold: dict[str, Any] | None
    from_sidecar: bool
    chain_seq: int | None = None  # where the lost chain had committed it, from its sidecar
    chain_hash: str | None = None


@dataclass(frozen=True, slots=True)
class RebuildReport:
    why: str  # corrupt | missing
    problem: str  # what was wrong, in words
    moved_to: str | None  # the file kept for forensics (name in the data directory)
    recordings: int
    from_sidecars: int
    held: int
    chain_seq: int  # the rebuild entry

    def detail(self) -> str:
        """The INDEX_REBUILT alarm's detail."""
        kept = f", the old one kept as {self.moved_to}" if self.moved_to else ""
        return (f"index {self.why} ({self.problem}){kept}; rebuilt {self.recordings} recording(s), "
                f"{self.from_sidecars} from sidecars, {self.recordings - self.from_sidecars} from the audio alone, "
                f"{self.held} on hold; chain break recorded at entry {self.chain_seq}")


# SQLite's primary result codes that mean the file itself is damaged (sqlite.org/rescode.html).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def problem(path: Path, *, timeout_s: float = 10.0) -> str | None:
    """Why the index file at ``path`` cannot be used (None: it can, or there is none).

    Only damage counts (not a database, a malformed page, ``quick_check`` not ``ok``): a locked
    database or an I/O error is raised, not taken for corruption, since moving a sound index aside
    would lose what only it holds (alarms, gaps, the audit, the chain)."""
    if not path.exists():
        return None
    conn = sqlite3.connect(str(path), timeout=timeout_s)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB):
            return str(e)
        raise
    finally:
        conn.close()
    msgs = [str(r[0]) for r in rows]
    return None if msgs == ["ok"] else "; ".join(msgs[:3])


def move_aside(path: Path, at: float, mark: str = CORRUPT) -> str | None:
    """Rename ``path`` and its ``-wal``/``-shm`` to ``<name><mark><UTC>[-wal|-shm]``; the new name
    of the database file (None if only a -wal/-shm was there)."""
    stamp = datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    moved: str | None = None
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            dst = path.with_name(f"{path.name}{mark}{stamp}{suffix}")
            os.replace(src, dst)
            if not suffix:
                moved = dst.name
    _fsync_dir(path.parent)
    return moved


def open_or_rebuild(data_dir: Path, *, clock: Clock) -> tuple[Index, RebuildReport | None]:
    """The recorder's index: opened as it is when it is sound, else rebuilt (module docstring)."""
    data_dir = Path(data_dir)
    path = data_dir / INDEX_FILE
    why, moved = problem(path), None
    if why is not None:
        moved = move_aside(path, clock.wall())
        logger.critical("the index %s is corrupt (%s); kept as %s, rebuilding it from the recordings",
                        path, why, moved)
    elif not path.exists() and (path.with_name(path.name + "-wal").exists()):
        move_aside(path, clock.wall(), MISSING)
    index = open_index(data_dir)
    try:
        if why is None and not _is_empty(index):
            return index, None
        found = scan(data_dir)
        if why is None and not found:
            return index, None  # a new box
        if why is None:
            logger.critical("the index %s was missing or empty while %d recording(s) are on the disk; "
                            "rebuilding it from them", path, len(found))
        report = rebuild(index, found, why=WHY_CORRUPT if moved else WHY_MISSING,
                         problem=why or "no index, recordings on the disk", moved_to=moved, at=clock.wall(),
                         reserved=part_ids(data_dir))
        return index, report
    except BaseException:
        index.close()
        raise


def _is_empty(index: Index) -> bool:
    return not index.query("select 1 from calls union all select 1 from chain limit 1")


def scan(data_dir: Path) -> list[Found]:
    """Every recording under ``recordings/`` (finished, sealed or unreadable; ``.part`` files are
    the salvage's), oldest first."""
    from ..store.recordings import PART, SEALED, UNREADABLE
    root = data_dir / "recordings"
    if not root.is_dir():
        return []
    found: list[Found] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            if name.startswith(".") or name.endswith(PART):
                continue
            base = name
            for suffix in (SEALED, UNREADABLE):
                base = base.removesuffix(suffix)
            if not base.endswith(AUDIO_EXTENSIONS):
                continue  # sidecars, temporary files, anything foreign
            f = Path(dirpath) / name
            try:
                found.append(_found(data_dir, f))
            except OSError as e:
                logger.error("rebuild: cannot read %s (%s); it is left out of the index", f, e)
    found.sort(key=lambda x: (str(x.row.get("started_at") or ""), x.row.get("id") or 0))
    return found


def part_ids(data_dir: Path) -> frozenset[int]:
    """The call ids in the names of the unfinished (``.part``) files the salvage will index."""
    from ..store.recordings import PART, id_from_name, unsalvaged
    ids = (id_from_name(p.name.removesuffix(PART)) for p in unsalvaged(data_dir))
    return frozenset(i for i in ids if i is not None)


def _found(data_dir: Path, f: Path) -> Found:
    from ..store import audio
    from ..store.recordings import (SEALED, SIDECAR_FIELDS, UNREADABLE, codec_from_name, id_from_name,
                                    start_from_name, read_sidecar, sha256_file, sidecar_path)
    rel = str(f.relative_to(data_dir))
    unreadable = f.name.endswith(UNREADABLE)
    size = f.stat().st_size
    doc = read_sidecar(sidecar_path(f))
    sealed_since = doc is not None and doc.get("path") == rel.removesuffix(SEALED) != rel
    if doc is not None and (doc.get("path") in (rel, rel.removesuffix(UNREADABLE)) or sealed_since):
        row = {k: doc.get(k) for k in SIDECAR_FIELDS}
        if sealed_since:  # sealed after its sidecar was last written (a crash in between)
            row["path"] = rel
        if not unreadable and (row.get("bytes") != size or sealed_since):
            logger.warning("rebuild: %s is %d bytes, its sidecar says %s; hashing the file", rel, size,
                           row.get("bytes"))
            row.update(bytes=size, sha256=sha256_file(f))
        row["id"] = doc.get("call_id") if isinstance(doc.get("call_id"), int) else id_from_name(f.name)
        hold = ({"held_at": doc.get("held_at"), "held_by": doc.get("held_by"), "reason": doc.get("hold_reason")}
                if doc.get("held") else None)
        return Found(row, hold, True, doc.get("chain_seq"), doc.get("chain_hash"))
    base = f.name.removesuffix(UNREADABLE).removesuffix(SEALED)
    started = start_from_name(base)
    row = {"id": id_from_name(base), "line": f.relative_to(data_dir / "recordings").parts[0],
           "started_at": iso(started), "codec": codec_from_name(base), "status": "recovered",
           "end_reason": "recovered", "path": rel, "ended_at": None, "duration_s": None}
    if unreadable:  # as the salvage indexes it: its path without the mark, no audio
        row.update(path=rel.removesuffix(UNREADABLE), bytes=0, sha256=None, duration_s=0.0,
                   ended_at=row["started_at"])
        return Found(row, None, False)
    row.update(bytes=size, sha256=sha256_file(f))
    if not f.name.endswith(SEALED):
        try:
            frames, rate, channels = audio.info(f)
        except audio.AudioError as e:
            logger.warning("rebuild: %s has no readable header (%s); indexed without a duration", rel, e)
        else:
            row.update(rate=rate, channels=channels, duration_s=round(frames / rate, 3),
                       ended_at=iso(started + frames / rate))
    return Found(row, None, False)


def rebuild(index: Index, found: list[Found], *, why: str, problem: str, moved_to: str | None,
            at: float, reserved: frozenset[int] = frozenset()) -> RebuildReport:
    """Insert the rows and holds of ``found`` into the (new) index and record the break in the chain.
    ``reserved``: ids no rebuilt row may take (the ``.part`` files' own, see :func:`part_ids`)."""
    from ..evidence import chain
    held = 0
    # The ids of unfinished files (the salvage indexes them next, by the id in their name) are taken.
    taken = set(reserved) | {fd.row["id"] for fd in found if isinstance(fd.row.get("id"), int)}
    next_id = max(taken, default=0) + 1
    seen: set[int] = set()
    with index.write_transaction():
        # A sidecar's id was the lost index's own: it keeps it before a file named alike without one.
        for fd in sorted(found, key=lambda fd: not fd.from_sidecar):
            row = dict(fd.row)
            if not isinstance(row.get("id"), int) or row["id"] in seen or row["id"] in reserved:
                row["id"], next_id = next_id, next_id + 1  # no id, or one claimed twice: a new one
            seen.add(row["id"])
            call_id = index.call_rebuilt(**row)
            if fd.hold is not None:
                evidence.hold_add(index, call_id, held_at=fd.hold.get("held_at") or iso(at),
                                  held_by=fd.hold.get("held_by") or "rebuild", reason=fd.hold.get("reason"))
                held += 1
    remembered = [fd for fd in found if isinstance(fd.chain_seq, int) and fd.chain_hash]
    newest = max(remembered, key=lambda fd: fd.chain_seq or 0, default=None)
    lines = sorted(f"{fd.row.get('path')} {fd.row.get('sha256')}" for fd in found)
    body = {"why": why, "problem": problem, "moved_to": moved_to, "recordings": len(found),
            "from_sidecars": sum(fd.from_sidecar for fd in found), "held": held,
            "files_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
            "previous": {"seq": newest.chain_seq, "hash": newest.chain_hash} if newest else None}
    entry = chain.append_rebuild(index, body, at=at)
    report = RebuildReport(why, problem, moved_to, len(found), body["from_sidecars"], held, entry.seq)
    logger.critical("INDEX_REBUILT: %s", report.detail())
    return report


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
