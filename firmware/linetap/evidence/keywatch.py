"""The ``storage.encrypt_to`` key as the recorder holds it: loaded at start, watched every second.

Only capture may keep the box from recording, so a key that cannot be loaded does not stop it:
until the key loads, recordings are kept in plaintext, each one is left unsealed, and
EVIDENCE_FAILED (critical) says so from the first second (``housekeeping.py`` seals the backlog
with the retry once the key is back, and new recordings are encrypted as they are written from
then on). A key file that goes away *after* start leaves recording encrypted (the key is in
memory), but the next start would be without it: the same alarm, within one housekeeping period.
First boot and ``linetap check`` refuse a config whose key does not load (``bootfiles.py``), so
this is the key lost or damaged on the box itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

Opener = Callable[[Path, int], Any]


class EncryptionKey:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.opener: Opener | None = None  # what Recording uses to write encrypted files; None: plaintext
        self.problem: str | None = None
        self.check()

    def check(self) -> str | None:
        """Load the key file again: None if it loads (the first time, also the opener), else why not."""
        if self.path is None:
            return None
        from ..crypto import CryptoError, stream_opener
        try:
            opener = stream_opener(self.path)
        except (CryptoError, OSError, ValueError) as e:
            why = " ".join(str(getattr(e, "strerror", None) or e).split())
            if self.opener is None:
                now = "recordings are kept in plaintext (and not sealed) until it loads again"
            else:
                now = ("recordings are still encrypted with the key loaded at start, but the recorder "
                       "cannot start again without it")
            problem = f"storage.encrypt_to: {str(self.path)!r} cannot be loaded ({why}): {now}"
            if problem != self.problem:
                logger.error("%s", problem)
            self.problem = problem
            return problem
        if self.opener is None:
            self.opener = opener
            if self.problem is not None:
                logger.warning("storage.encrypt_to loads again: new recordings are encrypted as they are written")
        self.problem = None
        return None
