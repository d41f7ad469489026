"""The rclone adapter: the only module that runs rclone (as a subprocess, niced).

rclone reaches S3/MinIO/Ceph, SFTP, SMB, WebDAV, Azure, B2... through one ``name:bucket/prefix``
and its config file; linetap never speaks those protocols itself. Every call has a timeout, so
a hung remote cannot hang the archive thread for ever. Checksums: ``hash_of`` asks the remote for
an MD5 (S3 ETags of single-part uploads, SFTP via md5sum, WebDAV with Nextcloud/ownCloud...);
a remote without one is verified by reading the file back (``sha256_of``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NICE = 10  # below the recorder: an upload must never take CPU from capture
# rclone's own retries are off: the archive thread retries with its back-off instead.
_COMMON = ("--retries", "1", "--low-level-retries", "2", "--contimeout", "10s", "--timeout", "60s",
           "--stats", "0", "--use-json-log", "--log-level", "ERROR")


class RcloneError(Exception):
    """rclone failed (the message is its last error line) or is not installed."""


class Rclone:
    def __init__(self, *, remote: str, config: Path | None = None, bandwidth: str = "off",
                 exe: str = "rclone", timeout_s: float = 3600.0) -> None:
        self.remote = remote.rstrip("/")
        self.config = config
        self.bandwidth = bandwidth
        self.exe = exe
        self.timeout_s = timeout_s

    def target(self, rel: str) -> str:
        return f"{self.remote}/{rel.lstrip('/')}"

    def _run(self, *args: str, stdin: bytes | None = None, timeout_s: float | None = None) -> bytes:
        exe = shutil.which(self.exe)
        if exe is None:
            raise RcloneError(f"{self.exe} is not installed")
        cmd = ["nice", "-n", str(NICE), exe, *_COMMON]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += list(args)
        try:
            res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s or self.timeout_s)
        except subprocess.TimeoutExpired:
            raise RcloneError(f"rclone {args[0]} timed out after {timeout_s or self.timeout_s:.0f} s") from None
        if res.returncode != 0:
            raise RcloneError(f"rclone {args[0]}: {_last_error(res.stderr) or f'exit {res.returncode}'}")
        return res.stdout

    def copy_file(self, local: Path, rel: str) -> None:
        """Copy one file to ``rel`` under the remote, at most ``bandwidth`` per second."""
        self._run("copyto", "--bwlimit", self.bandwidth, str(local), self.target(rel))

    def put_bytes(self, data: bytes, rel: str) -> None:
        """Write ``data`` as ``rel`` (rclone rcat: small documents, no temporary file)."""
        self._run("rcat", self.target(rel), stdin=data, timeout_s=300)

    def hash_of(self, rel: str) -> str | None:
        """The remote's MD5 of ``rel`` (lower-case hex), None when the remote has none to give."""
        out = self._run("md5sum", self.target(rel), timeout_s=600).decode("utf-8", "replace").split()
        value = out[0].lower() if out else ""
        return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None

    def sha256_of(self, rel: str) -> str:
        """SHA-256 of ``rel`` as read back from the remote (for remotes without MD5)."""
        return hashlib.sha256(self._run("cat", self.target(rel))).hexdigest()

    def read(self, rel: str) -> bytes:
        return self._run("cat", self.target(rel), timeout_s=600)

    def listing(self) -> dict[str, dict[str, Any]]:
        """Every file under the remote: ``{path: {"size", "md5"}}`` (md5 None where unknown)."""
        try:
            out = self._run("lsjson", "-R", "--files-only", "--hash", "--hash-type", "MD5", self.remote,
                            timeout_s=1800)
        except RcloneError as e:
            if "directory not found" in str(e):
                return {}
            raise
        files: dict[str, dict[str, Any]] = {}
        for item in json.loads(out or b"[]"):
            hashes = item.get("Hashes") or {}
            files[item["Path"]] = {"size": item.get("Size"), "md5": hashes.get("md5") or hashes.get("MD5")}
        return files


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_TIMESTAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s+(ERROR\s*:\s*|CRITICAL:\s*|NOTICE:\s*)?")


def _last_error(stderr: bytes) -> str:
    """The last error rclone logged (JSON log lines: their ``msg``), else its last stderr line."""
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            doc = json.loads(ln)
        except ValueError:  # rclone's fatal errors are plain lines: "2026/12/07 05:18:42 Failed to ..."
            return _TIMESTAMP.sub("", ln.strip())[:300]
        if isinstance(doc, dict) and doc.get("msg"):
            obj = f"{doc.get('object')}: " if doc.get("object") else ""
            return f"{obj}{str(doc['msg']).strip()}"[:300]
    return ""
