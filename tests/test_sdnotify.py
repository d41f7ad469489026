"""systemd notification over a real AF_UNIX datagram socket, and the progress watchdog."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from linetap.clock import FakeClock
from linetap.health.sdnotify import Notifier, ProgressWatchdog


@pytest.fixture
def systemd(tmp_path):
    """A datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_sends_ready_1(systemd):
    path, sock = systemd
    assert Notifier({"NOTIFY_SOCKET": path}).ready()
    assert received(sock) == "READY=1"


def test_ready_can_carry_a_status(systemd):
    path, sock = systemd
    Notifier({"NOTIFY_SOCKET": path}).ready("recording 2 lines")
    assert received(sock) == "READY=1\nSTATUS=recording 2 lines"


def test_watchdog_sends_watchdog_1(systemd):
    path, sock = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.watchdog()
    notifier.watchdog()
    assert [received(sock), received(sock)] == ["WATCHDOG=1", "WATCHDOG=1"]


def test_status_is_kept_on_one_line(systemd):
    path, sock = systemd
    Notifier({"NOTIFY_SOCKET": path}).status("line2: dead\nline3: no device")
    assert received(sock) == "STATUS=line2: dead line3: no device"


def test_stopping_sends_stopping_1(systemd):
    path, sock = systemd
    Notifier({"NOTIFY_SOCKET": path}).stopping()
    assert received(sock) == "STOPPING=1"


def test_an_abstract_namespace_socket_is_written_with_an_at_sign():
    name = f"linetap-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.stopping() is False


def test_a_missing_socket_is_reported_not_raised(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_the_watchdog_interval_comes_from_watchdog_usec():
    assert Notifier({"WATCHDOG_USEC": "14000000"}).watchdog_interval_s() == 14.0


def test_the_watchdog_interval_applies_only_to_the_process_it_names():
    env = {"WATCHDOG_USEC": "14000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval_s() == 14.0
    assert Notifier(env, pid=os.getpid() + 1).watchdog_interval_s() is None


def test_without_a_watchdog_there_is_no_interval():
    assert Notifier({}).watchdog_interval_s() is None
    assert Notifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval_s() is None


# --- the progress watchdog ---

def test_no_ping_before_the_pipeline_has_made_progress():
    assert not ProgressWatchdog(FakeClock(), stale_after_s=5).should_ping()


def test_pings_while_the_pipeline_makes_progress():
    clock = FakeClock()
    wd = ProgressWatchdog(clock, stale_after_s=5)
    wd.progress()
    clock.advance(5)
    assert wd.should_ping()


def test_pings_stop_once_progress_is_stale():
    clock = FakeClock()
    wd = ProgressWatchdog(clock, stale_after_s=5)
    wd.progress()
    clock.advance(5.01)
    assert not wd.should_ping()
    wd.progress()
    assert wd.should_ping()


def test_every_named_source_must_make_progress():
    clock = FakeClock()
    wd = ProgressWatchdog(clock, stale_after_s=5, sources=("pipeline", "health"))
    wd.progress("pipeline")
    assert wd.stale() == ["health"] and not wd.should_ping()
    wd.progress("health")
    assert wd.should_ping()


def test_an_unknown_source_is_a_programming_error():
    with pytest.raises(KeyError):
        ProgressWatchdog(FakeClock(), stale_after_s=5).progress("pipelin")
