"""The recorder's evidence side, built once: the device key, signed checkpoints, the background
self-check, RFC 3161 time-stamps and the configuration in the chain.

The housekeeping thread runs the work (``checkpointer``, ``steps`` every ``SLOW_CHECK_S``); this
object only builds the parts and says where their results go: a new checkpoint into the health
document (``status.json``, call_ended events) and retained on MQTT; the self-check's status into
the health document. Evidence work never keeps the recorder from starting or recording.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import sign
from .background import BackgroundCheck
from .checkpoint import Checkpoint, Checkpointer
from .timestamps import Stamper

if TYPE_CHECKING:
    from ..alarms.manager import AlarmManager
    from ..clock import Clock
    from ..config import Config
    from ..health.board import StatusBoard
    from ..health.snapshot import EvidenceStatus
    from ..index.db import Index

logger = logging.getLogger(__name__)

__all__ = ["EvidenceService"]


class EvidenceService:
    def __init__(self, cfg: Config, *, index: Index, data_dir: Path, alarms: AlarmManager, board: StatusBoard,
                 clock: Clock, step_s: float, publish_checkpoint: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.index = index
        self.clock = clock
        self.board = board
        self.publish_checkpoint = publish_checkpoint
        self.device_key = sign.load_or_create(data_dir)  # made here if first boot did not
        self.checkpointer = Checkpointer(index, self.device_key, recorder_id=cfg.recorder.id, clock=clock,
                                         publish=self._checkpoint_signed)
        self.background = BackgroundCheck(index, data_dir, alarms=alarms, clock=clock, step_s=step_s,
                                          key_fingerprint=self.device_key.fingerprint,
                                          on_status=self._evidence_status)
        board.evidence = self.background.status()
        self.steps: list[Callable[[], object]] = [self.background.step]  # housekeeping's, every slow check
        if cfg.evidence.tsa_url:
            self.steps.append(Stamper(index, data_dir, url=cfg.evidence.tsa_url,
                                      timeout_s=cfg.evidence.tsa_timeout_s,
                                      latest=lambda: self.checkpointer.latest).step)

    def start(self) -> None:
        """The configuration this run applies into the chain; the newest checkpoint published again
        (for a broker that lost it)."""
        self.chain_config()
        if self.checkpointer.latest is not None:
            self._checkpoint_signed(self.checkpointer.latest)

    def chain_config(self) -> None:
        """The configuration this run applies, in the evidence chain if it changed since the last run."""
        from . import audit, chain
        try:
            chain.config_applied(self.index, dataclasses.asdict(self.cfg), source=self.cfg.source,
                                 by=audit.current_user(), at=self.clock.wall())
        except Exception:  # noqa: BLE001 - evidence work must not keep the recorder from starting
            logger.exception("could not record the configuration in the evidence chain")

    def _checkpoint_signed(self, cp: Checkpoint) -> None:
        """A new signed checkpoint: into status.json and call_ended events, retained on MQTT."""
        doc = cp.as_dict()
        self.board.checkpoint = doc
        self.publish_checkpoint(doc)

    def _evidence_status(self, status: EvidenceStatus) -> None:
        self.board.evidence = status
