"""The recorder's MQTT uplink: the link's life cycle, its outbox meanwhile, and why it is not up.

Monitoring is not capture: a link that cannot be built (password or CA file missing or unreadable,
the outbox not openable) or started (TLS files that do not load) is BROKER_UNREACHABLE and a retry
every slow check (``SLOW_CHECK_S``, housekeeping.py) — at once when the password or TLS files change
(``retry_if_files_changed``, every housekeeping tick) — never a reason not to record (README "Alarms").
While there is no link the events wait in its outbox (``EventSpool``) and go out once it is up.
``mqtt.link`` (paho behind it) is imported only when a link is built, so a recorder without
``[mqtt]`` never loads paho.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..alarms.manager import one_line
from ..events import without_caller
from .credentials import files_stamp

if TYPE_CHECKING:
    from ..alarms.manager import AlarmManager
    from ..clock import Clock
    from ..config import Config
    from ..health.loop import HealthLoop
    from .link import MqttLink
    from .outbox import EventSpool

logger = logging.getLogger(__name__)

__all__ = ["Uplink"]


class Uplink:
    """Builds, starts and rebuilds the ``MqttLink``; hands it to the health loop once started
    (from then on the health side judges BROKER_UNREACHABLE); filters the events sent to it."""

    def __init__(self, cfg: Config, *, data_dir: Path, clock: Clock, alarms: AlarmManager,
                 health_loop: HealthLoop, key_fingerprint: str, retry_s: float, wanted: bool = True) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.clock = clock
        self.alarms = alarms
        self.health_loop = health_loop
        self.key_fingerprint = key_fingerprint
        self.retry_s = retry_s  # only said in the alarm and log: housekeeping does the retrying
        self.wanted = cfg.mqtt is not None and wanted
        self.link: MqttLink | None = None
        self.problem: str | None = None
        self._spool: EventSpool | None = None  # the outbox, while the link cannot be built
        self._logged: set[str] = set()  # problems already logged
        self._failed_stamp: tuple[Any, ...] | None = None  # the credential files as the last failed attempt found them
        self._closers = contextlib.ExitStack()

    def build(self) -> None:
        """The MQTT link; an unusable setting leaves it None and says why in ``problem``."""
        if not self.wanted or self.link is not None:
            return
        from .link import MqttLink
        assert self.cfg.mqtt is not None
        try:
            link = MqttLink(self.cfg.mqtt, recorder_id=self.cfg.recorder.id, data_dir=self.data_dir,
                            version=__version__, lines=[ln.name for ln in self.cfg.lines], clock=self.clock,
                            key_fingerprint=self.key_fingerprint, archive=self.cfg.archive is not None)
        except Exception as e:  # noqa: BLE001 - ConfigError, OSError, sqlite3.Error: never fatal
            self.problem = one_line(e)
            self._failed_stamp = files_stamp(self.cfg.mqtt)
            self._open_spool()
            return
        self.problem = None
        self._closers.callback(link.stop)
        self.link = link

    def _open_spool(self) -> None:
        """Keep the events for the broker in its outbox meanwhile (delivered once the link is up)."""
        if self._spool is not None or self.cfg.mqtt is None:
            return
        from .outbox import OUTBOX_FILE, EventSpool
        from .topics import Topics
        topics = Topics.build(prefix=self.cfg.mqtt.topic_prefix, recorder_id=self.cfg.recorder.id,
                              discovery_prefix=self.cfg.mqtt.discovery_prefix)
        try:
            self._spool = EventSpool(self.data_dir / OUTBOX_FILE, max_rows=self.cfg.mqtt.outbox_max,
                                     topic=topics.event, recorder_id=self.cfg.recorder.id, now=self.clock.wall)
        except Exception as e:  # noqa: BLE001 - the events are in the index anyway
            logger.error("cannot keep MQTT events while the link is down: %s", e)
            return
        self._closers.callback(self._spool.close)

    def to_mqtt(self, event: dict[str, Any]) -> None:
        """Listener: each event to the MQTT link, or to its outbox while the link cannot be built.
        Without ``mqtt.publish_caller_id`` the caller's identity stays on the box (README: "what
        stays in clear")."""
        if self.cfg.mqtt is not None and not self.cfg.mqtt.publish_caller_id:
            event = without_caller(event)
        link = self.link
        if link is not None:
            link.publish_event(event)
        elif self._spool is not None:
            self._spool.publish_event(event)

    def publish_checkpoint(self, doc: dict[str, Any]) -> None:
        """A signed checkpoint, retained on the broker (nothing while there is no link)."""
        if self.link is not None:
            self.link.publish_checkpoint(doc)

    def start(self) -> None:
        if self.link is None:
            return
        try:
            self.link.start()
        except Exception as e:  # noqa: BLE001 - e.g. TLS files that do not load
            self.problem = one_line(e)
            self._failed_stamp = files_stamp(self.cfg.mqtt) if self.cfg.mqtt is not None else None
            link, self.link = self.link, None  # built afresh on the retry (start() runs once per link)
            with contextlib.suppress(Exception):
                link.stop()
            self._open_spool()
            return
        self.health_loop.link = self.link  # from now on the health side judges BROKER_UNREACHABLE

    def retry(self) -> None:
        """Housekeeping's retry of a link that could not be built or started; and of one whose
        login the broker refused, once the password file has changed (``MqttLink.renew_credentials``)."""
        if self.wanted and self.health_loop.link is None:
            self.build()
            self.start()
        elif self.link is not None:
            self.link.renew_credentials()

    def retry_if_files_changed(self) -> bool:
        """Housekeeping's every tick (1 s): a link that could not be built or started is retried at
        once when its password or TLS files changed since (a ``stat`` of each, nothing read), so an
        installer who copies the missing password file over sees the link come up within about a
        second, not at the next slow check. True if it retried."""
        if (not self.wanted or self.health_loop.link is not None or self._failed_stamp is None
                or self.cfg.mqtt is None or files_stamp(self.cfg.mqtt) == self._failed_stamp):
            return False
        logger.info("MQTT: the password or TLS files changed: trying the link again")
        self.retry()
        return True

    def raise_alarms(self) -> None:
        """BROKER_UNREACHABLE while the link is not up; each distinct problem logged once, not every retry."""
        if self.problem is not None and self.problem not in self._logged:
            self._logged.add(self.problem)
            logger.error("MQTT not started: %s (recording continues; retried every %g s)",
                         self.problem, self.retry_s)
        if self.wanted and self.health_loop.link is None:
            self.alarms.set("BROKER_UNREACHABLE", None, True,
                            f"MQTT not started: {self.problem}; retried every {self.retry_s:g} s")

    def close(self) -> None:
        """Stop the link and close the outbox (reverse order of opening)."""
        self._closers.close()
