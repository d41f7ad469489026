"""The durable event outbox: ``<data_dir>/outbox.db`` (stdlib sqlite3, WAL, no paho).

Every event is appended here *before* anything is sent, and removed only when the broker has
acknowledged it (PUBACK, seen by the link's ``on_publish`` for the row's message id). So an
event survives a broker outage, a lost connection and a restart or crash of the recorder, and
leaves in the order it was appended.

Sequence numbers: each row's ``seq`` is an SQLite ``AUTOINCREMENT`` key, so it is strictly
increasing and never reused, also after rows are deleted and across restarts (SQLite keeps the
high-water mark in ``sqlite_sequence``). The link writes it into the event JSON, which makes
duplicates (QoS 1 is at-least-once) and gaps (overflow) visible to every consumer. Only if
``outbox.db`` itself is deleted does numbering start again at 1.

Bound and overflow policy: at most ``max_rows`` events are kept. Appending to a full outbox
deletes the *oldest* events (the newest state of a box matters most to whoever is watching it,
and every call and alarm is also in the index, ``index.db``, which the outbox does not replace).
Each drop is counted in ``dropped``, which is persisted and reset only when the outbox has been
emptied by deliveries; the link turns a non-zero count into an alarm.

Thread safety: one connection, used under one lock; any thread may call any method.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
OUTBOX_FILE = "outbox.db"  # in the data dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    dropped: int  # how many of the oldest events this append pushed out


class Outbox:
    """A bounded FIFO of (topic, payload) rows on disk."""

    def __init__(self, path: Path, *, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows}")
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each append is exactly one
        # transaction (one fsync) and nothing lingers uncommitted.
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed event survives power loss too, not only a crash of the process.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise sqlite3.OperationalError(f"MQTT outbox {path}: {e}") from e
        self._count: int = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self._dropped = int(row[0]) if row else 0
        if self._count:
            logger.info("outbox %s holds %d undelivered event(s)", path, self._count)

    # --- writing ---------------------------------------------------------------

    def append(self, topic: str, build: Callable[[int], bytes]) -> Appended:
        """Append one row; ``build(seq)`` makes its payload once its sequence number is known.

        Returns the new row's ``seq`` and how many old rows were dropped to make room.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, x'')", (topic,))
                seq = int(cur.lastrowid or 0)
                self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (build(seq), seq))
                # Counted afresh (cheap: at most max_rows rows): ``purge_calls`` in another
                # process may have removed rows since.
                count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                excess = count - self.max_rows
                dropped = 0
                if excess > 0:
                    dropped = self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (excess,)).rowcount
                    self._db.execute("INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                                     "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                                     (dropped,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count = count - dropped
            self._dropped += dropped
            return Appended(seq=seq, dropped=dropped)

    def remove(self, seq: int) -> None:
        """Forget a delivered row (a no-op if it is already gone, e.g. dropped by overflow)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                # Counted afresh: another process (``purge_calls`` for ``linetap erase``) may have
                # removed rows too. One COUNT over at most ``max_rows`` rows, per delivered event.
                count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                if count == 0 and self._dropped:
                    # The backlog is delivered: the overflow episode is over.
                    self._db.execute("DELETE FROM meta WHERE key = 'dropped'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count = count
            if count == 0:
                self._dropped = 0

    # --- reading ---------------------------------------------------------------

    def peek(self) -> Row | None:
        """The oldest undelivered row, or None."""
        with self._lock:
            r = self._db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return Row(seq=r[0], topic=r[1], payload=bytes(r[2])) if r else None

    def rows(self) -> list[Row]:
        """Every undelivered row, oldest first (for inspection and tests)."""
        with self._lock:
            rs = self._db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq").fetchall()
        return [Row(seq=r[0], topic=r[1], payload=bytes(r[2])) for r in rs]

    def __len__(self) -> int:
        # Counted, not cached: ``purge_calls`` (another process) may have removed rows.
        with self._lock:
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            return self._count

    @property
    def dropped(self) -> int:
        """Events dropped by the overflow policy since the outbox was last empty."""
        return self._dropped

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EventSpool:
    """Events written to the outbox while the MQTT link itself cannot be built (a password or CA
    file missing, ``mqtt/uplink.py``): when the link comes up, on a retry, it finds them in the same
    ``outbox.db`` and delivers them in order, with the same ``seq`` numbering, like any backlog."""

    def __init__(self, path: Path, *, max_rows: int, topic: str, recorder_id: str,
                 now: Callable[[], float]) -> None:
        self.outbox = Outbox(path, max_rows=max_rows)
        self.topic = topic
        self.recorder_id = recorder_id
        self.now = now

    def publish_event(self, event: dict[str, Any]) -> int:
        from .topics import event_payload
        at = self.now()
        return self.outbox.append(self.topic, lambda seq: event_payload(event, seq=seq, recorder_id=self.recorder_id,
                                                                         now=at)).seq

    def close(self) -> None:
        self.outbox.close()


def purge_calls(path: Path, call_ids: set[int] | frozenset[int]) -> int:
    """Delete every undelivered event about one of ``call_ids``; returns how many (``linetap erase``).

    A privacy erasure must not leave the erased calls' ``call_ended`` (caller number, name) waiting
    in the outbox to be published later. Runs in the erasing process beside a running recorder:
    its own connection, one transaction; the recorder's outbox recounts its rows on each delivery.
    A missing outbox (no MQTT configured) holds nothing: 0. The ``seq`` numbers of the purged
    events are not reused, so a consumer sees the same gap it would see after an overflow."""
    if not call_ids or not path.is_file():
        return 0
    db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
    try:
        db.execute("PRAGMA secure_delete=ON")  # the payloads must not linger in free pages
        db.execute("BEGIN IMMEDIATE")
        try:
            doomed = [seq for seq, payload in db.execute("SELECT seq, payload FROM outbox")
                      if _call_id(bytes(payload)) in call_ids]
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in doomed])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if doomed:
        logger.info("purged %d undelivered event(s) of erased calls from %s", len(doomed), path)
    return len(doomed)


def _call_id(payload: bytes) -> int | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    cid = doc.get("call_id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, int) else None
