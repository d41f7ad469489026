"""Encryption at rest: the only module that imports ``nacl`` (PyNaCl) and ``pyrage`` (age).

Each recording is encrypted to the owner's X25519 public key; the private key is never on
the box, so a stolen SD card reveals no audio.

Recordings are encrypted **as they are written** (:class:`StreamWriter`): the codec writes
into memory (:mod:`linetap.store.audio`), and at every sync point the bytes it produced are
encrypted as one complete age file (https://age-encryption.org/v1, X25519 recipient) and
appended to ``<name>.<ext>.sealed`` in the ``linetap-age-stream/v1`` framing described in
:mod:`linetap.unseal`. No plaintext audio ever reaches the flash, and a file cut by a crash is
a valid encrypted prefix. Owners decrypt with ``linetap decrypt`` (pyrage) or, without
linetap, with the standard ``age`` tool through the stand-alone ``unseal.py``.

Keys are age's: ``linetap keygen`` writes ``linetap.pub`` (an ``age1...`` recipient) and
``linetap.key`` (an ``AGE-SECRET-KEY-1...`` identity, which ``age -d -i`` reads as it is).
Keys made before age (one base64 line of 32 bytes) are the same X25519 keys and keep working
on both sides: they are converted to age's bech32 form when loaded.

The older format, the sealed file (version 1) below, is still written by
:func:`encrypt_file` for a plaintext recording found when ``encrypt_to`` is set (one made
before encryption was turned on) and read by :func:`decrypt_file`, which tells the two
formats apart by their magic. All integers big-endian::

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

A truncated sealed file (no TAG_FINAL), a reordered, altered or foreign chunk, or data after
the final chunk are all rejected by :func:`decrypt_file`.

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
from typing import Callable

import nacl.bindings as sodium
import nacl.exceptions
import pyrage
from nacl.public import PrivateKey, PublicKey, SealedBox

from . import unseal
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
    complete: bool = True  # False: a stream cut by a crash, of which the valid prefix was decrypted


def _key_line(path: Path, what: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CryptoError(f"{path}: cannot read the {what} key: {e.strerror or e}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CryptoError(f"{path}: not a linetap {what} key") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines[0] if lines else ""


def _read_key(path: Path, what: str) -> bytes:
    """The raw 32-byte X25519 key of a key file: age's bech32 form or the older base64 line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CryptoError(f"{path}: cannot read the {what} key: {e.strerror or e}") from None
    if len(raw) == 32:
        return raw
    line = _key_line(path, what)
    prefix = {"public": "age1", "private": "AGE-SECRET-KEY-1"}[what]
    if line.startswith(prefix):
        try:
            _hrp, key = unseal.bech32_decode(line)
        except ValueError:
            key = b""
    else:
        try:
            key = base64.b64decode(line, validate=True) if line else b""
        except ValueError:
            key = b""
    if len(key) != 32:
        raise CryptoError(f"{path}: not a linetap {what} key (expected an {prefix}... line, or one base64 "
                          "line of 32 bytes)")
    return key


def load_public_key(path: Path) -> PublicKey:
    return PublicKey(_read_key(path, "public"))


def load_private_key(path: Path) -> PrivateKey:
    return PrivateKey(_read_key(path, "private"))


def load_recipient(path: Path) -> pyrage.x25519.Recipient:
    """The age recipient of a public key file (either form)."""
    return pyrage.x25519.Recipient.from_str(unseal.bech32_encode("age", _read_key(path, "public")))


def load_identity(path: Path) -> pyrage.x25519.Identity:
    """The age identity of a private key file (either form)."""
    return pyrage.x25519.Identity.from_str(unseal.age_identity_text(_read_key(path, "private")))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # keygen runs on the owner's computer, Windows included: O_CLOEXEC is POSIX-only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0), mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Write ``linetap.pub`` (0640, an age recipient) and ``linetap.key`` (0600, an age identity
    file that ``age -d -i`` reads) in ``directory``; never overwrites."""
    d = Path(directory)
    d.mkdir(mode=0o750, parents=True, exist_ok=True)
    pub_path, key_path = d / PUBLIC_NAME, d / PRIVATE_NAME
    for p in (pub_path, key_path):
        if p.exists():
            raise CryptoError(f"{p}: already exists; not overwriting a key")
    sk = pyrage.x25519.Identity.generate()
    recipient = str(sk.to_public())
    _write_new(key_path, (f"# linetap private key (age identity): keep it OFF the recorder; it decrypts every "
                          f"recording\n# public key: {recipient}\n{sk}\n").encode("ascii"), SECRET_MODE)
    _write_new(pub_path, (f"# linetap public key (age recipient): [storage] encrypt_to = \"<this file>\" on the "
                          f"recorder\n{recipient}\n").encode("ascii"), FILE_MODE)
    logger.info("generated a key pair: public %s (%s), private %s", pub_path, recipient, key_path)
    return pub_path, key_path


class StreamWriter:
    """A recording encrypted as it is written (``linetap-age-stream/v1``, see :mod:`linetap.unseal`).

    ``append`` encrypts the bytes the codec produced since the last sync point as one age file
    and writes it (no fsync: the recording's sync does that, alone or in the pipeline's one
    ``syncfs``); ``close`` adds the end record and fsyncs. The file is created 0640 and never
    overwritten. Not thread-safe: owned by the pipeline thread, like the recording."""

    def __init__(self, path: Path, recipient: pyrage.x25519.Recipient, rate: int) -> None:
        self._recipients = [recipient]
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        self.path = path
        self.plain_bytes = 0
        self.bytes = 0
        self._plain_sha = hashlib.sha256()
        try:
            self._write(unseal.header(rate))
        except OSError:
            os.close(self._fd)
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.bytes += n

    def append(self, plain: bytes, frames_end: int) -> None:
        """Encrypt and write ``plain`` (the next bytes of the audio file) as one record."""
        if not plain:
            return
        try:
            sealed = pyrage.encrypt(plain, self._recipients)
        except pyrage.EncryptError as e:
            raise OSError(f"{self.path}: cannot encrypt: {e}") from None
        good = self.bytes
        try:
            self._write(unseal.record(sealed, frames_end))
        except OSError:
            # A half-written record would misframe every later one: cut back to the last whole one
            # (the caller keeps the plaintext in RAM and appends it again when the disk works).
            try:
                os.ftruncate(self._fd, good)
                os.lseek(self._fd, good, os.SEEK_SET)
            except OSError:
                pass
            self.bytes = good
            raise
        self.plain_bytes += len(plain)
        self._plain_sha.update(plain)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self, frames_end: int) -> None:
        """Write the end record, fsync, close (a second call does nothing)."""
        if self._fd < 0:
            return
        try:
            self._write(unseal.end_record(frames_end))
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    @property
    def plain_sha256(self) -> str:
        return self._plain_sha.hexdigest()


def stream_opener(public_key_path: Path) -> Callable[[Path, int], StreamWriter]:
    """What ``Recording`` calls to create each encrypted file: the key is read once, here, so a
    bad key fails the recorder's start, not a call."""
    recipient = load_recipient(public_key_path)

    def open_stream(path: Path, rate: int) -> StreamWriter:
        return StreamWriter(path, recipient, rate)

    return open_stream


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
    """An encrypted recording, in either format."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(unseal.MAGIC))
    except OSError:
        return False
    return head[:len(MAGIC)] == MAGIC or head == unseal.MAGIC


def decrypt_stream(src: Path, dst: Path, private_key_path: Path) -> OpenResult:
    """Decrypt a ``linetap-age-stream/v1`` file into ``dst`` (0600, written aside, renamed).

    A stream cut by a crash gives its valid prefix (``complete=False``); a record that does not
    decrypt before the last one, or a wrong key, raises CryptoError."""
    identity = [load_identity(private_key_path)]
    tmp = Path(dst).with_name(Path(dst).name + ".decrypting")
    try:
        info = unseal.scan(src)
    except unseal.StreamError as e:
        raise CryptoError(str(e)) from None
    except OSError as e:
        raise CryptoError(f"{src}: cannot read: {e.strerror or e}") from None
    sha = hashlib.sha256()
    n = 0
    complete = info.complete
    with atomic_file(dst, mode=SECRET_MODE, tmp=tmp) as fout, open(src, "rb") as fin:
        fin.seek(unseal.HEADER_BYTES)
        for i, rec in enumerate(unseal.records(fin, str(src))):
            try:
                m = pyrage.decrypt(rec.age, identity)
            except pyrage.DecryptError:
                if i == 0:
                    raise CryptoError(f"{src}: this private key does not open it (wrong key, or the file "
                                      "was altered)") from None
                if i == info.records - 1 and not info.complete:
                    break  # cut by a power cut inside its last record's data: the prefix stands
                raise CryptoError(f"{src}: record {i} is damaged or altered") from None
            fout.write(m)
            sha.update(m)
            n += len(m)
    if not complete:
        logger.warning("%s was cut by a crash; decrypted its valid prefix (%d bytes)", src, n)
    return OpenResult(n, sha.hexdigest(), complete)


def decrypt_file(src: Path, dst: Path, private_key_path: Path) -> OpenResult:
    """Decrypt ``src``, in either format, into ``dst`` (0600; written aside and renamed only if
    the whole file checks out, or for a stream cut by a crash, its whole valid prefix)."""
    if unseal.is_stream(Path(src)):
        return decrypt_stream(src, dst, private_key_path)
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
