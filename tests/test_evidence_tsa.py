"""RFC 3161 time-stamps of the checkpoints against a local TSA: ``openssl ts -reply`` behind a tiny
HTTP server on loopback, with a test CA and a TSA certificate made by openssl (no outside service)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from linetap import sign, timestamp
from linetap.clock import FakeClock
from linetap.config import load_text
from linetap.evidence import checkpoint
from linetap.evidence.export_verify import checkpoint_message
from linetap.evidence.timestamps import Stamper
from linetap.index.db import Index

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass
class Tsa:
    url: str
    ca_pem: Path
    requests: list[bytes]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tsa_pki(d: Path) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj",
             "/CN=linetap test CA", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr", "-subj",
             "/CN=linetap test TSA", cwd=d)
    (d / "ext.cnf").write_text("extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature\n")
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tsa.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    (d / "serial").write_text("01\n")
    (d / "tsa.cnf").write_text(f"""[ tsa ]
default_tsa = tsa1
[ tsa1 ]
dir = {d}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    return d / "ca.crt"


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tsa]:
    d = tmp_path_factory.mktemp("tsa")
    ca = make_tsa_pki(d)
    seen: list[bytes] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen.append(query)
                q, r = d / "q.tsq", d / "r.tsr"
                q.write_bytes(query)
                proc = subprocess.run(["openssl", "ts", "-reply", "-config", str(d / "tsa.cnf"), "-queryfile",
                                       str(q), "-out", str(r)], capture_output=True, timeout=30)
                reply = r.read_bytes() if proc.returncode == 0 else b""
            self.send_response(200 if reply else 500)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Tsa(f"http://127.0.0.1:{server.server_address[1]}/tsa", ca, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def cp(data_dir: Path, clock: FakeClock) -> checkpoint.Checkpoint:
    return checkpoint.sign(sign.load_or_create(data_dir), recorder_id="box", length=7, head="ab" * 32,
                           now=clock.wall())


def test_a_checkpoint_is_time_stamped_and_the_token_verifies(tsa: Tsa, cp: checkpoint.Checkpoint) -> None:
    message = checkpoint_message(cp.as_dict())
    stamp = timestamp.request(tsa.url, message, timeout_s=20)
    assert timestamp.verify(stamp.token_der, message, tsa.ca_pem.read_bytes()) == stamp.gen_time
    with pytest.raises(timestamp.TimestampError, match="does not verify"):
        timestamp.verify(stamp.token_der, message + b" ", tsa.ca_pem.read_bytes())


def test_an_unreachable_tsa_is_a_timestamp_error(cp: checkpoint.Checkpoint) -> None:
    with pytest.raises(timestamp.TimestampError):
        timestamp.request("http://127.0.0.1:9/tsa", b"x", timeout_s=2)


def test_the_stamper_keeps_each_new_checkpoint_once_checkable_with_openssl(
        tsa: Tsa, index: Index, data_dir: Path, cp: checkpoint.Checkpoint) -> None:
    latest: list[checkpoint.Checkpoint] = [cp]
    stamper = Stamper(index, data_dir, url=tsa.url, timeout_s=20, latest=lambda: latest[0])
    before = len(tsa.requests)
    tsr = stamper.step()
    assert (tsr is not None, stamper.step(), len(tsa.requests) - before) == (True, None, 1)
    assert tsr is not None
    # The command the README gives an owner, off the box.
    proc = subprocess.run(["openssl", "ts", "-verify", "-data", str(tsr.with_suffix(".msg")), "-in", str(tsr),
                           "-CAfile", str(tsa.ca_pem)], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, "Verification: OK" in proc.stdout) == (0, True), proc.stdout + proc.stderr
    assert checkpoint.parse(str(tsr.with_suffix(".json"))) == cp


def test_the_tsa_url_is_a_config_key() -> None:
    base = '[recorder]\nid = "b"\ndata_dir = "/tmp/x"\n[[line]]\nname = "l"\npcm = "null"\n'
    assert load_text(base + '[evidence]\ntsa_url = "http://tsa.example/"\n').evidence.tsa_url == "http://tsa.example/"
    with pytest.raises(ValueError, match="tsa_url"):
        load_text(base + '[evidence]\ntsa_url = "ftp://x"\n')
