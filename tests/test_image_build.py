"""The SD-card image: assembled without root or loop devices, and checked without mounting it.

The assembly stage runs on a small stand-in root filesystem (a few files where
Debian and the venv would be); the image is then read back with the same
tools an installer's PC would never need: sfdisk --json, mtools, debugfs.
The arm64 root filesystem stage needs qemu-user in binfmt_misc and a network;
it runs only where both are available and asked for.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "image-build/build.sh"
BOX_TOML = (REPO / "firmware/linetap/data/box.toml").read_text()
EX_UNAVAILABLE = 69
MIB = 1024 * 1024
SECTOR = 512

TOOLS = {"fakeroot": "fakeroot", "sfdisk": "fdisk", "mkfs.vfat": "dosfstools", "mcopy": "mtools",
         "mdir": "mtools", "mtype": "mtools", "minfo": "mtools", "mkfs.ext4": "e2fsprogs",
         "debugfs": "e2fsprogs", "systemd-sysusers": "systemd", "systemd-tmpfiles": "systemd",
         "systemctl": "systemd"}
MISSING = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"image tools missing: apt-get install {' '.join(MISSING)}")

UNITS = ["linetap.service", "linetap-firstboot.service", "linetap-grow-data.service", "linetap-web.service"]


def standin_rootfs(path: Path) -> Path:
    """A tarball shaped like the rootfs stage's output, a few files instead of Debian."""
    now = int(time.time())

    def add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = now
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        else:
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        for d in ["etc", "usr", "usr/lib", "usr/lib/systemd", "usr/lib/systemd/system", "boot", "boot/firmware",
                  "boot/firmware/overlays", "var", "var/lib", "var/lib/linetap", "opt", "opt/linetap",
                  "opt/linetap/venv", "opt/linetap/venv/bin"]:
            add(tar, d)
        add(tar, "etc/os-release", b"ID=standin\n")
        add(tar, "boot/firmware/config.txt", b"arm_64bit=1\n")
        add(tar, "boot/firmware/cmdline.txt", b"console=tty0 root=LABEL=linetap-root rw rootwait ro\n")
        add(tar, "boot/firmware/start4.elf", bytes(range(256)) * 64)
        add(tar, "boot/firmware/overlays/README", b"overlays\n")
        add(tar, "opt/linetap/venv/bin/linetap", b"#!/bin/sh\n", 0o755)
        add(tar, "opt/linetap/venv/bin/python", b"#!/bin/sh\n", 0o755)
    return path


def assemble(tmp: Path, **sizes_mb: int) -> subprocess.CompletedProcess:
    env = {**os.environ, **{f"{k.upper()}_MB": str(v) for k, v in sizes_mb.items()}}
    return subprocess.run([str(BUILD), "assemble", "--out", str(tmp / "out"), str(standin_rootfs(tmp / "root.tar")),
                           str(tmp / "linetap.img")], capture_output=True, text=True, env=env, timeout=120)


class Image:
    """Read-only views into an image file, without mounting anything."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = json.loads(run("sfdisk", "--json", str(path)))["partitiontable"]
        self.parts = self.table["partitions"]

    def offset(self, n: int) -> int:
        return self.parts[n - 1]["start"] * SECTOR

    # boot partition (FAT)
    def fat(self, *args: str) -> str:
        return run(*args[:1], "-i", f"{self.path}@@{self.offset(1)}", *args[1:], env={"MTOOLS_SKIP_CHECK": "1"})

    def fat_bytes(self, name: str) -> bytes:
        proc = subprocess.run(["mtype", "-i", f"{self.path}@@{self.offset(1)}", name], capture_output=True,
                              timeout=60, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def boot_names(self) -> set[str]:
        return set(self.fat("mdir", "-b", "-/", "::/").split())

    # ext4 partitions
    def debugfs(self, n: int, request: str) -> str:
        return run("debugfs", "-R", request, f"{self.path}?offset={self.offset(n)}")

    def stat(self, n: int, path: str) -> dict[str, str]:
        out = self.debugfs(n, f"stat {path}")
        assert "File not found" not in out, f"{path}: not on partition {n}"
        found = re.search(r"Type: (\S+)\s+Mode:\s+(\d+).*?User:\s+(\d+)\s+Group:\s+(\d+)", out, re.S)
        link = re.search(r'Fast link dest: "([^"]*)"', out)
        return {"type": found.group(1), "mode": found.group(2), "uid": found.group(3), "gid": found.group(4),
                "link": link.group(1) if link else ""}

    def cat(self, n: int, path: str) -> str:
        return self.debugfs(n, f"cat {path}")

    def names(self, n: int, path: str) -> set[str]:
        out = self.debugfs(n, f"ls {path}")
        return {name for name in re.findall(r"\(\d+\)\s+(\S+)", out)} - {".", ".."}

    def label(self, n: int) -> str:
        return re.search(r"Filesystem volume name:\s+(\S+)", self.debugfs(n, "stats")).group(1)


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    tmp = tmp_path_factory.mktemp("image")
    proc = assemble(tmp, boot=64, root=64, data=32)
    assert proc.returncode == 0, proc.stderr
    assert not list((tmp / "out").glob("assemble.*")), "the work directory was left behind"
    return Image(tmp / "linetap.img")


# --- partition table --------------------------------------------------------------------------

def test_image_has_an_mbr_with_boot_root_and_data(image):
    assert image.table["label"] == "dos"
    assert [(p["type"], p["size"] * SECTOR // MIB) for p in image.parts] == [("c", 64), ("83", 64), ("83", 32)]


def test_only_the_boot_partition_is_bootable(image):
    assert [p.get("bootable", False) for p in image.parts] == [True, False, False]


def test_partitions_start_on_4_mib_boundaries_and_do_not_overlap(image):
    assert all(p["start"] * SECTOR % (4 * MIB) == 0 for p in image.parts)
    ends = [p["start"] + p["size"] for p in image.parts]
    assert all(end <= nxt["start"] for end, nxt in zip(ends, image.parts[1:]))


def test_data_partition_is_last_so_it_can_grow_to_fill_the_card(image):
    assert image.parts[-1]["start"] + image.parts[-1]["size"] == image.path.stat().st_size // SECTOR


# --- boot partition ------------------------------------------------------------------------------

def test_boot_partition_is_fat32_labelled_ltboot(image):
    info = image.fat("minfo", "::")
    assert 'disk type="FAT32   "' in info and 'disk label="LTBOOT     "' in info


def test_boot_partition_carries_the_firmware_files(image):
    names = image.boot_names()
    assert {"::/config.txt", "::/cmdline.txt", "::/start4.elf", "::/overlays/README"} <= names
    assert image.fat_bytes("::/start4.elf") == bytes(range(256)) * 64
    assert image.fat("mtype", "::/overlays/README") == "overlays\n"


def test_boot_partition_offers_linetap_toml_to_edit_and_an_example(image):
    assert image.fat("mtype", "::/linetap.toml") == BOX_TOML
    assert image.fat("mtype", "::/linetap.toml.example") == BOX_TOML


def test_fstab_mounts_the_partitions_by_the_labels_they_carry(image):
    fstab = image.cat(2, "/etc/fstab")
    boot_label = re.search(r'disk label="(\S+)\s*"', image.fat("minfo", "::")).group(1)
    assert re.search(rf"^LABEL={boot_label}\s+/boot/firmware\s+vfat\s", fstab, re.M)
    assert re.search(rf"^LABEL={image.label(2)}\s+/\s+ext4\s+ro,", fstab, re.M)
    assert re.search(rf"^LABEL={image.label(3)}\s+/var/lib/linetap\s+ext4\s+\S*noatime", fstab, re.M)


def test_saved_clock_and_mixer_state_live_on_the_data_partition(image):
    """The RAM overlay forgets /var/lib: timesyncd's saved clock must survive, or time restarts at the build date."""
    fstab = image.cat(2, "/etc/fstab")
    for state, kept in [("/var/lib/systemd/timesync", "system/timesync"), ("/var/lib/alsa", "system/alsa")]:
        assert re.search(rf"^/var/lib/linetap/{kept}\s+{state}\s+none\s+bind,x-systemd.requires-mounts-for="
                         r"/var/lib/linetap\s", fstab, re.M), state


# --- root partition ------------------------------------------------------------------------------

def test_root_has_the_linetap_user_from_sysusers(image):
    assert "linetap:x:470:470:linetap call recorder:/var/lib/linetap:/usr/sbin/nologin" in \
        image.cat(2, "/etc/passwd").splitlines()


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_installed_and_enabled(image, unit):
    assert image.stat(2, f"/usr/lib/systemd/system/{unit}")["type"] == "regular"
    link = image.stat(2, f"/etc/systemd/system/multi-user.target.wants/{unit}")
    assert (link["type"], link["link"]) == ("symlink", f"/usr/lib/systemd/system/{unit}")


def test_root_files_belong_to_root_though_no_one_built_it_as_root(image):
    for path in ["/etc/passwd", "/usr/lib/systemd/system/linetap.service", "/opt/linetap/venv/bin/linetap"]:
        st = image.stat(2, path)
        assert (st["uid"], st["gid"]) == ("0", "0"), path


def test_the_venv_from_the_rootfs_stage_is_kept_executable(image):
    assert image.stat(2, "/opt/linetap/venv/bin/linetap")["mode"] == "0755"


def test_the_recorders_config_path_leads_onto_the_data_partition(image):
    assert image.stat(2, "/etc/linetap/linetap.toml")["link"] == "/var/lib/linetap/config/linetap.toml"


def test_mount_points_on_the_root_are_empty(image):
    assert image.names(2, "/boot/firmware") == set()
    assert image.names(2, "/var/lib/linetap") == set()


def test_root_is_read_only_with_a_ram_overlay(image):
    assert 'overlayroot="tmpfs:recurse=0"' in image.cat(2, "/etc/overlayroot.local.conf")


def test_machine_id_is_left_for_the_box_to_make(image):
    st = image.debugfs(2, "stat /etc/machine-id")
    assert re.search(r"Size: 0\b", st)


@pytest.mark.parametrize("path", [
    "/usr/lib/udev/rules.d/70-linetap-sound.rules",
    "/usr/lib/udev/rules.d/60-linetap-gpio.rules",
    "/usr/lib/systemd/journald.conf.d/linetap.conf",
    "/usr/lib/systemd/system.conf.d/linetap-watchdog.conf",
    "/usr/lib/sysusers.d/linetap.conf",
    "/usr/lib/tmpfiles.d/linetap.conf",
    "/usr/lib/systemd/system/wpa_supplicant@wlan0.service.d/linetap.conf",
    "/usr/share/linetap/linetap.toml",
    "/etc/default/raspi-firmware-custom",
])
def test_system_integration_files_are_installed(image, path):
    assert image.stat(2, path)["type"] == "regular"


def test_grow_data_helper_is_executable(image):
    assert image.stat(2, "/usr/libexec/linetap/grow-data")["mode"] == "0755"


# --- data partition ------------------------------------------------------------------------------

def test_data_partition_top_is_roots_sticky_and_shared_with_the_linetap_group(image):
    st = image.stat(3, "/")
    assert (st["mode"], st["uid"], st["gid"]) == ("01770", "0", "470")


def test_data_partition_starts_with_the_factory_config(image):
    assert image.cat(3, "/config/linetap.toml") == BOX_TOML
    st = image.stat(3, "/config/linetap.toml")
    assert (st["mode"], st["uid"], st["gid"]) == ("0640", "0", "470")


def test_data_partition_has_room_for_the_state_that_outlives_the_ram_root(image):
    assert {"timesync", "alsa"} <= image.names(3, "/system")


def test_filesystems_are_clean(image):
    for n in (2, 3):
        proc = subprocess.run(["e2fsck", "-fn", f"{image.path}?offset={image.offset(n)}"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout


# --- sizes and failures ----------------------------------------------------------------------------

def test_default_256_mib_boot_partition_is_a_fat32_that_mcopy_can_fill(tmp_path):
    proc = assemble(tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = Image(tmp_path / "linetap.img")
    assert image.parts[0]["size"] * SECTOR == 256 * MIB
    assert 'disk type="FAT32   "' in image.fat("minfo", "::")
    assert "::/linetap.toml" in image.boot_names()


def test_a_missing_rootfs_is_reported_plainly(tmp_path):
    proc = subprocess.run([str(BUILD), "assemble", "--out", str(tmp_path), str(tmp_path / "nope.tar")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"no such root filesystem: {tmp_path / 'nope.tar'}" in proc.stderr


# --- the arm64 root filesystem stage ------------------------------------------------------------------

def arm64_runnable() -> tuple[bool, str]:
    if shutil.which("arch-test") is None:
        return False, "arch-test is missing (apt-get install arch-test)"
    proc = subprocess.run(["arch-test", "arm64"], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0, proc.stdout.strip() or proc.stderr.strip()


def stub(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def test_rootfs_stage_says_clearly_when_arm64_cannot_run_here(tmp_path):
    """An amd64 host without qemu in binfmt_misc, as arch-test reports it there (stubbed, so this
    runs on every machine; the stubbed mmdebstrap fails the test if the stage gets that far)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "dpkg", 'echo amd64')
    stub(bin_dir, "arch-test", 'echo "arm64: not supported on this machine/kernel"; exit 2')
    stub(bin_dir, "mmdebstrap", 'echo "mmdebstrap must not run" >&2; exit 99')
    proc = subprocess.run([str(BUILD), "rootfs", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == EX_UNAVAILABLE, proc.stderr
    assert "cannot execute arm64 binaries (arm64: not supported on this machine/kernel)" in proc.stderr
    assert "apt-get install qemu-user-static binfmt-support" in proc.stderr
    assert "update-binfmts --enable qemu-aarch64" in proc.stderr
    assert "Traceback" not in proc.stderr and "mmdebstrap must not run" not in proc.stderr
    assert not (tmp_path / "out/rootfs.tar").exists()


def test_rootfs_stage_names_the_package_of_a_missing_tool(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir", "sed", "printf", "dpkg", "uname"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(["bash", str(BUILD), "rootfs", "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == EX_UNAVAILABLE, proc.stderr
    assert proc.stderr.strip() == ("build.sh: cannot run here: 'mmdebstrap' is missing; install the Debian "
                                   "package 'mmdebstrap' (apt-get install mmdebstrap)")


def test_rootfs_stage_builds_a_bootable_arm64_image(tmp_path):
    """The whole pipeline for real: Debian arm64, the venv, then the image (30-60 min, ~600 MB download).

    ``LINETAP_TEST_IMAGE=path/linetap.img`` checks an image ``build.sh all`` made earlier instead.
    """
    prebuilt = os.environ.get("LINETAP_TEST_IMAGE")
    if prebuilt:
        image = Image(Path(prebuilt))
    else:
        runnable, why = arm64_runnable()
        if not runnable:
            pytest.skip(f"no arm64 emulation here ({why}); needs qemu-user-static registered in binfmt_misc")
        if os.environ.get("LINETAP_TEST_ROOTFS") != "1":
            pytest.skip("set LINETAP_TEST_ROOTFS=1 to build the real arm64 root filesystem (slow, downloads "
                        "Debian), or LINETAP_TEST_IMAGE to check one built before")
        proc = subprocess.run([str(BUILD), "all", "--out", str(tmp_path)], capture_output=True, text=True,
                              timeout=3 * 3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        image = Image(tmp_path / "linetap.img")
    names = image.boot_names()
    assert any(n.startswith("::/vmlinuz-") for n in names) and any(n.startswith("::/initrd.img-") for n in names)
    assert "dtparam=watchdog=on" in image.fat("mtype", "::/config.txt")
    assert "root=LABEL=linetap-root" in image.fat("mtype", "::/cmdline.txt")
    assert image.stat(2, "/opt/linetap/venv/bin/linetap")["type"] == "regular"
    assert image.stat(2, "/usr/sbin/overlayroot-chroot")["type"] == "regular"
    assert image.stat(2, "/usr/bin/growpart")["type"] == "regular"
    for wanted in ["sysinit.target.wants/systemd-timesyncd.service", "multi-user.target.wants/linetap.service",
                   "multi-user.target.wants/linetap-firstboot.service"]:
        assert image.stat(2, f"/etc/systemd/system/{wanted}")["type"] == "symlink", wanted
