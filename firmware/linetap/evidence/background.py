"""Self-verification in the background: the chain's continuity every step, a slice of the
recordings re-hashed every step, EVIDENCE_INTEGRITY (critical) naming whatever broke.

Housekeeping calls :meth:`BackgroundCheck.step` every ``SLOW_CHECK_S`` (10 s):

* **the chain, continuously**: every entry added since the last step must carry the next
  ``seq``, its payload must hash to its digest, and it must link to the head the previous step
  saw, which itself must be unchanged. Cheap: only the new entries are read (and one row).
* **the recordings, a slice at a time**: the next ``files_per_step`` live recordings (in chain
  order, from a cursor kept in the index so a restart continues the pass) are re-hashed and
  compared with what the chain committed to. The slice is sized so that a full pass takes
  ``FULL_PASS_S`` (6 days: within a week, with a day to spare for downtime): at 100 000
  recordings that is 2 files per 10 s, about 700 an hour (``benchmarks/verification.py``
  measures the CPU that costs). Reading goes 64 KiB at a time with the page cache advised
  to drop what was read, so a pass does not push the recorder's own pages out of memory.

When a pass reaches the chain's end it is complete: ``last_full_pass`` (wall time) and whether
it found every recording intact are kept in the index and shown by ``linetap status``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Callable

from ..alarms.manager import AlarmManager
from ..clock import Clock
from ..health.snapshot import EvidenceStatus
from ..index import evidence as db
from ..index.db import Index
from .export_verify import GENESIS, digest, link

logger = logging.getLogger(__name__)

FULL_PASS_S = 6 * 24 * 3600.0
ALARM = "EVIDENCE_INTEGRITY"
READ_BYTES = 1 << 16
META_CURSOR = "verify_cursor"          # {"seq": last recording entry re-hashed, "rehashed": n, "ok": bool}
META_CHAIN = "verify_chain_checked"    # {"seq": n, "hash": h} of the last entry checked
META_LAST_PASS = "verify_last_full_pass"  # {"at": wall time, "ok": bool, "recordings": n}


def files_per_step(recordings: int, step_s: float, full_pass_s: float = FULL_PASS_S) -> int:
    """How many recordings to re-hash per step so ``recordings`` are all done in ``full_pass_s``."""
    if recordings <= 0:
        return 0
    return max(1, math.ceil(recordings * step_s / full_pass_s))


def chain_problems(prev_seq: int, prev_hash: str, entries: list[dict[str, object]]) -> tuple[list[str], int, str]:
    """Check ``entries`` (in seq order) continue the chain from (prev_seq, prev_hash).

    Returns (problems, seq, hash) of the last good entry: the next step starts from there.
    """
    seq, h = prev_seq, prev_hash
    for e in entries:
        if e["seq"] != seq + 1:
            return [f"chain entries {seq + 1}..{int(e['seq']) - 1} are missing"], seq, h  # type: ignore[arg-type]
        try:
            payload = json.loads(str(e["payload"]))
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or digest(payload) != e["digest"] or payload.get("seq") != e["seq"]:
            return [f"chain entry {e['seq']} was altered"], seq, h
        if e["prev_hash"] != h or link(h, str(e["digest"])) != e["hash"]:
            return [f"chain entry {e['seq']} does not follow from entry {seq} (rewritten)"], seq, h
        seq, h = int(e["seq"]), str(e["hash"])  # type: ignore[call-overload]
    return [], seq, h


def sha256_file_gently(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read 64 KiB at a time, dropping it from the page cache after."""
    import hashlib
    h = hashlib.sha256()
    n = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while block := os.read(fd, READ_BYTES):
            h.update(block)
            n += len(block)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return h.hexdigest(), n


class BackgroundCheck:
    def __init__(self, index: Index, data_dir: Path, *, alarms: AlarmManager, clock: Clock, step_s: float,
                 key_fingerprint: str | None = None,
                 on_status: Callable[[EvidenceStatus], None] | None = None) -> None:
        self.index = index
        self.data_dir = Path(data_dir)
        self.alarms = alarms
        self.clock = clock
        self.step_s = step_s
        self.key_fingerprint = key_fingerprint
        self.on_status = on_status
        self.problems: list[str] = []  # what the last step found (the alarm's detail)

    def _meta(self, key: str, default: dict[str, object]) -> dict[str, object]:
        try:
            doc = json.loads(self.index.get_meta(key) or "null")
        except ValueError:
            doc = None
        return doc if isinstance(doc, dict) else default

    def step(self) -> list[str]:
        """One step: the new chain entries, then the next slice of recordings. Returns the problems."""
        problems = self.check_chain() + self.rehash_slice()
        self.problems = problems
        if problems:
            logger.error("evidence integrity: %s", "; ".join(problems))
            self.alarms.set(ALARM, None, True, "; ".join(problems)[:500])
        self._publish()
        return problems

    def check_chain(self) -> list[str]:
        state = self._meta(META_CHAIN, {"seq": 0, "hash": GENESIS})
        seq, h = int(state["seq"]), str(state["hash"])  # type: ignore[call-overload]
        if seq > 0:
            row = db.chain_entry(self.index, seq)
            if row is None:
                return [f"the chain was cut back: entry {seq}, present at the last check, is gone"]
            if row["hash"] != h:
                return [f"chain entry {seq} changed since the last check (the chain was rewritten)"]
        problems, seq2, h2 = chain_problems(seq, h, db.chain_entries(self.index, seq, 5000))
        if seq2 != seq:
            self.index.set_meta(META_CHAIN, json.dumps({"seq": seq2, "hash": h2}))
        return problems

    def rehash_slice(self) -> list[str]:
        cursor = self._meta(META_CURSOR, {"seq": 0, "rehashed": 0, "ok": True})
        n = files_per_step(db.finished_calls_count(self.index), self.step_s)
        rows = db.chain_recordings_after(self.index, int(cursor["seq"]), max(n, 1))  # type: ignore[call-overload]
        problems: list[str] = []
        for r in rows:
            problems.extend(self._rehash(r))
            cursor["seq"] = r["seq"]
            cursor["rehashed"] = int(cursor["rehashed"]) + 1  # type: ignore[call-overload]
        if problems:
            cursor["ok"] = False
        if not rows:  # the end of the chain: a full pass is complete
            self.index.set_meta(META_LAST_PASS, json.dumps({"at": self.clock.wall(), "ok": bool(cursor["ok"]),
                                                            "recordings": cursor["rehashed"]}))
            if cursor["seq"]:
                logger.info("evidence: full background check done, %s recordings, %s", cursor["rehashed"],
                            "intact" if cursor["ok"] else "PROBLEMS FOUND")
            cursor = {"seq": 0, "rehashed": 0, "ok": True}
        self.index.set_meta(META_CURSOR, json.dumps(cursor))
        return problems

    def _rehash(self, row: dict[str, object]) -> list[str]:
        try:
            p = json.loads(str(row["payload"]))
        except ValueError:
            return [f"chain entry {row['seq']} is unreadable"]
        if p.get("sha256") is None or not p.get("path"):
            return []  # committed without readable audio (salvage)
        cid, rel = p.get("call_id"), p["path"]
        try:
            sha, size = sha256_file_gently(self.data_dir / rel)
        except FileNotFoundError:
            if db.chain_newest_for_call(self.index, int(cid))["seq"] != row["seq"]:  # deleted meanwhile
                return []
            return [f"call {cid}: {rel} is gone (removed outside linetap)"]
        except OSError as e:
            return [f"call {cid}: {rel} cannot be read: {e.strerror}"]
        if sha != p.get("sha256") or size != p.get("bytes"):
            return [f"call {cid}: {rel} differs from the recording the chain committed to (entry {row['seq']})"]
        return []

    def status(self) -> EvidenceStatus:
        last = self._meta(META_LAST_PASS, {})
        cursor = self._meta(META_CURSOR, {"rehashed": 0})
        at = last.get("at")
        return EvidenceStatus(key_fingerprint=self.key_fingerprint,
                              last_full_pass=float(at) if isinstance(at, (int, float)) else None,
                              last_full_pass_ok=last.get("ok") if isinstance(last.get("ok"), bool) else None,
                              rehashed=int(cursor.get("rehashed") or 0))  # type: ignore[call-overload]

    def _publish(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status())
