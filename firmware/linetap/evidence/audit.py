"""The access audit: who read which recording, when (table ``audit``, append-only).

Every read of a recording's audio through linetap (export, decrypt, play in
the web interface) and every change to its protection (hold, release, erase; an erasure
asked for on the web: erase_request)
adds a row: ``at`` (ISO UTC), ``who``, ``action``, ``call_id``, ``detail``,
and, in the same transaction, a chain entry (``CHAINED``: kind ``hold``/``release``,
else ``audit``), so a removed audit row shows as a broken or short chain.
``verify`` is audited but not chained: it reads nothing out and changes nothing.

``who`` is the authenticated identity, never an environment variable (``SUDO_USER``
is whatever the caller set): the OS user of the process, plus the login user from the
kernel's audit login uid (``/proc/self/loginuid``, set at login by pam_loginuid and kept
across sudo; a process cannot change it without CAP_AUDIT_CONTROL).
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path
from dataclasses import dataclass

from ..clock import Clock, SystemClock, iso
from ..index import evidence as db
from ..index.db import Index

logger = logging.getLogger(__name__)

# erase_request: an erasure asked for on the web; erase: one carried out (evidence/erasure_requests.py).
ACTIONS = ("export", "decrypt", "play", "download", "hold", "release", "erase", "erase_request", "verify")
CHAINED = ("export", "decrypt", "play", "download", "hold", "release", "erase", "erase_request")
LOGINUID = Path("/proc/self/loginuid")
UNSET_LOGINUID = 4294967295  # (uid_t)-1: no login session (a service started by systemd)


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: str
    who: str
    action: str
    call_id: int | None
    detail: str | None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def login_uid(path: Path = LOGINUID) -> int | None:
    """The kernel's login uid of this process, None if unset or unknown."""
    try:
        uid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return None if uid == UNSET_LOGINUID else uid


def actor(uid: int, loginuid: int | None) -> str:
    """``root (login alice)`` when alice logged in and became root; ``alice`` when the two agree."""
    name = _user_name(uid)
    if loginuid is None or loginuid == uid:
        return name
    return f"{name} (login {_user_name(loginuid)})"


def current_user() -> str:
    """The authenticated actor of this process: its OS user and the kernel's login user."""
    return actor(os.getuid(), login_uid())


def record(index: Index, action: str, call_id: int | None, *, who: str | None = None, detail: str | None = None,
           clock: Clock | None = None, in_transaction: bool = False) -> AuditRow:
    """Append one audit row (and its chain entry, for ``CHAINED`` actions), in one transaction.

    ``who`` defaults to :func:`current_user`; the web passes its logged-in user's name.
    ``in_transaction``: the caller already holds the index's write transaction.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    now = (clock or SystemClock()).wall()
    row = AuditRow(iso(now), who or current_user(), action, call_id, detail)
    if in_transaction:
        _write(index, row, now)
    else:
        with index.write_transaction():
            _write(index, row, now)
    logger.debug("audit: %s %s call %s", row.who, row.action, row.call_id)
    return row


def _write(index: Index, row: AuditRow, now: float) -> None:
    db.audit_append(index, at=row.at, who=row.who, action=row.action, call_id=row.call_id, detail=row.detail)
    if row.action in CHAINED:
        from . import chain  # chain imports nothing from here; lazy to keep the import graph a tree
        kind = row.action if row.action in ("hold", "release") else "audit"
        body = {"by": row.who, "reason" if kind != "audit" else "detail": row.detail}
        if kind == "audit":
            body["action"] = row.action
        chain.append_event(index, kind, row.call_id, body, at=now, in_transaction=True)


def rows(index: Index, call_id: int | None = None) -> list[AuditRow]:
    return [AuditRow(r["at"], r["who"], r["action"], r["call_id"], r["detail"])
            for r in db.audit_rows(index, call_id)]
