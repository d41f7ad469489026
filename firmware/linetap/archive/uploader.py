"""The archive thread: copies finished recordings off the box, verifies them, marks them archived.

Each round takes up to ``batch`` unarchived recordings, oldest first; for each: the file is copied
with ``--bwlimit``, its checksum on the remote compared with the local one, its sidecar written
and read back, and only then is ``calls.archived_at`` set. Then the chain entries not yet on the
remote and a checkpoint of the chain head (layout.py). A failed round waits with exponential
back-off (5 s doubling to 10 min); a remote that comes back is simply caught up with, since
nothing is marked before it is verified. The thread never touches a file being recorded and
nothing in the recorder waits for it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..alarms.manager import AlarmManager
from ..clock import Clock, SystemClock, iso, parse_iso
from ..config import ArchiveConfig
from ..evidence import chain, checkpoint
from ..index import archive as db
from ..index.db import Index
from . import layout
from .rclone import Rclone, RcloneError, md5_file

logger = logging.getLogger(__name__)

CHAIN_PAGE = 5000  # entries per chain segment file


class ArchiveMismatch(RcloneError):
    """The copy on the remote does not match the local file."""


class Archiver(threading.Thread):
    def __init__(self, *, index: Index, data_dir: Path, cfg: ArchiveConfig, recorder_id: str,
                 alarms: AlarmManager | None = None, clock: Clock | None = None, rclone: Rclone | None = None,
                 batch: int = 20, idle_s: float = 10.0, backoff_min_s: float = 5.0,
                 backoff_max_s: float = 600.0) -> None:
        super().__init__(name="archive", daemon=True)
        self.index = index
        self.data_dir = Path(data_dir)
        self.cfg = cfg
        self.recorder_id = recorder_id
        self._checkpoint_archived: int | None = None  # the length of the last checkpoint put
        self.alarms = alarms
        self.clock = clock or SystemClock()
        self.rclone = rclone or Rclone(remote=cfg.remote, config=cfg.rclone_config, bandwidth=cfg.bandwidth)
        self.batch, self.idle_s = batch, idle_s
        self.backoff = (backoff_min_s, backoff_max_s)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._skip: dict[int, str] = {}  # call id -> why it cannot be archived (file gone or altered)
        self.failures = 0
        self.last_error: str | None = None
        self._status: dict[str, Any] = {"backlog": None, "backlog_bytes": None, "oldest_unarchived_s": None,
                                        "last_archived_at": None, "error": None}

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        while not self.stopping.is_set():
            wait_s = self.idle_s
            try:
                if self.round() >= self.batch:
                    wait_s = 0.0  # more waiting: go on at once
                if self.failures:
                    logger.info("archive: the remote works again")
                self.failures, self.last_error = 0, None
            except RcloneError as e:
                self.failures += 1
                if str(e) != self.last_error:
                    logger.warning("archive: %s (retrying with back-off)", e)
                self.last_error = str(e)
                wait_s = layout.backoff_s(self.failures, min_s=self.backoff[0], max_s=self.backoff[1])
            except Exception as e:  # noqa: BLE001 - the thread must survive anything a round meets
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                logger.exception("archive round failed")
                wait_s = layout.backoff_s(self.failures, min_s=self.backoff[0], max_s=self.backoff[1])
            try:
                self.refresh_status()
            except Exception:  # noqa: BLE001
                logger.exception("archive: cannot read the backlog")
            self._wake.wait(wait_s)
            self._wake.clear()

    def wake(self) -> None:
        """Look for work now (a recording was sealed)."""
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    # --- one round ----------------------------------------------------------------------

    def round(self) -> int:
        """Archive up to ``batch`` recordings, then the chain; the number of recordings archived."""
        rows = db.unarchived(self.index, self.batch, skip=tuple(self._skip))
        done = 0
        for row in rows:
            if self.stopping.is_set():
                break
            done += self.archive_one(row)
        self.archive_chain()
        return done

    def archive_one(self, row: dict[str, Any]) -> int:
        path = str(row["path"])
        local = self.data_dir / path
        try:
            sha256, md5 = _hashes(local)
        except OSError as e:
            self._skip[int(row["id"])] = f"cannot read {path}: {e.strerror}"
            logger.error("archive: call %s: cannot read %s: %s; not archived", row["id"], path, e.strerror)
            return 0
        if sha256 != row["sha256"]:
            self._skip[int(row["id"])] = f"{path} differs from the index"
            logger.error("archive: call %s: %s differs from the index (run 'linetap verify'); not archived",
                         row["id"], path)
            return 0
        self.rclone.copy_file(local, path)
        self._verify(path, md5=md5, sha256=sha256)
        entry = chain.recording_entry(self.index, int(row["id"]))
        doc = layout.sidecar(row, None if entry is None else layout.entry_doc(entry), recorder_id=self.recorder_id)
        self._put_verified(json.dumps(doc, sort_keys=True, indent=1).encode("utf-8") + b"\n",
                           layout.sidecar_path(path))
        if db.mark_archived(self.index, int(row["id"]), at=iso(self.clock.wall()), sha256=sha256):
            logger.debug("archive: call %s archived as %s", row["id"], path)
            return 1
        return 0

    def archive_chain(self) -> None:
        """The chain entries the remote lacks, in segments, then a checkpoint of the head."""
        last = db.chain_seq_archived(self.index)
        while True:
            page = list(itertools.islice(chain.entries(self.index, last + 1), CHAIN_PAGE))
            if not page:
                break
            text = "".join(json.dumps(layout.entry_doc(e), sort_keys=True, separators=(",", ":")) + "\n"
                           for e in page)
            self._put_verified(text.encode("utf-8"), layout.chain_segment_path(page[0].seq))
            last = page[-1].seq
            db.set_chain_seq_archived(self.index, last)


        # The newest signed checkpoint, once every entry it covers is on the remote.
        cp = checkpoint.latest(self.index)
        if cp is not None and cp.length <= last and cp.length != self._checkpoint_archived:
            self._put_verified(json.dumps(cp.as_dict(), sort_keys=True).encode("utf-8") + b"\n",
                               layout.checkpoint_path(cp.length))
            self._checkpoint_archived = cp.length

    def _verify(self, rel: str, *, md5: str, sha256: str) -> None:
        remote_md5 = self.rclone.hash_of(rel)
        if remote_md5 is not None:
            if remote_md5 != md5:
                raise ArchiveMismatch(f"{rel}: MD5 on the remote {remote_md5} != local {md5}")
        elif self.rclone.sha256_of(rel) != sha256:
            raise ArchiveMismatch(f"{rel}: the copy read back from the remote differs")

    def _put_verified(self, data: bytes, rel: str) -> None:
        self.rclone.put_bytes(data, rel)
        self._verify(rel, md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                     sha256=hashlib.sha256(data).hexdigest())

    # --- what the health side sees ---------------------------------------------------------

    def refresh_status(self) -> None:
        """Backlog figures for the health document, and ARCHIVE_BEHIND."""
        b = db.backlog(self.index)
        now = self.clock.wall()
        oldest = parse_iso(b["oldest_ended_at"]) if b["oldest_ended_at"] else None
        self._status = {"backlog": b["count"], "backlog_bytes": b["bytes"],
                        "oldest_unarchived_s": None if oldest is None else round(max(0.0, now - oldest), 1),
                        "last_archived_at": db.last_archived_at(self.index), "error": self.last_error}
        if self.alarms is not None:
            active, detail = layout.behind(oldest_ended_at=oldest, now=now,
                                           behind_after_s=self.cfg.behind_after_h * 3600.0,
                                           last_error=self.last_error)
            self.alarms.set("ARCHIVE_BEHIND", None, active, detail)

    def status(self) -> dict[str, Any]:
        """The health document's ``archive`` object (as of the last round)."""
        return dict(self._status)


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file in one read."""
    s, m = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            s.update(chunk)
            m.update(chunk)
    return s.hexdigest(), m.hexdigest()


__all__ = ["ArchiveMismatch", "Archiver", "md5_file"]
