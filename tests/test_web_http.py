"""The web interface over real HTTP (uvicorn on loopback), a real index, real recordings, real argon2.

Every role boundary, CSRF, cookies and tokens, range requests, filters and paging, the audit
trail, the login back-off, and bad input (path traversal, huge and malformed values, forged
cookies, a session from another box).
"""

from __future__ import annotations

import http.client
import io
import logging
import sqlite3
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from linetap.clock import FakeClock
from linetap.evidence import audit as evidence_audit
from linetap.evidence.export import verify_export
from linetap.index import web as q
from linetap.web import auth, service

from web_box import PASSWORDS, WebBox, build_box, serve


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebBox]:
    """One box for the read-mostly tests (building it costs argon2 hashes and six recordings)."""
    clock = FakeClock(wall=1_795_000_000.0)
    tmp = tmp_path_factory.mktemp("web")
    svc, index, rows = build_box(tmp, clock)
    for port in serve(svc):
        yield WebBox(tmp / "data", index, svc, clock, port, rows)
    index.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[WebBox]:
    """A box of its own, for tests that change state (holds, back-off, users)."""
    clock = FakeClock(wall=1_795_000_000.0)
    svc, index, rows = build_box(tmp_path, clock, calls=2)
    for port in serve(svc):
        yield WebBox(tmp_path / "data", index, svc, clock, port, rows)
    index.close()


API_GETS = ["/api/calls", "/api/calls/1", "/api/calls/1/audio", "/api/calls/1/proof", "/api/health",
            "/api/coverage", "/api/audit"]
PAGES = ["/", "/calls", "/calls/1", "/audit", "/config", "/no-such-page"]


# --- logged out ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", API_GETS)
def test_logged_out_api_requests_get_401_json_never_a_redirect(box: WebBox, path: str) -> None:
    r = box.client().get(path)
    assert (r.status, r.json()["error"]) == (401, "log in first")


@pytest.mark.parametrize("path", PAGES)
def test_logged_out_pages_get_the_login_page_with_401(box: WebBox, path: str) -> None:
    r = box.client().get(path)
    assert r.status == 401 and b'id="login"' in r.body and "location" not in r.headers


def test_logged_out_state_changes_get_401(box: WebBox) -> None:
    assert box.client().post("/api/calls/1/hold", body={"held": True, "reason": "x"}).status == 401


# --- login and cookies -----------------------------------------------------------------------------

def test_login_answers_200_with_a_strict_httponly_cookie_and_a_csrf_token(box: WebBox) -> None:
    c = box.client()
    r = c.login("lena")
    cookie = c.set_cookie[0]
    assert r.status == 200 and r.json()["role"] == "listener" and len(r.json()["csrf"]) > 20
    assert cookie.startswith(auth.COOKIE_NAME + "=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP in this test; build_app(https=True) adds it


def test_a_wrong_password_gets_401(box: WebBox) -> None:
    assert box.client().login("lena", "wrong-password").status == 401


def test_an_unknown_user_gets_401(box: WebBox) -> None:
    assert box.client().login("nobody", "whatever-pass").status == 401


def test_the_cookie_is_secure_when_served_over_https(box: WebBox) -> None:
    for port in serve(box.svc, https=True):  # the app as `linetap web` runs it behind TLS
        c = WebBox(box.data_dir, box.index, box.svc, box.clock, port, box.calls).client()
        assert c.login("lena").status == 200 and "Secure" in c.set_cookie[0]


def test_logout_ends_the_session(box: WebBox) -> None:
    c = box.as_user("lena")
    cookie = dict(c.cookies)
    assert c.post("/api/logout").status == 200
    c.cookies = cookie  # replay the old cookie
    assert c.get("/api/calls").status == 401


# --- roles -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/calls", "/api/calls/1", "/api/calls/1/audio", "/api/calls/1/proof",
                                  "/api/audit", "/calls", "/calls/1", "/audit"])
def test_a_viewer_gets_403_on_calls_audio_and_audit(box: WebBox, path: str) -> None:
    assert box.as_user("vic").get(path).status == 403


@pytest.mark.parametrize("path", ["/api/health", "/api/coverage", "/"])
def test_a_viewer_sees_health(box: WebBox, path: str) -> None:
    assert box.as_user("vic").get(path).status == 200


@pytest.mark.parametrize("path", ["/api/calls", "/api/calls/1", "/api/calls/1/audio", "/calls", "/calls/1"])
def test_a_listener_finds_and_plays(box: WebBox, path: str) -> None:
    assert box.as_user("lena").get(path).status == 200


def test_a_listener_cannot_hold_or_read_the_audit_trail(box: WebBox) -> None:
    c = box.as_user("lena")
    assert c.post("/api/calls/1/hold", body={"held": True, "reason": "dispute"}).status == 403
    assert c.get("/api/audit").status == 403
    assert not q.hold_of(box.index, 1)


# --- CSRF and tokens -------------------------------------------------------------------------------

def test_a_state_change_without_the_csrf_token_is_refused(fresh: WebBox) -> None:
    c = fresh.as_user("alice")
    r = c.post("/api/calls/1/hold", body={"held": True, "reason": "dispute"}, with_csrf=False)
    assert (r.status, q.hold_of(fresh.index, 1)) == (403, None)


def test_a_state_change_with_a_wrong_csrf_token_is_refused(fresh: WebBox) -> None:
    c = fresh.as_user("alice")
    r = c.post("/api/calls/1/hold", body={"held": True, "reason": "dispute"}, headers={"X-CSRF-Token": "x" * 32})
    assert (r.status, q.hold_of(fresh.index, 1)) == (403, None)


def test_an_admin_places_and_lifts_a_hold_with_the_csrf_token(fresh: WebBox) -> None:
    c = fresh.as_user("alice")
    r = c.post("/api/calls/1/hold", body={"held": True, "reason": "billing dispute"})
    assert (r.status, r.json()["changed"]) == (200, True)
    assert q.hold_of(fresh.index, 1)["reason"] == "billing dispute"
    assert c.get("/api/calls/1").json()["held"] is True
    assert c.post("/api/calls/1/hold", body={"held": False}).json()["changed"] is True
    assert q.hold_of(fresh.index, 1) is None


def test_a_hold_needs_a_reason(fresh: WebBox) -> None:
    assert fresh.as_user("alice").post("/api/calls/1/hold", body={"held": True, "reason": " "}).status == 400


def test_a_bearer_token_needs_no_csrf_and_keeps_its_role(fresh: WebBox) -> None:
    token = auth.new_token()
    q.user_set_token(fresh.index, "alice", auth.digest(token))
    c = fresh.client()
    r = c.post("/api/calls/2/hold", body={"held": True, "reason": "api"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and q.hold_of(fresh.index, 2)["held_by"] == "web:alice"
    assert c.get("/api/calls", headers={"Authorization": "Bearer lt_wrong"}).status == 401


# --- forged and foreign sessions -------------------------------------------------------------------

def test_a_forged_cookie_gets_401(box: WebBox) -> None:
    c = box.as_user("alice")
    sid, mac = c.cookies[auth.COOKIE_NAME].split(".")
    c.cookies[auth.COOKIE_NAME] = f"{sid}.{'0' * len(mac)}"
    assert c.get("/api/calls").status == 401


def test_a_made_up_session_signed_right_but_unknown_gets_401(box: WebBox) -> None:
    c = box.client()
    c.cookies[auth.COOKIE_NAME] = auth.cookie_value(box.svc.secret, auth.new_session_id())
    assert c.get("/api/health").status == 401


def test_a_session_from_another_box_gets_401(box: WebBox) -> None:
    """The same session id, signed with another box's secret (a cookie copied between boxes)."""
    c = box.as_user("alice")
    sid = c.cookies[auth.COOKIE_NAME].split(".")[0]
    c.cookies[auth.COOKIE_NAME] = auth.cookie_value(b"another box's secret, 32 bytes!!", sid)
    assert c.get("/api/health").status == 401


@pytest.mark.parametrize("cookie", ["", ".", "a.b.c", "x" * 5000, "\u00e9.\u00e9", "%00.%00"])
def test_malformed_cookies_get_401(box: WebBox, cookie: str) -> None:
    c = box.client()
    c.cookies[auth.COOKIE_NAME] = cookie.encode("utf-8").decode("latin-1")
    assert c.get("/api/health").status == 401


# --- range requests --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored(box: WebBox) -> bytes:
    return (box.data_dir / box.calls[0]["path"]).read_bytes()


def test_audio_without_range_is_the_whole_stored_file(box: WebBox, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio")
    assert (r.status, r.body, r.headers["accept-ranges"]) == (200, stored, "bytes")
    assert r.headers["content-type"] == "audio/wav"


@pytest.mark.parametrize("header,start,end", [("bytes=0-99", 0, 100), ("bytes=1000-", 1000, None),
                                              ("bytes=-500", -500, None), ("bytes=100-100", 100, 101)])
def test_a_range_is_answered_206_with_exactly_those_bytes(box: WebBox, stored: bytes, header: str, start: int,
                                                          end: int | None) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio", headers={"Range": header})
    want = stored[start:end] if end is not None else stored[start:]
    first = start % len(stored)
    assert (r.status, r.body) == (206, want)
    assert r.headers["content-range"] == f"bytes {first}-{first + len(want) - 1}/{len(stored)}"


def test_overlapping_ranges_are_merged_into_one(box: WebBox, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio", headers={"Range": "bytes=0-99,50-149"})
    assert (r.status, r.body, r.headers["content-range"]) == (206, stored[:150], f"bytes 0-149/{len(stored)}")


def test_disjoint_ranges_come_as_multipart(box: WebBox, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio", headers={"Range": "bytes=0-9,100-109"})
    assert r.status == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert stored[:10] in r.body and stored[100:110] in r.body


def test_a_range_past_the_end_is_416(box: WebBox, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio", headers={"Range": f"bytes={len(stored)}-"})
    assert (r.status, r.headers["content-range"]) == (416, f"bytes */{len(stored)}")


@pytest.mark.parametrize("header,status", [("bytes=abc", 400), ("items=0-10", 400), ("bytes=10-5", 400),
                                           ("bytes=", 400), ("bytes=--1", 416)])
def test_malformed_ranges_are_refused_cleanly(box: WebBox, header: str, status: int) -> None:
    assert box.as_user("lena").get("/api/calls/1/audio", headers={"Range": header}).status == status


def test_hundreds_of_ranges_get_the_whole_file_once_not_an_amplified_answer(box: WebBox, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/audio", headers={"Range": "bytes=" + ",".join(["0-999"] * 200)})
    assert (r.status, r.body) == (200, stored)  # RFC 9110 lets a server ignore Range


# --- filters and paging ----------------------------------------------------------------------------

def ids(r: Any) -> list[int]:
    return [c["id"] for c in r.json()["calls"]]


def test_the_list_is_newest_first_with_the_total(box: WebBox) -> None:
    r = box.as_user("lena").get("/api/calls")
    assert (r.json()["total"], ids(r)) == (6, [6, 5, 4, 3, 2, 1])
    assert set(r.json()["calls"][0]) >= {"id", "line", "started_at", "path", "sha256", "caller_number", "held"}


@pytest.mark.parametrize("query,want", [
    ("line=line2", [6, 4, 2]), ("number=5550003", [4]), ("number=0305550", [6, 5, 4, 3, 2, 1]),
    ("name=m%C3%BCller", [4]), ("dtmf=1", [3]), ("dtmf=0", [6, 5, 4, 2, 1]),
    ("number=%25", []), ("number=_", []),  # LIKE's wildcards are taken literally
    ("min_duration_s=2.5&max_duration_s=3.5", [6, 5, 4, 3, 2, 1]), ("min_duration_s=4", []),
])
def test_filters(box: WebBox, query: str, want: list[int]) -> None:
    assert ids(box.as_user("lena").get(f"/api/calls?{query}")) == want


def test_date_filters_read_naive_times_in_the_box_time_zone(box: WebBox) -> None:
    c = box.as_user("lena")
    third = box.calls[2]["started_at"]  # e.g. 2026-11-18T...Z; Europe/Berlin is UTC+1 in November
    assert ids(c.get(f"/api/calls?since={third}")) == [6, 5, 4, 3]
    assert ids(c.get(f"/api/calls?until={third}")) == [2, 1]
    from datetime import datetime, timedelta
    utc = datetime.fromisoformat(third.replace("Z", "+00:00"))
    local = (utc + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert ids(c.get(f"/api/calls?until={local}")) == [2, 1]


def test_the_held_filter(fresh: WebBox) -> None:
    c = fresh.as_user("alice")
    c.post("/api/calls/1/hold", body={"held": True, "reason": "dispute"})
    assert (ids(c.get("/api/calls?held=1")), ids(c.get("/api/calls?held=0"))) == ([1], [2])


def test_paging(box: WebBox) -> None:
    c = box.as_user("lena")
    pages = [ids(c.get(f"/api/calls?limit=4&offset={o}")) for o in (0, 4, 8)]
    assert pages == [[6, 5, 4, 3], [2, 1], []]
    assert c.get("/api/calls?limit=4&offset=4").json()["total"] == 6


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "limit=0", "limit=201", "limit=-1", "limit=1e3", "limit=" + "9" * 40, "offset=-5", "offset=abc",
    "since=yesterday", "until=2026-13-45", "since=" + "9" * 60, "number=" + "5" * 65, "number=%00",
    "name=%0Aevil", "line=../../etc", "line=LINE1", "min_duration_s=nan", "max_duration_s=inf",
    "min_duration_s=-1", "dtmf=maybe", "held=2",
])
def test_bad_query_values_are_400_naming_the_parameter(box: WebBox, query: str) -> None:
    r = box.as_user("lena").get(f"/api/calls?{query}")
    assert r.status == 400 and r.json()["error"].startswith(query.split("=")[0] + ":")


@pytest.mark.parametrize("path", [
    "/api/calls/..%2F..%2Fetc%2Fpasswd", "/api/calls/..%2F..%2Fetc%2Fpasswd/audio", "/api/calls/0",
    "/api/calls/-1/audio", "/api/calls/1%00/audio", "/api/calls/" + "9" * 40, "/api/calls/1.0/audio",
    "/calls/..%2F..%2Fetc%2Fpasswd", "/api/calls/%2e%2e/audio",
])
def test_path_traversal_and_bad_ids_are_refused(box: WebBox, path: str) -> None:
    r = box.as_user("lena").get(path)
    assert r.status in (400, 404) and b"root:" not in r.body


def test_a_call_whose_stored_path_leaves_the_data_dir_is_not_served(fresh: WebBox) -> None:
    """An index row rewritten to point at /etc/passwd (someone with write access to index.db)."""
    fresh.index.update_call(2, path="../../../../../../etc/passwd")
    r = fresh.as_user("lena").get("/api/calls/2/audio")
    assert r.status == 404 and b"root:" not in r.body


def test_an_unknown_call_is_404(box: WebBox) -> None:
    assert box.as_user("lena").get("/api/calls/999/audio").status == 404


def test_a_huge_login_body_is_refused_unread(box: WebBox) -> None:
    r = box.client().request("POST", "/api/login", body={"user": "alice", "password": "x" * 100_000})
    assert r.status == 400


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"user": 1, "password": 2}', b"\xff\xfe"])
def test_malformed_login_bodies_are_400(box: WebBox, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
    try:
        conn.request("POST", "/api/login", body=body, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 400
    finally:
        conn.close()


def test_a_caller_name_with_markup_is_shown_not_run(fresh: WebBox) -> None:
    fresh.index.update_call(1, caller_name='<script>alert("x")</script>')
    body = fresh.as_user("lena").get("/calls").body
    assert b"<script>alert" not in body and b"&lt;script&gt;alert(&quot;x&quot;)" in body


def test_nothing_from_the_request_is_logged_unescaped(box: WebBox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = box.client()
    c.get("/api/calls%0AFAKE%20LOG%20LINE")
    c.get("/api/calls?number=%0Aforged")
    c.login("evil\nFAKE", "x\nFAKE")
    box.as_user("lena").get("/api/calls?name=%1b%5b31mred")
    msgs = [rec.getMessage() for rec in caplog.records]
    assert msgs and not any("\n" in m or "\x1b" in m for m in msgs)


# --- the audit trail -------------------------------------------------------------------------------

def test_play_download_export_hold_release_and_logins_are_audited_with_user_and_address(fresh: WebBox) -> None:
    bad = fresh.client(source="127.0.0.3")
    bad.login("lena", "wrong-password")
    c = fresh.as_user("alice")
    c.get("/api/calls/1/audio")
    c.get("/api/calls/1/audio", headers={"Range": "bytes=1000-"})  # a seek: not a new play
    c.get("/api/calls/1/audio?download=1")
    c.get("/api/calls/1/proof")
    c.post("/api/calls/1/hold", body={"held": True, "reason": "dispute"})
    c.post("/api/calls/1/hold", body={"held": False})
    _, rows = q.web_audit_rows(fresh.index, limit=50)
    got = [(r["user"], r["address"], r["action"], r["call_id"]) for r in reversed(rows)]
    assert got == [("lena", "127.0.0.3", "login_failed", None), ("alice", "127.0.0.1", "login", None),
                   ("alice", "127.0.0.1", "play", 1), ("alice", "127.0.0.1", "download", 1),
                   ("alice", "127.0.0.1", "export", 1), ("alice", "127.0.0.1", "hold", 1),
                   ("alice", "127.0.0.1", "release", 1)]
    ev = [(a.who, a.action) for a in evidence_audit.rows(fresh.index, 1)]
    assert ev == [("web:alice", a) for a in ("play", "download", "export", "hold", "release")]


def test_the_web_audit_trail_is_append_only(fresh: WebBox) -> None:
    fresh.as_user("alice")
    with pytest.raises(sqlite3.IntegrityError):
        fresh.index.execute("delete from web_audit")


def test_the_admin_filters_the_audit_trail(fresh: WebBox) -> None:
    fresh.client().login("vic", "wrong-password")
    c = fresh.as_user("alice")
    r = c.get("/api/audit?action=login_failed").json()
    assert (r["total"], r["rows"][0]["user"]) == (1, "vic")
    assert b"login_failed" in c.get("/audit?user=vic").body


# --- the proof bundle ------------------------------------------------------------------------------

def test_the_proof_bundle_checks_with_the_export_verifier(box: WebBox, tmp_path: Path, stored: bytes) -> None:
    r = box.as_user("lena").get("/api/calls/1/proof")
    assert r.status == 200 and r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.body)).extractall(tmp_path)
    out = tmp_path / "call-1"
    assert verify_export(out) == []
    assert (out / Path(box.calls[0]["path"]).name).read_bytes() == stored


# --- login back-off ---------------------------------------------------------------------------------

def test_repeated_failures_slow_that_user_from_that_address_only(fresh: WebBox) -> None:
    attacker = fresh.client(source="127.0.0.2")
    for _ in range(auth.FREE_FAILURES):
        assert attacker.login("alice", "wrong-password").status == 401
    r = attacker.login("alice", PASSWORDS["alice"])  # even the right password waits
    assert r.status == 429 and int(r.headers["retry-after"]) == int(auth.BASE_DELAY_S)
    assert fresh.client(source="127.0.0.1").login("alice").status == 200  # the admin's own address


def test_the_back_off_ends_so_the_admin_is_never_locked_out_for_good(fresh: WebBox) -> None:
    attacker = fresh.client(source="127.0.0.2")
    for _ in range(40):  # a long attack: the wait is capped
        attacker.login("alice", "wrong-password")
        fresh.clock.advance(auth.MAX_DELAY_S + 1)
    assert attacker.login("alice").status == 200


def test_a_success_clears_the_failures(fresh: WebBox) -> None:
    c = fresh.client()
    for _ in range(auth.FREE_FAILURES - 1):
        c.login("lena", "wrong-password")
    assert c.login("lena").status == 200
    assert q.failures_of(fresh.index, "lena", "127.0.0.1") is None


# --- users -----------------------------------------------------------------------------------------

def test_a_deleted_user_is_logged_out_at_once(fresh: WebBox) -> None:
    c = fresh.as_user("lena")
    q.user_delete(fresh.index, "lena")
    assert c.get("/api/calls").status == 401


def test_the_setup_token_makes_the_first_admin_once(tmp_path: Path) -> None:
    clock = FakeClock()
    svc, index, _ = build_box(tmp_path, clock, calls=0)
    q.user_delete(index, "alice")
    token = service.first_admin(index, svc.cfg, svc.state_dir, clock=clock)
    try:
        assert token and svc.login("admin", "not-the-token", "127.0.0.1").ok is False
        assert svc.login("admin", token, "127.0.0.1").ok is True
        assert q.user_get(index, "admin")["role"] == "admin"
        assert service.first_admin(index, svc.cfg, svc.state_dir) is None
    finally:
        index.close()


def test_the_first_admin_comes_from_the_config_hash(tmp_path: Path) -> None:
    from dataclasses import replace
    from linetap.web.passwords import hash_password
    clock = FakeClock()
    svc, index, _ = build_box(tmp_path, clock, calls=0)
    q.user_delete(index, "alice")
    cfg = replace(svc.cfg, web=replace(svc.cfg.web, admin_password_hash=hash_password("from-the-boot-file")))
    try:
        assert service.first_admin(index, cfg, svc.state_dir, clock=clock) is None
        assert svc.login("admin", "from-the-boot-file", "127.0.0.1").role == "admin"
    finally:
        index.close()


# --- pages -----------------------------------------------------------------------------------------

def test_the_call_page_has_a_player_the_proof_link_and_local_times(box: WebBox) -> None:
    body = box.as_user("alice").get("/calls/1").body.decode()
    assert '<audio id="player"' in body and 'href="/api/calls/1/proof"' in body
    assert "CET" in body and 'title="' + box.calls[0]["started_at"] + ' (UTC)"' in body
    assert 'id="hold"' in body  # an admin sees the hold form


def test_the_call_page_shows_a_forwarded_calls_number_and_the_waiting_callers_escaped(fresh: WebBox) -> None:
    page = fresh.as_user("lena")
    assert "forwarded from" not in page.get("/calls/1").body.decode()  # none: no row for it
    fresh.index.update_call(1, caller_redirected_from="0307654321",
                            waiting_callers=[{"number": "5559876543", "name": "<b>BOB</b>", "at_s": 75.2},
                                             {"number": None, "name": None, "at_s": 130.0}])
    body = page.get("/calls/1").body.decode()
    assert "<th>forwarded from</th><td>0307654321</td>" in body
    assert ('<th>call waiting</th><td><span class="waiting">5559876543 &lt;b&gt;BOB&lt;/b&gt; at 1:15</span><br>'
            '<span class="waiting">number withheld at 2:10</span></td>') in body
    assert page.get("/api/calls/1").json()["waiting_callers"][0]["number"] == "5559876543"


def test_the_health_page_draws_the_coverage_timeline(box: WebBox) -> None:
    body = box.as_user("vic").get("/").body.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="timeline"' in body and "never_started" in body


def test_the_call_page_hold_form_carries_the_csrf_token(fresh: WebBox) -> None:
    c = fresh.as_user("alice")
    assert f'name="csrf" value="{c.csrf}"' in c.get("/calls/1").body.decode()
    r = c.request("POST", "/calls/1/hold", form={"csrf": c.csrf, "held": "1", "reason": "coaching"})
    assert r.status == 200 and q.hold_of(fresh.index, 1)["reason"] == "coaching"
    forged = c.request("POST", "/calls/2/hold", form={"held": "1", "reason": "from another site"})
    assert forged.status == 403 and q.hold_of(fresh.index, 2) is None


def test_a_listener_posting_the_hold_form_gets_403(fresh: WebBox) -> None:
    c = fresh.as_user("lena")
    assert c.request("POST", "/calls/1/hold", form={"csrf": c.csrf, "held": "1", "reason": "x"}).status == 403


def test_only_an_admin_sees_the_config_and_its_secrets_are_masked(fresh: WebBox) -> None:
    path = Path(fresh.svc.cfg.source)
    path.write_text(path.read_text() + '\n[web]\nadmin_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$x"\n')
    body = fresh.as_user("alice").get("/config").body.decode()
    assert 'id = &quot;shop-01&quot;' in body and "argon2id" not in body and "********" in body
    assert fresh.as_user("lena").get("/config").status == 403
