"""Encryption at rest: the only module that imports ``nacl`` (PyNaCl / libsodium).

Each recording is encrypted to the owner's X25519 public key; the private key is never
on the box, so a stolen SD card reveals no audio. Streaming, 64 KiB at a time, so memory
stays flat for a 4-hour call.

Sealed file format (version 1), all integers big-endian::

    offset  size  field
    0       6     magic  b"LTSEAL"
    6       1     version = 1
    7       1     flags = 0 (reserved)
    8       4     chunk_bytes: plaintext bytes per chunk (65536)
    12      2     n = length of the sealed key (80)
    14      n     sealed key: the per-file 32-byte secretstream key, in a libsodium sealed box
                  (crypto_box_seal: ephemeral X25519 + XSalsa20-Poly1305) to the public key
    14+n    24    crypto_secretstream_xchacha20poly1305 header
    38+n    ...   chunks: each chunk_bytes of plaintext (the last one shorter, possibly empty)
                  + 17 bytes, pushed with additional data = bytes 0 .. 14+n (the header above,
                  so the header cannot be swapped); the last chunk carries TAG_FINAL.

A truncated file (no TAG_FINAL), a reordered, altered or foreign chunk, or data after the
final chunk are all rejected by :func:`decrypt_file`.

Key files hold one base64 line (32 raw bytes); lines starting with ``#`` are comments.
Private keys are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions
from nacl.public import PrivateKey, PublicKey, SealedBox

from .fsutil import atomic_file

logger = logging.getLogger(__name__)

MAGIC = b"LTSEAL"
VERSION = 1
CHUNK_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 16 * 1024 * 1024
SUFFIX = ".sealed"
ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
HEADERBYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_FIXED = struct.Struct(">6sBBIH")
FILE_MODE = 0o640
SECRET_MODE = 0o600
PUBLIC_NAME = "linetap.pub"
PRIVATE_NAME = "linetap.key"


class CryptoError(ValueError):
    """A key or a sealed file is unusable; the message says which and why."""


@dataclass(frozen=True, slots=True)
class SealResult:
    bytes: int  # size of the sealed file
    sha256: str  # of the sealed file
    plain_bytes: int
    plain_sha256: str


@dataclass(frozen=True, slots=True)
class OpenResult:
    bytes: int
    sha256: str  # of the decrypted plaintext


def _read_key(path: Path, what: str) -> bytes:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CryptoError(f"{path}: cannot read the {what} key: {e.strerror or e}") from None
    if len(raw) == 32:
        return raw
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CryptoError(f"{path}: not a linetap {what} key") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        key = base64.b64decode(lines[0], validate=True) if lines else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CryptoError(f"{path}: not a linetap {what} key (expected one base64 line of 32 bytes)")
    return key


def load_public_key(path: Path) -> PublicKey:
    return PublicKey(_read_key(path, "public"))


def load_private_key(path: Path) -> PrivateKey:
    return PrivateKey(_read_key(path, "private"))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Write ``linetap.pub`` (0640) and ``linetap.key`` (0600) in ``directory``; never overwrites."""
    d = Path(directory)
    d.mkdir(mode=0o750, parents=True, exist_ok=True)
    pub_path, key_path = d / PUBLIC_NAME, d / PRIVATE_NAME
    for p in (pub_path, key_path):
        if p.exists():
            raise CryptoError(f"{p}: already exists; not overwriting a key")
    sk = PrivateKey.generate()
    _write_new(key_path, b"# linetap private key: keep it OFF the recorder; it decrypts every recording\n"
               + base64.b64encode(bytes(sk)) + b"\n", SECRET_MODE)
    _write_new(pub_path, b"# linetap public key: [storage] encrypt_to = \"<this file>\" on the recorder\n"
               + base64.b64encode(bytes(sk.public_key)) + b"\n", FILE_MODE)
    logger.info("generated a key pair: public %s, private %s", pub_path, key_path)
    return pub_path, key_path


def _tmp(dst: Path) -> Path:
    # Not ".part": that suffix means "a recording being written" to the salvage at start-up.
    return dst.with_name(dst.name + ".sealing")


def encrypt_file(src: Path, dst: Path, public_key_path: Path) -> SealResult:
    """Encrypt ``src`` to ``dst`` (written aside, fsynced, renamed into place; 0640)."""
    pk = load_public_key(public_key_path)
    key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    sealed_key = SealedBox(pk).encrypt(key)
    head = _FIXED.pack(MAGIC, VERSION, 0, CHUNK_BYTES, len(sealed_key)) + sealed_key
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    ss_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    tmp = _tmp(Path(dst))
    out_sha, in_sha = hashlib.sha256(), hashlib.sha256()
    n_out = n_in = 0
    with atomic_file(dst, mode=FILE_MODE, tmp=tmp) as fout, open(src, "rb") as fin:
        def put(b: bytes) -> None:
            nonlocal n_out
            fout.write(b)
            out_sha.update(b)
            n_out += len(b)

        put(head + ss_header)
        chunk = fin.read(CHUNK_BYTES)
        while True:
            nxt = fin.read(CHUNK_BYTES)
            in_sha.update(chunk)
            n_in += len(chunk)
            tag = TAG_MESSAGE if nxt else TAG_FINAL
            put(sodium.crypto_secretstream_xchacha20poly1305_push(state, chunk, head, tag))
            if not nxt:
                break
            chunk = nxt
    return SealResult(n_out, out_sha.hexdigest(), n_in, in_sha.hexdigest())


def is_sealed(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def decrypt_file(src: Path, dst: Path, private_key_path: Path) -> OpenResult:
    """Decrypt ``src`` into ``dst`` (0600; written aside and renamed only if the whole file checks out)."""
    sk = load_private_key(private_key_path)
    tmp = Path(dst).with_name(Path(dst).name + ".decrypting")
    sha = hashlib.sha256()
    n = 0
    try:
        fin = open(src, "rb")
    except OSError as e:
        raise CryptoError(f"{src}: cannot read: {e.strerror or e}") from None
    with fin:
        fixed = fin.read(_FIXED.size)
        if len(fixed) < _FIXED.size or fixed[:6] != MAGIC:
            raise CryptoError(f"{src}: not a linetap sealed file")
        _magic, version, _flags, chunk_bytes, key_len = _FIXED.unpack(fixed)
        if version != VERSION:
            raise CryptoError(f"{src}: sealed file version {version} is not supported (only {VERSION})")
        if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise CryptoError(f"{src}: damaged header (chunk size {chunk_bytes})")
        sealed_key = fin.read(key_len)
        ss_header = fin.read(HEADERBYTES)
        if len(sealed_key) != key_len or len(ss_header) != HEADERBYTES:
            raise CryptoError(f"{src}: truncated header")
        head = fixed + sealed_key
        try:
            key = SealedBox(sk).decrypt(sealed_key)
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"{src}: this private key does not open it (wrong key, or the header "
                              "was altered)") from None
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, ss_header, key)
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"{src}: damaged stream header") from None
        with atomic_file(dst, mode=SECRET_MODE, tmp=tmp) as fout:
            i = 0
            while True:
                c = fin.read(chunk_bytes + ABYTES)
                if not c:
                    raise CryptoError(f"{src}: truncated (the final chunk is missing)")
                try:
                    m, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, c, head)
                except nacl.exceptions.CryptoError:
                    raise CryptoError(f"{src}: chunk {i} is damaged or altered") from None
                fout.write(m)
                sha.update(m)
                n += len(m)
                i += 1
                if tag == TAG_FINAL:
                    if fin.read(1):
                        raise CryptoError(f"{src}: data after the final chunk")
                    break
    return OpenResult(n, sha.hexdigest())
