#!/bin/bash
# linetap SD-card image builder (Raspberry Pi 3/4, arm64, Debian 12).
#
#   image-build/build.sh rootfs   [--out DIR]                       Debian arm64 root + linetap venv -> DIR/rootfs.tar
#   image-build/build.sh assemble [--out DIR] ROOTFS [IMAGE]        rootfs dir or tar -> DIR/linetap.img
#   image-build/build.sh all      [--out DIR]                       both
#
# "assemble" needs neither root nor loop devices: sfdisk writes the partition
# table into the image file, mkfs.vfat --offset and mcopy fill the boot
# partition in place, and mkfs.ext4 -E offset= -d fills root and data, all
# under fakeroot so file ownership comes out right. Details: image-build/README.md.
set -euo pipefail
umask 022   # image file modes must not depend on the builder's umask

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")

OUT=${OUT:-$REPO/build/image}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BOOT_MB=${BOOT_MB:-256}   # FAT32 boot partition: firmware, kernel, initrd, linetap.toml
ROOT_MB=${ROOT_MB:-0}     # 0 = fit the root filesystem plus headroom
DATA_MB=${DATA_MB:-256}   # grows to fill the SD card at first boot (linetap-grow-data.service)
ALIGN_MB=4                # partitions start on SD-card erase-block boundaries
# Exit status for "cannot run here" (a missing tool or no arm64 emulation):
# tests and CI tell it apart from a failed build.
EX_UNAVAILABLE=69

BOOT_LABEL=LTBOOT
ROOT_LABEL=linetap-root
DATA_LABEL=linetap-data
UNITS=(linetap.service linetap-firstboot.service linetap-grow-data.service linetap-web.service)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# Run a chatty tool; show what it said only when it fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "failed: $*"
    fi
}
unavailable() { log "cannot run here: $*"; exit "$EX_UNAVAILABLE"; }

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

# need PACKAGE TOOL... : every tool must be on PATH (sbin included).
need() {
    local pkg=$1 tool; shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 \
            || unavailable "'$tool' is missing; install the Debian package '$pkg' (apt-get install $pkg)"
    done
}

# --- stage: rootfs -------------------------------------------------------------

# The package names in list files (comments and blank lines dropped), space-separated.
package_list() {
    sed 's/#.*//' "$@" | tr -s ' \t\n' ' ' | sed 's/^ //; s/ $//'
}

# Can this machine run arm64 binaries (natively, or via qemu-user in binfmt_misc)?
check_arm64() {
    [ "$(dpkg --print-architecture 2>/dev/null || uname -m)" = arm64 ] && return 0
    need arch-test arch-test
    local why
    if why=$(arch-test arm64 2>&1); then return 0; fi
    unavailable "this $(uname -m) machine cannot execute arm64 binaries ($why).
  mmdebstrap runs the arm64 packages' maintainer scripts, so it needs qemu-user
  registered with the kernel's binfmt_misc. On a Debian/Ubuntu build host:
      apt-get install qemu-user-static binfmt-support
      mount | grep -q binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
      update-binfmts --enable qemu-aarch64
  In a container, binfmt_misc belongs to the host: register it there (or run the
  container --privileged after doing the above). Then 'arch-test arm64' says ok."
}

# Python packages the venv takes from Debian (system site packages) rather
# than from PyPI: the compiled ones, built and security-maintained by Debian.
DEBIAN_PYTHON="numpy soundfile pynacl"
# linetap's requirements with no arm64 wheel on PyPI: fetched as source and
# compiled inside the chroot (with packages-build-only.txt, purged afterwards).
SOURCE_ONLY="pyalsaaudio"
# Not a linetap requirement, but gpiozero's pin factory on Debian's kernel.
EXTRA_PYTHON="lgpio"

# Build linetap's wheel and fetch, on this host, every Python package the
# arm64 venv needs from PyPI, into $1. The chroot then installs offline: no
# network or DNS inside it, and this host's pip settings (index, proxy, CA)
# apply as they do to any other pip download here.
fetch_python_packages() {
    local dir=$1
    rm -rf "$dir"
    mkdir -p "$dir"
    log "building the linetap wheel"
    quiet python3 -m pip wheel --no-deps --wheel-dir "$dir" "$REPO"
    local wheel
    wheel=$(find "$dir" -name 'linetap-*.whl' | head -n1)
    [ -n "$wheel" ] || die "no linetap wheel in $dir"

    local reqs binary=() source=() req name
    reqs=$(python3 - "$wheel" <<'PY'
import re, sys, zipfile
from email.parser import HeaderParser
with zipfile.ZipFile(sys.argv[1]) as whl:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    for req in HeaderParser().parsestr(whl.read(meta).decode()).get_all("Requires-Dist") or []:
        if "extra ==" not in req:
            print(req.split(";")[0].replace(" ", ""))
PY
)
    for req in $reqs; do
        name=$(echo "${req%%[<>=!~]*}" | tr 'A-Z_.' 'a-z--')
        case " $DEBIAN_PYTHON " in *" $name "*) continue ;; esac
        case " $SOURCE_ONLY " in *" $name "*) source+=("$req") ;; *) binary+=("$req") ;; esac
    done
    log "fetching from PyPI for the arm64 venv: ${binary[*]} $EXTRA_PYTHON ${source[*]}"
    # setuptools and wheel: to build the source-only packages offline.
    quiet python3 -m pip download --dest "$dir" --only-binary=:all: \
        --platform manylinux_2_36_aarch64 --platform manylinux_2_34_aarch64 \
        --platform manylinux2014_aarch64 --platform linux_aarch64 \
        --python-version 3.11 --implementation cp \
        "${binary[@]}" $EXTRA_PYTHON setuptools wheel
    if [ ${#source[@]} -gt 0 ]; then
        quiet python3 -m pip download --dest "$dir" --no-deps --no-binary=:all: "${source[@]}"
    fi
}

stage_rootfs() {
    need mmdebstrap mmdebstrap
    # First the one thing no apt-get can fix inside a container.
    check_arm64
    need python3 python3
    python3 -m pip --version >/dev/null 2>&1 || unavailable "pip is missing; install the Debian package 'python3-pip'"
    mkdir -p "$OUT"

    local wheels=$OUT/wheels
    fetch_python_packages "$wheels"
    local packages build_only
    packages=$(package_list "$HERE/packages.txt" "$HERE/packages-build-only.txt")
    build_only=$(package_list "$HERE/packages-build-only.txt")

    # Commands in the chroot get a clean environment: this host's PIP_* and
    # similar variables describe this host, not the image.
    local in_root='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8'

    log "debootstrapping Debian $SUITE arm64 (this takes a while under qemu)"
    # The essential hook puts the raspi-firmware settings in place before the
    # kernel package's hooks write config.txt and cmdline.txt from them;
    # /etc/default/raspi-firmware is also the package's conffile, so dpkg is
    # told to keep ours instead of stopping at its "modified conffile" prompt.
    # The venv is installed offline from what fetch_python_packages got.
    # systemd-resolved's stub is the box's resolver. The last customize hooks
    # check that the boot files came out as intended.
    mmdebstrap \
        --arch=arm64 --variant=minbase \
        --components="main non-free-firmware" \
        --include="${packages// /,}" \
        --dpkgopt=force-confold --dpkgopt=force-confdef \
        --essential-hook="mkdir -p \"\$1/etc/default\"" \
        --essential-hook="cp '$HERE/files/etc/default/raspi-firmware' '$HERE/files/etc/default/raspi-extra-cmdline' \"\$1/etc/default/\"" \
        --essential-hook="cp '$REPO/hw/config.txt' \"\$1/etc/default/raspi-firmware-custom\"" \
        --customize-hook="cp -R '$wheels' \"\$1/tmp/linetap-wheels\"" \
        --customize-hook="$in_root python3 -m venv --system-site-packages /opt/linetap/venv" \
        --customize-hook="$in_root /opt/linetap/venv/bin/pip install --no-index --find-links=/tmp/linetap-wheels --no-cache-dir --disable-pip-version-check linetap $EXTRA_PYTHON" \
        --customize-hook="$in_root apt-get purge --yes --autoremove $build_only" \
        --customize-hook="$in_root systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service wpa_supplicant@wlan0.service" \
        --customize-hook="rm -rf \"\$1/tmp/linetap-wheels\"" \
        --customize-hook="ln -sfn ../run/systemd/resolve/stub-resolv.conf \"\$1/etc/resolv.conf\"" \
        --customize-hook="touch \"\$1/usr/lib/clock-epoch\"" \
        --customize-hook="grep -q 'root=LABEL=$ROOT_LABEL .* ro\\b' \"\$1/boot/firmware/cmdline.txt\" || { echo 'cmdline.txt lacks root=LABEL=$ROOT_LABEL ... ro' >&2; exit 1; }" \
        --customize-hook="grep -qx 'dtparam=watchdog=on' \"\$1/boot/firmware/config.txt\" || { echo 'config.txt lacks the watchdog' >&2; exit 1; }" \
        --customize-hook="mkdir \"\$1/tmp/linetap-check\" && $in_root sh -c 'cd /tmp/linetap-check && /opt/linetap/venv/bin/python -c \"import linetap, alsaaudio, gpiozero, lgpio, numpy, soundfile, nacl, paho.mqtt.client, sqlite_utils\"' && rm -rf \"\$1/tmp/linetap-check\"" \
        "$SUITE" "$OUT/rootfs.tar" "$MIRROR"
    log "root filesystem: $OUT/rootfs.tar"
}

# --- stage: assemble -------------------------------------------------------------

stage_assemble() {
    local rootfs=${1:-} image=${2:-$OUT/linetap.img}
    [ -n "$rootfs" ] || die "assemble needs a root filesystem (a directory or a .tar)"
    [ -e "$rootfs" ] || die "no such root filesystem: $rootfs"
    need fakeroot fakeroot
    need fdisk sfdisk
    need dosfstools mkfs.vfat
    need mtools mcopy mmd
    need e2fsprogs mkfs.ext4 debugfs
    need systemd systemd-sysusers systemd-tmpfiles systemctl
    mkdir -p "$OUT" "$(dirname "$image")"
    rootfs=$(readlink -f "$rootfs")
    image=$(readlink -f "$(dirname "$image")")/$(basename "$image")
    # One fakeroot session for everything that owns files: unpacking,
    # sysusers/tmpfiles/systemctl, and mkfs.ext4 reading the tree back.
    fakeroot -- "$BASH" "${BASH_SOURCE[0]}" _assemble --out "$OUT" "$rootfs" "$image"
}

# Put linetap's system integration into a root filesystem tree. Idempotent.
install_linetap() {
    local root=$1
    install -d "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
        "$root/usr/lib/systemd/journald.conf.d" "$root/usr/lib/systemd/system.conf.d" \
        "$root/usr/lib/udev/rules.d" "$root/usr/share/linetap" "$root/etc/default" \
        "$root/boot/firmware" "$root/var/lib/linetap"
    install -m 0644 "$REPO"/systemd/*.service "$root/usr/lib/systemd/system/"
    install -m 0644 "$REPO"/systemd/sysusers.d/*.conf "$root/usr/lib/sysusers.d/"
    install -m 0644 "$REPO"/systemd/tmpfiles.d/*.conf "$root/usr/lib/tmpfiles.d/"
    install -m 0644 "$REPO"/systemd/journald.conf.d/*.conf "$root/usr/lib/systemd/journald.conf.d/"
    install -m 0644 "$REPO"/systemd/system.conf.d/*.conf "$root/usr/lib/systemd/system.conf.d/"
    install -m 0644 "$REPO"/hw/udev/*.rules "$root/usr/lib/udev/rules.d/"
    install -m 0644 "$REPO/hw/config.txt" "$root/etc/default/raspi-firmware-custom"
    install -m 0644 "$REPO/firmware/linetap/data/box.toml" "$root/usr/share/linetap/linetap.toml"
    # fstab, overlayroot, raspi-firmware settings, network, grow-data helper
    # Modes are set here, not taken from the checkout: a clone made under a
    # umask of 027 would otherwise leave the helper unreadable to others.
    local f rel
    while IFS= read -r -d '' f; do
        rel=${f#"$HERE/files/"}
        if [ -x "$f" ]; then install -D -m 0755 "$f" "$root/$rel"
        else install -D -m 0644 "$f" "$root/$rel"; fi
    done < <(find "$HERE/files" -type f -print0)

    quiet systemd-sysusers --root="$root"
    # tmpfiles.d lays out the data partition (under var/lib/linetap, split off
    # below) and links /etc/linetap/linetap.toml to it: one description for the
    # image and for a box repairing itself at boot.
    quiet systemd-tmpfiles --root="$root" --create
    quiet systemctl --root="$root" enable "${UNITS[@]}"
    # Empty, not "uninitialized": the RAM overlay makes every boot look like the
    # first; systemd then makes a transient id and linetap-firstboot puts the
    # one saved on the data partition back.
    : > "$root/etc/machine-id"
}

# Largest FAT32 cluster (≤ 4 KiB) that still leaves FAT32's minimum of 65525
# clusters, with margin for the FATs themselves.
fat_sectors_per_cluster() {
    local sectors=$1 spc=8
    while [ "$spc" -gt 1 ] && [ $((sectors / spc)) -lt 70000 ]; do spc=$((spc / 2)); done
    echo "$spc"
}

_assemble() {
    local rootfs=$1 image=$2
    local work
    work=$(mktemp -d "$OUT/assemble.XXXXXX")
    ASSEMBLE_WORK=$work
    trap 'rm -rf "$ASSEMBLE_WORK"' EXIT
    local root=$work/root boot=$work/boot data=$work/data
    mkdir -p "$root"

    log "unpacking $rootfs"
    if [ -d "$rootfs" ]; then
        tar -C "$rootfs" --numeric-owner -cf - . | tar -C "$root" --numeric-owner -xpf -
    else
        tar -C "$root" --numeric-owner -xpf "$rootfs"
    fi

    log "installing linetap's units, users, udev rules and settings"
    install_linetap "$root"

    # Split the tree into the three partitions: what is mounted over
    # /boot/firmware and /var/lib/linetap on the box leaves the root.
    mv "$root/boot/firmware" "$boot"
    install -d -m 0755 "$root/boot/firmware"
    mv "$root/var/lib/linetap" "$data"
    install -d -m 0755 "$root/var/lib/linetap"
    # For the installer: the config to edit before the first boot (applied and
    # removed from the card then), and a copy to start from later.
    cp "$REPO/firmware/linetap/data/box.toml" "$boot/linetap.toml"
    cp "$REPO/firmware/linetap/data/box.toml" "$boot/linetap.toml.example"

    local mib=$((1024 * 1024)) sector=512
    local boot_mb=$BOOT_MB data_mb=$DATA_MB root_mb=$ROOT_MB
    if [ "$root_mb" -eq 0 ]; then
        local used_kb
        used_kb=$(du -sk --apparent-size "$root" | cut -f1)
        # ext4 metadata, inode tables and some room; rounded to the alignment.
        root_mb=$(( (used_kb * 13 / 10 / 1024 + 64 + ALIGN_MB - 1) / ALIGN_MB * ALIGN_MB ))
    fi
    local boot_start=$((ALIGN_MB * mib / sector))
    local boot_size=$((boot_mb * mib / sector))
    local root_start=$((boot_start + boot_size)) root_size=$((root_mb * mib / sector))
    local data_start=$((root_start + root_size)) data_size=$((data_mb * mib / sector))
    local total=$(( (data_start + data_size) * sector ))

    log "image $image: boot ${boot_mb} MiB, root ${root_mb} MiB, data ${data_mb} MiB"
    rm -f "$image"
    truncate -s "$total" "$image"
    sfdisk --quiet "$image" <<EOF
label: dos
unit: sectors
start=$boot_start, size=$boot_size, type=c, bootable
start=$root_start, size=$root_size, type=83
start=$data_start, size=$data_size, type=83
EOF

    log "boot partition (FAT32)"
    quiet mkfs.vfat -F 32 -s "$(fat_sectors_per_cluster "$boot_size")" -n "$BOOT_LABEL" \
        --offset "$boot_start" "$image" $((boot_size * sector / 1024))
    local fat="$image@@$((boot_start * sector))"
    export MTOOLS_SKIP_CHECK=1
    if [ -n "$(ls -A "$boot")" ]; then
        # -s recursive, -p keep attributes, -m keep times, -Q stop on the first error
        (cd "$boot" && mcopy -i "$fat" -s -p -m -Q -- * "::/")
    fi

    log "data partition (ext4)"
    # mkfs.ext4 -d fills the filesystem with the directory's contents but not
    # with the directory's own owner and mode; those are the top of the data
    # partition (root:linetap, sticky, see systemd/tmpfiles.d/linetap.conf).
    local data_owner data_mode
    data_owner=$(stat -c %u:%g "$data")
    data_mode=$(stat -c %a "$data")
    mkfs.ext4 -q -F -L "$DATA_LABEL" -m 1 -d "$data" -E "offset=$((data_start * sector)),root_owner=$data_owner" \
        "$image" $((data_size * sector / 1024))k
    quiet debugfs -w -R "set_inode_field / mode 04$data_mode" "$image?offset=$((data_start * sector))"
    log "root partition (ext4)"
    mkfs.ext4 -q -F -L "$ROOT_LABEL" -m 0 -d "$root" \
        -E "offset=$((root_start * sector))" "$image" $((root_size * sector / 1024))k

    log "done: $image ($((total / mib)) MiB)"
}

# --- main ----------------------------------------------------------------------------

main() {
    local stage=${1:-}
    [ -n "$stage" ] || usage 2
    shift
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --out) OUT=$2; shift 2 ;;
            --out=*) OUT=${1#--out=}; shift ;;
            -h|--help) usage 0 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
    case $stage in
        rootfs) stage_rootfs ;;
        assemble) stage_assemble "${args[@]}" ;;
        all) stage_rootfs; stage_assemble "$OUT/rootfs.tar" "$OUT/linetap.img" ;;
        _assemble) _assemble "${args[@]}" ;;
        -h|--help|help) usage 0 ;;
        *) log "unknown stage '$stage'"; usage 2 ;;
    esac
}

main "$@"
