"""The web interface's pure decisions: roles, login back-off, signed cookies, tokens, query values."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from linetap.web import auth
from linetap.web.app import BadRequest, call_filter, safe
from linetap.web.passwords import hash_password, is_password_hash, verify_password

SECRET = b"s" * 32


@pytest.mark.parametrize("role,permission,ok", [
    ("viewer", "health", True), ("viewer", "calls", False), ("viewer", "play", False),
    ("listener", "calls", True), ("listener", "play", True), ("listener", "download", True),
    ("listener", "hold", False), ("listener", "erase", False), ("listener", "users", False),
    ("listener", "audit", False), ("admin", "hold", True), ("admin", "erase", True), ("admin", "users", True),
    ("admin", "audit", True), ("root", "health", False), (None, "health", False),
])
def test_what_each_role_may_do(role: str | None, permission: str, ok: bool) -> None:
    assert auth.allowed(role, permission) is ok


@pytest.mark.parametrize("failures,delay_s", [(0, 0.0), (4, 0.0), (5, 2.0), (6, 4.0), (9, 32.0), (14, 900.0),
                                              (1000, 900.0)])
def test_the_login_delay_doubles_after_five_failures_and_is_capped_at_15_minutes(failures: int,
                                                                               delay_s: float) -> None:
    assert auth.login_delay_s(failures) == delay_s


def test_retry_after_counts_from_the_last_failure() -> None:
    assert (auth.retry_after_s(6, 100.0, 101.0), auth.retry_after_s(6, 100.0, 104.0)) == (3.0, 0.0)


def test_a_cookie_this_box_signed_gives_back_its_session_id() -> None:
    sid = auth.new_session_id()
    assert auth.session_id_of(SECRET, auth.cookie_value(SECRET, sid)) == sid


@pytest.mark.parametrize("cookie", [None, "", "abc", "a.b", "a.b.c", "x" * 300])
def test_anything_else_is_no_session(cookie: str | None) -> None:
    assert auth.session_id_of(SECRET, cookie) is None


def test_another_box_s_cookie_is_no_session() -> None:
    assert auth.session_id_of(SECRET, auth.cookie_value(b"t" * 32, "same-id")) is None


@pytest.mark.parametrize("header,token", [("Bearer lt_abc", "lt_abc"), ("bearer  lt_abc ", "lt_abc"),
                                          ("Basic lt_abc", None), ("Bearer abc", None), (None, None),
                                          ("Bearer lt_" + "a" * 400, None)])
def test_the_bearer_token_of_an_authorization_header(header: str | None, token: str | None) -> None:
    assert auth.bearer_token(header) == token


def test_csrf_needs_the_exact_token() -> None:
    assert (auth.csrf_ok("abc", "abc"), auth.csrf_ok("abc", "abd"), auth.csrf_ok("abc", None),
            auth.csrf_ok("abc", "")) == (True, False, False, False)


def test_passwords_are_argon2id_and_checked() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and is_password_hash(h)
    assert (verify_password(h, "correct horse"), verify_password(h, "wrong"), verify_password(None, "x"),
            verify_password("garbage", "x")) == (True, False, False, False)


def test_a_log_value_keeps_only_printable_ascii() -> None:
    assert safe("a\nb\x1b[31m\u00e9") == "a\\x0ab\\x1b[31m\\xe9"


def test_query_values_become_a_filter_with_local_times_in_utc() -> None:
    f = call_filter({"line": "line1", "since": "2026-11-28T16:30:00", "number": "0305",
                     "min_duration_s": "2.5", "dtmf": "1", "held": "0"}, ZoneInfo("Europe/Berlin"))
    assert (f.line, f.since, f.number, f.min_duration_s, f.dtmf, f.held) == (
        "line1", "2026-11-28T15:30:00.000Z", "0305", 2.5, True, False)


@pytest.mark.parametrize("params", [{"since": "soon"}, {"line": "A"}, {"dtmf": "x"}, {"max_duration_s": "1e999"}])
def test_bad_query_values_raise_bad_request(params: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        call_filter(params, ZoneInfo("UTC"))


def test_the_timeline_draws_each_gap_where_it_lies_in_the_window() -> None:
    from linetap.web.timeline import LABEL_W, WIDTH, timeline_svg
    cov = [{"line": "line1", "since": "2026-11-01T00:00:00.000Z", "until": "2026-11-08T00:00:00.000Z",
            "covered_fraction": 0.5, "gaps": [{"started_at": "2026-11-04T12:00:00.000Z",
                                               "ended_at": "2026-11-08T00:00:00.000Z", "reason": "line_dead"}]}]
    svg = timeline_svg(cov, ZoneInfo("UTC"))
    half = LABEL_W + (WIDTH - LABEL_W) / 2
    assert f'<rect class="gap" x="{half:.1f}" y="18" width="{(WIDTH - LABEL_W) / 2:.1f}"' in svg
    assert "<title>line_dead: 2026-11-04T12:00:00.000Z" in svg and "50.00 % covered" in svg
