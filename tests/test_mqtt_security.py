"""MQTT security: TLS with a test CA, passwords, client certificates, refusals, `linetap check`'s probe."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pytest
from helpers import Alarms, wait_for
from mqtt_broker import Broker, broker, make_pki  # noqa: F401  (broker is a fixture)

from linetap.clock import FakeClock
from linetap.config import ConfigError, MqttConfig
from linetap.events import call_started
from linetap.health.broker import broker_alarm
from linetap.mqtt.link import MqttLink
from linetap.mqtt.probe import check_broker

RID = "box-1"
PASSWORD = "correct-horse-battery-staple-42"


def password_file(tmp_path: Path, password: str = PASSWORD) -> Path:
    p = tmp_path / f"mqtt-{len(password)}-{abs(hash(password))}.password"
    p.write_text(password + "\n")
    p.chmod(0o600)
    return p


def tls_config(b: Broker, tmp_path: Path, **kw: Any) -> MqttConfig:
    assert b.pki is not None
    base: dict[str, Any] = {"host": b.host, "port": b.port, "keepalive_s": 5, "tls_ca": b.pki.ca}
    if b.users:
        base |= {"username": "recorder", "password_file": password_file(tmp_path)}
    base |= kw
    return MqttConfig(**base)


@pytest.fixture
def links(data_dir: Path) -> Iterator[list[MqttLink]]:
    made: list[MqttLink] = []
    yield made
    for link in made:
        link.stop(timeout_s=0.5)


def link_for(cfg: MqttConfig, data_dir: Path, made: list[MqttLink], **kw: Any) -> MqttLink:
    kw.setdefault("clock", FakeClock())
    link = MqttLink(cfg, recorder_id=RID, data_dir=data_dir, version="9.9", lines=["line1"],
                    reconnect_min_s=0.1, reconnect_max_s=0.5, **kw)
    made.append(link)
    return link


def test_tls_with_a_test_ca_and_a_password(broker: Any, tmp_path: Path, data_dir: Path, links: list[MqttLink],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # paho's own packet log included
    b = broker(tls=True, users={"recorder": PASSWORD})
    cfg = tls_config(b, tmp_path)
    link = link_for(cfg, data_dir, links)
    link.start()
    wait_for(lambda: link.connected, timeout=20)
    sub = b.subscribe(f"linetap/{RID}/#")
    assert sub.wait_for(lambda m: m.topic.endswith("/status")).text == "online"
    link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))
    sub.wait_for(lambda m: m.topic.endswith("/event"))
    assert check_broker(cfg) is None
    link.stop()
    assert PASSWORD not in caplog.text
    assert not any(PASSWORD in repr(r.args) for r in caplog.records)


def test_tls_with_a_client_certificate(broker: Any, tmp_path: Path, data_dir: Path, links: list[MqttLink]) -> None:
    b = broker(tls=True, require_certificate=True)
    assert b.pki is not None
    cfg = tls_config(b, tmp_path, tls_cert=b.pki.client_cert, tls_key=b.pki.client_key)
    link = link_for(cfg, data_dir, links)
    link.start()
    wait_for(lambda: link.connected, timeout=20)
    assert check_broker(cfg) is None
    no_cert = tls_config(b, tmp_path)
    assert "closed before the broker accepted it" in (check_broker(no_cert, timeout_s=15) or "")
    (data_dir / "other").mkdir()
    refused = link_for(no_cert, data_dir / "other", links)
    refused.start()
    wait_for(lambda: refused.last_error, timeout=20)
    assert "closed before the broker accepted it" in (refused.last_error or "")


def test_a_wrong_password_gives_a_clear_error_and_the_alarm_not_a_crash_loop(
        broker: Any, tmp_path: Path, data_dir: Path, links: list[MqttLink], caplog: pytest.LogCaptureFixture) -> None:
    b = broker(tls=True, users={"recorder": PASSWORD})
    cfg = tls_config(b, tmp_path, password_file=password_file(tmp_path, "wrong-password"))
    clock = FakeClock()
    link = link_for(cfg, data_dir, links, clock=clock)
    caplog.set_level(logging.INFO, logger="linetap.mqtt")
    link.start()
    wait_for(lambda: link.last_error, timeout=20)
    # At once, without waiting for unreachable_after_s: a refusal will not fix itself.
    active, detail = broker_alarm(link.state(), clock.mono(), cfg.unreachable_after_s)
    assert active and "refused the connection" in detail and "mqtt.password_file" in detail
    assert "did not accept the user name 'recorder'" in detail  # in plain words (mosquitto: "Not authorized")
    # It keeps trying with back-off (0.1 .. 0.5 s here) and logs the refusal only once.
    wait_for(lambda: b.log.read_text().count("not authorised") >= 3, timeout=20)
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert "wrong-password" not in caplog.text
    link.publish_event(call_started(call_id=1, line="line1", started_at=0.0))  # still queued durably
    assert len(link.outbox) == 1 and not link.connected
    reason = check_broker(cfg)
    assert reason is not None and "refused the connection" in reason
    # Corrected: the uplink's retry (every 10 s in the recorder) reads the changed file and logs in.
    assert not link.renew_credentials()  # unchanged: paho keeps retrying on its own
    assert cfg.password_file is not None
    cfg.password_file.write_text(PASSWORD + "\n")
    assert link.renew_credentials()
    wait_for(lambda: link.connected, timeout=20)
    assert broker_alarm(link.state(), clock.mono(), cfg.unreachable_after_s) == (False, "")
    wait_for(lambda: len(link.outbox) == 0, timeout=20)  # the event queued meanwhile is delivered
    assert not link.renew_credentials()  # connected: nothing to renew
    assert PASSWORD not in caplog.text


def test_a_password_is_never_sent_in_clear_text_unless_allowed(broker: Any, tmp_path: Path, data_dir: Path,
                                                               links: list[MqttLink]) -> None:
    b = broker(users={"recorder": PASSWORD})
    clear = dict(host=b.host, port=b.port, username="recorder", password_file=password_file(tmp_path))
    with pytest.raises(ConfigError, match="allow_plaintext_password"):
        link_for(MqttConfig(**clear), data_dir, links)  # type: ignore[arg-type]
    assert "allow_plaintext_password" in (check_broker(MqttConfig(**clear)) or "")  # type: ignore[arg-type]
    allowed = MqttConfig(**clear, allow_plaintext_password=True)  # type: ignore[arg-type]
    link = link_for(allowed, data_dir, links)
    link.start()
    wait_for(lambda: link.connected, timeout=20)


def test_an_unreadable_password_file_is_a_config_error_naming_the_key(tmp_path: Path, data_dir: Path,
                                                                       links: list[MqttLink]) -> None:
    cfg = MqttConfig(username="recorder", password_file=tmp_path / "missing", allow_plaintext_password=True)
    with pytest.raises(ConfigError) as e:
        link_for(cfg, data_dir, links)
    assert e.value.errors == [f"mqtt.password_file: cannot read {tmp_path / 'missing'}: No such file or directory"]


def test_a_broker_certificate_from_another_ca_is_named_as_the_problem(
        broker: Any, tmp_path: Path, data_dir: Path, links: list[MqttLink]) -> None:
    b = broker(tls=True)
    other = make_pki(tmp_path / "other-pki")
    cfg = tls_config(b, tmp_path, tls_ca=other.ca)
    link = link_for(cfg, data_dir, links)
    link.start()
    wait_for(lambda: link.last_error, timeout=20)
    assert "certificate verify failed" in (link.last_error or "")
    assert "certificate verify failed" in (check_broker(cfg) or "")


def test_check_broker_names_an_unreachable_broker(broker: Any) -> None:
    b = broker(start=False)
    reason = check_broker(MqttConfig(host=b.host, port=b.port), timeout_s=2)
    assert reason == f"cannot connect to {b.host}:{b.port}: Connection refused"


def test_check_broker_does_not_kick_a_running_recorder_off(broker: Any, tmp_path: Path, data_dir: Path,
                                                          links: list[MqttLink]) -> None:
    b = broker()
    cfg = MqttConfig(host=b.host, port=b.port, keepalive_s=5)
    link = link_for(cfg, data_dir, links)
    link.start()
    wait_for(lambda: link.connected, timeout=20)
    sub = b.subscribe(f"linetap/{RID}/status")
    sub.wait_for(lambda m: m.text == "online")
    assert check_broker(cfg) is None
    assert link.connected and [m.text for m in sub.messages] == ["online"]


def test_unusable_tls_files_are_config_errors_naming_the_key(tmp_path: Path, data_dir: Path,
                                                             links: list[MqttLink]) -> None:
    pki = make_pki(tmp_path / "pki")
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"^mqtt\.tls_ca: .* is not a usable CA certificate"):
        link_for(MqttConfig(tls_ca=not_pem), data_dir, links)
    mismatched = MqttConfig(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.server_key)
    with pytest.raises(ConfigError, match=r"^mqtt\.tls_cert: cannot use"):
        link_for(mismatched, data_dir, links)
    assert (check_broker(mismatched) or "").startswith("mqtt.tls_cert: cannot use")
