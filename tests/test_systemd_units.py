"""The systemd integration: units verify cleanly, the recorder is locked down, users and dirs come out right."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.glob("*.service"))
HOST_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.0

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not HOST_UNITS.is_dir(),
    reason="systemd-analyze and systemd's unit files are needed (Debian package 'systemd')")


def unit_settings(name: str) -> dict[str, list[str]]:
    """``Section.Key -> [values]`` of a unit file (keys may repeat, unlike INI)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def executables(name: str) -> list[str]:
    return [v.split()[0].lstrip("-@!+:") for k, vs in unit_settings(name).items()
            if k.startswith("Service.Exec") for v in vs]


@pytest.fixture(scope="module")
def target_root(tmp_path_factory) -> Path:
    """A root like the box's: systemd's own units, ours, and the programs ours start.

    ``systemd-analyze verify --root`` then checks our units against real
    dependencies and insists that each ExecStart= program exists there.
    """
    root = tmp_path_factory.mktemp("root")
    units = root / "usr/lib/systemd/system"
    shutil.copytree(HOST_UNITS, units, symlinks=True)
    for name in UNITS:
        shutil.copy(SYSTEMD / name, units / name)
        for exe in executables(name):
            path = root / exe.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("#!/bin/sh\n")
            path.chmod(0o755)
    return root


# --- systemd's own checks ------------------------------------------------------

@needs_systemd
@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_without_a_single_warning(target_root, unit):
    # verify exits 0 on unknown keys and typos; only stderr tells.
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={target_root}", unit],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")


WPA_DROPIN = REPO / "image-build/files/usr/lib/systemd/system/wpa_supplicant@wlan0.service.d/linetap.conf"


@needs_systemd
def test_the_wifi_dropin_verifies_on_debians_wpa_supplicant_unit(target_root, tmp_path):
    """The image's drop-in over the unit Debian bookworm's wpasupplicant 2.10 ships
    (tests/data/wpa_supplicant@.service, copied from the package): it reads the config first
    boot renders under /run, and is skipped when there is none."""
    root = tmp_path / "root"
    shutil.copytree(target_root, root, symlinks=True)
    units = root / "usr/lib/systemd/system"
    shutil.copy(Path(__file__).parent / "data/wpa_supplicant@.service", units)
    (units / "wpa_supplicant@wlan0.service.d").mkdir()
    shutil.copy(WPA_DROPIN, units / "wpa_supplicant@wlan0.service.d/linetap.conf")
    for name in ("sbin/wpa_supplicant", "bin/kill"):  # its ExecStart= and ExecReload= programs
        exe = root / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "wpa_supplicant@wlan0.service"],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    shown = WPA_DROPIN.read_text()
    assert "ExecStart=\nExecStart=/sbin/wpa_supplicant -c/run/linetap-wifi/wpa_supplicant-%I.conf -i%I" in shown
    assert "ConditionPathExists=/run/linetap-wifi/wpa_supplicant-%I.conf" in shown


@needs_systemd
def test_verify_would_catch_a_typo(target_root, tmp_path):
    """The check above is not vacuous: a misspelt key does produce a warning."""
    root = tmp_path / "root"
    shutil.copytree(target_root, root, symlinks=True)
    unit = root / "usr/lib/systemd/system/linetap.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "linetap.service"],
                          capture_output=True, text=True, timeout=60)
    assert "Unknown key 'ProtectSytem'" in proc.stderr


def exposure(unit_path: Path) -> float:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_path)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return float(found.group(1))


@needs_systemd
def test_recorder_exposure_is_at_most_2(target_root):
    assert exposure(target_root / "usr/lib/systemd/system/linetap.service") <= MAX_EXPOSURE


@needs_systemd
def test_firstboot_runs_as_root_but_sandboxed(target_root):
    """It must write the boot partition and /etc/machine-id, so root, but nothing else."""
    assert exposure(target_root / "usr/lib/systemd/system/linetap-firstboot.service") <= 2.5
    assert unit_settings("linetap-firstboot.service")["Service.CapabilityBoundingSet"] == \
        ["CAP_CHOWN CAP_DAC_OVERRIDE"]


@needs_systemd
def test_exposure_would_catch_a_dropped_hardening_line(tmp_path):
    """The bound above is not vacuous: the same unit without its sandbox scores far worse."""
    kept = [line for line in (SYSTEMD / "linetap.service").read_text().splitlines()
            if not line.startswith(("Protect", "Private", "SystemCall", "Restrict", "CapabilityBoundingSet"))]
    unit = tmp_path / "linetap.service"
    unit.write_text("\n".join(kept) + "\n")
    assert exposure(unit) > MAX_EXPOSURE + 2


# --- what the recorder's unit promises --------------------------------------------

RECORDER = unit_settings("linetap.service")


@pytest.mark.parametrize("key, value", [
    ("Service.Type", "notify"),
    ("Service.Restart", "always"),
    ("Service.User", "linetap"),
    ("Service.ProtectSystem", "strict"),
    ("Service.NoNewPrivileges", "yes"),
    ("Service.PrivateTmp", "yes"),
    ("Service.CapabilityBoundingSet", ""),
    ("Service.DevicePolicy", "closed"),
    ("Unit.StartLimitAction", "reboot"),
    ("Service.MemoryHigh", "192M"),
    ("Service.MemoryMax", "256M"),
])
def test_recorder_unit_sets(key, value):
    assert RECORDER[key][-1] == value


def test_recorder_may_write_only_to_the_data_dir():
    assert RECORDER["Service.ReadWritePaths"] == ["/var/lib/linetap"]


def test_recorder_runs_in_the_audio_and_gpio_groups():
    assert RECORDER["Service.SupplementaryGroups"] == ["audio gpio"]


def test_recorder_may_open_only_alsa_and_gpio_devices():
    assert sorted(RECORDER["Service.DeviceAllow"]) == ["char-alsa rw", "char-gpiochip rw"]


def test_recorder_system_calls_are_filtered_to_system_service():
    assert RECORDER["Service.SystemCallFilter"][0] == "@system-service"


def test_recorder_may_read_the_clock_state_but_not_set_the_clock():
    """CLOCK_UNSYNCED comes from a read-only adjtimex(); setting the clock needs CAP_SYS_TIME."""
    allowed = " ".join(RECORDER["Service.SystemCallFilter"][2:]).split()
    assert {"adjtimex", "clock_adjtime"} <= set(allowed)
    assert "Service.ProtectClock" not in RECORDER  # it would deny @clock, adjtimex included
    assert RECORDER["Service.CapabilityBoundingSet"] == [""]


def test_recorder_is_watched_by_systemd():
    assert RECORDER["Service.WatchdogSec"] == ["30s"]


def test_recorder_reads_the_config_that_tmpfiles_links_to_the_data_partition():
    config = RECORDER["Service.ExecStart"][0].split("-c ", 1)[1]
    tmpfiles = (SYSTEMD / "tmpfiles.d/linetap.conf").read_text()
    assert re.search(rf"^L {re.escape(config)}\s+.*/var/lib/linetap/config/linetap.toml$", tmpfiles, re.M)


def test_the_config_is_applied_before_the_recorder_starts():
    assert "linetap-firstboot.service" in RECORDER["Unit.After"]
    before = " ".join(unit_settings("linetap-firstboot.service")["Unit.Before"]).split()
    assert "linetap.service" in before


def test_the_network_settings_are_written_before_networkd_and_wpa_supplicant_read_them():
    unit = unit_settings("linetap-firstboot.service")
    before = " ".join(unit["Unit.Before"]).split()
    assert {"systemd-networkd.service", "wpa_supplicant@wlan0.service"} <= set(before)
    assert "--root /" in unit["Service.ExecStart"][0]
    # May write exactly the runtime directories the daemons read, which tmpfiles makes.
    rw = " ".join(unit["Service.ReadWritePaths"]).split()
    assert {"/run/systemd/network", "/run/systemd/timesyncd.conf.d", "/run/linetap-wifi"} <= set(rw)
    tmpfiles = (SYSTEMD / "tmpfiles.d/linetap.conf").read_text()
    assert re.search(r"^d /run/linetap-wifi\s+0700 root\s+root\s+-$", tmpfiles, re.M)
    for d in ("/run/systemd/network", "/run/systemd/timesyncd.conf.d"):
        assert re.search(rf"^d {re.escape(d)}\s+0755 root\s+root\s+-$", tmpfiles, re.M)


def test_hardware_watchdog_is_within_what_the_pi_can_count():
    text = (SYSTEMD / "system.conf.d/linetap-watchdog.conf").read_text()
    assert int(re.search(r"^RuntimeWatchdogSec=(\d+)$", text, re.M).group(1)) < 15


def test_logs_stay_in_ram():
    assert "Storage=volatile" in (SYSTEMD / "journald.conf.d/linetap.conf").read_text().splitlines()


# --- the web interface's unit ---------------------------------------------------------

WEB = unit_settings("linetap-web.service")


@needs_systemd
def test_web_exposure_is_at_most_2_5(target_root):
    assert exposure(target_root / "usr/lib/systemd/system/linetap-web.service") <= 2.5


def test_web_runs_as_its_own_user_in_the_recorder_group_niced_below_capture():
    assert (WEB["Service.User"], WEB["Service.Group"], WEB["Service.Nice"]) == (["linetap-web"], ["linetap"], ["10"])
    assert int(WEB["Service.Nice"][0]) > int(RECORDER["Service.Nice"][0])


def test_web_may_write_only_the_index_and_its_own_state_never_audio():
    assert WEB["Service.ProtectSystem"] == ["strict"]
    assert WEB["Service.ReadOnlyPaths"] == ["/var/lib/linetap"]
    writable = " ".join(WEB["Service.ReadWritePaths"]).split()
    assert sorted(p.lstrip("-") for p in writable) == [
        "/var/lib/linetap/index.db", "/var/lib/linetap/index.db-shm", "/var/lib/linetap/index.db-wal",
        "/var/lib/linetap/web"]


def test_web_has_no_capabilities_and_no_devices():
    assert (WEB["Service.CapabilityBoundingSet"], WEB["Service.PrivateDevices"],
            WEB["Service.MemoryDenyWriteExecute"]) == ([""], ["yes"], ["yes"])


# --- W^X memory: MemoryDenyWriteExecute=yes must not break the recorder ----------------

MDWE_PROBE = textwrap.dedent("""
    import ctypes, importlib, json, os, pkgutil, sys, tempfile
    if sys.argv[1] == "wx":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            print(json.dumps({"unsupported": os.strerror(ctypes.get_errno())})); sys.exit()
    failed = {}
    def attempt(name, fn):
        try:
            fn()
        except BaseException as e:
            failed[name] = f"{type(e).__name__}: {e}"
    def audio():
        import numpy, soundfile
        with tempfile.TemporaryDirectory() as d:
            soundfile.write(d + "/a.opus", numpy.zeros(8000, "int16"), 8000, format="OGG", subtype="OPUS")
            soundfile.read(d + "/a.opus")
    def crypto():
        import nacl.public
        key = nacl.public.PrivateKey.generate()
        nacl.public.SealedBox(key).decrypt(nacl.public.SealedBox(key.public_key).encrypt(b"x"))
    def cffi_callback():  # the negative control: this must fail under W^X
        import cffi
        cffi.FFI().callback("int(int)", lambda v: v)
    attempt("opus via soundfile", audio)
    attempt("nacl sealed box", crypto)
    attempt("cffi callback", cffi_callback)
    for lib in ("alsaaudio", "gpiozero", "gpiozero.pins.mock", "paho.mqtt.client", "sqlite_utils", "sqlite3"):
        attempt(lib, lambda lib=lib: importlib.import_module(lib))
    import linetap
    for mod in pkgutil.walk_packages(linetap.__path__, "linetap."):
        if not mod.name.endswith("__main__"):  # importing that one runs the command
            attempt(mod.name, lambda n=mod.name: importlib.import_module(n))
    print(json.dumps({"failed": failed}))
""")


def probe(mode: str) -> dict:
    import json
    proc = subprocess.run([sys.executable, "-c", MDWE_PROBE, mode], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_memory_deny_write_execute_breaks_nothing_linetap_loads():
    """The libraries and every linetap module work with W^X memory, as under the unit."""
    assert RECORDER["Service.MemoryDenyWriteExecute"] == ["yes"]
    wx = probe("wx")
    if "unsupported" in wx:
        pytest.skip(f"kernel has no PR_SET_MDWE (Linux >= 6.3) to emulate it: {wx['unsupported']}")
    plain = probe("plain")
    assert "cffi callback" in wx["failed"], "W^X was not in force; the probe proves nothing"
    broken_by_wx = {k: v for k, v in wx["failed"].items() if k not in plain["failed"] and k != "cffi callback"}
    assert broken_by_wx == {}


# --- users and the data partition layout -----------------------------------------------

needs_sysusers = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers and systemd-tmpfiles are needed (Debian package 'systemd')")


@pytest.fixture
def provisioned_root(tmp_path) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path / "root"
    for sub, src in [("usr/lib/sysusers.d", "sysusers.d/linetap.conf"),
                     ("usr/lib/tmpfiles.d", "tmpfiles.d/linetap.conf")]:
        (root / sub).mkdir(parents=True)
        shutil.copy(SYSTEMD / src, root / sub)
    (root / "usr/share/linetap").mkdir(parents=True)
    shutil.copy(REPO / "firmware/linetap/data/box.toml", root / "usr/share/linetap/linetap.toml")
    (root / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={root}"], check=True, capture_output=True, timeout=60)
    tmpfiles = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create"],
                              capture_output=True, text=True, timeout=60)
    return root, tmpfiles


def passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":")
    raise AssertionError(f"no user {name}")


def group_members(root: Path, name: str) -> list[str]:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[3].split(",")
    raise AssertionError(f"no group {name}")


@needs_sysusers
def test_sysusers_creates_linetap_with_its_fixed_uid(provisioned_root):
    root, _ = provisioned_root
    entry = passwd_entry(root, "linetap")
    assert (entry[2], entry[3], entry[6]) == ("470", "470", "/usr/sbin/nologin")


@needs_sysusers
def test_linetap_is_in_the_audio_and_gpio_groups(provisioned_root):
    root, _ = provisioned_root
    assert "linetap" in group_members(root, "audio") and "linetap" in group_members(root, "gpio")


@needs_sysusers
def test_the_web_user_is_its_own_in_the_recorder_group(provisioned_root):
    root, _ = provisioned_root
    entry = passwd_entry(root, "linetap-web")
    assert (entry[2], entry[3], entry[6]) == ("471", "470", "/usr/sbin/nologin")


@needs_sysusers
def test_the_web_state_directory_is_the_web_user_s(provisioned_root):
    root, _ = provisioned_root
    st = (root / "var/lib/linetap/web").stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o750", 471, 470)


@needs_sysusers
def test_tmpfiles_lays_out_the_data_partition_without_complaint(provisioned_root):
    root, tmpfiles = provisioned_root
    assert (tmpfiles.returncode, tmpfiles.stderr) == (0, "")
    data = root / "var/lib/linetap"
    st = data.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o1770", 0, 470)
    config = data / "config/linetap.toml"
    assert config.read_text() == (REPO / "firmware/linetap/data/box.toml").read_text()
    assert (oct(config.stat().st_mode & 0o777), config.stat().st_gid) == ("0o640", 470)
    assert os.readlink(root / "etc/linetap/linetap.toml") == "/var/lib/linetap/config/linetap.toml"
