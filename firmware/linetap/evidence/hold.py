"""Legal hold: a held recording is exempt from every deletion (space, retention, erasure).

Holds live in their own table (``holds``), so they can be placed on a call
that is still being recorded. Each hold and release is audited and is a chain entry (kind
``hold``/``release``, with who and why), written in the same transaction as the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..clock import Clock, SystemClock, iso
from ..index import evidence as db
from ..index.db import Index
from . import UnknownCall, audit

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
    who = who or audit.current_user()
    clock = clock or SystemClock()
    with index.write_transaction():
        if not db.call_exists(index, call_id):
            raise UnknownCall(f"no recording with id {call_id}")
        if db.is_held(index, call_id):
            return False
        db.hold_add(index, call_id, held_at=iso(clock.wall()), held_by=who, reason=reason)
        audit.record(index, "hold", call_id, who=who, detail=reason, clock=clock, in_transaction=True)
    logger.info("call %d placed on legal hold by %s", call_id, who)
    return True


def release(index: Index, call_id: int, *, who: str | None = None, clock: Clock | None = None) -> bool:
    """Lift a hold; False if the call was not held."""
    who = who or audit.current_user()
    with index.write_transaction():
        if not db.is_held(index, call_id):
            if not db.call_exists(index, call_id):
                raise UnknownCall(f"no recording with id {call_id}")
            return False
        db.hold_remove(index, call_id)
        audit.record(index, "release", call_id, who=who, clock=clock, in_transaction=True)
    logger.info("legal hold on call %d released by %s", call_id, who)
    return True


def holds(index: Index) -> list[Hold]:
    return [Hold(r["call_id"], r["held_at"], r["held_by"], r["reason"])
            for r in db.holds(index)]


def is_held(index: Index, call_id: int) -> bool:
    return db.is_held(index, call_id)
