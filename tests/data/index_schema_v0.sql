-- The schema of index.db as the release before numbered migrations created it (user_version 0):
-- captured from sqlite_master of a fresh index made by open_index() + evidence.tables.ensure_tables()
-- at commit 7b84749. Tests build a previous-release index from this text; do not edit it.
CREATE TABLE "calls" (
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
);
CREATE INDEX "idx_calls_started_at"
    ON "calls" ("started_at");
CREATE INDEX "idx_calls_line_started_at"
    ON "calls" ("line", "started_at");
CREATE INDEX "idx_calls_caller_number"
    ON "calls" ("caller_number");
CREATE INDEX "idx_calls_status"
    ON "calls" ("status");
CREATE TABLE "alarms" (
   "id" INTEGER PRIMARY KEY,
   "code" TEXT,
   "severity" TEXT,
   "line" TEXT,
   "raised_at" TEXT,
   "cleared_at" TEXT,
   "detail" TEXT
);
CREATE INDEX "idx_alarms_raised_at"
    ON "alarms" ("raised_at");
CREATE TABLE "gaps" (
   "id" INTEGER PRIMARY KEY,
   "line" TEXT,
   "started_at" TEXT,
   "ended_at" TEXT,
   "reason" TEXT
);
CREATE INDEX "idx_gaps_line_started_at"
    ON "gaps" ("line", "started_at");
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
CREATE TABLE "chain" (
   "seq" INTEGER PRIMARY KEY,
   "kind" TEXT NOT NULL,
   "call_id" INTEGER,
   "at" TEXT,
   "payload" TEXT NOT NULL,
   "digest" TEXT NOT NULL,
   "prev_hash" TEXT NOT NULL,
   "hash" TEXT NOT NULL
);
CREATE INDEX "idx_chain_call_id_kind"
    ON "chain" ("call_id", "kind");
CREATE TABLE "chain_salts" (
   "call_id" INTEGER PRIMARY KEY,
   "salt" TEXT
);
CREATE TABLE "holds" (
   "call_id" INTEGER PRIMARY KEY,
   "held_at" TEXT,
   "held_by" TEXT,
   "reason" TEXT
);
CREATE TABLE "audit" (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT NOT NULL,
   "who" TEXT NOT NULL,
   "action" TEXT NOT NULL,
   "call_id" INTEGER,
   "detail" TEXT
);
CREATE INDEX "idx_audit_call_id"
    ON "audit" ("call_id");
CREATE INDEX "idx_audit_at"
    ON "audit" ("at");
CREATE TABLE "deletions" (
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
);
CREATE INDEX "idx_deletions_started_at"
    ON "deletions" ("started_at");
CREATE INDEX "idx_deletions_call_id"
    ON "deletions" ("call_id");
CREATE TABLE "deleting" (
   "call_id" INTEGER PRIMARY KEY,
   "path" TEXT,
   "why" TEXT,
   "by" TEXT,
   "detail" TEXT,
   "queued_at" TEXT,
   "file_missing" INTEGER
);
CREATE TRIGGER chain_no_update BEFORE UPDATE ON chain BEGIN SELECT RAISE(ABORT, 'chain is append-only'); END;
CREATE TRIGGER chain_no_delete BEFORE DELETE ON chain BEGIN SELECT RAISE(ABORT, 'chain is append-only'); END;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER deletions_no_update BEFORE UPDATE ON deletions BEGIN SELECT RAISE(ABORT, 'deletions is append-only'); END;
CREATE TRIGGER deletions_no_delete BEFORE DELETE ON deletions BEGIN SELECT RAISE(ABORT, 'deletions is append-only'); END;
