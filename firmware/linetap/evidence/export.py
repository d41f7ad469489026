"""``linetap export CALL_ID --to DIR``: a recording a third party can check without the box.

DIR must not exist: it is made (0750), opened without following symlinks, and every file is
created in it with O_EXCL|O_NOFOLLOW, so nothing already there (a planted ``verify_export.py``,
a symlink to a file elsewhere) is kept, overwritten or written through. Files (0640):

``<name>``             the recording exactly as stored (sealed if encryption is on)
``<name minus .sealed>`` the decrypted audio, if a private key was given
``<stem>.json``        sidecar: the call's metadata (the contract's fields), its caller fields with
                       the commitment salt, who exported it and when
``<stem>.chain.json``  the proof: the chain entry (payload, prev_hash, hash) and (seq, digest, hash)
                       of every later entry up to the chain head at export time (which includes this
                       export's own ``audit`` entry), and a checkpoint of that head signed now by the
                       device key
``verify_export.py``   the standalone checker (:mod:`linetap.evidence.export_verify`): needs only
                       Python's standard library: ``python3 verify_export.py DIR --fingerprint F``

The export is refused if the stored file no longer matches the chain (run ``linetap verify``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..clock import Clock, SystemClock, iso
from ..index.db import Index, public_call
from . import EvidenceError, UnknownCall, audit, chain, checkpoint, export_verify
from .export_verify import EXPORT_FORMAT, PRIVATE_FIELDS, PROOF_FORMAT
from .export_verify import verify_export as verify_export  # re-exported: the standalone checker

if TYPE_CHECKING:
    from ..sign import DeviceKey

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


def _create(dir_fd: int, name: str) -> BinaryIO:
    """A new file in the export directory: never an existing one, never through a symlink."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE, dir_fd=dir_fd)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")


def _write_json(dir_fd: int, name: str, doc: object) -> None:
    with _create(dir_fd, name) as f:
        f.write((json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def _new_directory(out: Path) -> int:
    """Make ``out`` (it must not exist) and open it without following a symlink put in its place."""
    try:
        os.mkdir(out, DIR_MODE)
    except FileExistsError:
        raise EvidenceError(f"{out} already exists; export into a new directory") from None
    except FileNotFoundError:
        raise EvidenceError(f"{out.parent} does not exist") from None
    return os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def export_call(index: Index, data_dir: Path, call_id: int, to_dir: Path, *, key_path: Path | None = None,
                who: str | None = None, recorder_id: str | None = None, clock: Clock | None = None,
                device_key: DeviceKey | None = None) -> ExportResult:
    """Export one recording into the new directory ``to_dir``, with a checkpoint of the chain
    signed now by the device key (``device_key``, else the box's, made if missing)."""
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
    if device_key is None:
        from .. import sign  # only here: reading and checking need no nacl
        try:
            device_key = sign.load_or_create(Path(data_dir))
        except (OSError, sign.SigningError) as e:
            raise EvidenceError(f"cannot read the device key to sign the export: {e}") from e
    out = Path(to_dir)
    dfd = _new_directory(out)
    try:
        return _export_into(index, out, dfd, row, entry, src, key_path=key_path, who=who,
                            recorder_id=recorder_id or "", clock=clock, device_key=device_key)
    except BaseException:
        for name in os.listdir(dfd):  # only what this export made: the directory is new
            os.unlink(name, dir_fd=dfd)
        os.rmdir(out)
        raise
    finally:
        os.close(dfd)


def _export_into(index: Index, out: Path, dfd: int, row: dict[str, Any], entry: chain.Entry, src: Path, *,
                 key_path: Path | None, who: str, recorder_id: str, clock: Clock,
                 device_key: DeviceKey) -> ExportResult:
    call_id, payload = row["id"], entry.payload
    audio = out / src.name
    stem = Path(src.name.removesuffix(chain.SEALED_SUFFIX)).stem
    sidecar, proof_path = out / f"{stem}.json", out / f"{stem}.chain.json"
    h = hashlib.sha256()
    with _create(dfd, audio.name) as f, open(src, "rb") as fin:
        for block in iter(lambda: fin.read(1 << 16), b""):
            h.update(block)
            f.write(block)
    if h.hexdigest() != payload.get("sha256"):
        raise EvidenceError(f"call {call_id}: {payload.get('path')} differs from the chain (altered); "
                            f"not exported (run 'linetap verify')")
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
    # The export is in the chain before its proof is made, so the proof's signed head covers it.
    audit.record(index, "export", call_id, who=who, clock=clock, detail=f"exported to {out}")
    if decrypted is not None:
        audit.record(index, "decrypt", call_id, who=who, clock=clock, detail=f"decrypted into {decrypted}")
    salt = chain.salt_of(index, call_id)
    links = chain.links_after(index, entry.seq)
    head_seq, head_hash = (links[-1][0], links[-1][2]) if links else (entry.seq, entry.hash)
    cp = checkpoint.sign(device_key, recorder_id=recorder_id, length=head_seq, head=head_hash, now=clock.wall())
    _write_json(dfd, proof_path.name, {
        "format": PROOF_FORMAT, "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash,
        "payload": payload, "links": [list(link) for link in links],
        "head": {"seq": head_seq, "hash": head_hash}, "checkpoint": cp.as_dict(),
    })
    _write_json(dfd, sidecar.name, {
        "format": EXPORT_FORMAT, "call": public_call(row), "audio": audio.name,
        "decrypted": decrypted.name if decrypted else None, "proof": proof_path.name,
        "private": {**{k: row.get(k) for k in PRIVATE_FIELDS}, "salt": salt},
        "exported_at": iso(clock.wall()), "exported_by": who, "recorder_id": recorder_id,
        "device": {"key": cp.key, "fingerprint": cp.fingerprint},
        "check_with": f"python3 {VERIFIER_NAME} . --fingerprint {cp.fingerprint}  "
                      "(take the fingerprint from the box, not from this file)",
    })
    with _create(dfd, VERIFIER_NAME) as f:  # always ours: the directory is new
        f.write(Path(export_verify.__file__).read_bytes())
    files += [sidecar, proof_path, out / VERIFIER_NAME]
    logger.info("call %d exported to %s by %s", call_id, out, who)
    return ExportResult(call_id, tuple(files), audio, decrypted, sidecar, proof_path)
