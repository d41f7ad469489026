"""The uplink's retries: a link that could not be built comes up as soon as its missing password
file appears (a stat every housekeeping tick), not at the next 10 s slow check; a real mosquitto."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock
from linetap.config import load_text
from linetap.mqtt.uplink import Uplink

from helpers import config_text, wait_for
from mqtt_broker import broker  # noqa: F401  (the fixture)


def make_uplink(broker: Any, tmp_path: Path) -> tuple[Uplink, Path, SimpleNamespace]:
    b = broker(users={"recorder": "s3cret"})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pw = tmp_path / "mqtt-password"
    cfg = load_text(config_text(data_dir, [{"name": "line1", "pcm": "null"}], health={"check_clock": False},
                                mqtt={"host": b.host, "port": b.port, "username": "recorder",
                                      "password_file": str(pw), "allow_plaintext_password": True}))
    clock = FakeClock()
    health_loop = SimpleNamespace(link=None)  # the only part of the health loop the uplink touches
    up = Uplink(cfg, data_dir=data_dir, clock=clock, alarms=AlarmManager(None, clock, clear_after_s=1.0),
                health_loop=health_loop, key_fingerprint="", retry_s=10.0)  # type: ignore[arg-type]
    return up, pw, health_loop


def test_a_missing_password_file_is_retried_at_once_when_it_appears_and_not_before(broker: Any, tmp_path: Path) -> None:
    up, pw, health_loop = make_uplink(broker, tmp_path)
    try:
        up.build()
        up.start()
        assert up.link is None and up.problem and "mqtt.password_file" in up.problem
        # Nothing changed: no retry, however often the tick asks (a stat, nothing built).
        assert [up.retry_if_files_changed() for _ in range(3)] == [False] * 3
        assert up.link is None
        pw.write_text("s3cret\n")
        assert up.retry_if_files_changed() is True
        assert up.link is not None and health_loop.link is up.link and up.problem is None
        wait_for(lambda: up.link.connected, timeout=20)
        assert up.retry_if_files_changed() is False  # up: nothing to retry
    finally:
        up.close()


def test_a_changed_file_that_is_still_unusable_is_tried_once_then_waits_for_the_next_change(
        broker: Any, tmp_path: Path) -> None:
    up, pw, _ = make_uplink(broker, tmp_path)
    try:
        up.build()
        assert up.link is None and "cannot read" in (up.problem or "")
        pw.write_text("")  # there now, but empty: still no password
        assert up.retry_if_files_changed() is True
        assert up.link is None and "is empty" in (up.problem or "")
        assert up.retry_if_files_changed() is False  # the same empty file: not tried again every tick
        pw.write_text("s3cret\n")
        assert up.retry_if_files_changed() is True and up.link is not None
    finally:
        up.close()
