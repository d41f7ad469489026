"""Pure decisions of the web interface: who may do what, session cookies, login back-off, tokens.

No I/O here: each function maps values to values and has exact tests (``tests/test_web_auth.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

ROLES = ("admin", "listener", "viewer")
# What each role may do. ``viewer``: health only; ``listener``: find, play, download;
# ``admin``: everything, including holds, erasure, users, the audit trail and the config.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"health"}),
    "listener": frozenset({"health", "calls", "play", "download"}),
    "admin": frozenset({"health", "calls", "play", "download", "hold", "erase", "users", "audit", "config"}),
}
USER_RE = re.compile(r"^[a-z0-9_.-]{1,32}$")

# Login back-off, per user *and* address: the first FREE_FAILURES wrong passwords cost nothing, then
# each one doubles the wait, from BASE_DELAY_S up to MAX_DELAY_S. Nobody is ever locked out for
# longer than MAX_DELAY_S (15 min), and a guesser on another address does not slow the admin's own
# address at all: the admin cannot be locked out forever, whoever tries.
FREE_FAILURES = 5
BASE_DELAY_S = 2.0
MAX_DELAY_S = 900.0

COOKIE_NAME = "linetap_session"
SESSION_ID_BYTES = 32  # 256 bits: not guessable
TOKEN_PREFIX = "lt_"


def allowed(role: str | None, permission: str) -> bool:
    return role in PERMISSIONS and permission in PERMISSIONS[role]


def login_delay_s(failures: int) -> float:
    """How long after the last failed login the next attempt is refused, given the failures so far."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (failures - FREE_FAILURES))


def retry_after_s(failures: int, last_failure_s: float, now_s: float) -> float:
    """Seconds still to wait before another login of this user from this address (0: go ahead)."""
    return max(0.0, last_failure_s + login_delay_s(failures) - now_s)


def _mac(secret: bytes, session_id: str) -> str:
    return hmac.new(secret, session_id.encode("ascii"), hashlib.sha256).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def cookie_value(secret: bytes, session_id: str) -> str:
    """The cookie: the session id and its HMAC under this box's secret (``id.mac``)."""
    return f"{session_id}.{_mac(secret, session_id)}"


def session_id_of(secret: bytes, cookie: str | None) -> str | None:
    """The session id in ``cookie`` if this box signed it, else None (forged, or another box's)."""
    if not cookie or len(cookie) > 200 or cookie.count(".") != 1:
        return None
    session_id, mac = cookie.split(".")
    if not session_id.isascii() or not hmac.compare_digest(mac, _mac(secret, session_id)):
        return None
    return session_id


def digest(secret_text: str) -> str:
    """What the index keeps of a session id or API token: its SHA-256 (a copy of the index logs nobody in)."""
    return hashlib.sha256(secret_text.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization or len(authorization) > 300:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        return None
    return token


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), (sent or "").encode())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the user, their role, and how they authenticated."""

    user: str
    role: str
    csrf: str | None  # None for a bearer token (no cookie, so no cross-site request to guard against)
    session_hash: str | None = None
