"""The web interface's queries: its users, sessions, failed logins, audit trail and the call list.

Named by what they mean; :mod:`linetap.web` decides, these read and write. The tables are
migration 2 of :mod:`linetap.index.schema`. Every write is one short statement (or the caller's
:meth:`Index.write_transaction`), so the web process holds SQLite's write lock for
milliseconds and never delays the recorder's own writes beyond its 10 s busy timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .db import Index

# --- users ---


def user_add(index: Index, *, name: str, role: str, password_hash: str, created_at: str) -> None:
    """Insert a user; ``sqlite3.IntegrityError`` if the name is taken."""
    index.execute("insert into web_users (name, role, password_hash, token_hash, created_at) "
                  "values (?, ?, ?, null, ?)", [name, role, password_hash, created_at])


def user_get(index: Index, name: str) -> dict[str, Any] | None:
    rows = index.query("select * from web_users where name = ?", [name])
    return rows[0] if rows else None


def user_by_token_hash(index: Index, token_hash: str) -> dict[str, Any] | None:
    rows = index.query("select * from web_users where token_hash = ?", [token_hash])
    return rows[0] if rows else None


def user_set_password(index: Index, name: str, password_hash: str) -> bool:
    """Change a password and end the user's sessions (a changed password logs everyone out)."""
    with index.write_transaction():
        if not index.query("select 1 from web_users where name = ?", [name]):
            return False
        index.execute("update web_users set password_hash = ? where name = ?", [password_hash, name])
        index.execute("delete from web_sessions where user = ?", [name])
    return True


def user_set_token(index: Index, name: str, token_hash: str | None) -> bool:
    with index.write_transaction():
        if not index.query("select 1 from web_users where name = ?", [name]):
            return False
        index.execute("update web_users set token_hash = ? where name = ?", [token_hash, name])
    return True


def user_delete(index: Index, name: str) -> bool:
    """Remove a user and their sessions; False if there was none."""
    with index.write_transaction():
        if not index.query("select 1 from web_users where name = ?", [name]):
            return False
        index.execute("delete from web_sessions where user = ?", [name])
        index.execute("delete from web_users where name = ?", [name])
    return True


def users(index: Index) -> list[dict[str, Any]]:
    """Every user {name, role, created_at, has_token}, by name (never the hashes)."""
    return index.query("select name, role, created_at, token_hash is not null as has_token "
                       "from web_users order by name")


def admin_count(index: Index) -> int:
    return int(index.query("select count(*) as n from web_users where role = 'admin'")[0]["n"])


# --- sessions ---


def session_add(index: Index, *, id_hash: str, user: str, csrf: str, created_at: str, expires_at: str,
                address: str | None) -> None:
    index.execute("insert into web_sessions (id_hash, user, csrf, created_at, expires_at, address) "
                  "values (?, ?, ?, ?, ?, ?)", [id_hash, user, csrf, created_at, expires_at, address])


def session_get(index: Index, id_hash: str, now: str) -> dict[str, Any] | None:
    """The live session {id_hash, user, role, csrf, expires_at} (joined with its user), None if
    unknown, expired or its user deleted."""
    rows = index.query("select s.id_hash, s.user, u.role, s.csrf, s.expires_at from web_sessions s "
                       "join web_users u on u.name = s.user where s.id_hash = ? and s.expires_at > ?",
                       [id_hash, now])
    return rows[0] if rows else None


def session_delete(index: Index, id_hash: str) -> None:
    index.execute("delete from web_sessions where id_hash = ?", [id_hash])


def sessions_delete_expired(index: Index, now: str) -> None:
    index.execute("delete from web_sessions where expires_at <= ?", [now])


# --- failed logins (per user and address) ---


def failures_of(index: Index, user: str, address: str) -> dict[str, Any] | None:
    """{failures, last_at} of ``user`` from ``address``, None if none since the last success."""
    rows = index.query("select failures, last_at from web_login_failures where user = ? and address = ?",
                       [user, address])
    return rows[0] if rows else None


def failure_add(index: Index, user: str, address: str, at: str) -> int:
    """Count one more failed login; returns the count."""
    with index.write_transaction():
        index.execute("insert into web_login_failures (user, address, failures, last_at) values (?, ?, 1, ?) "
                      "on conflict (user, address) do update set failures = failures + 1, last_at = excluded.last_at",
                      [user, address, at])
        row = index.query("select failures from web_login_failures where user = ? and address = ?",
                          [user, address])
    return int(row[0]["failures"])


def failures_clear(index: Index, user: str, address: str) -> None:
    index.execute("delete from web_login_failures where user = ? and address = ?", [user, address])


# --- the web audit trail (append-only) ---


def web_audit_append(index: Index, *, at: str, user: str | None, address: str | None, action: str,
                     call_id: int | None, detail: str | None) -> None:
    index.execute("insert into web_audit (at, user, address, action, call_id, detail) values (?, ?, ?, ?, ?, ?)",
                  [at, user, address, action, call_id, detail])


def web_audit_rows(index: Index, *, user: str | None = None, action: str | None = None,
                   call_id: int | None = None, since: str | None = None, until: str | None = None,
                   limit: int = 200, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page newest first) of the web audit trail."""
    where, params = _where([("user = ?", user), ("action = ?", action), ("call_id = ?", call_id),
                            ("at >= ?", since), ("at < ?", until)])
    total = int(index.query(f"select count(*) as n from web_audit{where}", params)[0]["n"])
    rows = index.query(f"select * from web_audit{where} order by id desc limit ? offset ?",
                       [*params, limit, offset])
    return total, rows


# --- the call list ---


@dataclass(frozen=True, slots=True)
class CallFilter:
    """What the calls page and ``GET /api/calls`` filter on (None: no condition)."""

    line: str | None = None
    since: str | None = None  # ISO UTC: calls that end at or after
    until: str | None = None  # ISO UTC: calls that start before
    number: str | None = None  # part of the caller's number
    name: str | None = None  # part of the caller's name (case-insensitive)
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    dtmf: bool | None = None  # digits were dialled / none
    held: bool | None = None


def _where(conds: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    used = [(sql, v) for sql, v in conds if v is not None]
    if not used:
        return "", []
    return " where " + " and ".join(sql for sql, _ in used), [v for _, v in used]


SORT_MATCHES_MAX = 5000  # up to this many matches, sorting them beats walking the time index


def calls_page(index: Index, f: CallFilter, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of calls rows newest first, each with ``held``)."""
    conds: list[tuple[str, Any]] = [
        ("line = ?", f.line),
        ("coalesce(ended_at, '9999') >= ?", f.since),
        ("started_at < ?", f.until),
        # instr(): a plain substring test, about twice as fast as LIKE '%..%' on a full scan, and
        # takes % and _ literally; names compare case-insensitively (ASCII, as SQLite's lower()).
        ("instr(caller_number, ?) > 0", f.number),
        ("instr(lower(caller_name), lower(?)) > 0", f.name),
        ("duration_s >= ?", f.min_duration_s),
        ("duration_s <= ?", f.max_duration_s),
    ]
    where, params = _where(conds)
    extra = []
    if f.dtmf is not None:  # "dtmf > ''" is a range on idx_calls_dtmf; null and '' both mean none
        extra.append("dtmf > ''" if f.dtmf else "coalesce(dtmf, '') = ''")
    if f.held is not None:  # rowid IN (...): a lookup per hold, not a probe per call
        extra.append("id " + ("" if f.held else "not ") + "in (select call_id from holds)")
    if extra:
        where = (where + " and " if where else " where ") + " and ".join(extra)
    held_col = "id in (select call_id from holds) as held"
    total = int(index.query(f"select count(*) as n from calls{where}", params)[0]["n"])
    # Newest first. Few matches (part of a number, a name, the held calls): scan once and sort only the
    # matches ("+started_at" keeps SQLite off the time index, which would fetch every row to test it:
    # 40 -> 13 ms for part of a number at 100 000 calls). Many matches: walk idx_calls_started_at
    # backwards and stop after the page (sorting 100 000 matches costs 350 ms; benchmarks/web.py).
    order = "+started_at desc, id desc" if total <= SORT_MATCHES_MAX else "started_at desc, id desc"
    rows = index.query(f"select calls.*, {held_col} from calls{where} order by {order} limit ? offset ?",
                       [*params, limit, offset])
    return total, rows


def hold_of(index: Index, call_id: int) -> dict[str, Any] | None:
    """The hold on ``call_id`` {held_at, held_by, reason}, None if not held."""
    rows = index.query("select held_at, held_by, reason from holds where call_id = ?", [call_id])
    return rows[0] if rows else None

