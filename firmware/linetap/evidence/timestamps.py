"""Trusted time-stamps of the signed checkpoints (``[evidence] tsa_url``, RFC 3161).

Housekeeping calls :meth:`Stamper.step` every ``SLOW_CHECK_S`` (10 s): if the newest
checkpoint has no time-stamp yet, one request is made (``tsa_timeout_s``, 5 s by default;
a failure is logged and retried at the next step). So at most one request per 10 s, and the
newest checkpoint is time-stamped within about 10 s while the TSA answers.

Kept in ``<data_dir>/timestamps/`` (0640), per checkpoint ``<length>-<head 16 hex>``:
``.json`` the checkpoint, ``.msg`` the exact bytes it signs (what the TSA time-stamped) and
``.tsr`` the TSA's reply (DER). Off the box::

    openssl ts -verify -data N.msg -in N.tsr -CAfile tsa-root.pem
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

from ..index.db import Index
from .checkpoint import Checkpoint
from .export_verify import checkpoint_message

logger = logging.getLogger(__name__)

DIR = "timestamps"
META_KEY = "tsa_stamped"  # "<length>:<head>" of the newest checkpoint time-stamped
FILE_MODE = 0o640


def stem(cp: Checkpoint) -> str:
    return f"{cp.length}-{cp.head[:16]}"


class Stamper:
    def __init__(self, index: Index, data_dir: Path, *, url: str, timeout_s: float,
                 latest: Callable[[], Checkpoint | None]) -> None:
        self.index = index
        self.directory = Path(data_dir) / DIR
        self.url = url
        self.timeout_s = timeout_s
        self.latest = latest

    def step(self) -> Path | None:
        """Time-stamp the newest checkpoint if it is not yet; the ``.tsr`` written, else None."""
        from .. import timestamp  # the adapter (rfc3161_client) only when a TSA is configured
        cp = self.latest()
        if cp is None or self.index.get_meta(META_KEY) == f"{cp.length}:{cp.head}":
            return None
        message = checkpoint_message(cp.as_dict())
        try:
            stamp = timestamp.request(self.url, message, timeout_s=self.timeout_s)
        except timestamp.TimestampError as e:
            logger.warning("checkpoint %d not time-stamped (retried in 10 s): %s", cp.length, e)
            return None
        self.directory.mkdir(mode=0o750, exist_ok=True)
        base = self.directory / stem(cp)
        for suffix, data in ((".json", json.dumps(cp.as_dict(), sort_keys=True).encode() + b"\n"),
                             (".msg", message), (".tsr", stamp.token_der)):
            path = base.with_suffix(suffix)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        self.index.set_meta(META_KEY, f"{cp.length}:{cp.head}")
        logger.info("checkpoint %d time-stamped by %s at %s", cp.length, self.url, stamp.gen_time.isoformat())
        return base.with_suffix(".tsr")
