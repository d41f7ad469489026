"""Keeping a recording's sidecar (``<name>.<ext>.json``, see :mod:`linetap.store.recordings`) in step
with the index: after it is chained (and sealed), and when a legal hold is placed or lifted.

The sidecar is what lets the index be lost without losing the recordings' metadata
(:mod:`linetap.index.rebuild`). It repeats what the index already holds in clear, caller ID
and DTMF included (as stored: masked if the line masks DTMF), also for sealed recordings:
sealing protects the audio, not the index's metadata, and the sidecar is no weaker than the
index it stands in for (both 0640, in the data directory).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..index import evidence as db
from ..index.db import Index
from ..store.sidecar import sidecar_doc, write_sidecar
from . import chain

logger = logging.getLogger(__name__)


def refresh(index: Index, data_dir: Path, call_id: int) -> Path | None:
    """Rewrite the sidecar of ``call_id`` from its row, hold and chain entry; None if the call has
    no finished file. A failure to write is logged, not raised: the audio and the index are the
    record, the sidecar only a copy for a rebuild."""
    row = index.get_call(call_id)
    if row is None or not row.get("path") or row.get("status") == "recording":
        return None
    hold = db.hold_of(index, call_id)
    entry = chain.live_entry(index, call_id)
    doc = sidecar_doc(row, hold=hold, chain_seq=entry.seq if entry else None,
                      chain_hash=entry.hash if entry else None)
    try:
        return write_sidecar(Path(data_dir), doc)
    except OSError as e:
        logger.error("call %d: cannot write its sidecar: %s", call_id, e)
        return None
