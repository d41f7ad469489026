"""A real rclone remote for tests: ``rclone serve sftp`` on a free loopback port, backed by a dir.

    remote = SftpRemote(tmp_path / "remote").start()
    remote.config         # an rclone config file with the remote "arc" (user/password)
    remote.root           # the directory the server writes into
    remote.stop(); remote.start()   # the same port: a remote that goes away and comes back

Skips the test when rclone is not installed (scripts/setup installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mqtt_broker import free_port

NAME = "arc"


class SftpRemote:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("rclone")
        if exe is None:
            pytest.skip("rclone is not installed")
        self.exe = exe
        self.workdir = workdir
        self.root = workdir / "served"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "rclone.conf"
        secret = subprocess.run([exe, "obscure", "test-pass"], capture_output=True, text=True, check=True).stdout
        self.config.write_text(f"[{NAME}]\ntype = sftp\nhost = 127.0.0.1\nport = {self.port}\nuser = test\n"
                               f"pass = {secret.strip()}\n")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> SftpRemote:
        log = open(self.workdir / "serve.log", "ab")
        self._proc = subprocess.Popen([self.exe, "serve", "sftp", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                                       "--user", "test", "--pass", "test-pass",
                                       "--cache-dir", str(self.workdir / "cache"),
                                       "--dir-cache-time", "0s"],  # see files the test changes at once
                                      stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"rclone serve sftp did not listen: {(self.workdir / 'serve.log').read_text()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def remote(self, prefix: str = "bucket/box") -> str:
        return f"{NAME}:{prefix}"
