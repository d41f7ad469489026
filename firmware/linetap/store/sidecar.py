"""A recording's file names and its sidecar (``<name>.<ext>.json``): pure, no audio library.

Kept apart from :mod:`linetap.store.recordings` (which writes audio through soundfile and numpy)
so that what only reads or rewrites metadata — the evidence upkeep, the web process, the index
rebuild — can use it without loading the codec stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fsutil import write_atomic

PART = ".part"
UNREADABLE = ".unreadable"
SEALED = ".sealed"  # = linetap.crypto.SUFFIX (not imported: this module must not need nacl)
# The sidecar of a recording: ``<name>.<ext>.json`` beside the audio, whether the audio is
# ``<name>.<ext>``, ``.sealed``, ``.part`` or ``.unreadable``. Erasure and retention remove it
# with the audio; the index rebuild (linetap.index.rebuild) reads it.
SIDECAR = ".json"
SIDECAR_MODE = 0o640
SIDECAR_VERSION = 1
SIDECAR_FIELDS = ("line", "started_at", "ended_at", "duration_s", "path", "codec", "rate", "channels",
                  "caller_number", "caller_name", "dtmf", "end_reason", "status", "sha256", "bytes",
                  "caller_redirected_from", "waiting_callers")
# Added after version 1 without changing it: a sidecar written before them reads them as absent (null),
# which is what its call had (they were not kept then).


def sidecar_path(audio_path: Path) -> Path:
    """``<name>.<ext>.json`` for any of a recording's audio files (final, sealed, part, unreadable)."""
    name = audio_path.name
    for suffix in (PART, UNREADABLE, SEALED):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return audio_path.with_name(name + SIDECAR)


def sidecar_doc(row: dict[str, Any], *, hold: dict[str, Any] | None = None, chain_seq: int | None = None,
                chain_hash: str | None = None) -> dict[str, Any]:
    """What a recording's sidecar holds: its calls row (``call_id`` too, though a rebuilt index may
    give it anew), its legal hold (``hold``: held_at, held_by, reason), and the chain entry that
    committed it (None until it is chained)."""
    fields = {k: row.get(k) for k in SIDECAR_FIELDS}
    fields["waiting_callers"] = _listed(fields["waiting_callers"])
    return {"v": SIDECAR_VERSION, **fields, "call_id": row.get("id"),
            "held": hold is not None, "hold_reason": hold.get("reason") if hold else None,
            "held_at": hold.get("held_at") if hold else None, "held_by": hold.get("held_by") if hold else None,
            "chain_seq": chain_seq, "chain_hash": chain_hash}


def _listed(value: Any) -> list[Any]:
    """``waiting_callers`` as a list, from a calls row read from the index (its JSON text) or built by
    the recorder (a list); ``[]`` for none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def write_sidecar(data_dir: Path, doc: dict[str, Any]) -> Path:
    """Replace the sidecar of the recording at ``doc["path"]`` (atomically, mode 0640).

    Not fsynced: the sidecar is a copy of the index's row, needed only if the index is lost, and a
    sidecar lost to a power cut in the next seconds is rewritten by the next change or replaced at
    a rebuild by what the file name and audio header say. An fsync each would cost an SD card
    commit per call, and after a rebuild one per recording (``benchmarks/index_check.py``: chaining
    2000 rebuilt recordings took 4.8 s with it, 1.9 s without, on this machine's ext4 disk). ext4 (the data partition)
    writes a file's data before a rename over an older one commits, so the sidecar is old or new,
    never torn."""
    path = sidecar_path(Path(data_dir) / str(doc["path"]))
    write_atomic(path, json.dumps(doc, sort_keys=True, indent=1) + "\n", mode=SIDECAR_MODE, fsync=False)
    return path


def remove_sidecar(audio_path: Path) -> None:
    """Unlink the sidecar of a recording being deleted (none there: nothing to do)."""
    sidecar_path(audio_path).unlink(missing_ok=True)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's document, or None if it is missing or unreadable (a torn or foreign file)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("v") == SIDECAR_VERSION else None
