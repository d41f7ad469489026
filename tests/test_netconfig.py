"""Network, time zone and host name from ``linetap.toml``: checks, renderers, and the whole first boot.

The renderers are pure, so their texts are asserted exactly. The first-boot tests run the real
``linetap.firstboot`` on a boot directory, a data directory and a fake root directory standing in
for ``/``: the files must land where systemd-networkd (``/run/systemd/network``), wpa_supplicant
(``/run/linetap-wifi``, the image's unit drop-in) and systemd-timesyncd
(``/run/systemd/timesyncd.conf.d``) read them, the host name and time zone go through
``hostnamectl``/``timedatectl`` (a recording runner at that seam), and nothing secret stays on the card.
"""

from __future__ import annotations

import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import boot_layout, toml_value

from linetap import firstboot, netconfig
from linetap.config import ConfigError, NetworkConfig, load, load_text
from linetap.firstboot import Layout

NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=timezone.utc)
PASSPHRASE = "correct horse battery staple"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, problem", [
    ("12345678", None),
    ("x" * 63, None),
    ("0123456789abcdef" * 4, None),  # the 256-bit PSK as 64 hex digits
    ("1234567", "must be 8-63 characters (or 64 hex digits), not 7"),
    ("x" * 64, "must be 8-63 characters (or 64 hex digits), not 64"),
    ("passwört1", "must be printable ASCII (no accents, tabs or line breaks)"),
    ('say "hi" now', "must not contain a double quote"),
])
def test_passphrase(value, problem):
    assert netconfig.passphrase_problem(value) == problem


@pytest.mark.parametrize("value, problem", [
    ("home", None), ("x" * 32, None), ("", "must be 1-32 bytes long, not 0"),
    ("x" * 33, "must be 1-32 bytes long, not 33"), ("Café" * 8, "must be 1-32 bytes long, not 40"),
])
def test_ssid(value, problem):
    assert netconfig.ssid_problem(value) == problem


def test_network_values_are_checked_with_the_key_named():
    with pytest.raises(ConfigError) as e:
        load_text("\n".join([
            "[recorder]", 'timezone = "Europe/Atlantis"', "[[line]]", 'name = "a"', 'pcm = "hw:0"',
            "[network]", 'wifi_ssid = "home"', 'wifi_country = "de"', 'address = "192.168.1.0/24"',
            'gateway = "10.0.0.1"', 'dns = ["1.1.1.1", "dns.example"]', 'ntp = ["ntp.example.org", "-bad-"]']),
            source="linetap.toml")
    assert e.value.errors == [
        'linetap.toml: network.wifi_country: must be an ISO 3166 two-letter country code in capitals '
        '(like "DE" or "US"), not \'de\'',
        # (the gateway is not compared with an address that is wrong itself)
        "linetap.toml: network.address: '192.168.1.0/24' is the network's own address, not a host's",
        "linetap.toml: network.dns[1]: must be an IP address, not 'dns.example'",
        "linetap.toml: network.ntp[1]: must be a host name or an IP address, not '-bad-'",
        "linetap.toml: recorder.timezone: 'Europe/Atlantis' is not a known time zone "
        '(an IANA name like "Europe/Berlin")',
    ]


def test_the_gateway_must_be_in_the_addresses_network():
    net = NetworkConfig(address="192.168.1.50/24", gateway="192.168.2.1")
    assert netconfig.network_problems(net) == [("gateway", "192.168.2.1 is not in the network of address "
                                                           "192.168.1.50/24")]


def test_wifi_needs_its_country_and_a_country_needs_wifi():
    assert netconfig.network_problems(NetworkConfig(wifi_ssid="home")) == [
        ("wifi_country", "is required with wifi_ssid (the radio may use only the channels of the country it is in)")]
    assert netconfig.network_problems(NetworkConfig(wifi_country="DE")) == [
        ("wifi_ssid", "is required when wifi_passphrase_file or wifi_country is set")]


def test_an_ipv6_address_and_no_gateway_are_fine():
    assert netconfig.network_problems(NetworkConfig(address="2001:db8::50/64", dns=("2001:db8::1",))) == []


def test_the_passphrase_itself_is_refused_in_the_running_config():
    with pytest.raises(ConfigError) as e:
        load_text('[[line]]\nname = "a"\npcm = "hw:0"\n[network]\nwifi_ssid = "h"\nwifi_country = "DE"\n'
                  'wifi_passphrase = "12345678"\n', source="x.toml")
    assert e.value.errors[0].startswith("x.toml: network.wifi_passphrase: secrets are not accepted in the config")


# --- renderers ----------------------------------------------------------------------------------

STATIC = NetworkConfig(address="192.168.1.50/24", gateway="192.168.1.1", dns=("192.168.1.1", "9.9.9.9"))


def test_render_static_network():
    assert netconfig.render_network("wlan0", STATIC, static=True) == (
        "# Written by linetap at boot from linetap.toml; edits here are lost at reboot.\n"
        "[Match]\nName=wlan0\n\n[Network]\nAddress=192.168.1.50/24\nGateway=192.168.1.1\n"
        "DNS=192.168.1.1\nDNS=9.9.9.9\n")


def test_render_dhcp_network():
    assert netconfig.render_network("eth* en*", STATIC, static=False) == (
        "# Written by linetap at boot from linetap.toml; edits here are lost at reboot.\n"
        "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n")


def test_render_wpa_supplicant():
    assert netconfig.render_wpa_supplicant("Shop Wi-Fi", PASSPHRASE, "DE") == (
        "# Written by linetap at boot from linetap.toml; root's only (the passphrase).\n"
        "country=DE\nupdate_config=0\nnetwork={\n\tssid=\"Shop Wi-Fi\"\n"
        "\tpsk=\"correct horse battery staple\"\n\tkey_mgmt=WPA-PSK WPA-PSK-SHA256 SAE\n\tieee80211w=1\n}\n")


def test_render_wpa_supplicant_with_a_hex_psk_is_unquoted():
    psk = "0123456789ABCDEF" * 4
    assert "\tpsk=" + psk.lower() + "\n" in netconfig.render_wpa_supplicant("h", psk, "US")


def test_an_ssid_with_quotes_or_accents_is_written_as_hex():
    text = netconfig.render_wpa_supplicant('Café "2"', PASSPHRASE, "FR")
    assert "\tssid=" + 'Café "2"'.encode().hex() + "\n" in text
    assert netconfig.ssid_problem('Café "2"') is None


@pytest.mark.parametrize("recorder_id, hostname", [("shop-01", "shop-01"), ("shop_01", "shop-01"),
                                                   ("_a_", "a"), ("__", "linetap")])
def test_hostname_for(recorder_id, hostname):
    assert netconfig.hostname_for(recorder_id) == hostname


def test_render_timesyncd():
    assert netconfig.render_timesyncd(("ntp1.example.org", "192.168.1.1")) == (
        "# Written by linetap at boot from linetap.toml.\n[Time]\nNTP=ntp1.example.org 192.168.1.1\n")


def test_plan_without_network_settings_writes_nothing_and_removes_old_files():
    p = netconfig.plan(NetworkConfig(), hostname="shop-01", timezone="UTC", passphrase=None)
    assert p.files == ()
    assert set(p.remove) == {Path("run/systemd/network/10-linetap-wired.network"),
                             Path("run/systemd/network/10-linetap-wifi.network"),
                             Path("run/linetap-wifi/wpa_supplicant-wlan0.conf"),
                             Path("run/systemd/timesyncd.conf.d/10-linetap.conf")}
    assert p.commands == (("hostnamectl", "hostname", "shop-01"), ("timedatectl", "set-timezone", "UTC"))


def test_plan_static_wired():
    p = netconfig.plan(STATIC, hostname="b", timezone="UTC", passphrase=None)
    assert p.files == ((Path("run/systemd/network/10-linetap-wired.network"),
                        netconfig.render_network("eth* en*", STATIC, static=True), 0o644),)


# --- the whole first boot -------------------------------------------------------------------------

class Commands:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.argv: list[tuple[str, ...]] = []
        self.fail = fail

    def __call__(self, argv) -> None:
        self.argv.append(tuple(argv))
        if argv[0] in self.fail:
            raise subprocess.CalledProcessError(1, argv, stderr=b"Failed to connect to bus")


@pytest.fixture
def box(tmp_path: Path) -> tuple[Layout, Path]:
    layout = boot_layout(tmp_path, lambda layout: config_text(layout, ""))
    root = tmp_path / "root"
    root.mkdir()
    return layout, root


def config_text(box: Layout, network: str, recorder: str = "") -> str:
    return "\n".join(["[recorder]", 'id = "shop-01"', f"data_dir = {toml_value(str(box.data_dir))}", recorder,
                      "[[line]]", 'name = "line1"', 'pcm = "hw:CARD=line1,DEV=0"', "", network]) + "\n"


WIFI = "\n".join(["[network]", "# the shop's access point", 'wifi_ssid = "Shop Wi-Fi"',
                  f'wifi_passphrase = "{PASSPHRASE}"', 'wifi_country = "DE"', 'address = "192.168.1.50/24"',
                  'gateway = "192.168.1.1"', 'dns = ["192.168.1.1"]', 'ntp = ["ntp.example.org"]'])


def first_boot(layout: Layout, root: Path, commands: Commands) -> firstboot.Result:
    result = firstboot.import_boot_config(layout, now=NOW, signal_fault=lambda led: None, group=None)
    firstboot.apply_system_settings(layout, root, commands)
    return result


def test_wifi_static_address_ntp_time_zone_and_host_name_from_the_card(box):
    layout, root = box
    layout.candidate.write_text(config_text(layout, WIFI, 'timezone = "Europe/Berlin"'))
    commands = Commands()
    assert first_boot(layout, root, commands).action == "applied"

    # The passphrase: a root-only file on the box, the config names it, nothing on the card.
    secret = layout.config_dir / "wifi.passphrase"
    assert secret.read_text() == PASSPHRASE + "\n"
    assert mode(secret) == 0o600
    cfg = load(layout.active)
    assert cfg.network.wifi_passphrase_file == secret
    assert 'wifi_passphrase_file = "wifi.passphrase"' in layout.active.read_text()
    card = b"".join(p.read_bytes() for p in layout.boot_dir.rglob("*") if p.is_file())
    assert PASSPHRASE.encode() not in card
    running = layout.running_copy.read_bytes()
    assert b'wifi_passphrase_file = "wifi.passphrase"' in running and PASSPHRASE.encode() not in running

    # Where the daemons read them.
    wpa = root / "run/linetap-wifi/wpa_supplicant-wlan0.conf"
    assert wpa.read_text() == netconfig.render_wpa_supplicant("Shop Wi-Fi", PASSPHRASE, "DE")
    assert mode(wpa) == 0o600 and mode(wpa.parent) == 0o700
    net = root / "run/systemd/network"
    assert (net / "10-linetap-wifi.network").read_text() == (
        "# Written by linetap at boot from linetap.toml; edits here are lost at reboot.\n"
        "[Match]\nName=wlan0\n\n[Network]\nAddress=192.168.1.50/24\nGateway=192.168.1.1\nDNS=192.168.1.1\n")
    assert (net / "10-linetap-wired.network").read_text().endswith("[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n")
    assert (root / "run/systemd/timesyncd.conf.d/10-linetap.conf").read_text().endswith("NTP=ntp.example.org\n")
    assert commands.argv == [("hostnamectl", "hostname", "shop-01"),
                             ("timedatectl", "set-timezone", "Europe/Berlin"),
                             ("systemctl", "try-restart", "--no-block", "systemd-timesyncd.service")]


def test_every_boot_renders_again_and_a_removed_setting_is_removed(box):
    layout, root = box
    layout.candidate.write_text(config_text(layout, WIFI))
    first_boot(layout, root, Commands())
    # The RAM overlay forgets /run: the next boot (no file on the card) renders the same again.
    wpa = root / "run/linetap-wifi/wpa_supplicant-wlan0.conf"
    wpa.unlink()
    assert first_boot(layout, root, Commands()).action == "none"
    assert PASSPHRASE in wpa.read_text()
    # A new config without [network]: nothing of the old one is left for the daemons.
    layout.candidate.write_text(config_text(layout, ""))
    assert first_boot(layout, root, Commands()).action == "applied"
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == []


def test_a_bad_passphrase_is_rejected_with_the_key_named_and_the_old_config_kept(box):
    layout, root = box
    before = layout.active.read_text()
    layout.candidate.write_text(config_text(layout, WIFI.replace(PASSPHRASE, "short")))
    result = first_boot(layout, root, Commands())
    assert result.action == "rejected"
    assert result.errors == ("linetap.toml: network.wifi_passphrase: must be 8-63 characters "
                             "(or 64 hex digits), not 5",)
    assert layout.active.read_text() == before
    assert "network.wifi_passphrase" in layout.error_report.read_text()
    assert b"short" not in layout.rejected.read_bytes()  # masked, like the MQTT password


def test_a_bad_address_is_rejected_with_the_key_named(box):
    layout, root = box
    layout.candidate.write_text(config_text(layout, '[network]\naddress = "192.168.1.300/24"\n'))
    result = first_boot(layout, root, Commands())
    assert result.action == "rejected"
    assert result.errors == ("linetap.toml: network.address: must be an address with its prefix length, "
                             "like \"192.168.1.50/24\", not '192.168.1.300/24'",)
    assert list(root.rglob("*.network")) == []


def test_a_passphrase_file_on_the_card_is_imported_root_only(box):
    layout, root = box
    (layout.boot_dir / "wifi.txt").write_text(PASSPHRASE + "\r\n")
    layout.candidate.write_text(config_text(layout, "\n".join([
        "[network]", 'wifi_ssid = "home"', 'wifi_passphrase_file = "wifi.txt"', 'wifi_country = "GB"'])))
    assert first_boot(layout, root, Commands()).action == "applied"
    assert not (layout.boot_dir / "wifi.txt").exists()
    assert mode(layout.config_dir / "wifi.txt") == 0o600
    assert f'psk="{PASSPHRASE}"' in (root / "run/linetap-wifi/wpa_supplicant-wlan0.conf").read_text()


def test_failing_system_tools_are_warnings_not_a_failed_boot(box, caplog):
    layout, root = box
    layout.candidate.write_text(config_text(layout, '[network]\nntp = ["192.168.1.1"]\n'))
    firstboot.import_boot_config(layout, now=NOW, signal_fault=lambda led: None, group=None)
    problems = firstboot.apply_system_settings(layout, root, Commands(fail={"hostnamectl", "timedatectl"}))
    assert problems == ["hostnamectl hostname shop-01 failed: Failed to connect to bus",
                        "timedatectl set-timezone UTC failed: Failed to connect to bus"]  # systemctl: fine
    assert (root / "run/systemd/timesyncd.conf.d/10-linetap.conf").exists()


def test_a_missing_tool_is_a_warning_too(tmp_path):
    p = netconfig.Plan(files=(), remove=(), commands=(("linetap-no-such-tool", "x"),))
    problems = netconfig.apply(p, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("linetap-no-such-tool x failed: ")


@pytest.mark.parametrize("entry", ["module", "cli"])
def test_main_and_the_cli_apply_the_settings_under_root(box, monkeypatch, entry):
    """``python -m linetap.firstboot --root`` (the unit's command) and ``linetap firstboot --root``.
    In-process, with the system tools recorded: they must never rename the test machine."""
    from linetap.cli import main as cli_main
    layout, root = box
    layout.candidate.write_text(config_text(layout, '[network]\naddress = "10.1.2.3/16"\n'))
    commands = Commands()
    monkeypatch.setattr(netconfig, "run_command", commands)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    args = ["--boot", str(layout.boot_dir), "--data", str(layout.data_dir), "--root", str(root)]
    if entry == "module":
        assert firstboot.main(args, signal_fault=lambda led: None) == 0
    else:
        assert cli_main(["firstboot", *args]) == 0
    assert "Address=10.1.2.3/16" in (root / "run/systemd/network/10-linetap-wired.network").read_text()
    assert commands.argv[0] == ("hostnamectl", "hostname", "shop-01")


def test_a_rejected_files_passphrase_waits_off_the_card_and_the_mask_reuses_it(box):
    layout, root = box
    layout.candidate.write_text(config_text(layout, WIFI.replace("192.168.1.50/24", "192.168.1.50")))
    assert first_boot(layout, root, Commands()).action == "rejected"
    pending = layout.config_dir / "pending/wifi.passphrase"
    assert pending.read_text() == PASSPHRASE + "\n" and mode(pending) == 0o600
    card = b"".join(p.read_bytes() for p in layout.boot_dir.rglob("*") if p.is_file())
    assert PASSPHRASE.encode() not in card
    assert "the Wi-Fi passphrase (network.wifi_passphrase)" in layout.error_report.read_text()
    # The installer fixes the address in the returned file, which shows the passphrase masked.
    fixed = layout.rejected.read_text().replace('"192.168.1.50"', '"192.168.1.50/24"')
    assert 'wifi_passphrase = "********"' in fixed
    layout.rejected.unlink()
    layout.candidate.write_text(fixed)
    assert first_boot(layout, root, Commands()).action == "applied"
    assert (layout.config_dir / "wifi.passphrase").read_text() == PASSPHRASE + "\n"
    assert not pending.exists()
    assert f'psk="{PASSPHRASE}"' in (root / "run/linetap-wifi/wpa_supplicant-wlan0.conf").read_text()
