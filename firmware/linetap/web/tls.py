"""HTTPS: the installer's certificate, or a self-signed one made at first start, and its fingerprint.

Python's ``ssl`` cannot make a certificate, and no dependency brings ``cryptography``: the
self-signed one comes from ``openssl req`` (Debian's ``openssl``, on every image). It is an EC
P-256 key (fast handshakes on a Pi Zero) valid for 10 years, for ``<recorder.id>.local`` (the name
avahi publishes) and ``localhost``. The browser warns once; the owner compares the SHA-256
fingerprint it shows with the one on the health page and in ``linetap status``.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
VALID_DAYS = 3650


def self_signed(state_dir: Path, recorder_id: str) -> tuple[Path, Path]:
    """The box's self-signed certificate and key in ``state_dir``, made now if missing."""
    cert, key = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert.is_file() and key.is_file():
        return cert, key
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    host = f"{recorder_id}.local"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(VALID_DAYS),
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    logger.info("web: made a self-signed certificate for %s (%s)", host, fingerprint(cert))
    return cert, key


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate's DER form, as browsers show it (``AB:CD:...``)."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def stored_fingerprint(state_dir: Path) -> str | None:
    """The fingerprint of the certificate ``linetap web`` made or was given (``linetap status``)."""
    try:
        return (state_dir / "fingerprint").read_text().strip() or None
    except OSError:
        return None


def remember_fingerprint(state_dir: Path, value: str) -> None:
    (state_dir / "fingerprint").write_text(value + "\n")
