"""MQTT secrets and TLS settings, checked before any connection (pure: standard library only).

Read when the link or ``linetap check``'s probe is built (and by a refused link again, once the
files changed: ``MqttLink.renew_credentials``), so a bad file is a config error
with its key (``mqtt.tls_ca: ...``), not an endless retry loop in the background.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from linetap.config import ConfigError, MqttConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The user name and password the broker gets (the password already read from its file)."""

    username: str | None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password, even in a traceback's locals
        return f"Credentials(username={self.username!r}, password={'********' if self.password else None})"


def read_password(path: Path) -> str:
    """The password in ``path`` (one line; the trailing newline is not part of it).

    Raises ConfigError naming ``mqtt.password_file`` if it cannot be read or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError([f"mqtt.password_file: cannot read {path}: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"mqtt.password_file: {path} is not UTF-8 text"]) from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError([f"mqtt.password_file: {path} is empty"])
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning("mqtt.password_file %s is readable by other users; chmod 600 it", path)
    return password


def credentials(cfg: MqttConfig) -> Credentials:
    """Check the security settings and read the password: ConfigError lists every problem."""
    errors: list[str] = []
    for key in ("tls_ca", "tls_cert", "tls_key"):
        p: Path | None = getattr(cfg, key)
        if p is not None and not os.access(p, os.R_OK):
            errors.append(f"mqtt.{key}: cannot read {p}")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        errors.append("mqtt.tls_key: tls_cert and tls_key must be given together")
    if not errors:
        errors += tls_problems(cfg)
    password = None
    if cfg.password_file is not None:
        if not cfg.username:
            errors.append("mqtt.username: is required when mqtt.password_file is set")
        if cfg.tls_ca is None and not cfg.allow_plaintext_password:
            errors.append("mqtt.password_file: refusing to send a password without TLS; set mqtt.tls_ca, "
                          "or mqtt.allow_plaintext_password = true on a trusted network")
        try:
            password = read_password(cfg.password_file)
        except ConfigError as e:
            errors += e.errors
    if errors:
        raise ConfigError(errors)
    return Credentials(cfg.username, password)


def tls_problems(cfg: MqttConfig) -> list[str]:
    """Load the TLS files once up front, so a bad file is a config error, not a retry loop."""
    if cfg.tls_ca is None:
        return ["mqtt.tls_cert: a client certificate needs TLS; set mqtt.tls_ca too"] if cfg.tls_cert else []
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.tls_ca))
    except (ssl.SSLError, OSError, ValueError) as e:
        return [f"mqtt.tls_ca: {cfg.tls_ca} is not a usable CA certificate (PEM): {e}"]
    if cfg.tls_cert is not None and cfg.tls_key is not None:
        try:
            # password: an encrypted key must fail here, not make OpenSSL prompt on a terminal.
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key), password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as e:
            return [f"mqtt.tls_cert: cannot use {cfg.tls_cert} with the key {cfg.tls_key} "
                    f"(PEM, unencrypted, matching): {e}"]
    return []


def describe_oserror(e: OSError) -> str:
    """Why a connection attempt failed, for a human ("Connection refused", "TLS certificate verify failed: ...")."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {e.verify_message or e}"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    if isinstance(e, TimeoutError):
        return "connection timed out"
    return e.strerror or str(e) or type(e).__name__


def files_stamp(cfg: MqttConfig) -> tuple[tuple[int, int, int] | None, ...]:
    """What identifies the versions of the files the credentials come from (inode, size,
    modification time), so a refused link re-reads them only when one has changed."""
    out: list[tuple[int, int, int] | None] = []
    for path in (cfg.password_file, cfg.tls_ca, cfg.tls_cert, cfg.tls_key):
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None)
    return tuple(out)
