"""``linetap web`` and ``linetap user`` as processes: users from the shell, HTTPS with a self-signed
certificate whose fingerprint the box shows, the setup token, plain HTTP for a reverse proxy."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from linetap.config import load
from linetap.index import web as q
from linetap.index.db import open_index
from linetap.web.passwords import verify_password

from helpers import wait_for, write_config


@pytest.fixture
def cfg(tmp_path: Path, data_dir: Path) -> Path:
    return write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": "null"}],
                        recorder={"id": "shop-01"})


def linetap(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linetap", *argv], input=stdin, capture_output=True, text=True,
                          timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_user_add_reads_the_password_twice_from_stdin(cfg: Path, data_dir: Path) -> None:
    p = linetap("user", "add", "bob", "--role", "listener", "-c", str(cfg), stdin="s3cret-pass\ns3cret-pass\n")
    assert (p.returncode, p.stdout) == (0, "user bob added (listener)\n")
    index = open_index(data_dir)
    row = q.user_get(index, "bob")
    index.close()
    assert row["role"] == "listener" and verify_password(row["password_hash"], "s3cret-pass")


@pytest.mark.parametrize("argv,stdin,code,err", [
    (["add", "bob", "--role", "listener"], "one-password\nanother-one\n", 2, "the two passwords differ"),
    (["add", "bob", "--role", "listener"], "short\nshort\n", 2, "at least 8 characters"),
    (["add", "bob"], "s3cret-pass\ns3cret-pass\n", 2, "--role: required"),
    (["add", "Bob!", "--role", "admin"], "", 2, "NAME: must match"),
    (["add", "bob", "--role", "root"], "", 2, "invalid choice: 'root'"),
    (["del", "nobody"], "", 1, "no user 'nobody'"),
    (["passwd", "nobody"], "s3cret-pass\ns3cret-pass\n", 1, "no user 'nobody'"),
])
def test_user_errors_are_one_line(cfg: Path, argv: list[str], stdin: str, code: int, err: str) -> None:
    p = linetap("user", *argv, "-c", str(cfg), stdin=stdin)
    assert p.returncode == code and err in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_user_token_passwd_and_del(cfg: Path, data_dir: Path) -> None:
    linetap("user", "add", "bob", "--role", "admin", "-c", str(cfg), stdin="s3cret-pass\ns3cret-pass\n")
    assert linetap("user", "add", "bob", "--role", "admin", "-c", str(cfg),
                   stdin="s3cret-pass\ns3cret-pass\n").returncode == 1  # exists
    token = linetap("user", "token", "bob", "-c", str(cfg)).stdout.strip()
    assert re.fullmatch(r"lt_[A-Za-z0-9_-]{43}", token)
    assert linetap("user", "passwd", "bob", "-c", str(cfg), stdin="new-pass-99\nnew-pass-99\n").returncode == 0
    index = open_index(data_dir)
    row = q.user_get(index, "bob")
    assert verify_password(row["password_hash"], "new-pass-99")
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()  # only the hash is kept
    index.close()
    assert linetap("user", "del", "bob", "-c", str(cfg)).returncode == 0
    index = open_index(data_dir)
    assert q.user_get(index, "bob") is None
    index.close()


def test_hash_password_prints_an_argon2_hash_for_the_boot_file() -> None:
    p = linetap("web", "--hash-password", stdin="first-admin-pw\nfirst-admin-pw\n")
    assert p.returncode == 0 and verify_password(p.stdout.strip(), "first-admin-pw")


@pytest.fixture
def web(cfg: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "linetap", "web", "-c", str(cfg), "--listen", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(20)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_web_serves_https_with_a_self_signed_certificate_the_box_shows(web: tuple[subprocess.Popen[str], int],
                                                                     cfg: Path) -> None:
    proc, port = web
    wait_for(lambda: _connects(port), timeout=60, every=0.2)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # self-signed: the user compares fingerprints
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    seen = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    from linetap.cli.recorder import _web_status
    status = _web_status(load(cfg))
    assert f"certificate SHA-256 {seen}" in status
    token = re.search(r"setup token (\S+)", status).group(1)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    conn.request("POST", "/api/login", body=json.dumps({"user": "admin", "password": token}),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and "Secure" in r.getheader("set-cookie") and json.loads(r.read())["role"] == "admin"
    conn.close()
    assert "setup token" not in _web_status(load(cfg))  # used once, then gone


def test_insecure_http_serves_plain_http_for_a_reverse_proxy(cfg: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "linetap", "web", "-c", str(cfg), "--insecure-http",
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _connects(port), timeout=60, every=0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/health")
        assert conn.getresponse().status == 401
        conn.close()
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_bad_listen_argument_is_a_usage_error(cfg: Path) -> None:
    p = linetap("web", "-c", str(cfg), "--listen", "nowhere")
    assert p.returncode == 2 and "--listen" in p.stderr
