"""The device key: the only module that imports ``nacl.signing`` (PyNaCl's Ed25519).

Every box has one Ed25519 signing key, made the first time it is needed (first boot, or
the recorder if it is missing). It signs the chain's checkpoints
(:mod:`linetap.evidence.checkpoint`), so a head seen off the box proves what the chain held.

Where it lives and who may read it: ``<data_dir>/keys/device.key``, one hex line (the
32-byte seed), mode 0640. When created as root (first boot) it is chowned root:linetap, so
the recorder (user ``linetap``) can sign but cannot replace the key, and the directory
``keys/`` is 0750 root:linetap. The key is never exported, never logged, and never put in
``status.json``; only its public half and fingerprint are shown.
"""

from __future__ import annotations

import grp
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from .evidence.export_verify import fingerprint

logger = logging.getLogger(__name__)

KEY_DIR = "keys"
KEY_FILE = "device.key"
KEY_MODE = 0o640
DIR_MODE = 0o750
GROUP = "linetap"  # the recorder's group: may read the key, not write it


class SigningError(Exception):
    """The device key is unreadable or malformed."""


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_DIR / KEY_FILE


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A loaded signing key; ``public_hex`` is the 32-byte Ed25519 public key in hex."""

    _key: nacl.signing.SigningKey
    public_hex: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_hex)

    def sign_hex(self, message: bytes) -> str:
        """The detached Ed25519 signature of ``message`` (64 bytes, hex)."""
        return self._key.sign(message).signature.hex()

    def __repr__(self) -> str:  # never the seed
        return f"DeviceKey({self.fingerprint})"


def verify_hex(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True if ``signature_hex`` is ``public_hex``'s Ed25519 signature of ``message``."""
    try:
        nacl.signing.VerifyKey(bytes.fromhex(public_hex)).verify(message, bytes.fromhex(signature_hex))
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def load(path: Path) -> DeviceKey:
    try:
        seed = bytes.fromhex(Path(path).read_text(encoding="ascii").strip())
        key = nacl.signing.SigningKey(seed)
    except (OSError, ValueError, nacl.exceptions.ValueError) as e:
        raise SigningError(f"device key {path}: {e}") from e
    return DeviceKey(key, key.verify_key.encode().hex())


def load_or_create(data_dir: Path) -> DeviceKey:
    """The box's key, made (O_EXCL, 0640) if there is none yet."""
    path = key_path(data_dir)
    if path.exists():
        return load(path)
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    key = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_MODE)
    except FileExistsError:  # another process made it first
        return load(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(bytes(key).hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    _give_to_group(path)
    dev = DeviceKey(key, key.verify_key.encode().hex())
    logger.info("device signing key made: %s (fingerprint %s)", path, dev.fingerprint)
    return dev


def _give_to_group(path: Path) -> None:
    """As root: root:linetap, so the recorder reads but cannot rewrite the key or its directory."""
    if os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return
    for p in (path.parent, path):
        os.chown(p, 0, gid)
