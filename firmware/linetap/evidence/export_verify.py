#!/usr/bin/env python3
"""Check a linetap evidence export using nothing but Python's standard library.

This file is copied next to every export as ``verify_export.py``. A third
party runs ``python3 verify_export.py [DIR]``: it prints ``OK`` and exits 0 if
every exported recording in DIR is what the recorder's hash chain committed
to, otherwise it names each problem and exits 1.

The chain (the same rules linetap itself uses)::

    canonical(p) = JSON of p, keys sorted, separators "," ":", UTF-8, no NaN
    digest_i     = sha256_hex(canonical(payload_i))
    hash_i       = sha256_hex(ascii(hash_{i-1} + digest_i)),  hash_0 = 64 x "0"

A recording's payload holds its sha256 (of the file as stored; for an
encrypted recording, of the sealed file, with ``plain_sha256`` for the audio
after decryption) and ``private``: sha256_hex(ascii(salt) + canonical(
{"caller_name", "caller_number", "dtmf"})), so the caller's number can be
erased later without breaking the chain. The export's proof lists, for every
later entry up to the chain head at export time, (seq, digest, hash): enough
to recompute the head without seeing other calls' details.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
EXPORT_FORMAT = "linetap-export/1"
PROOF_FORMAT = "linetap-chain-proof/1"
PRIVATE_FIELDS = ("caller_name", "caller_number", "dtmf")
# calls fields committed to, as they appear in the payload (duration as integer ms).
COMMITTED_FIELDS = ("line", "started_at", "ended_at", "path", "codec", "bytes", "sha256", "status",
                    "end_reason")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(payload)).hexdigest()


def link(prev_hash: str, payload_digest: str) -> str:
    return hashlib.sha256((prev_hash + payload_digest).encode("ascii")).hexdigest()


def private_commitment(salt: str, fields: dict[str, Any]) -> str:
    values = {k: fields.get(k) for k in PRIVATE_FIELDS}
    return hashlib.sha256(salt.encode("ascii") + canonical(values)).hexdigest()


def duration_ms(duration_s: Any) -> int | None:
    return None if duration_s is None else int(round(float(duration_s) * 1000))


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def verify_export(directory: str | Path) -> list[str]:
    """Every problem found in the export(s) in ``directory``; an empty list means intact."""
    d = Path(directory)
    sidecars = sorted(p for p in d.glob("*.json") if not p.name.endswith(".chain.json"))
    if not sidecars:
        return [f"{d}: no export sidecar (*.json) found"]
    problems: list[str] = []
    for sidecar in sidecars:
        problems.extend(_verify_one(d, sidecar))
    return problems


def _verify_one(d: Path, sidecar: Path) -> list[str]:
    name = sidecar.name
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"{name}: unreadable sidecar: {e}"]
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        return [f"{name}: not a linetap export sidecar"]
    proof_name = str(meta.get("proof", ""))
    try:
        proof = json.loads((d / proof_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"{name}: chain proof {proof_name!r} unreadable: {e}"]
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        return [f"{proof_name}: not a linetap chain proof"]
    problems: list[str] = []
    payload = proof.get("payload") or {}
    call = meta.get("call") or {}
    label = f"call {call.get('id')}"

    # 1. the entry: payload -> digest -> hash, linked to its predecessor
    h = link(str(proof.get("prev_hash")), digest(payload))
    if h != proof.get("hash"):
        problems.append(f"{label}: chain entry {proof.get('seq')} does not match its payload (altered)")
    if payload.get("seq") != proof.get("seq") or payload.get("kind") != "recording":
        problems.append(f"{label}: chain entry's seq/kind do not match the proof")
    # 2. every later link up to the head
    seq = proof.get("seq")
    for item in proof.get("links") or []:
        try:
            lseq, ldigest, lhash = item
        except (TypeError, ValueError):
            problems.append(f"{label}: malformed link {item!r}")
            break
        if not isinstance(seq, int) or lseq != seq + 1:
            problems.append(f"{label}: chain link {lseq} out of sequence")
            break
        h = link(h, str(ldigest))
        if h != lhash:
            problems.append(f"{label}: chain link {lseq} does not follow from the entry (broken chain)")
            break
        seq = lseq
    head = proof.get("head") or {}
    if not problems and (head.get("seq") != seq or head.get("hash") != h):
        problems.append(f"{label}: the recomputed chain head does not match the proof's head")
    # 3. the audio as stored
    audio = d / str(meta.get("audio", ""))
    if not audio.is_file():
        problems.append(f"{label}: audio file {meta.get('audio')!r} missing from the export")
    else:
        sha, n = sha256_file(audio)
        if sha != payload.get("sha256") or n != payload.get("bytes"):
            problems.append(f"{label}: {audio.name} differs from the recording the chain committed to (altered)")
    plain = meta.get("decrypted")
    if plain:
        p = d / str(plain)
        want = payload.get("plain_sha256") or payload.get("sha256")
        if not p.is_file():
            problems.append(f"{label}: decrypted audio {plain!r} missing from the export")
        elif sha256_file(p)[0] != want:
            problems.append(f"{label}: {p.name} is not the audio that was recorded (altered)")
    # 4. the metadata shown to a reader is the metadata committed to
    for k in COMMITTED_FIELDS:
        if call.get(k) != payload.get(k):
            problems.append(f"{label}: metadata {k} = {call.get(k)!r} differs from the chain's {payload.get(k)!r}")
    if duration_ms(call.get("duration_s")) != payload.get("duration_ms"):
        problems.append(f"{label}: metadata duration_s differs from the chain")
    if call.get("id") != payload.get("call_id"):
        problems.append(f"{label}: metadata id differs from the chain's call_id {payload.get('call_id')!r}")
    private = meta.get("private") or {}
    if private_commitment(str(private.get("salt", "")), private) != payload.get("private"):
        problems.append(f"{label}: caller number/name/dtmf differ from what the chain committed to")
    for k in PRIVATE_FIELDS:
        if call.get(k) != private.get(k):
            problems.append(f"{label}: metadata {k} differs between 'call' and 'private'")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else Path(__file__).resolve().parent
    problems = verify_export(directory)
    for p in problems:
        print(p)
    if problems:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
