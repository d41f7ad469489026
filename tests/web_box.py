"""A real web interface for tests: a real index with chained WAV recordings, real users (argon2),
and uvicorn serving on a loopback socket in a thread; a small HTTP client that keeps cookies."""

from __future__ import annotations

import functools
import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import numpy as np

from linetap.clock import FakeClock
from linetap.config import StorageConfig, load
from linetap.evidence.finalize import finalize_recording
from linetap.index.db import Index
from linetap.store.recordings import Recording
from linetap.web import app, passwords, service

from helpers import write_config, wait_for

RATE = 8000
PASSWORDS = {"alice": "admin-pass-1", "lena": "listener-pass-1", "vic": "viewer-pass-1"}
ROLES = {"alice": "admin", "lena": "listener", "vic": "viewer"}


def make_call(index: Index, data_dir: Path, clock: FakeClock, *, line: str = "line1", number: str | None = None,
              name: str | None = None, dtmf: str = "", seconds: float = 3.0) -> dict[str, Any]:
    """One finished, chained WAV recording (a tone, so a player has something to play). Written in
    one piece and synced once (the web reads finished files; a box per test made 6 fsyncs a call)."""
    rec = Recording(data_dir, index, line=line, codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=seconds)
    rec.caller_number, rec.caller_name, rec.dtmf = number, name, dtmf
    tone = (np.sin(np.arange(int(seconds * RATE)) * 0.3) * 8000).astype(np.int16).reshape(-1, 1)
    rec.write(tone)
    row = rec.finish("onhook")
    finalize_recording(index, data_dir, row, StorageConfig(codec="wav"), clock=clock)
    clock.advance(600)
    return row


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    port: int
    source: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None
    set_cookie: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                form: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        h = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data, h["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            from urllib.parse import urlencode
            data, h["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            out = Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
            self.set_cookie = r.headers.get_all("set-cookie") or []
        finally:
            conn.close()
        for c in self.set_cookie:
            name, _, rest = c.partition("=")
            value = rest.split(";")[0]
            if value.strip('"'):
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return out

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        h = dict(kw.pop("headers", {}) or {})
        if self.csrf and "X-CSRF-Token" not in h and kw.pop("with_csrf", True):
            h["X-CSRF-Token"] = self.csrf
        kw.pop("with_csrf", None)
        return self.request("POST", path, headers=h, **kw)

    def login(self, user: str, password: str | None = None) -> Reply:
        r = self.request("POST", "/api/login", body={"user": user, "password": password or PASSWORDS[user]})
        if r.status == 200:
            self.csrf = r.json()["csrf"]
        return r


@dataclass
class WebBox:
    data_dir: Path
    index: Index
    svc: service.WebService
    clock: FakeClock
    port: int
    calls: list[dict[str, Any]]

    def client(self, source: str = "127.0.0.1") -> Client:
        return Client(self.port, source)

    def as_user(self, user: str) -> Client:
        c = self.client()
        assert c.login(user).status == 200
        return c


def serve(svc: service.WebService, *, https: bool = False) -> Iterator[int]:
    """Serve ``svc`` on a free loopback port in a thread; yields the port, stops the server after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = app.make_server(svc, host="127.0.0.1", port=port, https=https)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    wait_for(lambda: server.started, timeout=20)
    try:
        yield port
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


_real_hash_password = passwords.hash_password


@functools.cache
def _hash_once(password: str) -> str:
    """The box's users' argon2id hashes, computed once per session (~40 ms each on the development VM,
    three a box, a box per test in test_web_erase.py) and stored by the real ``service.add_user``: a
    real hash of the password (its salt shared between boxes), so every login still runs argon2 in full."""
    return _real_hash_password(password)


def build_box(tmp_path: Path, clock: FakeClock, *, calls: int = 6, seconds: float = 3.0) -> tuple[service.WebService, Index, list[dict[str, Any]]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    cfg_path = write_config(tmp_path / "linetap.toml", data_dir,
                            [{"name": "line1", "pcm": "null"}, {"name": "line2", "pcm": "null"}],
                            recorder={"id": "shop-01", "timezone": "Europe/Berlin"}, storage={"codec": "wav"})
    cfg = load(cfg_path)
    from linetap.index.db import open_index
    index = open_index(data_dir)
    rows = []
    for i in range(calls):
        rows.append(make_call(index, data_dir, clock, line="line1" if i % 2 == 0 else "line2",
                              number=f"030555{i:04d}", name="Müller GmbH" if i == 3 else None,
                              dtmf="1234" if i == 2 else "", seconds=seconds))
    with mock.patch.object(passwords, "hash_password", _hash_once):
        for user, password in PASSWORDS.items():
            service.add_user(index, user, ROLES[user], password, clock=clock)
    state = service.web_dir(cfg)
    svc = service.WebService(cfg, index, secret=service.box_secret(state), state_dir=state, clock=clock)
    return svc, index, rows
