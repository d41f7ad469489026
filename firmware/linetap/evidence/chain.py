"""The hash chain: every finished recording, deletion, hold, audited read and configuration change,
committed in order (signed checkpoints of its head: :mod:`.checkpoint`).

Entry *i* (table ``chain``, ``seq`` = i, from 1) commits to entry *i-1*::

    digest_i = sha256(canonical JSON of payload_i)
    hash_i   = sha256(hash_{i-1} + digest_i)        (hex strings, hash_0 = "0" * 64)

(the rules are in :mod:`linetap.evidence.export_verify`, which a third party can
run with the standard library alone). Hashing the payload first lets an export
prove the chain up to its head with each later entry's digest only, without
revealing other calls.

Payload kinds:

``recording``
    call_id, line, started_at, ended_at, duration_ms, path, codec, bytes, sha256 (of
    the file as stored), plain_sha256 (encrypted recordings: of the audio inside),
    encrypted, status, end_reason, and ``private``: a salted commitment to
    caller_number/caller_name/dtmf. The salt is kept apart (``chain_salts``);
    deleting it erases the link between the chain and a caller's number.
``deletion`` / ``erasure``
    call_id, why (space | retention | request), by, recording_seq, sha256, and
    file_missing (the file had gone before linetap deleted it).
``hold`` / ``release``
    call_id, by, reason: a legal hold placed or lifted.
``audit``
    call_id (or null), by, action (export | decrypt | play | download | erase | erase_request), detail:
    every read of a recording's audio leaving linetap, every privacy erasure, and every erasure
    asked for on the web (``erase_request``, then ``erase`` when the recorder has carried it out).
``config``
    by, sha256 of the configuration applied (canonical JSON of the parsed values), source (its file).
``rebuild``
    call_id null; the index was lost (why: corrupt | missing) and rebuilt from the files: the
    chain before this entry is gone (``previous``: the newest seq/hash any sidecar remembered,
    or null), and ``recordings``/``files_sha256`` commit to the set of recordings found
    (see :mod:`linetap.index.rebuild`). Their ``recording`` entries follow.

``by`` is the authenticated actor (:func:`linetap.evidence.audit.current_user` for the CLI:
the OS user and its login uid, never an environment variable; the web user's name for the web).
Only ``recording``, ``deletion`` and ``erasure`` change which recordings exist (``STATE_KINDS``);
the others name a call without changing it.

Values are strings, integers, booleans and null only (floats do not round-trip
identically in every language).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..clock import Clock, SystemClock, iso
from ..index import evidence as db
from ..index.db import Index
from .export_verify import GENESIS, digest, duration_ms, link, private_commitment

logger = logging.getLogger(__name__)

VERSION = 1
SEALED_SUFFIX = ".sealed"  # = linetap.crypto.SUFFIX (not imported: this module must not need nacl)
STATE_KINDS = ("recording", "deletion", "erasure")  # these decide which recordings exist
KINDS = (*STATE_KINDS, "hold", "release", "audit", "config", "rebuild")


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str
    call_id: int | None
    payload: dict[str, Any]
    digest: str
    prev_hash: str
    hash: str


def head(index: Index) -> tuple[int, str]:
    """(seq, hash) of the newest entry; (0, GENESIS) for an empty chain.

    Publishing the head off the box (MQTT, a printed receipt) is what makes
    truncating the newest entries detectable too.
    """
    row = db.chain_head(index)
    return (row["seq"], row["hash"]) if row else (0, GENESIS)


def _append(index: Index, kind: str, call_id: int | None, body: dict[str, Any], at: float,
            after: Entry | None = None) -> Entry:
    """Add one entry (after ``after``, if the caller knows the head). Call inside :func:`transaction`."""
    seq, prev = (after.seq, after.hash) if after is not None else head(index)
    payload = {"v": VERSION, "seq": seq + 1, "kind": kind, "at": iso(at), "call_id": call_id, **body}
    d = digest(payload)
    h = link(prev, d)
    db.chain_append(index, seq=seq + 1, kind=kind, call_id=call_id, at=payload["at"],
                    payload=json.dumps(payload, sort_keys=True), digest=d, prev_hash=prev, hash=h)
    return Entry(seq + 1, kind, call_id, payload, d, prev, h)


def append_event(index: Index, kind: str, call_id: int | None, body: dict[str, Any], *, at: float,
                 in_transaction: bool = False) -> Entry:
    """Commit a happening that changes no recording's existence (hold, release, audit, config,
    rebuild). ``in_transaction``: the caller already holds :meth:`Index.write_transaction` (so
    the entry commits with the change it records)."""
    if kind not in KINDS or kind in STATE_KINDS:
        raise ValueError(f"not an event kind: {kind!r}")
    if in_transaction:
        return _append(index, kind, call_id, body, at)
    with index.write_transaction():
        return _append(index, kind, call_id, body, at)


def config_applied(index: Index, applied: dict[str, Any], *, source: str, by: str, at: float) -> Entry | None:
    """A ``config`` entry if the configuration now applied differs from the last one chained.

    ``applied`` is the parsed configuration (``dataclasses.asdict(Config)``): its sha256 over
    canonical JSON (paths as strings) is what is committed, so a comment or key order in the
    file does not count as a change, and any value that takes effect does.
    """
    sha = hashlib.sha256(json.dumps(applied, sort_keys=True, default=str,
                                    separators=(",", ":")).encode("utf-8")).hexdigest()
    with index.write_transaction():
        last = db.chain_newest_of_kind(index, "config")
        if last is not None and json.loads(last["payload"]).get("sha256") == sha:
            return None
        return _append(index, "config", None, {"by": by, "sha256": sha, "source": source}, at)


def recording_payload(row: dict[str, Any], salt: str, plain_sha256: str | None) -> dict[str, Any]:
    """The body of a ``recording`` entry for a calls row (without v/seq/kind/at/call_id)."""
    return {
        "line": row.get("line"), "started_at": row.get("started_at"), "ended_at": row.get("ended_at"),
        "duration_ms": duration_ms(row.get("duration_s")), "path": row.get("path"),
        "codec": row.get("codec"), "bytes": row.get("bytes"), "sha256": row.get("sha256"),
        "plain_sha256": plain_sha256, "encrypted": str(row.get("path") or "").endswith(SEALED_SUFFIX),
        "status": row.get("status"), "end_reason": row.get("end_reason"),
        "private": private_commitment(salt, row),
    }


def recording_entry(index: Index, call_id: int) -> Entry | None:
    """The newest ``recording`` entry for ``call_id`` (ids can be reused once a call is deleted)."""
    row = db.chain_newest_recording(index, call_id)
    return _entry(row) if row else None


def live_entry(index: Index, call_id: int) -> Entry | None:
    """The recording entry of ``call_id`` if the chain has it and no removal came after it."""
    row = db.chain_newest_for_call(index, call_id)
    return _entry(row) if row and row["kind"] == "recording" else None


def append_recording(index: Index, row: dict[str, Any], *, plain_sha256: str | None = None,
                     update: dict[str, Any] | None = None, clock: Clock | None = None) -> Entry:
    """Commit a finished recording (a complete calls row) to the chain; idempotent per call.

    ``update``: calls fields to change in the same transaction (e.g. the sealed file's path),
    so the row and its entry can never disagree after a crash.
    """
    return append_recordings(index, [{**row, **(update or {})}], plain_sha256s=[plain_sha256], clock=clock,
                             updates=[update or {}])[0]


def append_recordings(index: Index, rows: Iterable[dict[str, Any]], *,
                      plain_sha256s: Iterable[str | None] | None = None,
                      updates: Iterable[dict[str, Any]] | None = None,
                      clock: Clock | None = None) -> list[Entry]:
    """Commit several finished recordings in one transaction (bulk import, backfill)."""
    at = (clock or SystemClock()).wall()
    rows = list(rows)
    plains = list(plain_sha256s) if plain_sha256s is not None else [None] * len(rows)
    changes = list(updates) if updates is not None else [{}] * len(rows)
    out: list[Entry] = []
    last: Entry | None = None
    with index.write_transaction():
        for row, plain, change in zip(rows, plains, changes):
            existing = live_entry(index, row["id"])
            if existing is not None:
                out.append(existing)
                continue
            if change:
                index.update_call(row["id"], **change)
            salt = secrets.token_hex(16)
            db.salt_set(index, row["id"], salt)
            last = _append(index, "recording", row["id"], recording_payload(row, salt, plain), at, after=last)
            out.append(last)
    return out


def append_removal(index: Index, kind: str, call_id: int, *, why: str, by: str, sha256: str | None,
                   file_missing: bool, at: float) -> Entry:
    """Record a deletion/erasure. Call inside :func:`transaction` (with the row's removal)."""
    if kind not in ("deletion", "erasure"):
        raise ValueError(f"not a removal kind: {kind!r}")
    rec = recording_entry(index, call_id)
    return _append(index, kind, call_id, {"why": why, "by": by, "recording_seq": rec.seq if rec else None,
                                          "sha256": sha256, "file_missing": file_missing}, at)


def append_rebuild(index: Index, body: dict[str, Any], *, at: float) -> Entry:
    """Record that the index was rebuilt (w-rebuild; payload in the module docstring)."""
    with index.write_transaction():
        return _append(index, "rebuild", None, body, at)


def entries(index: Index, from_seq: int = 1, page_rows: int = 5000) -> Iterator[Entry]:
    """All entries from ``from_seq`` on, in order, read a page at a time."""
    seq = from_seq - 1
    while True:
        rows = db.chain_entries(index, seq, page_rows)
        if not rows:
            return
        for r in rows:
            yield _entry(r)
        seq = rows[-1]["seq"]


def links_after(index: Index, seq: int) -> list[tuple[int, str, str]]:
    """(seq, digest, hash) of every entry after ``seq``: the proof from an entry to the head."""
    return [(r["seq"], r["digest"], r["hash"]) for r in db.chain_links_after(index, seq)]


def salt_of(index: Index, call_id: int) -> str | None:
    return db.salt_of(index, call_id)


def _entry(r: dict[str, Any]) -> Entry:
    try:
        payload = json.loads(r["payload"])
    except (TypeError, ValueError):
        payload = {}
    return Entry(r["seq"], r["kind"], r["call_id"], payload if isinstance(payload, dict) else {},
                 r["digest"], r["prev_hash"], r["hash"])
