"""``linetap verify``: re-hash every recording and the chain, and name whatever does not match.

Problem kinds:

``chain_broken``  an entry's payload, digest or hash was changed, an entry is missing, or the
                  links do not follow (the chain table itself was edited)
``altered``       a recording's file differs from the sha256/size the chain committed to
``missing``       a file the chain says exists is gone (removed outside linetap), or was already
                  gone when linetap came to delete it
``row_missing``   a calls row the chain says exists is gone from the index
``row_edited``    a calls row differs from what the chain committed to (time, line, path, size,
                  hash, caller number/name, dtmf...)
``inserted``      a calls row or a file under recordings/ that no chain entry accounts for

With a checkpoint seen off the box (``verify --checkpoint``, :mod:`.checkpoint`), also:

``truncated``     the chain is shorter than the checkpoint: its newest entries were removed
``rewritten``     the chain's entry at the checkpoint's length is not the one signed (rebuilt chain)
``checkpoint``    the checkpoint's signature does not verify, or it is of another box or key

Without one, the newest entries can be cut off together with their rows and files without a
trace inside the box: that is what the published checkpoints are for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..index import evidence as db
from ..index.db import Index
from ..store.recordings import sha256_file
from . import audit, chain, checkpoint
from .checkpoint import Checkpoint
from .export_verify import COMMITTED_FIELDS, GENESIS, digest, duration_ms, link, private_commitment

logger = logging.getLogger(__name__)

PART = ".part"
UNREADABLE = ".unreadable"  # kept by the salvage next to a recovered recording it could not decode
SEALING = ".sealing"  # an encryption interrupted by a crash (redone at start-up)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    call_id: int | None
    path: str | None
    detail: str

    def __str__(self) -> str:
        what = f"call {self.call_id}" if self.call_id is not None else "file" if self.kind in ("inserted", "missing",
                                                                                               "altered") else "chain"
        where = f" ({self.path})" if self.path else ""
        return f"{self.kind}: {what}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    problems: tuple[Problem, ...]
    recordings: int  # recordings the chain says exist
    files_checked: int
    entries: int
    head_seq: int
    head_hash: str

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(index: Index, data_dir: Path, *, rehash: bool = True, who: str | None = None,
           clock: Clock | None = None, record_audit: bool = True, against: Checkpoint | None = None,
           recorder_id: str | None = None, device_key_hex: str | None = None) -> Report:
    """Everything wrong with the chain, the index and the files; with ``against``, also whether
    the chain still holds, unchanged, every entry up to that checkpoint."""
    data_dir = Path(data_dir)
    problems: list[Problem] = []
    if against is not None:
        problems += [Problem(kind, None, None, detail) for kind, detail in
                     checkpoint.check(index, against, recorder_id=recorder_id, device_key_hex=device_key_hex)]

    # 1. the chain itself, and the state it describes
    live: dict[int, dict[str, Any]] = {}
    removed: dict[int, dict[str, Any]] = {}
    prev, expected, n, last_hash = GENESIS, 1, 0, GENESIS
    for e in chain.entries(index):
        n += 1
        if e.seq != expected:
            problems.append(Problem("chain_broken", None, None,
                                    f"entries {expected}..{e.seq - 1} are missing from the chain"))
        elif e.prev_hash != prev:
            problems.append(Problem("chain_broken", e.call_id, None,
                                    f"entry {e.seq} does not follow from entry {e.seq - 1} "
                                    "(one of them was rewritten)"))
        p = e.payload
        if (not p or digest(p) != e.digest or p.get("seq") != e.seq or p.get("kind") != e.kind
                or p.get("call_id") != e.call_id):
            problems.append(Problem("chain_broken", e.call_id, None, f"entry {e.seq} was altered"))
        elif link(e.prev_hash, e.digest) != e.hash:
            problems.append(Problem("chain_broken", e.call_id, None, f"entry {e.seq}'s hash is wrong"))
        prev, expected, last_hash = e.hash, e.seq + 1, e.hash
        if e.call_id is None:
            continue
        if e.kind == "recording":
            live[e.call_id] = {**p, "_seq": e.seq}
            removed.pop(e.call_id, None)
        elif e.kind in ("deletion", "erasure"):
            live.pop(e.call_id, None)
            removed[e.call_id] = p
            if p.get("file_missing"):
                problems.append(Problem("missing", e.call_id, None,
                                        f"its file was already gone when linetap deleted it ({p.get('why')}, "
                                        f"entry {e.seq}): removed outside linetap"))

    # 2. the calls rows against the chain
    salts = db.salts(index)
    seen: set[int] = set()
    open_paths: set[str] = set()
    for row in index.calls_by_id():
        cid = row["id"]
        if row["status"] == "recording":
            if row["path"]:
                open_paths.add(row["path"])
            if cid in live:
                problems.append(Problem("row_edited", cid, row["path"], "status set back to 'recording'"))
                seen.add(cid)
            continue
        if cid not in live:
            if cid in removed:
                detail = f"was deleted ({removed[cid].get('why')}) but its row is back in the index"
            else:
                detail = "this calls row is in no chain entry (inserted into the index)"
            problems.append(Problem("inserted", cid, row["path"], detail))
            continue
        seen.add(cid)
        problems.extend(_compare_row(row, live[cid], salts.get(cid)))
    for cid in sorted(set(live) - seen):
        problems.append(Problem("row_missing", cid, live[cid].get("path"),
                                "its calls row was removed from the index outside linetap"))

    # 3. the files
    expected_paths: dict[str, int] = {}
    checked = 0
    for cid, p in sorted(live.items()):
        rel = p.get("path")
        if not rel:
            continue
        expected_paths[rel] = cid
        f = data_dir / rel
        if p.get("sha256") is None:
            continue  # committed as a recording without readable audio (salvage)
        try:
            size = f.stat().st_size
        except FileNotFoundError:
            problems.append(Problem("missing", cid, rel, "the file is gone (removed outside linetap)"))
            continue
        checked += 1
        if size != p.get("bytes") or (rehash and sha256_file(f) != p.get("sha256")):
            problems.append(Problem("altered", cid, rel, "the file differs from the recording the chain "
                                    f"committed to (entry {p['_seq']})"))
    problems.extend(_unknown_files(data_dir, expected_paths, open_paths))

    head_seq = expected - 1
    report = Report(tuple(problems), len(live), checked, n, head_seq, last_hash)
    if record_audit:
        audit.record(index, "verify", None, who=who, clock=clock,
                     detail=f"{len(problems)} problem(s), {len(live)} recordings, chain head {head_seq}")
    if problems:
        logger.warning("verify: %d problem(s) found", len(problems))
    return report


def _compare_row(row: dict[str, Any], p: dict[str, Any], salt: str | None) -> list[Problem]:
    cid, rel = row["id"], row["path"]
    changed = [k for k in COMMITTED_FIELDS if row.get(k) != p.get(k)]
    if duration_ms(row.get("duration_s")) != p.get("duration_ms"):
        changed.append("duration_s")
    if salt is None:
        changed.append("caller fields (commitment salt missing)")
    elif private_commitment(salt, row) != p.get("private"):
        changed.append("caller_number/caller_name/dtmf")
    if not changed:
        return []
    return [Problem("row_edited", cid, rel, "the index row differs from the chain (entry "
                    f"{p['_seq']}) in: {', '.join(changed)}")]


def _unknown_files(data_dir: Path, expected: dict[str, int], open_paths: set[str]) -> list[Problem]:
    root = data_dir / "recordings"
    out: list[Problem] = []
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), data_dir)
            if rel in expected or rel in open_paths:
                continue
            if rel.endswith(PART) and rel[: -len(PART)] in open_paths:
                continue
            if rel.endswith(UNREADABLE) and rel[: -len(UNREADABLE)] in expected:
                continue
            if rel.endswith(SEALING) and rel[: -len(SEALING)].removesuffix(chain.SEALED_SUFFIX) in open_paths:
                continue
            out.append(Problem("inserted", None, rel, "a file no recording in the chain accounts for"))
    return out
