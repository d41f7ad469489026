"""systemd notification (Type=notify, WatchdogSec=) with the standard library only.

``Notifier`` sends ``READY=1``, ``WATCHDOG=1``, ``STATUS=…``, ``STOPPING=1`` as
datagrams to ``$NOTIFY_SOCKET`` (a path, or an abstract-namespace name written
with a leading ``@``). Without ``NOTIFY_SOCKET`` (run by hand, in tests) every
call is a no-op, so callers never need to ask.

``ProgressWatchdog`` decides whether the watchdog may be fed: only while the
pipeline makes progress, so a wedged pipeline stops the pings and systemd
restarts the recorder instead of the box silently recording nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Mapping

from ..clock import Clock

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        self._env = env
        self._pid = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        # '@name' is the abstract namespace: the address is NUL followed by the name.
        self.address: str | None = ("\0" + raw[1:]) if raw.startswith("@") else (raw or None)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if sent (False when disabled
        or the send failed: logged once, never raised)."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self.address)
            except OSError as e:
                # Logged once per failure streak: a missing socket would otherwise
                # log at the watchdog rate. systemd notices missed pings by itself.
                if not self._failed:
                    logger.warning("cannot notify systemd at %s: %s", self._env.get("NOTIFY_SOCKET"), e)
                self._failed = True
                return False
            if self._failed:
                logger.info("notifying systemd works again")
            self._failed = False
            return True

    def ready(self, status: str | None = None) -> bool:
        """All lines are open: systemd considers the service started."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        # STATUS is one line; a newline would start a new field.
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog timeout (WATCHDOG_USEC) if it applies to this process
        (WATCHDOG_PID unset or ours); None otherwise. Ping at half of it."""
        usec = self._env.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(self._pid):
            return None
        try:
            value = int(usec)
        except ValueError:
            logger.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
            return None
        return value / 1e6 if value > 0 else None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class ProgressWatchdog:
    """Feed the watchdog only while every named part of the recorder makes progress.

    ``progress(source)`` is called by each part whenever it does work (the
    pipeline after handling a block or an idle ``queue.get`` timeout; the health
    timer on each tick); ``should_ping()`` is true only if every source did so
    within ``stale_after_s`` (on the injected clock's ``mono()``). Before a
    source's first progress it counts as stale: starting up is not progress.
    """

    def __init__(self, clock: Clock, stale_after_s: float, *,
                 sources: Iterable[str] = ("pipeline",)) -> None:
        self.clock = clock
        self.stale_after_s = stale_after_s
        # Plain dict item stores are atomic; no lock is needed for one writer per key.
        self._last: dict[str, float | None] = {s: None for s in sources}

    def progress(self, source: str = "pipeline") -> None:
        if source not in self._last:
            raise KeyError(f"unknown progress source {source!r}; known: {', '.join(self._last)}")
        self._last[source] = self.clock.mono()

    def stale(self) -> list[str]:
        """The sources that have made no progress within ``stale_after_s``."""
        now = self.clock.mono()
        return [s for s, t in self._last.items() if t is None or now - t > self.stale_after_s]

    def should_ping(self) -> bool:
        return not self.stale()
