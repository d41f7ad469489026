"""First boot carries what a config names from the card onto the box, and applies only what will run.

The installer's path: a laptop, the card's FAT boot partition, a Home Assistant broker that wants a
password (and maybe TLS). Every test runs the real first-boot code on a boot directory and a data
directory; the end-to-end ones then start the real recorder on the applied config against a real
mosquitto that requires that password/TLS.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from helpers import boot_layout, toml_value
from mqtt_broker import broker, make_pki  # noqa: F401  (broker is a fixture)

from linetap import bootfiles, firstboot
from linetap.clock import SystemClock
from linetap.config import load, load_text
from linetap.crypto import generate_keypair
from linetap.firstboot import Layout

NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=timezone.utc)
PASSWORD = "Tr0ub4dor&3-from-the-HA-addon"


class NoFault:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, led: object) -> None:
        self.calls += 1


@pytest.fixture
def box(tmp_path: Path) -> Layout:
    return boot_layout(tmp_path, lambda layout: boot_config(layout, mqtt=None))


def boot_config(box: Layout, *, mqtt: dict[str, object] | None, storage: dict[str, object] | None = None,
                pcm: str = "hw:CARD=line1,DEV=0", raw_mqtt: str = "") -> str:
    out = ["[recorder]", 'id = "shop-01"', f"data_dir = {toml_value(str(box.data_dir))}", "",
           "[[line]]", 'name = "line1"', f"pcm = {toml_value(pcm)}"]
    if storage:
        out += ["", "[storage]"] + [f"{k} = {toml_value(v)}" for k, v in storage.items()]
    if mqtt is not None or raw_mqtt:
        out += ["", "[mqtt]", "# the Home Assistant add-on's broker"]
        out += [f"{k} = {toml_value(v)}" for k, v in ({"host": "127.0.0.1"} | (mqtt or {})).items()]
        out += [raw_mqtt] if raw_mqtt else []
    return "\n".join(out) + "\n"


def apply(box: Layout, fault: NoFault | None = None, **kw: object) -> firstboot.Result:
    return firstboot.import_boot_config(box, now=NOW, signal_fault=fault or NoFault(), group=None, **kw)


def card_bytes(box: Layout) -> bytes:
    """Everything on the card, to look for secrets in."""
    return b"".join(p.read_bytes() for p in sorted(box.boot_dir.rglob("*")) if p.is_file())


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- an inline password ------------------------------------------------------------------------

def test_an_inline_password_becomes_a_0640_file_and_leaves_the_card(box):
    box.candidate.write_text(boot_config(box, mqtt={"host": "ha.local", "username": "linetap",
                                                    "password": PASSWORD, "allow_plaintext_password": True}))
    assert apply(box).action == "applied"
    secret = box.config_dir / "mqtt.password"
    assert secret.read_text() == PASSWORD + "\n" and mode(secret) == 0o640
    cfg = load(box.active)
    assert cfg.mqtt is not None and cfg.mqtt.password_file == secret and cfg.mqtt.username == "linetap"
    assert PASSWORD not in box.active.read_text()
    assert "# the Home Assistant add-on's broker" in box.active.read_text()  # the installer's comments stay
    assert PASSWORD.encode() not in card_bytes(box)
    assert not box.candidate.exists() and box.receipt.exists()


def test_the_card_keeps_a_masked_copy_of_what_the_box_runs(box):
    box.candidate.write_text(boot_config(box, mqtt={"host": "ha.local", "username": "linetap",
                                                    "password": PASSWORD, "allow_plaintext_password": True}))
    apply(box)
    copy = box.running_copy.read_text()
    assert 'host = "ha.local"' in copy and PASSWORD not in copy
    # Copied back to linetap.toml as it is, it is a valid config that keeps the password.
    box.candidate.write_text(copy)
    assert apply(box).action == "applied"  # the same settings, its comments differ
    assert (box.config_dir / "mqtt.password").read_text() == PASSWORD + "\n"


def test_an_inline_password_without_tls_is_refused_and_still_leaves_the_card(box):
    box.candidate.write_text(boot_config(box, mqtt={"host": "ha.local", "username": "linetap",
                                                    "password": PASSWORD}))
    result = apply(box)
    assert result.action == "rejected"
    assert any("refusing to send a password without TLS" in e for e in result.errors)
    assert PASSWORD.encode() not in card_bytes(box)
    rejected = box.rejected.read_text()
    assert f'password = "{bootfiles.MASK}"' in rejected
    report = box.error_report.read_text()
    assert "MQTT password" in report and "kept on the box" in report
    # The fixed file keeps the mask: the password given the first time is used.
    box.candidate.write_text(rejected.replace('username = "linetap"',
                                              'username = "linetap"\nallow_plaintext_password = true'))
    assert apply(box).action == "applied"
    assert (box.config_dir / "mqtt.password").read_text() == PASSWORD + "\n"
    assert not (box.config_dir / "pending" / "mqtt.password").exists()


def test_the_mask_without_a_password_on_the_box_is_explained(box):
    box.candidate.write_text(boot_config(box, mqtt={"username": "u", "password": bootfiles.MASK,
                                                    "allow_plaintext_password": True}))
    result = apply(box)
    assert result.action == "rejected"
    assert result.errors == (f'linetap.toml: mqtt.password: "{bootfiles.MASK}" keeps the password the box '
                             "already has, but it has none: write the password itself",)


def test_password_and_password_file_together_are_refused(box):
    (box.boot_dir / "mqtt.pass").write_text("x\n")
    box.candidate.write_text(boot_config(box, mqtt={"username": "u", "password": "p", "password_file": "mqtt.pass",
                                                    "allow_plaintext_password": True}))
    result = apply(box)
    assert result.action == "rejected"
    assert "linetap.toml: mqtt.password: give the password or password_file, not both" in result.errors


# --- files next to linetap.toml ------------------------------------------------------------------

def test_a_password_file_and_a_ca_next_to_the_config_are_imported_and_removed(box, tmp_path):
    pki = make_pki(tmp_path / "pki")
    (box.boot_dir / "mqtt.pass").write_text(PASSWORD + "\r\n")
    (box.boot_dir / "ca.crt").write_bytes(pki.ca.read_bytes())
    box.candidate.write_text(boot_config(box, mqtt={"host": "ha.local", "port": 8883, "username": "linetap",
                                                    "password_file": "mqtt.pass", "tls_ca": "ca.crt"}))
    assert apply(box).action == "applied"
    assert (box.config_dir / "ca.crt").read_bytes() == pki.ca.read_bytes()
    assert mode(box.config_dir / "mqtt.pass") == 0o640
    assert sorted(p.name for p in box.boot_dir.iterdir()) == sorted([firstboot.APPLIED_NAME, firstboot.RUNNING_NAME])
    cfg = load(box.active)
    assert cfg.mqtt is not None and cfg.mqtt.tls_ca == box.config_dir / "ca.crt"
    receipt = box.receipt.read_text()
    assert "ca.crt (mqtt.tls_ca)" in receipt and "mqtt.pass (mqtt.password_file)" in receipt


def test_a_client_key_of_a_rejected_config_leaves_the_card_for_the_next_try(box, tmp_path):
    pki = make_pki(tmp_path / "pki")
    for name, src in (("ca.crt", pki.ca), ("box.crt", pki.client_cert), ("box.key", pki.client_key)):
        (box.boot_dir / name).write_bytes(src.read_bytes())
    text = boot_config(box, mqtt={"tls_ca": "ca.crt", "tls_cert": "box.crt", "tls_key": "box.key"})
    box.candidate.write_text(text.replace("[[line]]", "[[line]]\nrate = 44"))
    assert apply(box).action == "rejected"
    assert not (box.boot_dir / "box.key").exists()  # the secret left the card
    assert (box.boot_dir / "ca.crt").exists()  # public files stay where the installer put them
    pending = box.config_dir / "pending" / "box.key"
    assert pending.read_bytes() == pki.client_key.read_bytes() and mode(pending) == 0o600
    assert "box.key (mqtt.tls_key)" in box.error_report.read_text()
    box.candidate.write_text(text)  # fixed, key not copied again
    assert apply(box).action == "applied"
    assert (box.config_dir / "box.key").read_bytes() == pki.client_key.read_bytes()
    assert not pending.exists()


def test_a_config_naming_a_missing_file_is_rejected_and_the_old_config_kept(box):
    old = box.active.read_text()
    box.candidate.write_text(boot_config(box, mqtt={"username": "u", "password_file": "mqtt.pass",
                                                    "allow_plaintext_password": True}))
    result = apply(box)
    assert result.action == "rejected"
    assert result.errors == ("linetap.toml: mqtt.password_file: 'mqtt.pass' is neither next to linetap.toml on the "
                             "card nor on the box: copy the file onto the card next to linetap.toml",)
    assert box.active.read_text() == old and box.rejected.exists()


def test_a_file_that_is_not_what_its_key_says_is_rejected_naming_the_key(box):
    (box.boot_dir / "ca.crt").write_text("this is the key, not the certificate\n")
    (box.boot_dir / "rec.pub").write_text("not a key\n")
    box.candidate.write_text(boot_config(box, mqtt={"tls_ca": "ca.crt"}, storage={"encrypt_to": "rec.pub"}))
    result = apply(box)
    assert result.action == "rejected"
    assert any(e.startswith("linetap.toml: mqtt.tls_ca: 'ca.crt' is not a PEM certificate") for e in result.errors)
    assert any(e.startswith("linetap.toml: storage.encrypt_to: 'rec.pub' is not a usable public key")
               for e in result.errors)


def test_the_encryption_key_next_to_the_config_is_imported(box, tmp_path):
    pub, _ = generate_keypair(tmp_path)
    (box.boot_dir / "recorder.pub").write_bytes(pub.read_bytes())
    box.candidate.write_text(boot_config(box, mqtt=None, storage={"encrypt_to": "recorder.pub"}))
    assert apply(box).action == "applied"
    cfg = load(box.active)
    assert cfg.storage.encrypt_to == box.config_dir / "recorder.pub"
    assert (box.config_dir / "recorder.pub").read_bytes() == pub.read_bytes()


def test_a_file_already_imported_by_an_interrupted_boot_is_found_on_the_box(box):
    # A power cut after the import, before linetap.toml left the card: the file is on the box only.
    (box.config_dir / "mqtt.pass").write_text(PASSWORD + "\n")
    box.candidate.write_text(boot_config(box, mqtt={"username": "u", "password_file": "mqtt.pass",
                                                    "allow_plaintext_password": True}))
    assert apply(box).action == "applied"


def test_a_path_out_of_the_card_is_refused(box):
    box.candidate.write_text(boot_config(box, mqtt={"tls_ca": "../etc/shadow"}))
    result = apply(box)
    assert result.action == "rejected"
    assert any("mqtt.tls_ca: '../etc/shadow': name a file next to linetap.toml" in e for e in result.errors)


# --- what linetap run needs --------------------------------------------------------------------

@pytest.mark.parametrize("pcm", ["hw:CARD=line1, DEV=0", "hw:CARD=line1,DEV=0\t", "", "plughw:1,0 # usb"])
def test_a_malformed_pcm_name_is_rejected(box, pcm):
    box.candidate.write_text(boot_config(box, mqtt=None, pcm=pcm))
    result = apply(box)
    assert result.action == "rejected"
    assert any(e.startswith("linetap.toml: line[0].pcm:") for e in result.errors)


@pytest.mark.parametrize("pcm", ["hw:CARD=line1,DEV=0", "plughw:1,0", "default", "line1", "dsnoop:CARD=Device,DEV=0"])
def test_well_formed_pcm_names_pass(box, pcm):
    box.candidate.write_text(boot_config(box, mqtt=None, pcm=pcm))
    assert apply(box).action in ("applied", "unchanged")


def test_a_data_dir_the_service_user_cannot_write_is_rejected(tmp_path):
    # Under a directory others may enter, as /var/lib is (pytest's own is root's only).
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    top.chmod(0o755)
    box = Layout(boot_dir=top / "boot", data_dir=top / "data")
    box.boot_dir.mkdir()
    box.config_dir.mkdir(parents=True)
    box.data_dir.chmod(0o755)  # root's, closed to others
    service = bootfiles.ServiceUser(uid=4242, gids=frozenset({4242}))
    box.candidate.write_text(boot_config(box, mqtt=None))
    result = apply(box, service=service)
    assert result.action == "rejected"
    assert any(e.startswith(f"linetap.toml: recorder.data_dir: '{box.data_dir}' cannot be written by the "
                            "recorder's user (uid 4242)") for e in result.errors)
    # The image's layout: root's, group linetap, 1770.
    os.chown(box.data_dir, 0, 4242)
    box.data_dir.chmod(0o1770)
    box.candidate.write_text(box.rejected.read_text())
    assert apply(box, service=service).action == "applied"
    shutil.rmtree(top)


def test_box_checks_name_a_file_that_vanished_from_the_box(tmp_path):
    cfg = load_text(f'[recorder]\nid = "x"\ndata_dir = "{tmp_path}"\n[[line]]\nname = "a"\npcm = "hw:0"\n'
                    '[mqtt]\nhost = "h"\ntls_ca = "/nonexistent/ca.crt"\n', base=tmp_path)
    assert bootfiles.box_checks(cfg, service=None) == ["mqtt.tls_ca: '/nonexistent/ca.crt' does not exist"]


# --- the installer's whole path: card -> first boot -> recorder -> broker -----------------------

@pytest.mark.parametrize("how", ["inline password", "password file", "password file and CA"])
def test_the_recorder_connects_to_a_password_broker_with_what_the_card_brought(alsa, broker, box, tmp_path, how):
    tls = how.endswith("CA")
    b = broker(users={"linetap": PASSWORD}, tls=tls)
    (line,) = alsa.lines(1)
    mqtt: dict[str, object] = {"host": b.host, "port": b.port, "username": "linetap", "health_interval_s": 5}
    if how == "inline password":
        mqtt |= {"password": PASSWORD, "allow_plaintext_password": True}
    else:
        (box.boot_dir / "mqtt.password").write_text(PASSWORD + "\n")
        mqtt |= {"password_file": "mqtt.password"}
        if tls:
            assert b.pki is not None
            (box.boot_dir / "ca.crt").write_bytes(b.pki.ca.read_bytes())
            mqtt |= {"tls_ca": "ca.crt"}
        else:
            mqtt |= {"allow_plaintext_password": True}
    box.candidate.write_text(boot_config(box, mqtt=mqtt, pcm=line.pcm))
    assert firstboot.main(["--boot", str(box.boot_dir), "--data", str(box.data_dir)],
                          signal_fault=NoFault()) == 0
    assert PASSWORD.encode() not in card_bytes(box)
    assert not (box.boot_dir / "mqtt.password").exists() and not (box.boot_dir / "ca.crt").exists()

    from linetap.recorder import Recorder
    sub = b.subscribe("linetap/shop-01/#")
    noise = np.random.default_rng(1).normal(0, 30, 8000 * 30).astype(np.int16)  # a quiet live line
    feeder = line.feed(noise, speed=1.0)
    rec = Recorder(load(box.active), clock=SystemClock())
    rec.start()
    try:
        sub.wait_for(lambda m: m.topic == "linetap/shop-01/status" and m.text == "online", timeout=15)
        health = sub.wait_for(lambda m: m.topic == "linetap/shop-01/health", timeout=15)
        assert "BROKER_UNREACHABLE" not in json.loads(health.payload)["alarms"]
    finally:
        rec.stop()
        feeder.stop()


def test_linetap_check_runs_the_same_file_checks(tmp_path, capsys):
    from linetap.cli import main
    path = tmp_path / "linetap.toml"
    path.write_text(f'[recorder]\nid = "x"\ndata_dir = "{tmp_path / "data"}"\n[[line]]\nname = "a"\n'
                    'pcm = "hw:CARD=gone,DEV=0"\n[storage]\nencrypt_to = "recorder.pub"\n')
    assert main(["check", "-c", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL files: storage.encrypt_to: '{tmp_path / 'recorder.pub'}' does not exist" in out
    pub, _ = generate_keypair(tmp_path / "keys")
    (tmp_path / "recorder.pub").write_bytes(pub.read_bytes())
    main(["check", "-c", str(path)])
    assert "ok   files: every file the config names is there and usable" in capsys.readouterr().out
