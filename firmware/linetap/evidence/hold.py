"""Legal hold: a held recording is exempt from every deletion (space, retention, erasure).

Holds live in their own table (``holds``), so they can be placed on a call
that is still being recorded. Each hold and release is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..clock import Clock, SystemClock, iso
from ..index.db import Index
from . import UnknownCall, audit
from .tables import ensure_tables

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hold:
    call_id: int
    held_at: str
    held_by: str
    reason: str | None


def hold(index: Index, call_id: int, *, reason: str | None = None, who: str | None = None,
         clock: Clock | None = None) -> bool:
    """Place a hold; False if it was already held (the first reason is kept)."""
    ensure_tables(index)
    who = who or audit.current_user()
    clock = clock or SystemClock()
    with index.write_transaction():
        if not index.query("select 1 from calls where id = ?", [call_id]):
            raise UnknownCall(f"no recording with id {call_id}")
        if index.query("select 1 from holds where call_id = ?", [call_id]):
            return False
        index.execute("insert into holds (call_id, held_at, held_by, reason) values (?, ?, ?, ?)",
                      [call_id, iso(clock.wall()), who, reason])
        audit.record(index, "hold", call_id, who=who, detail=reason, clock=clock)
    logger.info("call %d placed on legal hold by %s", call_id, who)
    return True


def release(index: Index, call_id: int, *, who: str | None = None, clock: Clock | None = None) -> bool:
    """Lift a hold; False if the call was not held."""
    ensure_tables(index)
    who = who or audit.current_user()
    with index.write_transaction():
        if not index.query("select 1 from holds where call_id = ?", [call_id]):
            if not index.query("select 1 from calls where id = ?", [call_id]):
                raise UnknownCall(f"no recording with id {call_id}")
            return False
        index.execute("delete from holds where call_id = ?", [call_id])
        audit.record(index, "release", call_id, who=who, clock=clock)
    logger.info("legal hold on call %d released by %s", call_id, who)
    return True


def holds(index: Index) -> list[Hold]:
    ensure_tables(index)
    return [Hold(r["call_id"], r["held_at"], r["held_by"], r["reason"])
            for r in index.query("select * from holds order by call_id")]


def is_held(index: Index, call_id: int) -> bool:
    ensure_tables(index)
    return bool(index.query("select 1 from holds where call_id = ?", [call_id]))
