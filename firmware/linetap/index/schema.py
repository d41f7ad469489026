"""The schema of ``index.db``: every table, index and trigger, as numbered migrations.

``PRAGMA user_version`` holds the number of the last migration applied. Opening the index
(:class:`linetap.index.db.Index`) applies the missing ones in one ``BEGIN IMMEDIATE``
transaction, so the recorder and a CLI command opening a fresh index at once cannot both
create it, and a box updated from any earlier release is brought forward without losing rows.
An index whose version is newer than :data:`LATEST` (written by a newer release, then the
box downgraded) is refused with :class:`SchemaTooNew` rather than written to blindly.

Migration 1 is the schema the releases before numbered migrations created (with
``user_version`` 0), statement for statement, each with ``IF NOT EXISTS``: such an index
holds some or all of these objects (the evidence tables appeared later than the contract's),
so applying migration 1 to it adds what is missing and changes nothing else. The exact text
is what sqlite-utils generated then; ``tests/test_index_schema.py`` compares a fresh index's
``sqlite_master`` with ``tests/data/index_schema_v0.sql``, captured from that release.

Adding a migration: append a tuple of statements to :data:`MIGRATIONS`; never edit one a
release has shipped (boxes in the field have already applied it).

The tables:

``calls``, ``alarms``, ``gaps``
    the contract's tables (README, "Index").
``meta``
    key/value: the recorder's heartbeat and clean-stop marks.
``chain``, ``chain_salts``
    the tamper-evidence hash chain and the salts of its commitments to callers' numbers
    (deleting a salt makes the commitment unlinkable: erasure without breaking the chain).
``holds``
    legal holds, one row per held call (a call can be held while it is still recorded).
``audit``
    who read or protected which recording, when.
``deletions``, ``deleting``
    the log of every deleted recording, and the intents of deletions in progress
    (see :mod:`linetap.retention.deletions`).

``web_users``, ``web_sessions``, ``web_login_failures``, ``web_audit``
    the web interface's users, logins and audit trail (:mod:`linetap.index.web`).
``erase_requests``
    erasures an admin asked for on the web, carried out by the recorder
    (:mod:`linetap.evidence.erasure_requests`): the web may not delete audio, the recorder can.

``chain``, ``audit``, ``deletions`` and ``web_audit`` are append-only: triggers refuse UPDATE and DELETE,
so no code path of linetap can rewrite history by mistake. (Someone with write access to
``index.db`` can drop a trigger; the hash chain is what makes that visible, see
:mod:`linetap.evidence.verify`.)
"""

from __future__ import annotations

import sqlite3

APPEND_ONLY = ("chain", "audit", "deletions")


class SchemaTooNew(RuntimeError):
    """The index was written by a newer linetap than this one (its user_version is unknown here)."""


def _append_only_triggers(table: str) -> tuple[str, ...]:
    return tuple(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                 f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                 for op in ("UPDATE", "DELETE"))


_V1: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS "calls" (
   "id" INTEGER PRIMARY KEY,
   "line" TEXT NOT NULL,
   "started_at" TEXT NOT NULL,
   "ended_at" TEXT,
   "duration_s" REAL,
   "path" TEXT,
   "codec" TEXT,
   "bytes" INTEGER,
   "sha256" TEXT,
   "caller_number" TEXT,
   "caller_name" TEXT,
   "dtmf" TEXT,
   "end_reason" TEXT,
   "status" TEXT NOT NULL,
   "rate" INTEGER,
   "channels" INTEGER
)""",
    """CREATE INDEX IF NOT EXISTS "idx_calls_started_at"
    ON "calls" ("started_at")""",
    """CREATE INDEX IF NOT EXISTS "idx_calls_line_started_at"
    ON "calls" ("line", "started_at")""",
    """CREATE INDEX IF NOT EXISTS "idx_calls_caller_number"
    ON "calls" ("caller_number")""",
    """CREATE INDEX IF NOT EXISTS "idx_calls_status"
    ON "calls" ("status")""",
    """CREATE TABLE IF NOT EXISTS "alarms" (
   "id" INTEGER PRIMARY KEY,
   "code" TEXT,
   "severity" TEXT,
   "line" TEXT,
   "raised_at" TEXT,
   "cleared_at" TEXT,
   "detail" TEXT
)""",
    """CREATE INDEX IF NOT EXISTS "idx_alarms_raised_at"
    ON "alarms" ("raised_at")""",
    """CREATE TABLE IF NOT EXISTS "gaps" (
   "id" INTEGER PRIMARY KEY,
   "line" TEXT,
   "started_at" TEXT,
   "ended_at" TEXT,
   "reason" TEXT
)""",
    """CREATE INDEX IF NOT EXISTS "idx_gaps_line_started_at"
    ON "gaps" ("line", "started_at")""",
    """CREATE TABLE IF NOT EXISTS "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
)""",
    """CREATE TABLE IF NOT EXISTS "chain" (
   "seq" INTEGER PRIMARY KEY,
   "kind" TEXT NOT NULL,
   "call_id" INTEGER,
   "at" TEXT,
   "payload" TEXT NOT NULL,
   "digest" TEXT NOT NULL,
   "prev_hash" TEXT NOT NULL,
   "hash" TEXT NOT NULL
)""",
    """CREATE INDEX IF NOT EXISTS "idx_chain_call_id_kind"
    ON "chain" ("call_id", "kind")""",
    """CREATE TABLE IF NOT EXISTS "chain_salts" (
   "call_id" INTEGER PRIMARY KEY,
   "salt" TEXT
)""",
    """CREATE TABLE IF NOT EXISTS "holds" (
   "call_id" INTEGER PRIMARY KEY,
   "held_at" TEXT,
   "held_by" TEXT,
   "reason" TEXT
)""",
    """CREATE TABLE IF NOT EXISTS "audit" (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT NOT NULL,
   "who" TEXT NOT NULL,
   "action" TEXT NOT NULL,
   "call_id" INTEGER,
   "detail" TEXT
)""",
    """CREATE INDEX IF NOT EXISTS "idx_audit_call_id"
    ON "audit" ("call_id")""",
    """CREATE INDEX IF NOT EXISTS "idx_audit_at"
    ON "audit" ("at")""",
    """CREATE TABLE IF NOT EXISTS "deletions" (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT NOT NULL,
   "call_id" INTEGER NOT NULL,
   "line" TEXT,
   "started_at" TEXT,
   "ended_at" TEXT,
   "path" TEXT,
   "bytes" INTEGER,
   "sha256" TEXT,
   "why" TEXT NOT NULL,
   "by" TEXT,
   "detail" TEXT
)""",
    """CREATE INDEX IF NOT EXISTS "idx_deletions_started_at"
    ON "deletions" ("started_at")""",
    """CREATE INDEX IF NOT EXISTS "idx_deletions_call_id"
    ON "deletions" ("call_id")""",
    """CREATE TABLE IF NOT EXISTS "deleting" (
   "call_id" INTEGER PRIMARY KEY,
   "path" TEXT,
   "why" TEXT,
   "by" TEXT,
   "detail" TEXT,
   "queued_at" TEXT,
   "file_missing" INTEGER
)""",
) + tuple(t for table in APPEND_ONLY for t in _append_only_triggers(table))

# 2 (web interface): its users, sessions, API tokens, failed logins and audit trail, and the
# indexes its call-list filters need (DTMF present, duration; the rest exist since 1).
# ``web_audit`` is append-only like ``audit``; it also holds what is not about one recording
# (logins, failed ones too) and the client's address.
_V2_WEB: tuple[str, ...] = (
    """CREATE TABLE web_users (
   "name" TEXT PRIMARY KEY,
   "role" TEXT NOT NULL,
   "password_hash" TEXT NOT NULL,
   "token_hash" TEXT,
   "created_at" TEXT NOT NULL
)""",
    """CREATE TABLE web_sessions (
   "id_hash" TEXT PRIMARY KEY,
   "user" TEXT NOT NULL,
   "csrf" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "expires_at" TEXT NOT NULL,
   "address" TEXT
)""",
    """CREATE INDEX idx_web_sessions_user ON web_sessions ("user")""",
    """CREATE TABLE web_login_failures (
   "user" TEXT NOT NULL,
   "address" TEXT NOT NULL,
   "failures" INTEGER NOT NULL,
   "last_at" TEXT NOT NULL,
   PRIMARY KEY ("user", "address")
)""",
    """CREATE TABLE web_audit (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT NOT NULL,
   "user" TEXT,
   "address" TEXT,
   "action" TEXT NOT NULL,
   "call_id" INTEGER,
   "detail" TEXT
)""",
    """CREATE INDEX idx_web_audit_at ON web_audit ("at")""",
    """CREATE INDEX idx_calls_dtmf ON calls ("dtmf")""",
    """CREATE INDEX idx_calls_duration_s ON calls ("duration_s")""",
) + _append_only_triggers("web_audit")

# 2 (archive): when a recording's copy off the box was verified (ISO, null: not archived yet).
_ARCHIVED_AT = (
    """ALTER TABLE "calls" ADD COLUMN "archived_at" TEXT""",
    """CREATE INDEX IF NOT EXISTS "idx_calls_archived_at" ON "calls" ("archived_at")""",
)

# 4 (web erasure): what an admin asked the recorder to erase, from the web. The web process can write
# the index but not the audio, so it records a request here and the recorder's housekeeping thread
# carries it out (``state`` pending -> done). ``number`` (scope "number") is set to null once done:
# the request must not keep the number it erased. ``result`` is JSON (erased, held, recording,
# unknown ids; freed bytes); ``error`` the last failure while it is retried. Not append-only (its
# state changes); what was asked and done is in ``web_audit``, ``audit`` and the chain.
_ERASE_REQUESTS = (
    """CREATE TABLE erase_requests (
   "id" INTEGER PRIMARY KEY,
   "requested_at" TEXT NOT NULL,
   "requested_by" TEXT NOT NULL,
   "address" TEXT,
   "reason" TEXT NOT NULL,
   "scope" TEXT NOT NULL CHECK ("scope" IN ('call', 'number')),
   "call_id" INTEGER,
   "number" TEXT,
   "state" TEXT NOT NULL CHECK ("state" IN ('pending', 'done')),
   "done_at" TEXT,
   "result" TEXT,
   "error" TEXT,
   CHECK ("scope" != 'call' OR "call_id" IS NOT NULL)
)""",
    """CREATE INDEX idx_erase_requests_state ON erase_requests ("state")""",
)

# 5 (caller ID, issue 18): what a call's caller ID said beyond the number and name, where it means
# something to the owner. ``caller_redirected_from``: the number a forwarded call was first meant for
# (ETSI/Bell MDMF 0x1A redirecting number, else 0x12 first called line; DTMF ``A<number>D<number>C``).
# ``waiting_callers``: JSON list of the second callers announced during the call (call waiting), each
# ``{"number", "name", "at_s"}`` (seconds into the recording); null when there were none. A column
# rather than a table: the list is read and deleted only with its call (retention, erasure, rebuild),
# and stays in the call's row, sidecar and export as it is. The call type (0x11) is not kept: every
# call a recorder names is a voice call set-up; ring-back-when-free and the rest change nothing the
# owner does with the recording. An erasure by number deletes the calls *from* that number and clears it
# where it is another call's caller_redirected_from or waiting caller (index/evidence.py).
_CALLER_ID_FIELDS = (
    """ALTER TABLE "calls" ADD COLUMN "caller_redirected_from" TEXT""",
    """ALTER TABLE "calls" ADD COLUMN "waiting_callers" TEXT""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1,  # 1: the schema of the releases before numbered migrations
    _V2_WEB,  # 2: the web interface (w-web; the lead renumbers at merge)
    _ARCHIVED_AT,  # 3: calls.archived_at (firmware/linetap/archive/)
    _ERASE_REQUESTS,  # 4: erasures asked for on the web (w-erase; the lead renumbers at merge)
    _CALLER_ID_FIELDS,  # 5: calls.caller_redirected_from, calls.waiting_callers (w-cid18; renumbered at merge)
)
LATEST = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    """The index's schema version (0: new, or made by a release before numbered migrations)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_known(found: int) -> None:
    """Refuse an index this release does not know how to read or write."""
    if found > LATEST:
        raise SchemaTooNew(f"index.db has schema version {found}, newer than this linetap knows ({LATEST}): "
                           "it was written by a newer release; update linetap (or restore a backup of the index)")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every missing migration; call inside a write transaction (BEGIN IMMEDIATE).

    Re-reads the version under the write lock: another process may have migrated the index
    between the caller's check and the lock. ``PRAGMA user_version`` is part of the
    transaction, so a crash half-way leaves the old version and the old schema together.
    Returns the version the index had.
    """
    found = version(conn)
    check_known(found)
    for number in range(found + 1, LATEST + 1):
        for statement in MIGRATIONS[number - 1]:
            conn.execute(statement)
    if found != LATEST:
        conn.execute(f"PRAGMA user_version = {LATEST:d}")
    return found
