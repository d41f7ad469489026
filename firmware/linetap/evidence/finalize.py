"""What happens to a recording once its file is finished: encryption (optional), then the chain.

The recorder calls :func:`finalize_recording` right after ``Recording.finish`` and
:func:`finalize_pending` at start-up after ``salvage`` (recovered recordings, and any call a
crash left finished but not yet sealed or chained).

With ``[storage] encrypt_to`` set, a recording is encrypted as it is written (``Recording``
with ``encrypt=``, :mod:`linetap.crypto`): its path already ends in ``.sealed``, there is no
plaintext to seal, and it is only chained (its ``plain_sha256`` is not known: null). The
calls row's path, bytes and sha256 describe the encrypted file, which is what is on the disk
and what ``verify`` re-hashes.

A plaintext ``<name>.<ext>`` found here while ``encrypt_to`` is set (recorded before
encryption was turned on) is sealed the older way: ``<name>.<ext>.sealed`` in the LTSEAL
format, the plaintext unlinked (which does not scrub its flash blocks), and the chain records
its ``plain_sha256``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import crypto
from ..clock import Clock
from ..index import evidence as db
from ..index.db import Index
from ..store.recordings import fsync_dir, sha256_file
from . import chain, sidecar

logger = logging.getLogger(__name__)


def finalize_recording(index: Index, data_dir: Path, row: dict[str, Any], storage: Any, *,
                       clock: Clock | None = None) -> dict[str, Any]:
    """Seal (if configured) and chain one finished recording; returns the calls fields changed.

    ``row`` needs only ``id`` (the dict ``Recording.finish`` returns will do): the calls row
    is re-read, so the chain commits to exactly what the index holds.
    """
    data_dir = Path(data_dir)
    current = index.get_call(int(row["id"]))
    if current is None:
        raise LookupError(f"no calls row {row['id']}")
    if current["status"] == "recording":
        raise ValueError(f"call {current['id']} is still being recorded; finalize after Recording.finish")
    updated: dict[str, Any] = {}
    plain_sha: str | None = None
    rel = current.get("path") or ""
    encrypt_to = getattr(storage, "encrypt_to", None)
    if rel.endswith(crypto.SUFFIX):
        plain_sha = None  # sealed before a restart; the plaintext's hash was not kept
    elif encrypt_to is not None and rel:
        src = data_dir / rel
        sealed_rel = rel + crypto.SUFFIX
        sealed = data_dir / sealed_rel
        if src.is_file():
            res = crypto.encrypt_file(src, sealed, Path(encrypt_to))
            if current.get("sha256") and res.plain_sha256 != current["sha256"]:
                logger.error("call %d: %s changed between finishing and encryption", current["id"], rel)
            fsync_dir(sealed.parent)
            src.unlink()
            fsync_dir(src.parent)
            plain_sha = res.plain_sha256
            updated = {"path": sealed_rel, "bytes": res.bytes, "sha256": res.sha256}
        elif sealed.is_file() and crypto.is_sealed(sealed):
            # A crash after the sealed file was renamed into place, before the row was updated.
            plain_sha = current.get("sha256")
            updated = {"path": sealed_rel, "bytes": sealed.stat().st_size, "sha256": sha256_file(sealed)}
    chain.append_recording(index, current, plain_sha256=plain_sha, update=updated, clock=clock)
    sidecar.refresh(index, data_dir, current["id"])  # now with the sealed path and the chain entry
    return updated


def finalize_pending(index: Index, data_dir: Path, storage: Any, *, clock: Clock | None = None) -> list[int]:
    """Finalize every finished recording not yet in the chain (start-up, after salvage)."""
    done: list[int] = []
    for call_id in db.calls_unchained(index):
        logger.warning("call %d was finished but not yet chained (restart); sealing/chaining it now", call_id)
        try:
            finalize_recording(index, data_dir, {"id": call_id}, storage, clock=clock)
        except (OSError, crypto.CryptoError, LookupError) as e:
            logger.error("call %d could not be finalized: %s", call_id, e)
            continue
        done.append(call_id)
    return done
