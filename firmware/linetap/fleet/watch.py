"""The fleet view's broker subscription: messages in, :class:`~linetap.fleet.state.Box` records out.

paho calls :meth:`FleetWatch._on_message` on its network thread; it only folds the message into
the box table under a lock (``state.apply``) and, with ``collect_dir``, appends a new checkpoint
to ``<collect_dir>/<id>.jsonl``. Everything the user sees is computed from :meth:`boxes` by the
pure functions of ``state.py``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..mqtt import paho_client
from . import state

logger = logging.getLogger(__name__)

# Retained messages of a few hundred boxes arrive within a fraction of a second of the SUBACK on a
# LAN; a snapshot waits until none has arrived for this long (bounded by ``settle_max_s``).
SETTLE_QUIET_S = 0.5


class BrokerUnreachable(Exception):
    """The broker refused or could not be reached within the connect timeout (exit 3)."""


class FleetWatch:
    """Subscribes to every box under ``prefix`` and keeps the latest of each."""

    def __init__(self, *, host: str, port: int, prefix: str = "linetap", collect_dir: Path | None = None,
                 stale_after_s: float = state.DEFAULT_STALE_AFTER_S, clock: Callable[[], float] = time.time,
                 client_kw: dict[str, Any] | None = None) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.collect_dir = collect_dir
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._boxes: dict[str, state.Box] = {}
        self._seen = state.Checkpoints()
        self._last_message_mono = time.monotonic()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = paho_client.make_watcher(client_id=f"linetap-fleet-{os.getpid()}-{id(self):x}",
                                                **(client_kw or {}))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        if collect_dir is not None:
            collect_dir.mkdir(parents=True, exist_ok=True)
            self._seed_collected(collect_dir)

    # --- lifecycle -------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; :class:`BrokerUnreachable` if that fails within ``timeout_s``."""
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise BrokerUnreachable(f"{self.host}:{self.port}: {e.strerror or e}") from None
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._refused:
            self.stop()
            raise BrokerUnreachable(f"{self.host}:{self.port}: {self._refused or 'no answer'}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def settle(self, max_s: float = 5.0) -> None:
        """Wait until the retained messages have arrived: no message for ``SETTLE_QUIET_S``."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with self._lock:
                quiet = time.monotonic() - self._last_message_mono
            if quiet >= SETTLE_QUIET_S:
                return
            time.sleep(min(SETTLE_QUIET_S - quiet, max(0.0, deadline - time.monotonic())) + 0.01)

    def boxes(self) -> list[state.Box]:
        with self._lock:
            return list(self._boxes.values())

    # --- paho callbacks (network thread) -----------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        else:
            client.subscribe([(f"{self.prefix}/+/{kind}", 1) for kind in ("status", "health", "event", "checkpoint")])
            with self._lock:
                self._last_message_mono = time.monotonic()
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            where = state.split_topic(msg.topic, self.prefix)
            if where is None:
                return
            rec = state.Received(box_id=where[0], kind=where[1], payload=bytes(msg.payload), at=self.clock(),
                                 expiry_s=paho_client.message_expiry_s(msg))
            with self._lock:
                self._last_message_mono = time.monotonic()
                before = self._boxes.get(rec.box_id)
                box = state.apply(before, rec, stale_after_s=self.stale_after_s)
                self._boxes[rec.box_id] = box
                new_cp = (box.checkpoint is not None and self.collect_dir is not None
                          and self._seen.is_new(box.id, box.checkpoint))
            if new_cp:
                self._append_checkpoint(box.id, box.checkpoint)  # type: ignore[arg-type]
        except Exception:  # an exception escaping a paho callback would end its thread (FACTS.md)
            logger.exception("fleet: could not handle a message on %s", getattr(msg, "topic", "?"))

    def _seed_collected(self, directory: Path) -> None:
        """Remember the last checkpoint already kept per box, so a new run does not append the
        retained one it re-reads on subscribing."""
        for path in directory.glob("*.jsonl"):
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            try:
                last = json.loads(lines[-1]) if lines else None
            except ValueError:
                continue
            if isinstance(last, dict):
                self._seen.is_new(path.stem, last)

    def _append_checkpoint(self, box_id: str, checkpoint: dict[str, Any]) -> None:
        """One JSON line per new checkpoint, appended and flushed: the file only ever grows."""
        assert self.collect_dir is not None
        with open(self.collect_dir / f"{box_id}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(checkpoint, sort_keys=True, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
