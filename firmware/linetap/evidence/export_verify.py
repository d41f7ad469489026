#!/usr/bin/env python3
"""Check a linetap evidence export using nothing but Python's standard library.

This file is copied next to every export as ``verify_export.py``. A third
party runs ``python3 verify_export.py [DIR] --fingerprint XXXX-XXXX-XXXX-XXXX``
(the box's key fingerprint, from ``linetap status`` on the box) or
``--checkpoint FILE`` (a signed checkpoint of the box they kept, e.g. from MQTT):
it says what it proved and prints ``OK`` (exit 0) if every exported recording
in DIR is what the box's hash chain committed to, and that chain's head is
signed by that box's key; otherwise it names each problem (exit 1), or, with
no fingerprint or checkpoint, says it cannot tell whose key signed (exit 2).

The signature is Ed25519 (RFC 8032), checked by the pure-Python code below,
so no package is needed: an export made of random bytes, a hand-written
sidecar and proof, signed with any other key, is refused.

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
from dataclasses import dataclass, field
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


# --- checkpoints: the box's signature over (id, ts, length, head) ---------------------------

CHECKPOINT_FIELDS = ("id", "ts", "length", "head")
FINGERPRINT_HEX = 16  # first 16 hex digits (64 bits) of sha256(public key), grouped by 4


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: canonical JSON of id, ts, length, head."""
    return json.dumps({k: cp.get(k) for k in CHECKPOINT_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def fingerprint(public_hex: str) -> str:
    """``abcd-ef01-2345-6789``: sha256 of the raw 32-byte public key, first 16 hex digits."""
    h = hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:FINGERPRINT_HEX]
    return "-".join(h[i:i + 4] for i in range(0, FINGERPRINT_HEX, 4))


def checkpoint_signed(cp: dict[str, Any]) -> bool:
    """True if ``cp["signature"]`` is ``cp["key"]``'s Ed25519 signature of :func:`checkpoint_message`."""
    try:
        key, sig = bytes.fromhex(str(cp.get("key"))), bytes.fromhex(str(cp.get("signature")))
    except ValueError:
        return False
    return ed25519_verify(key, checkpoint_message(cp), sig)


# Ed25519 verification (RFC 8032, section 5.1.7), after the RFC's reference code (section 6):
# pure Python, so this file needs no package. Verification only; nothing secret is handled here,
# so constant time does not matter. About 10 ms per signature.
_P = 2 ** 255 - 19
_Q = 2 ** 252 + 27742317777372353535851937790883648493  # the group order L
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]  # extended homogeneous coordinates (X, Y, Z, T)


def _add(a: _Point, b: _Point) -> _Point:
    pa = (a[1] - a[0]) * (b[1] - b[0]) % _P
    pb = (a[1] + a[0]) * (b[1] + b[0]) % _P
    pc = 2 * a[3] * b[3] * _D % _P
    pd = 2 * a[2] * b[2] % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, pt: _Point) -> _Point:
    acc: _Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _equal(a: _Point, b: _Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s: bytes) -> _Point | None:
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_G: _Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 signature check (cofactorless, as libsodium and the RFC do it)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def verify_export(directory: str | Path, *, fingerprint: str | None = None,
                  checkpoint: dict[str, Any] | None = None) -> list[str]:
    """Every problem found in the export(s) in ``directory``; an empty list means intact.

    Intact means: the files are what the chain entry committed to, the entry links to the
    checkpoint in the proof, and that checkpoint's signature verifies under its key. Whose
    key that is, only a ``fingerprint`` (or a ``checkpoint`` the user kept) can say: see
    :func:`check_export`, which also says what was proved.
    """
    return check_export(directory, fingerprint=fingerprint, checkpoint=checkpoint).problems


@dataclass
class Findings:
    """What :func:`check_export` found: ``problems``, ``proved`` (plain sentences) and whether
    the signing key was ``pinned`` to one the user supplied."""

    problems: list[str] = field(default_factory=list)
    proved: list[str] = field(default_factory=list)
    pinned: bool = False


def normalise_fingerprint(text: str) -> str:
    """``ABCD-EF01 2345:6789`` -> ``abcdef0123456789`` (a full 64-hex public key is turned into its fingerprint)."""
    t = "".join(c for c in text.lower() if c in "0123456789abcdef")
    return fingerprint(t).replace("-", "") if len(t) == 64 else t


def check_export(directory: str | Path, *, fingerprint: str | None = None,
                 checkpoint: dict[str, Any] | None = None) -> Findings:
    d = Path(directory)
    out = Findings()
    sidecars = sorted(p for p in d.glob("*.json") if not p.name.endswith(".chain.json"))
    if not sidecars:
        out.problems.append(f"{d}: no export sidecar (*.json) found")
        return out
    for sidecar in sidecars:
        out.problems.extend(_check_one(d, sidecar, out, fingerprint, checkpoint))
    return out


def _check_one(d: Path, sidecar: Path, out: Findings, pin: str | None,
               held: dict[str, Any] | None) -> list[str]:
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
    hashes: dict[int, str] = {}
    payload = proof.get("payload") or {}
    call = meta.get("call") or {}
    label = f"call {call.get('id')}"

    # 1. the entry: payload -> digest -> hash, linked to its predecessor
    h = link(str(proof.get("prev_hash")), digest(payload))
    if isinstance(proof.get("seq"), int):
        hashes[proof["seq"]] = h
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
        hashes[lseq] = h
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
    # 5. the box's signature over the head, and whose key it is
    cp = proof.get("checkpoint")
    if not isinstance(cp, dict):
        problems.append(f"{label}: the proof carries no signed checkpoint (not signed by a box)")
        return problems
    if not checkpoint_signed(cp):
        problems.append(f"{label}: the checkpoint's signature does not verify (forged or altered)")
    elif cp.get("length") != seq or cp.get("head") != h:
        problems.append(f"{label}: the signed checkpoint ({cp.get('length')} entries) does not match the "
                        f"chain recomputed from the entry ({seq} entries)")
    key_fp = fingerprint(str(cp.get("key"))) if _is_hex(cp.get("key"), 64) else "?"
    if pin is not None:
        if normalise_fingerprint(pin) != key_fp.replace("-", ""):
            problems.append(f"{label}: signed by key {key_fp}, not by the box whose fingerprint you gave ({pin})")
        else:
            out.pinned = True
    if held is not None:
        problems.extend(_against_held(label, cp, held, hashes, out))
    if not problems:
        out.proved.append(
            f"{label}: {audio.name} has sha256 {payload.get('sha256')}, which is chain entry {proof.get('seq')} "
            f"(line {payload.get('line')}, {payload.get('started_at')} to {payload.get('ended_at')}), "
            f"in a chain of {cp.get('length')} entries signed by box {cp.get('id')!r} (key {key_fp}) "
            f"at {cp.get('ts')}")
    return problems


def _against_held(label: str, cp: dict[str, Any], held: dict[str, Any], hashes: dict[int, str],
                  out: Findings) -> list[str]:
    """The user's own checkpoint (kept from MQTT, say) pins the key, and, if it falls within the
    proof's span, must be on the same chain."""
    if not checkpoint_signed(held):
        return [f"{label}: the checkpoint you supplied does not verify (altered)"]
    if held.get("key") != cp.get("key"):
        return [f"{label}: signed by key {fingerprint(str(cp.get('key')))}, your checkpoint by "
                f"{fingerprint(str(held.get('key')))}: not the same box"]
    out.pinned = True
    n = held.get("length")
    if isinstance(n, int) and n in hashes:
        if hashes[n] != held.get("head"):
            return [f"{label}: chain entry {n} differs from your checkpoint of {held.get('ts')}: "
                    "the chain was rewritten"]
        out.proved.append(f"the chain up to your checkpoint of {held.get('ts')} ({n} entries) is the one "
                          "this export's entry is in")
    else:
        out.proved.append(f"your checkpoint of {held.get('ts')} ({n} entries) lies outside this export's proof "
                          f"(entries {min(hashes, default='?')}..{max(hashes, default='?')}): it pins the box's key "
                          "only; 'linetap verify --checkpoint' on the box checks the chain against it")
    return []


def _is_hex(value: Any, n: int) -> bool:
    return isinstance(value, str) and len(value) == n and all(c in "0123456789abcdef" for c in value)


USAGE = """usage: python3 verify_export.py [DIR] (--fingerprint XXXX-XXXX-XXXX-XXXX | --checkpoint FILE)

  --fingerprint  the box's key fingerprint, as 'linetap status' shows it on the box
  --checkpoint   a checkpoint of the box you kept (a JSON file, e.g. from MQTT linetap/<id>/checkpoint)
Exit status: 0 verified; 1 a problem (named); 2 nothing to check the signing key against."""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pin: str | None = None
    held: dict[str, Any] | None = None
    rest: list[str] = []
    while args:
        a = args.pop(0)
        if a in ("--fingerprint", "--checkpoint") and args:
            value = args.pop(0)
            if a == "--fingerprint":
                pin = value
            else:
                try:
                    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
                    held = json.loads(text)
                    held = held.get("checkpoint", held) if isinstance(held, dict) else None
                except (OSError, ValueError) as e:
                    print(f"--checkpoint {value}: {e}")
                    return 2
                if not isinstance(held, dict):
                    print(f"--checkpoint {value}: not a checkpoint")
                    return 2
        elif a.startswith("-"):
            print(USAGE)
            return 2
        else:
            rest.append(a)
    directory = Path(rest[0]) if rest else Path(__file__).resolve().parent
    found = check_export(directory, fingerprint=pin, checkpoint=held)
    for p in found.problems:
        print(p)
    if found.problems:
        print("NOT VERIFIED")
        return 1
    for line in found.proved:
        print(line)
    if not found.pinned:
        print("NOT VERIFIED: the files match a chain signed by the key above, but nothing says that key is "
              "the box's: run again with --fingerprint (from 'linetap status' on the box) or --checkpoint")
        return 2
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
