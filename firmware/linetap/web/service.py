"""What each web request does, without HTTP: log in, find calls, read one, play, download, hold.

:class:`WebService` is what :mod:`linetap.web.app` calls; tests call it directly too. It is also
the one place where the web interface touches :mod:`linetap.evidence` (holds, the access audit,
the export with its proof), so a change of that API is met here only.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..alarms.gaps import coverage_report, load_gaps
from ..clock import Clock, SystemClock, iso, parse_iso
from ..config import Config
from ..evidence import EvidenceError, UnknownCall, audit as evidence_audit, chain, checkpoint, erasure_requests
from ..evidence import hold as evidence_hold
from ..index import web as q
from ..index.db import Index, public_call
from . import auth, passwords

logger = logging.getLogger(__name__)

DAY_S = 86400.0
SETUP_TOKEN_FILE = "setup-token"
SECRET_FILE = "secret"
SECRET_BYTES = 32
# = linetap.housekeeping.STATUS_FILE, not imported: that module loads the recorder's (numpy among
# them, 17 MB the web process does without; tests/test_web_memory.py checks the two agree).
STATUS_FILE = "status.json"
# The web audit trail's actions; those about one recording's audio or protection also go into
# the evidence audit (linetap.evidence.audit), where ``linetap verify``/exports see them.
# ``erase_request``: an admin asked for an erasure (written with the request, evidence/erasure_requests.py);
# ``erase``: the recorder carried it out (written by the recorder, under the requester's name).
ACTIONS = ("login", "login_failed", "logout", "play", "download", "export", "hold", "release", "erase_request",
           "erase", "user_add", "user_del")
EVIDENCE_ACTIONS = {"play", "download", "export", "hold", "release", "erase_request", "erase"}


class WebError(Exception):
    """A refused request; ``status`` is the HTTP status the adapter answers with."""

    status = 400


class NotFound(WebError, LookupError):
    status = 404


class Conflict(WebError):
    status = 409


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    cookie: str | None = None
    csrf: str | None = None
    role: str | None = None
    retry_after_s: float = 0.0  # > 0: refused without checking the password (back-off)


def web_dir(cfg: Config) -> Path:
    """The web process's own state: the cookie secret, the certificate, the setup token."""
    return Path(cfg.recorder.data_dir) / "web"


def box_secret(state_dir: Path) -> bytes:
    """This box's cookie-signing secret, made on first use (0600): a cookie signed by another box,
    or forged, fails its HMAC here."""
    path = state_dir / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= SECRET_BYTES:
            return data
    except FileNotFoundError:
        pass
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    data = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


def add_user(index: Index, name: str, role: str, password: str, *, clock: Clock | None = None) -> None:
    """Add a user (the CLI's ``linetap user add``); ``ValueError`` names what is wrong."""
    if not auth.USER_RE.match(name):
        raise ValueError(f"user name must match [a-z0-9_.-] (1-32 characters), not {name!r}")
    if role not in auth.ROLES:
        raise ValueError(f"role must be one of {', '.join(auth.ROLES)}, not {role!r}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    if q.user_get(index, name) is not None:
        raise ValueError(f"user {name!r} already exists")
    q.user_add(index, name=name, role=role, password_hash=passwords.hash_password(password),
               created_at=iso((clock or SystemClock()).wall()))


def first_admin(index: Index, cfg: Config, state_dir: Path, *, clock: Clock | None = None) -> str | None:
    """Make sure an admin can exist. With no admin: ``web.admin_password_hash`` from the config makes
    user ``admin``; without it a one-time setup token is written to ``<state>/setup-token`` (shown by
    ``linetap status``) and returned, to be used as the password of user ``admin`` once."""
    if q.admin_count(index) > 0:
        (state_dir / SETUP_TOKEN_FILE).unlink(missing_ok=True)
        return None
    now = iso((clock or SystemClock()).wall())
    h = cfg.web.admin_password_hash
    if h and passwords.is_password_hash(h):
        q.user_add(index, name="admin", role="admin", password_hash=h, created_at=now)
        logger.info("web: first admin 'admin' made from web.admin_password_hash")
        return None
    path = state_dir / SETUP_TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(12)
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


class WebService:
    def __init__(self, cfg: Config, index: Index, *, secret: bytes, state_dir: Path,
                 clock: Clock | None = None, fingerprint: str | None = None) -> None:
        self.cfg = cfg
        self.index = index
        self.data_dir = Path(cfg.recorder.data_dir).resolve()
        self.secret = secret
        self.state_dir = state_dir
        self.clock = clock or SystemClock()
        self.fingerprint = fingerprint

    # --- who is asking ---
    def login(self, user: str, password: str, address: str) -> LoginResult:
        now_s = self.clock.wall()
        user = user if auth.USER_RE.match(user or "") else "?"
        failed = q.failures_of(self.index, user, address)
        if failed is not None:
            wait = auth.retry_after_s(failed["failures"], parse_iso(failed["last_at"]), now_s)
            if wait > 0:
                self.audit(user, address, "login_failed", None, f"refused: back-off {wait:.0f} s")
                return LoginResult(False, retry_after_s=wait)
        row = q.user_get(self.index, user) if user != "?" else None
        ok = passwords.verify_password(row["password_hash"] if row else None, password)
        if not ok and row is None and user == "admin":
            ok = self._setup_token_login(password, address)
            row = q.user_get(self.index, user) if ok else None
        if not ok or row is None:
            q.failure_add(self.index, user, address, iso(now_s))
            self.audit(user, address, "login_failed", None, None)
            return LoginResult(False)
        q.failures_clear(self.index, user, address)
        session_id, csrf = auth.new_session_id(), secrets.token_urlsafe(24)
        q.sessions_delete_expired(self.index, iso(now_s))
        q.session_add(self.index, id_hash=auth.digest(session_id), user=user, csrf=csrf, created_at=iso(now_s),
                      expires_at=iso(now_s + self.cfg.web.session_hours * 3600.0), address=address)
        self.audit(user, address, "login", None, None)
        return LoginResult(True, auth.cookie_value(self.secret, session_id), csrf, row["role"])

    def _setup_token_login(self, password: str, address: str) -> bool:
        """The first login of ``admin`` with the setup token makes the admin (password = the token;
        change it with ``linetap user passwd admin``); the token is then gone."""
        path = self.state_dir / SETUP_TOKEN_FILE
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            return False
        if not token or not auth.csrf_ok(token, password) or q.admin_count(self.index) > 0:
            return False
        add_user(self.index, "admin", "admin", password, clock=self.clock)
        path.unlink(missing_ok=True)
        logger.info("web: first admin made with the setup token from %s", address)
        return True

    def principal_from_cookie(self, cookie: str | None) -> auth.Principal | None:
        session_id = auth.session_id_of(self.secret, cookie)
        if session_id is None:
            return None
        h = auth.digest(session_id)
        s = q.session_get(self.index, h, iso(self.clock.wall()))
        return auth.Principal(s["user"], s["role"], s["csrf"], h) if s else None

    def principal_from_token(self, authorization: str | None) -> auth.Principal | None:
        token = auth.bearer_token(authorization)
        if token is None:
            return None
        row = q.user_by_token_hash(self.index, auth.digest(token))
        return auth.Principal(row["name"], row["role"], None) if row else None

    def logout(self, who: auth.Principal, address: str) -> None:
        if who.session_hash:
            q.session_delete(self.index, who.session_hash)
        self.audit(who.user, address, "logout", None, None)

    # --- the audit trail ---
    def audit(self, user: str | None, address: str | None, action: str, call_id: int | None,
              detail: str | None) -> None:
        """One row in the web audit trail, and in the evidence audit for what reveals or changes a recording."""
        q.web_audit_append(self.index, at=iso(self.clock.wall()), user=user, address=address, action=action,
                           call_id=call_id, detail=detail)
        if action in EVIDENCE_ACTIONS and action not in ("hold", "release", "export", "erase_request", "erase"):
            # hold/release/export/erasures write their own evidence audit row (linetap.evidence)
            evidence_audit.record(self.index, action, call_id, who=f"web:{user}",
                                  detail=f"from {address}" + (f": {detail}" if detail else ""), clock=self.clock)

    def audit_page(self, **filters: Any) -> tuple[int, list[dict[str, Any]]]:
        return q.web_audit_rows(self.index, **filters)

    # --- calls ---
    def calls(self, f: q.CallFilter, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        total, rows = q.calls_page(self.index, f, limit=limit, offset=offset)
        return total, [{**public_call(r), "held": bool(r["held"])} for r in rows]

    def call(self, call_id: int) -> dict[str, Any]:
        """The call object plus ``held``, ``hold`` and ``checkpoint``: its chain entry, the head, and
        ``signed``, the device-signed checkpoint that covers the entry (``{"id", "ts", "length", "head",
        "key", "signature"}``, null until the recorder has signed one past it, about a second after
        chaining), so the proof shown checks off the box with the box's public key."""
        row = self.index.get_call(call_id)
        if row is None:
            raise NotFound(f"no recording with id {call_id}")
        entry = chain.live_entry(self.index, call_id)
        head_seq, head_hash = chain.head(self.index)
        hold = q.hold_of(self.index, call_id)
        signed = checkpoint.covering(self.index, entry.seq) if entry is not None else None
        return {**public_call(row), "held": hold is not None, "hold": hold,
                "encrypted": str(row.get("path") or "").endswith(chain.SEALED_SUFFIX),
                "checkpoint": None if entry is None else {
                    "seq": entry.seq, "hash": entry.hash, "prev_hash": entry.prev_hash,
                    "head_seq": head_seq, "head_hash": head_hash,
                    "signed": signed.as_dict() if signed is not None else None}}

    def audio_path(self, call_id: int) -> Path:
        """The stored file of a call, checked to lie inside the data directory (a ``path`` column
        rewritten to ``../../etc/shadow`` is refused, not served)."""
        row = self.index.get_call(call_id)
        if row is None or not row.get("path"):
            raise NotFound(f"no recording with id {call_id}")
        path = (self.data_dir / str(row["path"])).resolve()
        if not path.is_relative_to(self.data_dir) or path.parent == self.data_dir / "web":
            logger.warning("web: call %d has a path outside the data directory: %r", call_id, row["path"])
            raise NotFound(f"no recording with id {call_id}")
        if not path.is_file():
            raise NotFound(f"call {call_id}: the recording file is missing")
        return path

    def proof_bundle(self, who: str, address: str, call_id: int) -> tuple[str, bytes]:
        """A zip of what ``linetap export`` writes (the recording as stored, the sidecar, the chain
        proof, the standalone verifier): (file name, bytes). Audited as an export."""
        from ..evidence.export import export_call  # loads soundfile and numpy: only when first used
        if self.index.get_call(call_id) is None:
            raise NotFound(f"no recording with id {call_id}")
        with tempfile.TemporaryDirectory(prefix="linetap-web-") as tmp:
            out = Path(tmp) / f"call-{call_id}"
            try:
                export_call(self.index, self.data_dir, call_id, out, who=f"web:{who}",
                            recorder_id=self.cfg.recorder.id, clock=self.clock)
            except UnknownCall as e:
                raise NotFound(str(e)) from None
            except EvidenceError as e:
                raise Conflict(str(e)) from None
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(out.iterdir()):
                    z.write(p, f"call-{call_id}/{p.name}")
        q.web_audit_append(self.index, at=iso(self.clock.wall()), user=who, address=address, action="export",
                           call_id=call_id, detail="proof bundle")
        return f"linetap-{self.cfg.recorder.id}-call-{call_id}.zip", buf.getvalue()

    def set_hold(self, who: str, address: str, call_id: int, held: bool, reason: str | None) -> bool:
        """Place or lift a legal hold; True if it changed."""
        try:
            if held:
                changed = evidence_hold.hold(self.index, call_id, reason=reason, who=f"web:{who}", clock=self.clock)
            else:
                changed = evidence_hold.release(self.index, call_id, who=f"web:{who}", clock=self.clock)
        except UnknownCall as e:
            raise NotFound(str(e)) from None
        if changed:
            q.web_audit_append(self.index, at=iso(self.clock.wall()), user=who, address=address,
                               action="hold" if held else "release", call_id=call_id, detail=reason)
        return changed

    # --- erasure: asked for here, carried out by the recorder ---
    def request_erasure(self, who: str, address: str, *, reason: str, call_id: int | None = None,
                        number: str | None = None) -> int:
        """Queue an erasure of one call or of every call of a number (admin); returns the request's id.
        The web cannot delete audio: the recorder's housekeeping carries it out within about a second
        (:mod:`linetap.evidence.erasure_requests`)."""
        try:
            return erasure_requests.submit(self.index, requested_by=who, address=address, reason=reason,
                                           call_id=call_id, number=number, clock=self.clock)
        except UnknownCall as e:
            raise NotFound(str(e)) from None
        except ValueError as e:
            raise WebError(str(e)) from None

    def erasure(self, request_id: int) -> dict[str, Any]:
        req = erasure_requests.get(self.index, request_id)
        if req is None:
            raise NotFound(f"no erasure request {request_id}")
        return req

    def erasures(self, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        return erasure_requests.page(self.index, limit=limit, offset=offset)

    def config_text(self) -> str:
        """The config file as loaded, secrets masked (the admin's config view)."""
        from ..config import mask_secrets
        try:
            return mask_secrets(Path(self.cfg.source).read_text(encoding="utf-8"))
        except OSError as e:
            return f"(cannot read {self.cfg.source}: {e.strerror})"

    # --- health ---
    def health(self) -> dict[str, Any]:
        """The recorder's health snapshot (``status.json``) plus what the web adds: the box's HTTPS
        fingerprint; ``{"running": false}`` when the recorder has not written one."""
        from ..health.snapshot import read_snapshot
        try:
            doc = read_snapshot(Path(self.cfg.recorder.data_dir) / STATUS_FILE)
        except (OSError, ValueError):
            doc = None
        out: dict[str, Any] = dict(doc) if doc else {"id": self.cfg.recorder.id, "running": False}
        out["web"] = {"fingerprint_sha256": self.fingerprint}
        head_seq, head_hash = chain.head(self.index)
        out["checkpoint"] = {"seq": head_seq, "hash": head_hash}
        return out

    def coverage(self, days: float = 7.0) -> list[dict[str, Any]]:
        """Per configured line, the last ``days`` days: covered fraction and every gap with its reason."""
        from ..cli.coverage import not_running
        until = self.clock.wall()
        since = until - days * DAY_S
        names = [ln.name for ln in self.cfg.lines]
        gaps = load_gaps(self.index, since, until)
        gaps += not_running(names, self.index.get_meta("first_started_at"), self.index.get_meta("heartbeat"),
                            until)
        return [{"line": c.line, "since": iso(c.since), "until": iso(c.until),
                 "covered_fraction": round(c.covered_fraction, 6),
                 "gaps": [{"started_at": iso(g.start), "ended_at": iso(g.end), "reason": g.reason}
                          for g in c.gaps]}
                for c in coverage_report(gaps, names, since, until)]
