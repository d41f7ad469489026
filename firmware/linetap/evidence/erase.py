"""Privacy requests: ``linetap erase --number DIGITS``, and the erasures asked for on the web
(:mod:`.erasure_requests`, carried out by the recorder through :func:`erase_calls`).

Every recording whose caller number is DIGITS is deleted: the file, the calls row and the
salt of its commitment in the chain (so the chain entry can no longer be linked to the number),
and the calls' events still waiting in the MQTT outbox (``<data_dir>/outbox.db``), so a broker
that comes back later never receives their caller number.
Each is logged in ``deletions`` with why ``request`` (without the number) and in the chain as an
``erasure`` entry, so ``verify`` stays clean. Held recordings are kept and listed; so are calls
still being recorded (run the erasure again once they end). Where the number is not a call's caller
but the number it was forwarded from or one of its call-waiting callers, that call stays and the
number (with the waiting caller's name) is cleared from its row and sidecar
(:func:`clear_number_elsewhere`); those fields are not in the chain's commitment, so it stays clean.

SQLite's ``secure_delete`` is switched on for the erasure and the WAL checkpointed afterwards,
so the number does not linger in free pages of ``index.db``. (Flash storage may still hold
old blocks of the audio files; with ``encrypt_to`` set those are unreadable without the key.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from ..clock import Clock
from ..index import evidence as db
from ..index.db import Index
from ..mqtt.outbox import OUTBOX_FILE, purge_calls
from ..retention import deletions
from . import audit, sidecar

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EraseResult:
    erased: tuple[int, ...]
    held: tuple[int, ...]  # kept: legal hold wins over a privacy request
    recording: tuple[int, ...]  # kept: still being written
    freed_bytes: int
    events_purged: int = 0  # undelivered MQTT events of the erased calls
    unknown: tuple[int, ...] = ()  # no such call (any more): nothing to erase
    cleared: tuple[int, ...] = ()  # other calls that had the number as forwarded-from or waiting caller

    def summary(self) -> str:
        """One line for the audit trail (ids only, never a number)."""
        return (f"{len(self.erased)} erased, {len(self.held)} kept on hold, {len(self.recording)} still recording"
                + (f", {len(self.unknown)} no longer there" if self.unknown else "")
                + (f", cleared from {len(self.cleared)} other call(s)" if self.cleared else ""))


def erase_number(index: Index, data_dir: Path, number: str, *, who: str | None = None,
                 clock: Clock | None = None) -> EraseResult:
    """Erase every recording of ``number`` (``linetap erase --number``)."""
    who = who or audit.current_user()
    result = erase_calls(index, data_dir, index.call_ids_by_number(number), who=who, clock=clock,
                         detail="privacy request (erase by caller number)")
    result = replace(result, cleared=tuple(clear_number_elsewhere(index, data_dir, number)))
    audit.record(index, "erase", None, who=who, clock=clock, detail=f"privacy request: {result.summary()}")
    checkpoint_wal(index)
    logger.info("privacy erasure by %s: %d recording(s) erased, %d held kept", who, len(result.erased),
                len(result.held))
    return result


def erase_calls(index: Index, data_dir: Path, call_ids: list[int], *, who: str, detail: str,
                clock: Clock | None = None) -> EraseResult:
    """Erase these recordings as a privacy request: files, rows, salts, undelivered events, each
    logged in ``deletions`` and chained as an ``erasure``. Held ones and ones still recording are
    kept and listed. Leaves SQLite's ``secure_delete`` on; the caller audits the request and then
    calls :func:`checkpoint_wal` (so what it writes afterwards is zeroed and checkpointed too)."""
    index.secure_delete()
    res = deletions.delete_recordings(index, Path(data_dir), [(i, "request") for i in call_ids], by=who,
                                      detail=detail, clock=clock)
    erased = frozenset(d.call_id for d in res.deleted)
    purged = purge_calls(Path(data_dir) / OUTBOX_FILE, erased)
    return EraseResult(
        erased=tuple(d.call_id for d in res.deleted),
        held=tuple(r.call_id for r in res.refused if r.reason == "held"),
        recording=tuple(r.call_id for r in res.refused if r.reason == "recording"),
        freed_bytes=res.freed_bytes,
        events_purged=purged,
        unknown=tuple(r.call_id for r in res.refused if r.reason == "unknown"),
    )


def clear_number_elsewhere(index: Index, data_dir: Path, number: str) -> list[int]:
    """Clear ``number`` from the calls that kept it as their forwarded-from number or a call-waiting
    caller, in the index and in their sidecars; their ids. Call with ``secure_delete`` on (as
    :func:`erase_calls` leaves it), then :func:`checkpoint_wal`."""
    ids = db.clear_number_from_other_calls(index, number)
    for call_id in ids:
        sidecar.refresh(index, Path(data_dir), call_id)
    return ids


def checkpoint_wal(index: Index) -> None:
    """Fold the WAL into ``index.db`` and truncate it, so erased rows leave no copy there (best effort:
    a reader may hold the WAL open)."""
    try:
        index.checkpoint_wal()
    except Exception as e:  # noqa: BLE001
        logger.warning("could not checkpoint the index after an erasure: %s", e)
