"""The access audit: who read which recording, when (table ``audit``, append-only).

Every read of a recording's audio through linetap (export, decrypt, play in
the web interface) and every change to its protection (hold, release, erase)
adds a row: ``at`` (ISO UTC), ``who``, ``action``, ``call_id``, ``detail``.
"""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass

from ..clock import Clock, SystemClock, iso
from ..index import evidence as db
from ..index.db import Index

logger = logging.getLogger(__name__)

ACTIONS = ("export", "decrypt", "play", "download", "hold", "release", "erase", "verify")


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: str
    who: str
    action: str
    call_id: int | None
    detail: str | None


def current_user() -> str:
    """The unix user running this process ("alice via sudo" when sudo'd to root)."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    if sudo and os.getuid() == 0 and sudo != name:
        return f"{sudo} via sudo"
    return name


def record(index: Index, action: str, call_id: int | None, *, who: str | None = None, detail: str | None = None,
           clock: Clock | None = None) -> AuditRow:
    """Append one audit row. ``who`` defaults to the unix user; pass the web user's name for web reads."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    row = AuditRow(iso((clock or SystemClock()).wall()), who or current_user(), action, call_id, detail)
    db.audit_append(index, at=row.at, who=row.who, action=row.action, call_id=row.call_id, detail=row.detail)
    logger.debug("audit: %s %s call %s", row.who, row.action, row.call_id)
    return row


def rows(index: Index, call_id: int | None = None) -> list[AuditRow]:
    return [AuditRow(r["at"], r["who"], r["action"], r["call_id"], r["detail"])
            for r in db.audit_rows(index, call_id)]
