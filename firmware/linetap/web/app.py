"""The HTTP adapter: starlette routes and the uvicorn server (the only module importing either).

Rules every route follows (``tests/test_web_http.py`` checks each):

- no valid session cookie or bearer token: 401 (the login page for a page, JSON for the API),
  never a redirect; a role without the right: 403;
- every state change (POST) carries the session's CSRF token (``X-CSRF-Token`` header, or the
  ``csrf`` form field of a page's form), unless it authenticates with a bearer token;
- query values are bounded and typed; a bad one is a 400 naming the parameter, never a 500;
- cookies are HttpOnly, SameSite=Strict, and Secure when served over HTTPS.

The handlers are synchronous functions run in starlette's thread pool: the index is SQLite (a
blocking API) and the pages are small, so an event loop would only add a layer.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..clock import iso, parse_iso
from ..index.web import CallFilter
from . import auth, pages
from .service import WebError, WebService

logger = logging.getLogger(__name__)

MAX_LIMIT = 200
MAX_OFFSET = 10**7
MAX_TEXT = 64  # longest filter text accepted (a phone number or a name)
MAX_BODY_BYTES = 16 * 1024  # a login or a hold form; anything bigger is refused unread
MAX_REASON = 500  # a hold's or an erasure's reason
AUDIO_TYPES = {"opus": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav"}
_SAFE_LOG = re.compile(r"[^\x20-\x7e]")


def safe(text: object, limit: int = 80) -> str:
    """A value fit for a log line: printable ASCII only (newlines and escapes shown as \\xNN), cut."""
    s = str(text)[:limit]
    return _SAFE_LOG.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


class BadRequest(WebError):
    status = 400


class Unauthorized(WebError):
    status = 401


class Forbidden(WebError):
    status = 403


# --- query values -----------------------------------------------------------------------------------

def _text(params: Any, name: str) -> str | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    if len(v) > MAX_TEXT or any(ord(c) < 0x20 for c in v):
        raise BadRequest(f"{name}: at most {MAX_TEXT} printable characters")
    return v


def _int(params: Any, name: str, default: int, lo: int, hi: int) -> int:
    v = params.get(name)
    if v is None or v == "":
        return default
    if len(v) > 12 or not re.fullmatch(r"[0-9]+", v):
        raise BadRequest(f"{name}: must be a whole number {lo}..{hi}")
    n = int(v)
    if not lo <= n <= hi:
        raise BadRequest(f"{name}: must be a whole number {lo}..{hi}")
    return n


def _float(params: Any, name: str) -> float | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    try:
        x = float(v) if len(v) <= 20 else math.nan
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < 0:
        raise BadRequest(f"{name}: must be a number of seconds")
    return x


def _when(params: Any, name: str, tz: ZoneInfo) -> str | None:
    """An ISO date/time query value (naive ones in the box's time zone) as the index's UTC form."""
    v = _text(params, name)
    if v is None:
        return None
    try:
        if re.search(r"(Z|z|[+-]\d\d:?\d\d)$", v):
            return iso(parse_iso(v))
        dt = datetime.fromisoformat(v)
        return iso(dt.replace(tzinfo=tz).timestamp())
    except (ValueError, OverflowError):
        raise BadRequest(f"{name}: not an ISO 8601 date/time") from None


def _bool(params: Any, name: str) -> bool | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    if v not in ("0", "1", "true", "false", "yes", "no"):
        raise BadRequest(f"{name}: must be 1 or 0")
    return v in ("1", "true", "yes")


def call_filter(params: Any, tz: ZoneInfo) -> CallFilter:
    line = _text(params, "line")
    if line is not None and not re.fullmatch(r"[a-z0-9_-]{1,32}", line):
        raise BadRequest("line: not a line name")
    return CallFilter(line=line, since=_when(params, "since", tz), until=_when(params, "until", tz),
                      number=_text(params, "number"), name=_text(params, "name"),
                      min_duration_s=_float(params, "min_duration_s"),
                      max_duration_s=_float(params, "max_duration_s"),
                      dtmf=_bool(params, "dtmf"), held=_bool(params, "held"))


def _call_id(request: Request) -> int:
    return _path_id(request, "call_id", "call id")


def _path_id(request: Request, key: str, what: str) -> int:
    v = request.path_params[key]
    if len(v) > 12 or not re.fullmatch(r"[0-9]+", v) or int(v) < 1:
        raise BadRequest(f"{what}: must be a positive whole number")
    return int(v)


CONFIRM_WORD = "ERASE"  # what an erasure's confirmation field must hold (typed by hand on the call page)


def erase_reason(form: dict[str, Any]) -> str:
    """The reason of a confirmed erasure form or body; 400 naming the field otherwise."""
    if form.get("confirm") != CONFIRM_WORD:
        raise BadRequest(f"confirm: type {CONFIRM_WORD} to confirm the erasure")
    reason = form.get("reason")
    if (not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON
            or any(ord(c) < 0x20 for c in reason)):
        raise BadRequest(f"reason: an erasure needs a reason (one line, at most {MAX_REASON} characters)")
    return reason.strip()


def erase_target(form: dict[str, Any]) -> dict[str, Any]:
    """``{"call_id": N}`` or ``{"number": "DIGITS"}`` from an API body (exactly one); 400 otherwise."""
    call_id, number = form.get("call_id"), form.get("number")
    if isinstance(call_id, str) and re.fullmatch(r"[0-9]{1,12}", call_id):
        call_id = int(call_id)  # a form field
    if call_id is not None and (not isinstance(call_id, int) or isinstance(call_id, bool)
                                or not 1 <= call_id < 10**12):
        raise BadRequest("call_id: must be a positive whole number")
    if number is not None and (not isinstance(number, str) or len(number) > MAX_TEXT):
        raise BadRequest("number: must be the caller's digits")
    if (call_id is None) == (number is None or number == ""):
        raise BadRequest("send {\"call_id\": N} or {\"number\": \"DIGITS\"}, one of them")
    return {"call_id": call_id} if call_id is not None else {"number": number}


# --- the app ---------------------------------------------------------------------------------------

def build_app(service: WebService, *, https: bool) -> Starlette:
    tz = ZoneInfo(service.cfg.recorder.timezone)
    view = pages.View(recorder_id=service.cfg.recorder.id, tz=tz)

    def address(request: Request) -> str:
        return request.client.host if request.client else "?"

    def principal(request: Request) -> auth.Principal | None:
        return (service.principal_from_token(request.headers.get("authorization"))
                or service.principal_from_cookie(request.cookies.get(auth.COOKIE_NAME)))

    def need(request: Request, permission: str) -> auth.Principal:
        who = principal(request)
        if who is None:
            raise Unauthorized("log in first")
        if not auth.allowed(who.role, permission):
            raise Forbidden(f"a {who.role} may not do this")
        return who

    async def body(request: Request) -> dict[str, Any]:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise BadRequest("request body too large")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise BadRequest("request body too large")
        ctype = request.headers.get("content-type", "")
        try:
            if ctype.startswith("application/json"):
                doc = json.loads(raw or b"{}")
                if not isinstance(doc, dict):
                    raise ValueError
                return doc
            from urllib.parse import parse_qsl
            return dict(parse_qsl(raw.decode("utf-8"), max_num_fields=20))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("malformed request body") from None

    def check_csrf(who: auth.Principal, request: Request, form: dict[str, Any]) -> None:
        if who.csrf is None:
            return  # bearer token: no cookie a foreign page could make the browser send
        sent = request.headers.get("x-csrf-token") or form.get("csrf")
        if not auth.csrf_ok(who.csrf, sent if isinstance(sent, str) else None):
            raise Forbidden("missing or wrong CSRF token")

    def page(request: Request, html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status, headers=SECURITY_HEADERS)

    def handle(fn: Callable[..., Any], *, api: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except WebError as e:
                if e.status >= 400 and e.status != 404:
                    logger.info("web: %s %s from %s: %d %s", request.method, safe(request.url.path),
                                address(request), e.status, safe(e))
                if api:
                    return JSONResponse({"error": str(e)}, e.status, headers=SECURITY_HEADERS)
                if e.status == 401:
                    return page(request, view.login(), 401)
                return page(request, view.error(e.status, str(e)), e.status)
        return endpoint

    # --- API ---
    async def api_login(request: Request) -> Response:
        doc = await body(request)
        user, password = doc.get("user"), doc.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or len(user) > 64 or len(password) > 1024:
            raise BadRequest("send {\"user\": ..., \"password\": ...}")
        res = await run_in_threadpool(service.login, user, password, address(request))
        if res.retry_after_s > 0:
            return JSONResponse({"error": "too many failed logins; wait"}, 429,
                                headers={"Retry-After": str(math.ceil(res.retry_after_s)), **SECURITY_HEADERS})
        if not res.ok:
            return JSONResponse({"error": "wrong user or password"}, 401, headers=SECURITY_HEADERS)
        r = JSONResponse({"user": user, "role": res.role, "csrf": res.csrf}, headers=SECURITY_HEADERS)
        set_cookie(r, res.cookie or "")
        return r

    def set_cookie(r: Response, value: str) -> None:
        r.set_cookie(auth.COOKIE_NAME, value, max_age=int(service.cfg.web.session_hours * 3600), path="/",
                     httponly=True, secure=https, samesite="strict")

    async def api_logout(request: Request) -> Response:
        who = need(request, "health")
        check_csrf(who, request, await body(request))
        service.logout(who, address(request))
        r = JSONResponse({"ok": True}, headers=SECURITY_HEADERS)
        r.delete_cookie(auth.COOKIE_NAME, path="/", httponly=True, secure=https, samesite="strict")
        return r

    async def api_calls(request: Request) -> Response:
        need(request, "calls")
        f = call_filter(request.query_params, tz)
        limit = _int(request.query_params, "limit", 50, 1, MAX_LIMIT)
        offset = _int(request.query_params, "offset", 0, 0, MAX_OFFSET)
        total, calls = await run_in_threadpool(service.calls, f, limit=limit, offset=offset)
        return JSONResponse({"total": total, "calls": calls}, headers=SECURITY_HEADERS)

    async def api_call(request: Request) -> Response:
        need(request, "calls")
        return JSONResponse(await run_in_threadpool(service.call, _call_id(request)), headers=SECURITY_HEADERS)

    async def audio(request: Request) -> Response:
        who = need(request, "play")
        call_id = _call_id(request)
        path = service.audio_path(call_id)
        rng = request.headers.get("range")
        download = request.query_params.get("download") == "1"
        # One audit row per listening, not per seek: a player fetches many ranges of one file.
        if download or rng is None or re.fullmatch(r"bytes=0-\d*", rng.strip()):
            await run_in_threadpool(service.audit, who.user, address(request), "download" if download else "play",
                                    call_id, None)
        row_codec = path.suffix.lstrip(".")
        return FileResponse(path, media_type="application/octet-stream" if path.name.endswith(".sealed")
                            else AUDIO_TYPES.get(row_codec, "application/octet-stream"),
                            filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline",
                            headers=SECURITY_HEADERS)

    async def proof(request: Request) -> Response:
        who = need(request, "download")
        name, data = await run_in_threadpool(service.proof_bundle, who.user, address(request), _call_id(request))
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', **SECURITY_HEADERS})

    async def api_hold(request: Request) -> Response:
        who = need(request, "hold")
        form = await body(request)
        check_csrf(who, request, form)
        held = form.get("held")
        if isinstance(held, str):
            held = held in ("1", "true", "on")
        reason = form.get("reason")
        if not isinstance(held, bool) or (reason is not None and (not isinstance(reason, str)
                                                                 or len(reason) > MAX_REASON)):
            raise BadRequest("send {\"held\": true|false, \"reason\": text}")
        if held and not (reason or "").strip():
            raise BadRequest("reason: a hold needs a reason")
        call_id = _call_id(request)
        changed = await run_in_threadpool(service.set_hold, who.user, address(request), call_id, held, reason)
        if request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"call_id": call_id, "held": held, "changed": changed}, headers=SECURITY_HEADERS)
        return page(request, view.done(f"Call {call_id}: hold {'placed' if held else 'released'}.",
                                       f"/calls/{call_id}"))

    async def api_erase(request: Request) -> Response:
        """Queue an erasure (admin): 202 with the request's id; the recorder carries it out."""
        who = need(request, "erase")
        form = await body(request)
        check_csrf(who, request, form)
        reason = erase_reason(form)
        target = erase_target(form)
        rid = await run_in_threadpool(lambda: service.request_erasure(who.user, address(request), reason=reason,
                                                                      **target))
        url = f"/api/erasures/{rid}"
        return JSONResponse({"id": rid, "state": "pending", "url": url}, 202,
                            headers={"Location": url, **SECURITY_HEADERS})

    async def api_erasure(request: Request) -> Response:
        need(request, "erase")
        rid = _path_id(request, "request_id", "erasure request id")
        return JSONResponse(await run_in_threadpool(service.erasure, rid), headers=SECURITY_HEADERS)

    async def api_erasures(request: Request) -> Response:
        need(request, "erase")
        limit = _int(request.query_params, "limit", 50, 1, MAX_LIMIT)
        offset = _int(request.query_params, "offset", 0, 0, MAX_OFFSET)
        total, rows = await run_in_threadpool(lambda: service.erasures(limit=limit, offset=offset))
        return JSONResponse({"total": total, "requests": rows}, headers=SECURITY_HEADERS)

    async def api_health(request: Request) -> Response:
        need(request, "health")
        return JSONResponse(await run_in_threadpool(service.health), headers=SECURITY_HEADERS)

    async def api_coverage(request: Request) -> Response:
        need(request, "health")
        days = _int(request.query_params, "days", 7, 1, 90)
        return JSONResponse(await run_in_threadpool(service.coverage, days), headers=SECURITY_HEADERS)

    def audit_filters(params: Any) -> dict[str, Any]:
        action = _text(params, "action")
        user = _text(params, "user")
        return {"user": user, "action": action,
                "call_id": _int(params, "call_id", 0, 0, 10**12) or None,
                "since": _when(params, "since", tz), "until": _when(params, "until", tz),
                "limit": _int(params, "limit", 100, 1, MAX_LIMIT),
                "offset": _int(params, "offset", 0, 0, MAX_OFFSET)}

    async def api_audit(request: Request) -> Response:
        need(request, "audit")
        total, rows = await run_in_threadpool(lambda: service.audit_page(**audit_filters(request.query_params)))
        return JSONResponse({"total": total, "rows": rows}, headers=SECURITY_HEADERS)

    # --- pages ---
    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            return page(request, view.login())
        form = await body(request)
        res = await run_in_threadpool(service.login, str(form.get("user", ""))[:64],
                                      str(form.get("password", ""))[:1024], address(request))
        if not res.ok:
            msg = ("Too many failed logins: try again in %d s." % math.ceil(res.retry_after_s)
                   if res.retry_after_s else "Wrong user or password.")
            return page(request, view.login(msg), 429 if res.retry_after_s else 401)
        r = page(request, view.done(f"Logged in as {form.get('user')}.", "/calls" if auth.allowed(res.role, "calls")
                                    else "/"))
        set_cookie(r, res.cookie or "")
        return r

    async def health_page(request: Request) -> Response:
        who = need(request, "health")
        doc = await run_in_threadpool(service.health)
        cov = await run_in_threadpool(service.coverage, 7)
        return page(request, view.health(who, doc, cov))

    async def calls_page(request: Request) -> Response:
        who = need(request, "calls")
        f = call_filter(request.query_params, tz)
        limit = _int(request.query_params, "limit", 50, 1, MAX_LIMIT)
        offset = _int(request.query_params, "offset", 0, 0, MAX_OFFSET)
        total, calls = await run_in_threadpool(service.calls, f, limit=limit, offset=offset)
        lines = [ln.name for ln in service.cfg.lines]
        return page(request, view.calls(who, dict(request.query_params), lines, total, calls, limit, offset))

    async def call_page(request: Request) -> Response:
        who = need(request, "calls")
        call = await run_in_threadpool(service.call, _call_id(request))
        return page(request, view.call(who, call))

    async def audit_page(request: Request) -> Response:
        who = need(request, "audit")
        filters = audit_filters(request.query_params)
        total, rows = await run_in_threadpool(lambda: service.audit_page(**filters))
        return page(request, view.audit(who, dict(request.query_params), total, rows))

    async def config_page(request: Request) -> Response:
        who = need(request, "config")
        return page(request, view.config(who, service.config_text()))

    async def call_erase_page(request: Request) -> Response:
        """The call page's erase form: this call, or every call of its caller's number (read from the
        index, not from the form)."""
        who = need(request, "erase")
        form = await body(request)
        check_csrf(who, request, form)
        reason = erase_reason(form)
        call_id = _call_id(request)
        scope = form.get("scope") or "call"
        if scope == "number":
            call = await run_in_threadpool(service.call, call_id)
            if not call.get("caller_number"):
                raise BadRequest("scope: this call has no caller number")
            target: dict[str, Any] = {"number": call["caller_number"]}
        elif scope == "call":
            target = {"call_id": call_id}
        else:
            raise BadRequest("scope: must be call or number")
        rid = await run_in_threadpool(lambda: service.request_erasure(who.user, address(request), reason=reason,
                                                                      **target))
        return page(request, view.done(f"Erasure request {rid} queued: the recorder carries it out within seconds.",
                                       f"/erasures/{rid}"), 202)

    async def erase_number_page(request: Request) -> Response:
        who = need(request, "erase")
        form = await body(request)
        check_csrf(who, request, form)
        reason = erase_reason(form)
        number = form.get("number")
        if not isinstance(number, str) or not number or len(number) > MAX_TEXT:
            raise BadRequest("number: the caller's digits")
        rid = await run_in_threadpool(lambda: service.request_erasure(who.user, address(request), reason=reason,
                                                                      number=number))
        return page(request, view.done(f"Erasure request {rid} queued: the recorder carries it out within seconds.",
                                       f"/erasures/{rid}"), 202)

    async def erasures_page(request: Request) -> Response:
        who = need(request, "erase")
        offset = _int(request.query_params, "offset", 0, 0, MAX_OFFSET)
        total, rows = await run_in_threadpool(lambda: service.erasures(limit=50, offset=offset))
        return page(request, view.erasures(who, total, rows))

    async def erasure_page(request: Request) -> Response:
        who = need(request, "erase")
        rid = _path_id(request, "request_id", "erasure request id")
        return page(request, view.erasure(who, await run_in_threadpool(service.erasure, rid)))

    async def logout_page(request: Request) -> Response:
        who = need(request, "health")
        check_csrf(who, request, await body(request))
        service.logout(who, address(request))
        r = page(request, view.login("Logged out."))
        r.delete_cookie(auth.COOKIE_NAME, path="/", httponly=True, secure=https, samesite="strict")
        return r

    routes = [
        Route("/api/login", handle(api_login, api=True), methods=["POST"]),
        Route("/api/logout", handle(api_logout, api=True), methods=["POST"]),
        Route("/api/calls", handle(api_calls, api=True), methods=["GET"]),
        Route("/api/calls/{call_id}", handle(api_call, api=True), methods=["GET"]),
        Route("/api/calls/{call_id}/audio", handle(audio, api=True), methods=["GET", "HEAD"]),
        Route("/api/calls/{call_id}/proof", handle(proof, api=True), methods=["GET"]),
        Route("/api/calls/{call_id}/hold", handle(api_hold, api=True), methods=["POST"]),
        Route("/api/erasures", handle(api_erase, api=True), methods=["POST"]),
        Route("/api/erasures", handle(api_erasures, api=True), methods=["GET"]),
        Route("/api/erasures/{request_id}", handle(api_erasure, api=True), methods=["GET"]),
        Route("/api/health", handle(api_health, api=True), methods=["GET"]),
        Route("/api/coverage", handle(api_coverage, api=True), methods=["GET"]),
        Route("/api/audit", handle(api_audit, api=True), methods=["GET"]),
        Route("/login", handle(login_page, api=False), methods=["GET", "POST"]),
        Route("/logout", handle(logout_page, api=False), methods=["POST"]),
        Route("/", handle(health_page, api=False), methods=["GET"]),
        Route("/calls", handle(calls_page, api=False), methods=["GET"]),
        Route("/calls/{call_id}", handle(call_page, api=False), methods=["GET"]),
        Route("/calls/{call_id}/hold", handle(api_hold, api=False), methods=["POST"]),
        Route("/calls/{call_id}/erase", handle(call_erase_page, api=False), methods=["POST"]),
        Route("/erasures", handle(erasures_page, api=False), methods=["GET"]),
        Route("/erasures", handle(erase_number_page, api=False), methods=["POST"]),
        Route("/erasures/{request_id}", handle(erasure_page, api=False), methods=["GET"]),
        Route("/audit", handle(audit_page, api=False), methods=["GET"]),
        Route("/config", handle(config_page, api=False), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not found"}, 404, headers=SECURITY_HEADERS)
        if principal(request) is None:
            return page(request, view.login(), 401)
        return page(request, view.error(404, "No such page."), 404)

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.exception("web: %s %s failed", request.method, safe(request.url.path))
        return JSONResponse({"error": "internal error"}, 500)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, 500: server_error})


# Pages are ours alone: no framing (clickjacking), no scripts or styles from elsewhere, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def serve(service: WebService, *, host: str, port: int, certfile: str | None, keyfile: str | None) -> None:
    """Run the web interface until SIGTERM/SIGINT (uvicorn on h11, one process, no reload)."""
    https = certfile is not None
    config = uvicorn.Config(build_app(service, https=https), host=host, port=port, ssl_certfile=certfile,
                            ssl_keyfile=keyfile, ssl_version=ssl.PROTOCOL_TLS_SERVER, http="h11", loop="asyncio",
                            lifespan="off", access_log=False, server_header=False, log_config=None,
                            limit_concurrency=64, timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024)
    uvicorn.Server(config).run()


def make_server(service: WebService, *, host: str, port: int, https: bool = False) -> Any:
    """A plain-HTTP uvicorn server object (for tests that run it on a thread): call ``.run()``,
    set ``.should_exit`` to stop. ``https``: the app as it runs behind TLS (Secure cookies)."""
    config = uvicorn.Config(build_app(service, https=https), host=host, port=port, http="h11", loop="asyncio",
                            lifespan="off", access_log=False, log_config=None)
    return uvicorn.Server(config)
