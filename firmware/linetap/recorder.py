"""The composition root: the one place that builds real adapters and wires them.

    capture (ALSA reader threads) --queue--> pipeline thread: calls (segmenter)
        -> store (files) + index (SQLite) -> listeners (health, MQTT, LEDs)

Components start in dependency order and stop in reverse inside ``finally``.
Threads only wait, loop, and catch at their top level.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .calls.line import LineCalls
from .capture import Block, SourceEvent, SourceFactory
from .capture.reader import LineReader
from .clock import Clock, SystemClock, iso
from .config import Config, LineConfig
from .index import Index, open_index
from .store.recordings import DIR_MODE, Recording, salvage

logger = logging.getLogger(__name__)


class Listeners:
    """Fan-out of recorder events to whoever subscribed (MQTT, LEDs, tests).

    A failing listener is logged and skipped: it must never stop recording.
    """

    def __init__(self) -> None:
        self._subs: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._subs.append(fn)

    def emit(self, event: dict[str, Any]) -> None:
        for fn in self._subs:
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the pipeline
                logger.exception("event listener failed on %s", event.get("type"))


class _CallEvents:
    def __init__(self, recorder: "Recorder") -> None:
        self.r = recorder

    def call_started(self, line: str, call_id: int, started_at: float) -> None:
        self.r.listeners.emit({"type": "call_started", "ts": iso(self.r.clock.wall()), "call_id": call_id,
                               "line": line, "started_at": iso(started_at)})

    def call_ended(self, line: str, summary: dict[str, Any]) -> None:
        self.r.listeners.emit({"type": "call_ended", "ts": iso(self.r.clock.wall()), "call_id": summary["id"],
                               "line": line, "started_at": summary["started_at"],
                               "ended_at": summary["ended_at"], "duration_s": summary["duration_s"],
                               "caller_number": summary.get("caller_number"),
                               "caller_name": summary.get("caller_name"),
                               "end_reason": summary["end_reason"], "path": summary["path"]})


def _alsa_factory() -> SourceFactory:
    from .capture.alsa import AlsaSource
    return AlsaSource


class Recorder:
    def __init__(self, cfg: Config, *, clock: Clock | None = None,
                 source_factory: SourceFactory | None = None, pin_factory: Any = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.source_factory = source_factory or _alsa_factory()
        self.pin_factory = pin_factory
        self.data_dir = Path(cfg.recorder.data_dir)
        self.listeners = Listeners()
        self.queue: queue.Queue[Block | SourceEvent] = queue.Queue()
        self.lines: dict[str, LineCalls] = {}
        self.readers: dict[str, LineReader] = {}
        self.index: Index | None = None
        self._hooks: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop_worker = threading.Event()
        self.started_mono = self.clock.mono()
        self.blocks_processed = 0
        self.pipeline_errors = 0

    # --- life cycle ---
    def start(self) -> None:
        os.umask(0o027)
        self.data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.index = open_index(self.data_dir)
        for row in salvage(self.data_dir, self.index):
            logger.warning("call %s recovered after an unclean stop", row.get("id"))
        events = _CallEvents(self)
        for line in self.cfg.lines:
            if not line.enabled:
                continue
            hook = None
            if line.trigger == "offhook" and line.offhook_gpio is not None:
                from .gpio import HookInput
                h = HookInput(line.offhook_gpio, active_low=line.offhook_active_low,
                              pin_factory=self.pin_factory)
                self._hooks.append(h)
                hook = h
            self.lines[line.name] = LineCalls(line, open_recording=self._open_recording, hook=hook,
                                              listener=events)
        max_queued = max(50, int(self.cfg.recorder.queue_s * 50 * max(1, len(self.lines))))
        self._worker = threading.Thread(target=self._work, name="pipeline", daemon=True)
        self._worker.start()
        for line in self.cfg.lines:
            if line.enabled:
                r = LineReader(line, self.queue, source_factory=self.source_factory, clock=self.clock,
                               max_queued=max_queued)
                self.readers[line.name] = r
                r.start()
        logger.info("recording %d line(s) into %s", len(self.lines), self.data_dir)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop capture, process what was captured, finalise open calls."""
        for r in self.readers.values():
            r.stop()
        # Readers blocked in a read (a stalled FIFO) cannot be interrupted; they are daemons.
        for r in self.readers.values():
            r.join(timeout=0.5)
        self._drain(drain_timeout_s)
        self._stop_worker.set()
        if self._worker is not None:
            self._worker.join(timeout=drain_timeout_s)
        for calls in self.lines.values():
            try:
                calls.shutdown()
            except Exception:  # noqa: BLE001 - finalise the others whatever happens to one
                logger.exception("line %s: could not finalise its open call", calls.line.name)
        for h in self._hooks:
            h.close()
        if self.index is not None:
            self.index.close()

    def _drain(self, timeout_s: float) -> None:
        deadline = self.clock.mono() + timeout_s
        while not self.queue.empty() and self.clock.mono() < deadline:
            threading.Event().wait(0.01)

    # --- the pipeline thread ---
    def _work(self) -> None:
        q = self.queue
        while not self._stop_worker.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if isinstance(item, Block):
                    self.lines[item.line].on_block(item)
                    self.blocks_processed += 1
                else:
                    self._on_source_event(item)
            except Exception:  # noqa: BLE001 - one bad block must not stop every line
                self.pipeline_errors += 1
                if self.pipeline_errors <= 5 or self.pipeline_errors % 1000 == 0:
                    logger.exception("pipeline error on line %s (%d so far)", item.line, self.pipeline_errors)

    def _on_source_event(self, ev: SourceEvent) -> None:
        calls = self.lines.get(ev.line)
        if calls is None:
            return
        if ev.kind == "lost":
            calls.source_lost()
        self.listeners.emit({"type": f"source_{ev.kind}", "ts": iso(ev.t_wall), "line": ev.line,
                             "detail": ev.detail})

    def _open_recording(self, line: LineConfig, started_at: float) -> Recording:
        assert self.index is not None
        return Recording(self.data_dir, self.index, line=line.name, codec=self.cfg.storage.codec,
                         rate=line.rate, channels=line.channels, started_at=started_at,
                         sync_interval_s=self.cfg.storage.sync_interval_s)

    # --- housekeeping, from the service loop (not the pipeline thread) ---
    def housekeeping(self) -> None:
        from .service import status_path, write_status
        assert self.index is not None
        now = self.clock.wall()
        self.index.set_meta("heartbeat", iso(now))
        write_status(status_path(self.cfg), self.snapshot())

    # --- state for health / status ---
    def snapshot(self) -> dict[str, Any]:
        lines = {}
        for name, calls in self.lines.items():
            reader = self.readers.get(name)
            state = calls.state
            if reader is not None and not reader.is_open:
                state = "fault"
            lines[name] = {"state": state, "level_dbfs": round(calls.level_dbfs, 1),
                           "last_audio_at": iso(calls.last_block_t) if calls.last_block_t else None,
                           "alarms": []}
        for line in self.cfg.lines:
            if not line.enabled:
                lines[line.name] = {"state": "disabled", "level_dbfs": None, "last_audio_at": None,
                                    "alarms": []}
        return {"ts": iso(self.clock.wall()), "id": self.cfg.recorder.id, "version": __version__,
                "uptime_s": round(self.clock.mono() - self.started_mono, 1), "lines": lines,
                "alarms": []}
