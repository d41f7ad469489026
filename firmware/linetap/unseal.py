#!/usr/bin/env python3
"""Decrypt a linetap recording with the standard ``age`` tool: Python's standard library only.

This file runs on its own, on Windows, macOS or Linux, without linetap installed::

    python3 unseal.py --key linetap.key --out call.opus  line1_20260101T120000.000Z_7.opus.sealed

It needs the ``age`` command (https://age-encryption.org: Debian/Ubuntu ``apt install age``,
macOS ``brew install age``, Windows ``winget install FiloSottile.age``; ``rage`` works too with
``--age rage``). linetap itself uses the same format through pyrage (``linetap decrypt``).

Why a framing around age, and not one age file: the recorder encrypts each recording *as it
is written*, so that no plaintext audio ever reaches the flash, and it makes the audio durable
at every sync point (0.4 s of audio by default) so that a power cut loses at most about a
second. age's STREAM format allows only full 64 KiB chunks before the last one, which is 16 s
of Opus at 32 kbit/s: a cut age file would lose up to that much. So each sync interval's
bytes of the audio file are one complete, independent age file (X25519 recipient), and the
recording is their sequence, each preceded by its length. All the cryptography is age's; this
script only cuts the file into its age files, hands each to ``age -d``, and concatenates the
outputs, which together are the audio file (Ogg Opus, FLAC or WAV) the codec wrote.

Format ``linetap-age-stream/v1``, integers big-endian::

    b"linetap-age-stream/v1\\n"     22 bytes, the magic
    u32 rate                        audio sample rate (Hz), for the duration of a cut file
    records, each:
      u32 n                         length of the age file that follows; 0 = the end record
      u64 frames_end                audio frames handed to the codec up to this record's end
      n bytes                       one complete age file: the next bytes of the audio file

A recording finished normally ends with the end record (n = 0). One cut by a crash or a power
cut has no end record, and its last record may be incomplete: the complete records before it
are the valid, authenticated prefix of the audio (what the recorder had synced to the disk),
which this script decrypts, saying so. The recorder's salvage at the next start trims the
incomplete record and indexes the file as ``recovered``. The length fields and ``frames_end``
are not encrypted (they tell no more than the index's duration does). Records could be
dropped or reordered by someone with write access without age noticing; the sha256 of the
whole stored file is in linetap's evidence chain, which does notice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

MAGIC = b"linetap-age-stream/v1\n"
HEAD = struct.Struct(">I")  # rate
RECORD = struct.Struct(">IQ")  # age file length, frames_end
HEADER_BYTES = len(MAGIC) + HEAD.size
SUFFIX = ".sealed"  # an encrypted recording: <name>.<ext>.sealed (this format, or the older LTSEAL one)
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a sync interval of 48 kHz stereo WAV is 150 KiB; anything past this is damage


class StreamError(ValueError):
    """Not a linetap age stream, or damaged before its last record."""


@dataclass(frozen=True, slots=True)
class Record:
    age: bytes  # one complete age file
    frames_end: int


@dataclass(frozen=True, slots=True)
class Scan:
    """What a stream holds, read without decrypting (the box has no private key)."""

    rate: int
    records: int
    frames: int  # frames_end of the last complete record
    valid_bytes: int  # the header plus every complete record (and the end record, if any)
    complete: bool  # the end record is there: the recording was finished normally


def is_stream(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def header(rate: int) -> bytes:
    return MAGIC + HEAD.pack(rate)


def record(age_file: bytes, frames_end: int) -> bytes:
    return RECORD.pack(len(age_file), frames_end) + age_file


def end_record(frames_end: int) -> bytes:
    return RECORD.pack(0, frames_end)


def _read_header(f: BinaryIO, name: str) -> int:
    head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:len(MAGIC)] != MAGIC:
        raise StreamError(f"{name}: not a linetap age stream")
    return HEAD.unpack(head[len(MAGIC):])[0]


def records(f: BinaryIO, name: str = "stream") -> Iterator[Record]:
    """The complete records of an open stream, after its header; stops at the end record or
    at a cut (an incomplete last record). Raises StreamError on an impossible length."""
    while True:
        head = f.read(RECORD.size)
        if len(head) < RECORD.size:
            return  # cut inside a record header
        n, frames_end = RECORD.unpack(head)
        if n == 0:
            return
        if n > MAX_RECORD_BYTES:
            raise StreamError(f"{name}: damaged (a record of {n} bytes)")
        body = f.read(n)
        if len(body) < n:
            return  # cut inside a record
        yield Record(body, frames_end)


def scan(path: Path) -> Scan:
    """Walk a stream's framing (no decryption): how much of it is complete."""
    with open(path, "rb") as f:
        rate = _read_header(f, str(path))
        n = frames = 0
        valid = HEADER_BYTES
        for r in records(f, str(path)):
            n += 1
            frames = r.frames_end
            valid += RECORD.size + len(r.age)
        # After the loop: either the end record was read, or the file was cut.
        f.seek(valid)
        tail = f.read(RECORD.size)
        complete = len(tail) == RECORD.size and RECORD.unpack(tail)[0] == 0
        if complete:
            valid += RECORD.size
            frames = RECORD.unpack(tail)[1]
    return Scan(rate, n, frames, valid, complete)


# --- bech32 (BIP 173), the encoding of age keys -------------------------------------------------
# Older linetap keys (before age) are the same X25519 keys written in base64; these turn them into
# the age1.../AGE-SECRET-KEY-1... strings that age reads, and back.

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], frm: int, to: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if pad and bits:
        out.append((acc << (to - bits)) & ((1 << to) - 1))
    elif not pad and (bits >= frm or (acc << (to - bits)) & ((1 << to) - 1)):
        raise ValueError("invalid padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    d = _convert_bits(data, 8, 5, True)
    poly = _polymod(_hrp_expand(hrp) + d + [0] * 6) ^ 1
    return hrp + "1" + "".join(_CHARSET[x] for x in d + [(poly >> 5 * (5 - i)) & 31 for i in range(6)])


def bech32_decode(text: str) -> tuple[str, bytes]:
    s = text.lower()
    if text not in (s, text.upper()):
        raise ValueError("mixed case")
    hrp, sep, rest = s.rpartition("1")
    if not sep or not hrp or len(rest) < 6 or any(c not in _CHARSET for c in rest):
        raise ValueError("not bech32")
    d = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + d) != 1:
        raise ValueError("bad bech32 checksum")
    return hrp, bytes(_convert_bits(d[:-6], 5, 8, False))


def age_identity_text(raw_key: bytes) -> str:
    """The AGE-SECRET-KEY-1... line of a raw 32-byte X25519 private key."""
    return bech32_encode("age-secret-key-", raw_key).upper()


# --- the stand-alone decryptor --------------------------------------------------------------------

def _identity_file(key: Path, tmp: Path) -> Path:
    """``key`` as an age identity file: as it is, or (an older linetap key: one base64 line) converted."""
    import base64
    text = key.read_text("ascii", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and not lines[0].startswith("AGE-"):
        try:
            raw = base64.b64decode(lines[0], validate=True)
        except ValueError:
            raw = b""
        if len(raw) == 32:
            out = tmp / "identity.txt"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(age_identity_text(raw) + "\n")
            return out
    return key


def decrypt_with_age(src: Path, key: Path, out: Path, age: str = "age") -> Scan:
    """Decrypt every complete record of ``src`` with the ``age`` command into ``out``."""
    info = scan(src)
    with tempfile.TemporaryDirectory() as tmp, open(src, "rb") as f, open(out, "xb") as fout:
        try:
            identity = _identity_file(key, Path(tmp))
            _read_header(f, str(src))
            done_frames = 0
            for i, r in enumerate(records(f, str(src))):
                p = subprocess.run([age, "--decrypt", "-i", str(identity)], input=r.age, capture_output=True)
                if p.returncode != 0:
                    if i == info.records - 1 and not info.complete:
                        # A power cut can leave a last record of the right length without all its data.
                        info = Scan(info.rate, i, done_frames, info.valid_bytes, False)
                        break
                    raise StreamError(f"{src}: record {i} does not decrypt: "
                                      f"{p.stderr.decode(errors='replace').strip()}")
                fout.write(p.stdout)
                done_frames = r.frames_end
        except BaseException:
            fout.close()
            out.unlink(missing_ok=True)
            raise
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Decrypt a linetap .sealed recording with the age tool.")
    ap.add_argument("file", type=Path, help="the .sealed recording")
    ap.add_argument("--key", "-i", type=Path, required=True, help="the private key (linetap.key / age identity)")
    ap.add_argument("--out", "-o", type=Path, required=True, help="the audio file to write (must not exist)")
    ap.add_argument("--age", default="age", help="the age command (default: age; rage works too)")
    a = ap.parse_args(argv)
    if shutil.which(a.age) is None:
        print(f"unseal: the {a.age!r} command is not installed (https://age-encryption.org)", file=sys.stderr)
        return 2
    try:
        info = decrypt_with_age(a.file, a.key, a.out, a.age)
    except (StreamError, OSError) as e:
        print(f"unseal: {e}", file=sys.stderr)
        return 1
    state = "complete" if info.complete else "cut by a crash: this is the valid prefix that reached the disk"
    print(f"{a.out}: {info.records} records, {info.frames / info.rate:.1f} s of audio ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
