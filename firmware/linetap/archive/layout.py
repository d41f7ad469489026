"""What goes where on the remote, and when the archive is behind (pure).

Under the configured ``remote`` (``name:bucket/prefix``):

``<path>``                       the recording exactly as stored (sealed if encryption is on),
                                 at its index ``path`` (``recordings/line1/2026/...``)
``<path>.json``                  its metadata sidecar: the call object and its chain entry
``chain/<first seq>.jsonl``      the chain entries (every kind: recordings and deletions), one
                                 JSON object a line, each segment continuing the previous one
``checkpoints/<length>.json``    the box's signed checkpoints (evidence/checkpoint.py: ``{"id",
                                 "ts", "length", "head", "key", "signature"}``), each once the
                                 entries it covers are on the remote: the remote alone shows how
                                 long the chain was and what its last hash was, signed by the box

With those, ``linetap archive verify`` (and anyone with the entries) can recompute the chain
from the remote alone: ``digest = sha256(canonical payload)``, ``hash = sha256(prev + digest)``
(evidence/export_verify.py).
"""

from __future__ import annotations

from typing import Any

from ..clock import iso

CHAIN_DIR = "chain"
CHECKPOINT_DIR = "checkpoints"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "linetap-archive/1"


def sidecar_path(path: str) -> str:
    return path + SIDECAR_SUFFIX


def chain_segment_path(first_seq: int) -> str:
    return f"{CHAIN_DIR}/{first_seq:010d}.jsonl"


def checkpoint_path(length: int) -> str:
    return f"{CHECKPOINT_DIR}/{length:010d}.json"


def sidecar(call: dict[str, Any], entry: dict[str, Any] | None, *, recorder_id: str) -> dict[str, Any]:
    """The metadata beside a recording: the call object (contract fields, ``archived_at`` left out:
    it is set only after this copy is verified) and its chain entry."""
    return {"format": SIDECAR_FORMAT, "recorder_id": recorder_id,
            "call": {k: v for k, v in call.items() if k != "archived_at"}, "chain_entry": entry}


def entry_doc(e: Any) -> dict[str, Any]:
    """A chain entry as stored on the remote (evidence.chain.Entry -> JSON)."""
    return {"seq": e.seq, "kind": e.kind, "call_id": e.call_id, "payload": e.payload, "digest": e.digest,
            "prev_hash": e.prev_hash, "hash": e.hash}


def behind(*, oldest_ended_at: float | None, now: float, behind_after_s: float,
           last_error: str | None) -> tuple[bool, str]:
    """ARCHIVE_BEHIND: active while a recording that ended more than ``behind_after_s`` ago is
    still not archived; the detail says how old it is and the last error, if any."""
    if oldest_ended_at is None or now - oldest_ended_at <= behind_after_s:
        return False, ""
    hours = (now - oldest_ended_at) / 3600.0
    why = f"; last error: {last_error}" if last_error else ""
    return True, f"oldest unarchived recording ended {hours:.1f} h ago{why}"


def backoff_s(failures: int, *, min_s: float, max_s: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed rounds: doubling from ``min_s``, capped."""
    if failures <= 0:
        return 0.0
    return min(max_s, min_s * (2 ** min(failures - 1, 30)))
