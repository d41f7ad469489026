"""Erasures asked for on the web, carried out by the recorder.

The web process may write the index but not the audio (``systemd/linetap-web.service``: the data
partition is read-only to it but for ``index.db`` and its own state), so an admin's "erase" is a row in
``erase_requests`` (:func:`submit`; in the web audit trail and in the evidence audit and chain, in the
same transaction), and the recorder's housekeeping thread, which may delete, carries it out within
about a second (:func:`carry_out_pending`) through the same path as ``linetap erase``
(:func:`linetap.evidence.erase.erase_calls`: files, rows, salts, undelivered MQTT events, ``deletions``
and an ``erasure`` chain entry per call), then marks it done with its result, audited the same way.

Scopes: ``call`` (one call, by id) and ``number`` (every call of a caller number that *started before the
request was made*: a call that begins afterwards was not asked about). A call on legal hold is kept and
listed in the result (``held``); the request is done all the same (release the hold and ask again). A call
still being recorded is waited for: the request stays pending, its partial result lists it under
``recording``, and it is erased once it ends. Once done, the request no longer holds the number it
erased (set to null under SQLite's ``secure_delete``, the WAL checkpointed, as ``linetap erase`` does).
A failure (a disk error) is kept in ``error`` and retried every slow check (10 s), not every second.

This module imports nothing heavy (the web process uses :func:`submit`, :func:`get` and :func:`page`
without numpy); the deletion path is imported when a request is carried out, in the recorder.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock, iso
from ..index import evidence as db
from ..index import web as web_db
from ..index.db import Index
from . import UnknownCall, audit

logger = logging.getLogger(__name__)

SCOPES = ("call", "number")
NUMBER_RE = re.compile(r"^\+?[0-9*#]{1,32}$")  # a caller number as the index stores it
MAX_REASON = 500


def normalize_number(text: str) -> str:
    """A caller number as typed (spaces and dashes allowed) in the index's form; ``ValueError`` if it
    is not one (digits, ``*``, ``#``, an optional leading ``+``; at most 32)."""
    number = text.replace(" ", "").replace("-", "")
    if not NUMBER_RE.match(number):
        raise ValueError("must be the caller's digits (0-9, * #, optional leading +)")
    return number


def submit(index: Index, *, requested_by: str, address: str | None, reason: str, call_id: int | None = None,
           number: str | None = None, clock: Clock | None = None) -> int:
    """Record a pending request (exactly one of ``call_id`` or ``number``) and audit it; returns its id.

    ``UnknownCall`` if ``call_id`` names no recording; ``ValueError`` for a bad number or reason. The
    request row, its ``web_audit`` row (action ``erase_request``) and its evidence audit row and chain
    entry are one transaction: there is no request the trail does not show.
    """
    if (call_id is None) == (number is None):
        raise ValueError("call_id, number: name one of them, not both")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValueError(f"reason: needed, at most {MAX_REASON} characters")
    if number is not None:
        try:
            number = normalize_number(number)
        except ValueError as e:
            raise ValueError(f"number: {e}") from None
    scope = "call" if call_id is not None else "number"
    clock = clock or SystemClock()
    at = iso(clock.wall())
    with index.write_transaction():
        if call_id is not None and not db.call_exists(index, call_id):
            raise UnknownCall(f"no recording with id {call_id}")
        rid = db.erase_request_add(index, requested_at=at, requested_by=requested_by, address=address,
                                   reason=reason, scope=scope, call_id=call_id, number=number)
        what = f"call {call_id}" if call_id is not None else "every call of a caller number"  # never the number
        web_db.web_audit_append(index, at=at, user=requested_by, address=address, action="erase_request",
                                call_id=call_id, detail=f"request {rid}: {what}; reason: {reason}")
        audit.record(index, "erase_request", call_id, who=f"web:{requested_by}", clock=clock, in_transaction=True,
                     detail=f"request {rid} from {address}: {what}; reason: {reason}")
    logger.info("erase request %d by web:%s: %s", rid, requested_by, what)
    return rid


def as_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A request as the web API shows it (``result`` parsed)."""
    return {**row, "result": json.loads(row["result"]) if row.get("result") else None}


def get(index: Index, request_id: int) -> dict[str, Any] | None:
    row = db.erase_request(index, request_id)
    return as_dict(row) if row else None


def page(index: Index, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    total, rows = db.erase_requests_page(index, limit=limit, offset=offset)
    return total, [as_dict(r) for r in rows]


def carry_out_pending(index: Index, data_dir: Path, *, clock: Clock | None = None,
                      with_errors: bool = False) -> list[int]:
    """Carry out the pending requests (the recorder's housekeeping thread, every second; those that
    failed before only when ``with_errors``, every slow check). Returns the ids now done."""
    rows = db.erase_requests_pending(index, with_errors=with_errors)
    if not rows:
        return []
    from . import erase  # the deletion path (numpy, soundfile): the recorder's, never the web's
    clock = clock or SystemClock()
    done: list[int] = []
    touched = False
    index.secure_delete()  # before anything is erased or the request's number is nulled
    try:
        for row in rows:
            try:
                finished, erased = _carry_out(index, Path(data_dir), row, clock, erase)
            except Exception as e:  # noqa: BLE001 - kept in the row, retried every slow check
                touched = True
                logger.error("erase request %d failed (retried): %s", row["id"], e)
                db.erase_request_progress(index, row["id"], result=row["result"], error=str(e)[:500] or repr(e))
                continue
            touched = touched or erased or finished
            if finished:
                done.append(row["id"])
    finally:
        if touched:
            erase.checkpoint_wal(index)  # the erased rows and the request's number leave no copy in the WAL
        index.secure_delete(False)
    return done


def _carry_out(index: Index, data_dir: Path, row: dict[str, Any], clock: Clock, erase: Any) -> tuple[bool, bool]:
    """One pass over one request: (done now, erased anything)."""
    rid, user = row["id"], row["requested_by"]
    if row["scope"] == "call":
        ids = [int(row["call_id"])]
    else:
        ids = db.call_ids_of_number_started_before(index, row["number"], row["requested_at"])
    prev = json.loads(row["result"]) if row["result"] else {}
    state = db.call_states(index, ids)
    held = [i for i in ids if i in state and state[i]["held"]]
    recording = [i for i in ids if i in state and not state[i]["held"] and state[i]["status"] == "recording"]
    ready = [i for i in ids if i in state and not state[i]["held"] and state[i]["status"] != "recording"]
    unknown = [i for i in ids if i not in state and i not in prev.get("erased", [])]
    result = {"erased": list(prev.get("erased", [])), "held": held, "recording": recording, "unknown": unknown,
              "freed_bytes": int(prev.get("freed_bytes", 0)), "events_purged": int(prev.get("events_purged", 0))}
    if ready:  # only then a write (a request waiting on a recording call costs one query a second)
        res = erase.erase_calls(index, data_dir, ready, who=f"web:{user}", clock=clock,
                                detail=f"privacy request (web request {rid})")
        result["erased"] += list(res.erased)
        result["held"] = sorted({*held, *res.held})  # a hold placed since the look above still wins
        result["recording"] = sorted({*recording, *res.recording})
        result["unknown"] = sorted({*unknown, *res.unknown})
        result["freed_bytes"] += res.freed_bytes
        result["events_purged"] += res.events_purged
    text = json.dumps(result, sort_keys=True)
    if result["recording"]:
        if text != row["result"] or row["error"] is not None:
            db.erase_request_progress(index, rid, result=text, error=None)
        return False, bool(ready)
    if row["scope"] == "number":  # as the CLI's: the number as another call's forwarded-from or waiting caller
        cleared = erase.clear_number_elsewhere(index, data_dir, row["number"])
        if cleared:
            result["cleared"] = cleared
            text = json.dumps(result, sort_keys=True)
    summary = (f"{len(result['erased'])} erased, {len(result['held'])} kept on hold"
               + (f", {len(result['unknown'])} no longer there" if result["unknown"] else "")
               + (f", cleared from {len(result['cleared'])} other call(s)" if result.get("cleared") else ""))
    now = clock.wall()
    call_id = row["call_id"] if row["scope"] == "call" else None
    with index.write_transaction():
        db.erase_request_done(index, rid, done_at=iso(now), result=text)
        web_db.web_audit_append(index, at=iso(now), user=user, address=row["address"], action="erase",
                                call_id=call_id, detail=f"request {rid} carried out by the recorder: {summary}")
        audit.record(index, "erase", call_id, who=f"web:{user}", clock=clock, in_transaction=True,
                     detail=f"web request {rid}: {summary}")
    logger.info("erase request %d by web:%s done: %s", rid, user, summary)
    return True, bool(ready)
