"""Network, time and name settings an installer gives in ``linetap.toml``, applied with the system's tools.

A Pi Zero 2 W has no Ethernet port and the box has no login, so Wi-Fi, a static address, NTP
servers, the time zone and the host name come from the config's ``[network]`` table and
``recorder.timezone``/``recorder.id``. The root file system is read-only with a RAM overlay:
whatever is written to ``/etc`` is gone at the next boot. So these settings are rendered again
at *every* boot (by ``linetap-firstboot.service``, ordered before systemd-networkd and
wpa_supplicant) into the runtime places those daemons read:

- ``/run/systemd/network/10-linetap-*.network`` (networkd reads ``/run`` before ``/usr/lib``,
  and a file there with the same or an earlier name wins over the image's ``20-wired.network``);
- ``/run/linetap-wifi/wpa_supplicant-wlan0.conf`` (0600, root's: it holds the passphrase;
  the image's drop-in for ``wpa_supplicant@wlan0.service`` reads it from there);
- ``/run/systemd/timesyncd.conf.d/10-linetap.conf`` (timesyncd reads ``/run/.../*.conf``; it
  runs before ``sysinit.target``, earlier than first boot can, so it is restarted);
- the host name and the time zone through ``hostnamectl`` and ``timedatectl`` (their daemons
  write ``/etc/hostname`` and the ``/etc/localtime`` link in the RAM overlay).

The renderers here are pure (config values in, file texts out, exact tests); :func:`apply`
writes them under a root directory (tests pass a temporary one) and runs the commands it is
given; nothing here fails the boot: a command that is missing or fails is a warning.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import subprocess
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .fsutil import write_atomic

logger = logging.getLogger(__name__)

NETWORK_DIR = Path("run/systemd/network")
WIFI_DIR = Path("run/linetap-wifi")
TIMESYNCD_DIR = Path("run/systemd/timesyncd.conf.d")
WIRED_FILE = "10-linetap-wired.network"
WIFI_FILE = "10-linetap-wifi.network"
WPA_FILE = "wpa_supplicant-wlan0.conf"
TIMESYNCD_FILE = "10-linetap.conf"
WIRED_MATCH = "eth* en*"
WIFI_IFACE = "wlan0"
# A command may wait on D-Bus for its daemon; the boot must not wait longer than this for it.
COMMAND_TIMEOUT_S = 20.0

# IEEE 802.11: an SSID is 1-32 octets; a WPA passphrase 8-63 printable ASCII characters, or the
# 256-bit PSK itself as 64 hex digits.
_HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
# RFC 1123 host names: labels of letters, digits and '-', at most 63 each, 253 in all.
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class NetworkSettings(Protocol):
    """The ``[network]`` table as ``config.NetworkConfig`` holds it (a protocol: config imports this module)."""

    @property
    def wifi_ssid(self) -> str | None: ...
    @property
    def wifi_passphrase_file(self) -> Path | None: ...
    @property
    def wifi_country(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def gateway(self) -> str | None: ...
    @property
    def dns(self) -> tuple[str, ...]: ...
    @property
    def ntp(self) -> tuple[str, ...]: ...


# --- checks: values in, one message per problem out (config.py names the key) ------------------

def ssid_problem(ssid: str) -> str | None:
    n = len(ssid.encode("utf-8"))
    if not 1 <= n <= 32:
        return f"must be 1-32 bytes long, not {n}"
    return None


def passphrase_problem(passphrase: str) -> str | None:
    """None for a usable WPA passphrase: 8-63 printable ASCII characters, or 64 hex digits."""
    if _HEX64_RE.match(passphrase):
        return None
    if not all(" " <= c <= "~" for c in passphrase):
        return "must be printable ASCII (no accents, tabs or line breaks)"
    if not 8 <= len(passphrase) <= 63:
        return f"must be 8-63 characters (or 64 hex digits), not {len(passphrase)}"
    if '"' in passphrase:
        return "must not contain a double quote"
    return None


def country_problem(country: str) -> str | None:
    return None if _COUNTRY_RE.match(country) else \
        f"must be an ISO 3166 two-letter country code in capitals (like \"DE\" or \"US\"), not {country!r}"


def interface_address_problem(value: str) -> str | None:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return f"must be an address with its prefix length, like \"192.168.1.50/24\", not {value!r}"
    if "/" not in value:
        return f"needs its prefix length, like \"{value}/24\""
    if iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1:
        return f"{value!r} is the network's own address, not a host's"
    return None


def address_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"must be an IP address, not {value!r}"
    return None


def host_problem(value: str) -> str | None:
    """None for an IP address or a DNS host name (an NTP server)."""
    if address_problem(value) is None:
        return None
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in name.split(".")):
        return f"must be a host name or an IP address, not {value!r}"
    return None


def timezone_problem(name: str) -> str | None:
    """None if ``name`` is an IANA time zone the box knows (Debian's tzdata)."""
    if name == "UTC":
        return None
    if name.startswith("/") or ".." in name.split("/"):
        return f"must be an IANA time zone name like \"Europe/Berlin\", not {name!r}"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not a known time zone (an IANA name like \"Europe/Berlin\")"
    return None


def network_problems(net: NetworkSettings) -> list[tuple[str, str]]:
    """(key, message) for every value of ``[network]`` that cannot work."""
    out: list[tuple[str, str]] = []

    def check(key: str, problem: str | None) -> None:
        if problem:
            out.append((key, problem))

    if net.wifi_ssid is not None:
        check("wifi_ssid", ssid_problem(net.wifi_ssid))
        if net.wifi_country is None:
            out.append(("wifi_country", "is required with wifi_ssid (the radio may use only the channels "
                                        "of the country it is in)"))
    elif net.wifi_passphrase_file is not None or net.wifi_country is not None:
        out.append(("wifi_ssid", "is required when wifi_passphrase_file or wifi_country is set"))
    if net.wifi_country is not None:
        check("wifi_country", country_problem(net.wifi_country))
    if net.address is not None:
        check("address", interface_address_problem(net.address))
    elif net.gateway is not None or net.dns:
        out.append(("address", "is required when gateway or dns is set (without it the box uses DHCP)"))
    if net.gateway is not None:
        check("gateway", address_problem(net.gateway))
        if net.address is not None and interface_address_problem(net.address) is None:
            a = ipaddress.ip_interface(net.address)
            if address_problem(net.gateway) is None and ipaddress.ip_address(net.gateway) not in a.network:
                out.append(("gateway", f"{net.gateway} is not in the network of address {net.address}"))
    for i, d in enumerate(net.dns):
        check(f"dns[{i}]", address_problem(d))
    for i, s in enumerate(net.ntp):
        check(f"ntp[{i}]", host_problem(s))
    return out


# --- renderers: config values in, file texts out ---------------------------------------------------

def render_network(match: str, net: NetworkSettings, *, static: bool) -> str:
    """A systemd-networkd ``.network`` file for the interfaces ``match``: DHCP, or ``net``'s address."""
    lines = ["# Written by linetap at boot from linetap.toml; edits here are lost at reboot.",
             "[Match]", f"Name={match}", "", "[Network]"]
    if static and net.address is not None:
        lines.append(f"Address={net.address}")
        if net.gateway is not None:
            lines.append(f"Gateway={net.gateway}")
        lines += [f"DNS={d}" for d in net.dns]
    else:
        lines.append("DHCP=yes")
    return "\n".join(lines) + "\n"


def hostname_for(recorder_id: str) -> str:
    """The host name for ``recorder.id``: ids allow ``_``, host names (RFC 1123) do not."""
    return recorder_id.replace("_", "-").strip("-") or "linetap"


def _wpa_ssid(ssid: str) -> str:
    # Quoted when that is unambiguous, else as hex (wpa_supplicant takes both): any SSID works.
    if all(" " <= c <= "~" for c in ssid) and '"' not in ssid:
        return f'"{ssid}"'
    return ssid.encode("utf-8").hex()


def render_wpa_supplicant(ssid: str, passphrase: str, country: str) -> str:
    """wpa_supplicant's config for one WPA2/WPA3-personal network (``country=`` sets the regulatory domain)."""
    psk = passphrase.lower() if _HEX64_RE.match(passphrase) else f'"{passphrase}"'
    return "\n".join([
        "# Written by linetap at boot from linetap.toml; root's only (the passphrase).",
        f"country={country}",
        "update_config=0",
        "network={",
        f"\tssid={_wpa_ssid(ssid)}",
        f"\tpsk={psk}",
        # WPA2-PSK, and WPA3-SAE where the access point offers it.
        "\tkey_mgmt=WPA-PSK WPA-PSK-SHA256 SAE",
        "\tieee80211w=1",
        "}",
    ]) + "\n"


def render_timesyncd(ntp: Sequence[str]) -> str:
    return ("# Written by linetap at boot from linetap.toml.\n[Time]\n"
            f"NTP={' '.join(ntp)}\n")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one boot writes and runs: files (relative to the root) and commands."""

    files: tuple[tuple[Path, str, int], ...]  # (path relative to root, text, mode)
    remove: tuple[Path, ...]  # files of an earlier plan this one does not write
    commands: tuple[tuple[str, ...], ...]


def plan(net: NetworkSettings, *, hostname: str, timezone: str, passphrase: str | None) -> Plan:
    """The files and commands for one config: its ``[network]``, ``recorder.id`` for the host name,
    ``recorder.timezone``; ``passphrase`` is the Wi-Fi passphrase file's content."""
    files: list[tuple[Path, str, int]] = []
    wifi = net.wifi_ssid is not None and net.wifi_country is not None and passphrase is not None
    if net.address is not None or wifi:
        # Static address on the interface the box reaches its network by: Wi-Fi when configured.
        files.append((NETWORK_DIR / WIRED_FILE, render_network(WIRED_MATCH, net, static=not wifi), 0o644))
    if wifi:
        assert net.wifi_ssid is not None and net.wifi_country is not None and passphrase is not None
        files.append((NETWORK_DIR / WIFI_FILE, render_network(WIFI_IFACE, net, static=True), 0o644))
        files.append((WIFI_DIR / WPA_FILE, render_wpa_supplicant(net.wifi_ssid, passphrase, net.wifi_country),
                      0o600))
    if net.ntp:
        files.append((TIMESYNCD_DIR / TIMESYNCD_FILE, render_timesyncd(net.ntp), 0o644))
    written = {f[0] for f in files}
    everything = (NETWORK_DIR / WIRED_FILE, NETWORK_DIR / WIFI_FILE, WIFI_DIR / WPA_FILE,
                  TIMESYNCD_DIR / TIMESYNCD_FILE)
    commands: tuple[tuple[str, ...], ...] = (("hostnamectl", "hostname", hostname_for(hostname)),
                                             ("timedatectl", "set-timezone", timezone))
    if net.ntp:
        # timesyncd starts before sysinit.target, long before this runs: it reads the drop-in
        # when restarted (--no-block: the boot does not wait for it).
        commands += (("systemctl", "try-restart", "--no-block", "systemd-timesyncd.service"),)
    return Plan(tuple(files), tuple(p for p in everything if p not in written), commands)


Runner = Callable[[Sequence[str]], None]


def run_command(argv: Sequence[str]) -> None:
    """Run one system tool; raises OSError/SubprocessError when it is missing or fails."""
    subprocess.run(list(argv), check=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL,
                   capture_output=True)


def apply(p: Plan, root: Path, run: Runner | None = None) -> list[str]:
    """Write ``p``'s files under ``root`` and run its commands; the problems, as warnings.

    Never raises for a failing write or command: the recorder must still start, and a box
    that keeps its previous network settings can still be reached to be fixed."""
    problems: list[str] = []
    for rel, text, mode in p.files:
        path = root / rel
        try:
            path.parent.mkdir(mode=0o700 if mode == 0o600 else 0o755, parents=True, exist_ok=True)
            write_atomic(path, text, mode=mode, dir_fsync=False, tmp=path.with_name(f".{path.name}.new"))
        except OSError as e:
            problems.append(f"could not write {path}: {e.strerror or e}")
    for rel in p.remove:
        try:
            os.unlink(root / rel)
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append(f"could not remove {root / rel}: {e.strerror or e}")
    for argv in p.commands:
        try:
            (run or run_command)(argv)
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", None)
            text = detail.decode("utf-8", "replace").strip() if isinstance(detail, bytes) else ""
            problems.append(f"{' '.join(argv)} failed: {text or e}")
    for problem in problems:
        logger.warning("network settings: %s", problem)
    return problems
