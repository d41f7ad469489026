"""``linetap export CALL_ID --to DIR``: a recording a third party can check without the box.

Written to DIR (files 0640):

``<name>``             the recording exactly as stored (sealed if encryption is on)
``<name minus .sealed>`` the decrypted audio, if a private key was given
``<stem>.json``        sidecar: the call's metadata (the contract's fields), its caller fields with
                       the commitment salt, who exported it and when
``<stem>.chain.json``  the proof: the chain entry (payload, prev_hash, hash) and (seq, digest, hash)
                       of every later entry up to the chain head at export time
``verify_export.py``   the standalone checker (:mod:`linetap.evidence.export_verify`): needs only
                       Python's standard library: ``python3 verify_export.py DIR``

The export is refused if the stored file no longer matches the chain (run ``linetap verify``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..clock import Clock, SystemClock, iso
from ..fsutil import atomic_file, write_atomic
from ..index.db import Index, public_call
from ..store.recordings import sha256_file
from . import EvidenceError, UnknownCall, audit, chain, export_verify
from .export_verify import EXPORT_FORMAT, PRIVATE_FIELDS, PROOF_FORMAT
from .export_verify import verify_export as verify_export  # re-exported: the standalone checker

logger = logging.getLogger(__name__)

__all__ = ["ExportResult", "export_call", "verify_export"]

FILE_MODE = 0o640
DIR_MODE = 0o750
VERIFIER_NAME = "verify_export.py"


@dataclass(frozen=True, slots=True)
class ExportResult:
    call_id: int
    files: tuple[Path, ...]
    audio: Path
    decrypted: Path | None
    sidecar: Path
    proof: Path


def _write_json(path: Path, doc: object) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(path, text, mode=FILE_MODE, fsync=False, tmp=path.with_name(path.name + ".tmp"))


def export_call(index: Index, data_dir: Path, call_id: int, to_dir: Path, *, key_path: Path | None = None,
                who: str | None = None, recorder_id: str | None = None, clock: Clock | None = None) -> ExportResult:
    clock = clock or SystemClock()
    who = who or audit.current_user()
    row = index.get_call(call_id)
    if row is None:
        raise UnknownCall(f"no recording with id {call_id}")
    if row["status"] == "recording":
        raise EvidenceError(f"call {call_id} is still being recorded")
    entry = chain.live_entry(index, call_id)
    if entry is None:
        raise EvidenceError(f"call {call_id} is not in the evidence chain (run 'linetap verify')")
    payload = entry.payload
    src = Path(data_dir) / str(payload.get("path"))
    if not src.is_file():
        raise EvidenceError(f"call {call_id}: {payload.get('path')} is missing (run 'linetap verify')")
    out = Path(to_dir)
    out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    audio = out / src.name
    stem = Path(src.name.removesuffix(chain.SEALED_SUFFIX)).stem
    sidecar, proof_path = out / f"{stem}.json", out / f"{stem}.chain.json"
    for p in (audio, sidecar, proof_path):
        if p.exists():
            raise EvidenceError(f"{p} already exists; export to an empty directory")
    tmp = audio.with_name(audio.name + ".tmp")
    with atomic_file(audio, mode=FILE_MODE, fsync=False, tmp=tmp) as f, open(src, "rb") as fin:
        shutil.copyfileobj(fin, f)
        f.flush()
        if sha256_file(tmp) != payload.get("sha256"):  # what was written, read back
            raise EvidenceError(f"call {call_id}: {payload.get('path')} differs from the chain (altered); "
                                "not exported (run 'linetap verify')")
    files = [audio]
    decrypted: Path | None = None
    if key_path is not None and payload.get("encrypted"):
        from .. import crypto  # only here: exporting without a key needs no nacl
        decrypted = out / audio.name.removesuffix(crypto.SUFFIX)
        res = crypto.decrypt_file(audio, decrypted, Path(key_path))
        os.chmod(decrypted, FILE_MODE)
        if payload.get("plain_sha256") and res.sha256 != payload["plain_sha256"]:
            raise EvidenceError(f"call {call_id}: the decrypted audio does not match the chain")
        files.append(decrypted)
    salt = chain.salt_of(index, call_id)
    links = chain.links_after(index, entry.seq)
    head_seq, head_hash = (links[-1][0], links[-1][2]) if links else (entry.seq, entry.hash)
    _write_json(proof_path, {
        "format": PROOF_FORMAT, "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash,
        "payload": payload, "links": [list(link) for link in links],
        "head": {"seq": head_seq, "hash": head_hash},
    })
    _write_json(sidecar, {
        "format": EXPORT_FORMAT, "call": public_call(row), "audio": audio.name,
        "decrypted": decrypted.name if decrypted else None, "proof": proof_path.name,
        "private": {**{k: row.get(k) for k in PRIVATE_FIELDS}, "salt": salt},
        "exported_at": iso(clock.wall()), "exported_by": who, "recorder_id": recorder_id,
        "check_with": f"python3 {VERIFIER_NAME} .",
    })
    verifier = out / VERIFIER_NAME
    if not verifier.exists():
        shutil.copyfile(export_verify.__file__, verifier)
        os.chmod(verifier, FILE_MODE)
    files += [sidecar, proof_path, verifier]
    audit.record(index, "export", call_id, who=who, clock=clock, detail=f"exported to {out}")
    if decrypted is not None:
        audit.record(index, "decrypt", call_id, who=who, clock=clock, detail=f"decrypted into {decrypted}")
    logger.info("call %d exported to %s by %s", call_id, out, who)
    return ExportResult(call_id, tuple(files), audio, decrypted, sidecar, proof_path)
