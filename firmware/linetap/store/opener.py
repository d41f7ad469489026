"""A new recording for a line's call (``LineCalls.open_recording``), as the recorder's config asks.

The codec and sync interval come from ``[storage]``; the file is encrypted as it is written when
the ``encrypt_to`` key is loaded at that moment (``EncryptionKey.opener``, which may appear or go
while the recorder runs: evidence/keywatch.py); a write or sync that fails is the line's
DISK_WRITE_FAILED, cleared when a write succeeds again (the call goes on in RAM meanwhile).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..config import LineConfig, StorageConfig
from ..index.db import Index
from .recordings import Recording, SyncBatch

__all__ = ["RecordingOpener"]


class AlarmSink(Protocol):
    def set(self, code: str, line: str | None, active: bool, detail: str = "", at: float | None = None) -> None: ...


class KeyHolder(Protocol):
    opener: Any  # evidence.keywatch.Opener, or None: plaintext


class RecordingOpener:
    def __init__(self, data_dir: Path, index: Index, storage: StorageConfig, *, syncs: SyncBatch,
                 key: KeyHolder, alarms: AlarmSink) -> None:
        self.data_dir = data_dir
        self.index = index
        self.storage = storage
        self.syncs = syncs  # the periodic syncs, one per pipeline round
        self.key = key
        self.alarms = alarms

    def __call__(self, line: LineConfig, started_at: float) -> Recording:
        name = line.name

        def on_error(detail: str | None, at: float) -> None:
            self.alarms.set("DISK_WRITE_FAILED", name, detail is not None, detail or "", at=at)

        return Recording(self.data_dir, self.index, line=name, codec=self.storage.codec,
                         rate=line.rate, channels=line.channels, started_at=started_at,
                         sync_interval_s=self.storage.sync_interval_s, on_error=on_error,
                         syncs=self.syncs, encrypt=self.key.opener)
