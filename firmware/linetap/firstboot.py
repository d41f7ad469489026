"""Apply a ``linetap.toml`` that an installer put on the boot partition.

The box's root filesystem is read-only and its config lives on the data
partition, which other computers cannot open. The boot partition is FAT, which
every computer can: an installer puts ``linetap.toml`` there with any text
editor, and at the next boot (``linetap-firstboot.service``, before the
recorder) this module

- validates it completely (``linetap.config``) plus the rules of the box
  (the data dir must be the data partition);
- if it is valid, moves it onto the data partition atomically, keeps the
  previous config as a dated backup, and removes it from the boot partition,
  leaving ``linetap-applied.txt`` as a receipt;
- if it is broken, leaves the running config alone, renames the file to
  ``linetap.toml.rejected``, writes ``linetap-error.txt`` next to it (every
  problem, and what to do), and blinks the status LED fast for a while
  (``linetap.leds``' fault pattern), so a typo never bricks the box.

Windows hides file extensions, so Notepad's ``linetap.toml.txt`` is taken as
well when there is no ``linetap.toml``.

It also keeps ``/etc/machine-id`` stable across boots (the root is a RAM
overlay, so a generated id would otherwise change at every boot, and with it
the default recorder id).

    python -m linetap.firstboot --boot /boot/firmware --data /var/lib/linetap \\
        --machine-id /etc/machine-id
"""

from __future__ import annotations

import argparse
import grp
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

from linetap import bootfiles, config, netconfig, rollback
from linetap.fsutil import atomic_file, fsync_dir, write_atomic

logger = logging.getLogger(__name__)

BOOT_NAME = "linetap.toml"
# What Notepad makes of "linetap.toml" when "Save as type" stays "Text documents".
NOTEPAD_NAME = "linetap.toml.txt"
REJECTED_NAME = "linetap.toml.rejected"
ERROR_NAME = "linetap-error.txt"
APPLIED_NAME = "linetap-applied.txt"
# A copy of the running config, secrets masked, so the next installer can read what the box runs.
# ".txt": Windows hides extensions and opens it in Notepad on a double click.
RUNNING_NAME = "linetap-running.toml.txt"
# A config is a few kB; anything this big is the wrong file, not a config.
MAX_BYTES = 256 * 1024
FAULT_BLINK_S = 20.0
_MACHINE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class StatusLed:
    """Where the status LED is, from the config the box is running with."""

    pin: int
    active_high: bool = True


FaultSignal = Callable[[StatusLed | None], None]


@dataclass(frozen=True, slots=True)
class Layout:
    """The files involved, on the boot partition and on the data partition."""

    boot_dir: Path
    data_dir: Path

    @property
    def candidate(self) -> Path:
        """The file to apply: ``linetap.toml``, else Notepad's ``linetap.toml.txt``."""
        plain = self.boot_dir / BOOT_NAME
        notepad = self.boot_dir / NOTEPAD_NAME
        return notepad if not os.path.lexists(plain) and os.path.lexists(notepad) else plain

    @property
    def rejected(self) -> Path:
        return self.boot_dir / REJECTED_NAME

    @property
    def error_report(self) -> Path:
        return self.boot_dir / ERROR_NAME

    @property
    def receipt(self) -> Path:
        return self.boot_dir / APPLIED_NAME

    @property
    def running_copy(self) -> Path:
        return self.boot_dir / RUNNING_NAME

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config"

    @property
    def active(self) -> Path:
        """The config the recorder runs with (``/etc/linetap/linetap.toml`` links here)."""
        return self.config_dir / "linetap.toml"

    @property
    def saved_machine_id(self) -> Path:
        return self.data_dir / "system" / "machine-id"


@dataclass(frozen=True, slots=True)
class Result:
    action: Literal["none", "applied", "unchanged", "rejected"]
    errors: tuple[str, ...] = ()
    backup: Path | None = None


# --- the decision ------------------------------------------------------------

def check_candidate(raw: bytes, layout: Layout, *, service: bootfiles.ServiceUser | None = None) -> list[str]:
    """Every problem with a candidate config file's content; empty if it can be applied."""
    return _examine(raw, layout, service)[1]


def _examine(raw: bytes, layout: Layout,
             service: bootfiles.ServiceUser | None) -> tuple[bootfiles.Prepared | None, list[str]]:
    """The candidate made ready (files to import, inline password moved) and every problem with it."""
    text, problem = _decode(raw)
    if problem:
        return None, [f"{BOOT_NAME}: {problem}"]
    prep = bootfiles.prepare(text, layout.boot_dir, layout.config_dir)
    errors = list(prep.errors)
    try:
        # Relative paths (mqtt.password_file = "mqtt.pass") resolve against the
        # directory the recorder will read the file from, not the boot partition.
        cfg = config.load_text(prep.text, source=BOOT_NAME, base=layout.config_dir)
    except config.ConfigError as e:
        # A refused inline secret is reported once, by prepare(), with advice.
        skip = tuple(f"{BOOT_NAME}: {s.table}.{s.key}:" for s in bootfiles.INLINE_SECRETS)
        return prep, errors + [x for x in e.errors if not (prep.had_inline_password and x.startswith(skip))]
    errors += _box_rules(cfg, layout)
    errors += _destructive_change(cfg, layout)
    # Files still on the card were checked by their content in prepare() (and what it found wrong
    # is reported once); the rest must be on the box.
    incoming = {f.key for f in prep.files} | prep.failed_keys
    if prep.password is not None:
        incoming.add("mqtt.password_file")
    if prep.wifi_passphrase is not None:
        incoming.add("network.wifi_passphrase_file")
    errors += [f"{BOOT_NAME}: {e}" for e in bootfiles.box_checks(cfg, service=service, skip=incoming)]
    return prep, errors


def _decode(raw: bytes) -> tuple[str, str | None]:
    if len(raw) > MAX_BYTES:
        return "", (f"is larger than {MAX_BYTES // 1024} kB; a linetap config is a small text file "
                    "(is this the right file?)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "", "is saved as UTF-16 (\"Unicode\"); save it as plain text in UTF-8"
    try:
        # utf-8-sig: Windows editors like to start UTF-8 files with a byte-order mark.
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return "", f"is not plain UTF-8 text (byte {e.start}); save it as plain text in UTF-8"


def _box_rules(cfg: config.Config, layout: Layout) -> list[str]:
    """What a config valid anywhere must also satisfy on this box."""
    errors = []
    # The recorder may write only below the data partition (ReadWritePaths= in
    # linetap.service); anywhere else it would crash-loop until the box reboots.
    data_dir = Path(os.path.normpath(cfg.recorder.data_dir))
    if data_dir != layout.data_dir and layout.data_dir not in data_dir.parents:
        errors.append(f"{BOOT_NAME}: recorder.data_dir: must be {layout.data_dir} on this box "
                      f"(its data partition), not {str(cfg.recorder.data_dir)!r}")
    return errors


def _destructive_change(cfg: config.Config, layout: Layout) -> list[str]:
    """A change that would delete or orphan many recordings at once needs ``storage.confirm_deletion``
    (retention/plan.py, "guarding against mass deletion"): a typo must not empty the box. The recorder
    checks the same at start (it keeps the previous limits); here the installer learns it at once."""
    try:
        old = config.load(layout.active)
    except (OSError, config.ConfigError):
        return []  # no valid running config: nothing recorded under one to protect
    import sqlite3

    from .index.db import INDEX_FILE, Index
    from .index.schema import SchemaTooNew
    old_dir, new_dir = Path(old.recorder.data_dir), Path(cfg.recorder.data_dir)
    if not (old_dir / INDEX_FILE).is_file():
        return []
    from .retention.plan import Policy, confirmed, is_mass, policy_changes, refusal
    from .retention.sweeper import impact
    old_policy, new_policy = Policy.from_config(old.storage, old.lines), Policy.from_config(cfg.storage, cfg.lines)
    confirm = cfg.storage.confirm_deletion
    try:  # read-only, creating no file: first boot runs as root, the recorder as linetap
        index = Index.snapshot(old_dir / INDEX_FILE)
    except (sqlite3.Error, SchemaTooNew) as e:
        logger.warning("cannot read %s to judge the change (%s); the recorder checks it at start", old_dir, e)
        return []
    try:
        if os.path.normpath(old_dir) != os.path.normpath(new_dir):
            total = len(index.calls())
            if is_mass(total, total) and not confirmed(total, confirm):
                return [f"{BOOT_NAME}: recorder.data_dir: moving it from {old_dir} to {new_dir} would orphan all "
                        f"{total} recordings (left in {old_dir}, out of the index, retention and legal holds); "
                        f"if that is intended, set storage.confirm_deletion = {total}"]
            return []
        if old_policy == new_policy:
            return []
        count, total = impact(index, old_dir, old_policy, new_policy)
    except sqlite3.Error as e:  # an index too old or damaged: the recorder's start deals with it
        logger.warning("cannot read %s to judge the change (%s); the recorder checks it at start", old_dir, e)
        return []
    finally:
        index.close()
    if is_mass(count, total) and not confirmed(count, confirm):
        changes = ", ".join(policy_changes(old_policy, new_policy))
        return [f"{BOOT_NAME}: storage: " + refusal(f"this change ({changes})", count, total)]
    return []


# --- the actions -------------------------------------------------------------

def import_boot_config(layout: Layout, *, now: datetime, signal_fault: FaultSignal,
                       group: str | None = "linetap",
                       service: bootfiles.ServiceUser | None = None) -> Result:
    """Apply or reject ``<boot>/linetap.toml``; a no-op when there is none."""
    cand = layout.candidate
    if not os.path.lexists(cand):
        return Result("none")
    if cand.is_symlink() or not cand.is_file():
        return _reject(layout, [f"{BOOT_NAME}: is not a regular file"], now, signal_fault)
    try:
        with open(cand, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        return _reject(layout, [f"{BOOT_NAME}: cannot be read: {e.strerror}"], now, signal_fault)

    prep, errors = _examine(raw, layout, service)
    if errors or prep is None:
        return _reject(layout, errors, now, signal_fault, prep)

    layout.config_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    # The files it brings first: once the config is in place, the recorder may start and read them.
    _import_files(layout, prep, group)
    text = prep.text
    try:
        unchanged = layout.active.read_bytes() == text.encode("utf-8")
    except OSError:
        unchanged = False
    backup = None
    if not unchanged:
        backup = _install(layout, text, now, group)
    # Only now, with the new config and its files safely on the data partition: a power cut
    # before these lines means the same file is applied again at the next boot (its files are
    # then found on the box if they are no longer on the card).
    for f in prep.files:
        _remove(f.source)
    _remove(layout.config_dir / bootfiles.PENDING_DIR / bootfiles.INLINE_PASSWORD_FILE)
    _remove(layout.config_dir / bootfiles.PENDING_DIR / bootfiles.INLINE_WIFI_FILE)
    cand.unlink()
    fsync_dir(layout.boot_dir)
    _remove(layout.error_report)
    # A config applied ends CONFIG_REJECTED / CONFIG_ROLLED_BACK (rollback.py; w-robust).
    _remove(layout.data_dir / rollback.REJECTED)
    _remove(layout.config_dir / rollback.ROLLED_BACK)
    _write_atomic(layout.receipt, _receipt(now, backup, prep), dir_fsync=False)
    _write_atomic(layout.running_copy, _running_copy(text, now), dir_fsync=True)
    logger.info("applied %s from the boot partition%s", BOOT_NAME,
                f" (previous config kept as {backup})" if backup else " (same as the running config)")
    return Result("unchanged" if unchanged else "applied", backup=backup)


def _import_files(layout: Layout, prep: bootfiles.Prepared, group: str | None) -> None:
    """Copy the files the config names into the config directory (0640, group linetap)."""
    for f in prep.files:
        dst = layout.config_dir.joinpath(*f.relpath.parts)
        dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if f.key in bootfiles.ROOT_ONLY_KEYS:
            _write_secret(dst, f.source.read_bytes(), None, mode=0o600)
        else:
            _write_secret(dst, f.source.read_bytes(), group)
        logger.info("imported %s (%s) from %s", dst, f.key, f.source.parent)
    if prep.password is not None:
        _write_secret(layout.config_dir / bootfiles.INLINE_PASSWORD_FILE, (prep.password + "\n").encode(), group)
        logger.info("mqtt.password moved into %s", layout.config_dir / bootfiles.INLINE_PASSWORD_FILE)
    if prep.wifi_passphrase is not None:
        # Root's only: first boot renders the Wi-Fi config from it; the recorder never needs it.
        _write_secret(layout.config_dir / bootfiles.INLINE_WIFI_FILE, (prep.wifi_passphrase + "\n").encode(),
                      None, mode=0o600)
        logger.info("network.wifi_passphrase moved into %s", layout.config_dir / bootfiles.INLINE_WIFI_FILE)


def _write_secret(path: Path, data: bytes, group: str | None, mode: int = 0o640) -> None:
    """Atomically, and never readable by others, not even for the moment before the chmod."""
    with atomic_file(path, mode=mode, dir_fsync=True, tmp=path.with_name(f".{path.name}.new")) as f:
        f.write(data)
        _chown_group(f.fileno(), group)

def _install(layout: Layout, text: str, now: datetime, group: str | None) -> Path | None:
    tmp = layout.config_dir / f".{BOOT_NAME}.new"
    backup = None
    with atomic_file(layout.active, mode=0o640, dir_fsync=True, tmp=tmp) as f:
        f.write(text.encode("utf-8"))
        _chown_group(tmp, group)
        if layout.active.exists():
            backup = _free_name(layout.config_dir / f"{BOOT_NAME}.{now:%Y%m%dT%H%M%SZ}")
            # A hard link: the backup is the exact old file, and it exists before
            # the old name is replaced (when the block ends).
            os.link(layout.active, backup)
    return backup


def _reject(layout: Layout, errors: list[str], now: datetime, signal_fault: FaultSignal,
            prep: bootfiles.Prepared | None = None) -> Result:
    for e in errors:
        logger.error("rejected %s: %s", BOOT_NAME, e)
    cand = layout.candidate
    kept: list[str] = []
    if prep is not None:
        kept = _keep_secrets_off_the_card(layout, prep)
    if os.path.lexists(cand):
        if prep is not None and prep.had_inline_password:
            # The installer's file comes back with the password masked: "********" in it means
            # "the password you gave" next time (kept in pending/), and the card holds none.
            _write_atomic(layout.rejected, bootfiles.mask(_decode(cand.read_bytes())[0]), dir_fsync=False)
            cand.unlink()
        else:
            os.replace(cand, layout.rejected)
    _write_atomic(layout.error_report, error_report(errors, now, kept), dir_fsync=True)
    _remove(layout.receipt)
    try:  # the recorder raises CONFIG_REJECTED at its next start (rollback.py; w-robust)
        rollback.record_rejected(layout.data_dir, layout.active, errors, now=now.timestamp())
    except OSError as e:
        logger.error("cannot leave the rejection marker for the recorder: %s", e)
    try:
        signal_fault(current_status_led(layout))
    except Exception as e:  # noqa: BLE001
        # The LED is a courtesy; the report on the card and the journal are the record.
        logger.error("could not signal the rejected config on the status LED: %s", e)
    return Result("rejected", errors=tuple(errors))


def _keep_secrets_off_the_card(layout: Layout, prep: bootfiles.Prepared) -> list[str]:
    """A rejected config's secrets (password, private key) leave the card for ``<config>/pending``.

    Root's only (0700/0600): nothing reads them but the next first boot, which finds a file the
    config names there as well as on the card. Returns what was moved, for the error report."""
    pending = layout.config_dir / bootfiles.PENDING_DIR
    moved: list[str] = []
    secrets = [f for f in prep.files if f.secret and layout.boot_dir in f.source.parents]
    if not secrets and prep.password is None and prep.wifi_passphrase is None:
        return moved
    pending.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in secrets:
        dst = pending.joinpath(*f.relpath.parts)
        dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_secret(dst, f.source.read_bytes(), None, mode=0o600)
        _remove(f.source)
        moved.append(f"{f.relpath} ({f.key})")
    if prep.password is not None:
        _write_secret(pending / bootfiles.INLINE_PASSWORD_FILE, (prep.password + "\n").encode(), None, mode=0o600)
        moved.append("the MQTT password (mqtt.password)")
    if prep.wifi_passphrase is not None:
        _write_secret(pending / bootfiles.INLINE_WIFI_FILE, (prep.wifi_passphrase + "\n").encode(), None,
                      mode=0o600)
        moved.append("the Wi-Fi passphrase (network.wifi_passphrase)")
    fsync_dir(layout.boot_dir)
    return moved


def error_report(errors: list[str], now: datetime, kept: list[str] | None = None) -> str:
    """The human-readable ``linetap-error.txt``: what is wrong and what to do."""
    lines = [
        f"linetap could not use the {BOOT_NAME} you put on this card",
        f"(checked {now:%Y-%m-%d %H:%M} UTC). Nothing was changed: the box is still",
        "running with its previous settings.",
        "",
        "Problems found:",
        *(f"  - {e}" for e in errors),
        "",
        "What to do:",
        f"  1. Open {REJECTED_NAME} (your file, unchanged) in a text editor.",
        "  2. Fix every problem listed above. Keys and values are explained in the",
        "     comments of the factory config and in the installation guide.",
        f"  3. Save it on this card as {BOOT_NAME} (plain text, UTF-8) and delete",
        f"     {ERROR_NAME}.",
        "  4. Put the card back into the box and power it on. The file is checked",
        "     again; the status LED blinks fast for a while if it is still rejected.",
        "",
    ]
    if kept:
        lines += [
            "For safety these secrets were taken off the card and kept on the box for your next try:",
            *(f"  - {k}" for k in kept),
            f"Name the same file again (or leave password = \"{bootfiles.MASK}\") and the box uses them;",
            "you need not copy them onto the card again.",
            "",
        ]
    # CRLF: the reader may well be Notepad on Windows.
    return "\r\n".join(lines)


def _receipt(now: datetime, backup: Path | None, prep: bootfiles.Prepared | None = None) -> str:
    lines = [
        f"{BOOT_NAME} was checked and applied on {now:%Y-%m-%d %H:%M} UTC.",
        "The box now keeps it on its data partition, so it was removed from this card.",
        f"To change settings again, put a new {BOOT_NAME} here ({RUNNING_NAME} shows what the box",
        f"runs now, secrets masked: copy it, edit it, save it as {BOOT_NAME}).",
    ]
    if prep is not None and (prep.files or prep.password is not None or prep.wifi_passphrase is not None):
        lines.append("These files were moved from this card onto the box:")
        lines += [f"  - {f.relpath} ({f.key})" for f in prep.files]
        if prep.password is not None:
            lines.append(f"  - the MQTT password (now in {bootfiles.INLINE_PASSWORD_FILE} on the box)")
        if prep.wifi_passphrase is not None:
            lines.append(f"  - the Wi-Fi passphrase (now in {bootfiles.INLINE_WIFI_FILE} on the box)")
    if backup is not None:
        lines.append(f"The previous config was kept on the box as {backup}.")
    return "\r\n".join(lines + [""])


def _running_copy(text: str, now: datetime) -> str:
    head = [f"# What this box runs, as applied on {now:%Y-%m-%d %H:%M} UTC; secrets masked.",
            f"# To change it: copy this file to {BOOT_NAME}, edit, and restart the box.",
            f'# password = "{bootfiles.MASK}" keeps the password the box already has.']
    body = bootfiles.mask(text).replace("\r\n", "\n").split("\n")
    return "\r\n".join(head + body)


def current_status_led(layout: Layout) -> StatusLed | None:
    """The status LED of the config the box runs with (else of the factory config)."""
    sources: list[tuple[str, Callable[[], config.Config]]] = [
        (str(layout.active), lambda: config.load(layout.active)),
        ("factory config", lambda: config.load_text(factory_config_text(), source="box.toml")),
    ]
    for name, load in sources:
        try:
            cfg = load()
        except config.ConfigError:
            logger.warning("no usable status LED setting in %s", name)
            continue
        if cfg.leds is not None and cfg.leds.status is not None:
            return StatusLed(cfg.leds.status, cfg.leds.active_high)
        return None
    return None


def factory_config_text() -> str:
    return resources.files("linetap").joinpath("data/box.toml").read_text(encoding="utf-8")


def blink_status_led(led: StatusLed | None, *, seconds: float = FAULT_BLINK_S,
                     pin_factory: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
    """The default fault signal: the status LED shows the recorder's fault
    pattern (fast blink, ``linetap.leds``) for ``seconds``, then goes off.

    Blocking on purpose: the blinking stops when this process ends, and the
    recorder (which then owns the LED) starts only after it.
    """
    if led is None:
        logger.warning("no status LED configured; the rejected config is reported on the card only")
        return
    # Lazily: the LED panel (and behind it gpiozero) is needed only for a
    # rejected file, never for applying a good one.
    from linetap.leds.driver import LedPanel
    from linetap.leds.patterns import FAST_BLINK, STATUS

    panel = LedPanel(config.LedsConfig(status=led.pin, active_high=led.active_high), (),
                     pin_factory=pin_factory)
    try:
        if STATUS not in panel.devices:
            raise RuntimeError("; ".join(panel.errors) or f"GPIO {led.pin} unavailable")
        panel.apply({STATUS: FAST_BLINK})
        sleep(seconds)
    finally:
        panel.close()  # every LED off and released


def keep_machine_id(live: Path, saved: Path) -> Literal["restored", "saved", "kept", "none"]:
    """Make the machine id survive the read-only root.

    The first boot's id is saved on the data partition; on every later boot it
    is written back over the freshly generated one, before the recorder reads it.
    """
    saved_id = _read_machine_id(saved)
    live_id = _read_machine_id(live)
    if saved_id is not None:
        if saved_id == live_id:
            return "kept"
        live.write_text(saved_id + "\n")
        logger.info("restored machine id %s from %s", saved_id, saved)
        return "restored"
    if live_id is None:
        return "none"
    saved.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write_atomic(saved, live_id + "\n", dir_fsync=True)
    logger.info("saved machine id %s to %s", live_id, saved)
    return "saved"


def _read_machine_id(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _MACHINE_ID_RE.match(text) and text != "0" * 32 else None


# --- small file helpers ------------------------------------------------------

def _write_atomic(path: Path, text: str, *, dir_fsync: bool) -> None:
    # 0644 as open() made them; the fixed hidden name is overwritten by the next try after a crash.
    write_atomic(path, text, mode=0o644, dir_fsync=dir_fsync, tmp=path.with_name(f".{path.name}.new"))


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}-{n}")
        n += 1
    return candidate


def _chown_group(path: Path | int, group: str | None) -> None:
    if group is None or os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        logger.warning("group %s does not exist; %s stays root's only", group, path)
        return
    os.chown(path, 0, gid)


# --- network, time zone, host name: re-applied at every boot --------------------

def apply_system_settings(layout: Layout, root: Path, run: netconfig.Runner | None = None) -> list[str]:
    """Render the running config's ``[network]``, time zone and host name under ``root``.

    Every boot, because the root file system's RAM overlay forgets ``/etc`` and ``/run``. A
    config that does not load (never applied by this module, but a hand-edited one) leaves the
    system's defaults: DHCP on the wired port, Debian's NTP pool, UTC."""
    try:
        cfg = config.load(layout.active)
    except config.ConfigError as e:
        logger.warning("network settings not applied: %s", "; ".join(e.errors))
        return list(e.errors)
    passphrase = None
    pw_file = cfg.network.wifi_passphrase_file
    if cfg.network.wifi_ssid is not None and pw_file is not None:
        try:
            passphrase = pw_file.read_text(encoding="utf-8-sig").strip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            logger.warning("Wi-Fi not configured: cannot read %s: %s", pw_file, e)
    p = netconfig.plan(cfg.network, hostname=cfg.recorder.id, timezone=cfg.recorder.timezone,
                       passphrase=passphrase)
    return netconfig.apply(p, root, run or netconfig.run_command)


# --- command line ------------------------------------------------------------

def make_device_key(data_dir: Path) -> None:
    """The box's signing key (linetap.sign), made here as root, so the recorder (user linetap)
    can read it but not replace it. (w-evidence: the recorder makes it too if it is missing.)"""
    from .sign import SigningError, load_or_create
    try:
        load_or_create(data_dir)
    except (OSError, SigningError) as e:
        logger.error("could not make the device signing key: %s", e)


def main(argv: list[str] | None = None, *, signal_fault: FaultSignal | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m linetap.firstboot",
        description=f"Apply {BOOT_NAME} from the boot partition (run at boot, before the recorder).")
    parser.add_argument("--boot", type=Path, required=True, help="the mounted FAT boot partition")
    parser.add_argument("--data", type=Path, required=True, help="the mounted data partition (data dir)")
    parser.add_argument("--machine-id", type=Path, default=None,
                        help="keep this machine id file stable across boots (/etc/machine-id on the box)")
    parser.add_argument("--root", type=Path, default=None,
                        help="write the network, time zone and host name settings under this root "
                             "(/ on the box; default: not applied)")
    parser.add_argument("--fault-blink-s", type=float, default=FAULT_BLINK_S,
                        help="how long the status LED blinks for a rejected file (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    layout = Layout(boot_dir=args.boot, data_dir=Path(os.path.abspath(args.data)))
    if args.machine_id is not None:
        try:
            keep_machine_id(args.machine_id, layout.saved_machine_id)
        except OSError as e:
            logger.error("could not keep the machine id stable: %s", e)
    fault = signal_fault or (lambda led: blink_status_led(led, seconds=args.fault_blink_s))
    # The LED blinks for a rejected file only after the network settings are written: this
    # unit runs before systemd-networkd, which would otherwise wait the whole blink.
    blinks: list[StatusLed | None] = []
    try:
        result = import_boot_config(layout, now=datetime.now(timezone.utc), signal_fault=blinks.append,
                                    service=bootfiles.ServiceUser.lookup())
    except OSError as e:
        # A read-only or full card, a missing mount: one line in the journal, the
        # unit fails, and the recorder still starts with the config it has.
        where = f" ({e.filename})" if e.filename else ""
        logger.error("could not apply %s: %s%s", BOOT_NAME, e.strerror or e, where)
        result = None
    if args.root is not None:
        apply_system_settings(layout, args.root)
    for led in blinks:
        try:
            fault(led)
        except Exception as e:  # noqa: BLE001
            logger.error("could not signal the rejected config on the status LED: %s", e)
    if result is None:
        return 1
    make_device_key(layout.data_dir)
    # Rejected: the unit shows as failed (systemctl --failed, the journal); the
    # recorder still starts with the previous config (Wants=, not Requires=).
    return 1 if result.action == "rejected" else 0


if __name__ == "__main__":
    # Through the package, so that logging says "linetap.firstboot", not "__main__".
    from linetap.firstboot import main as _main

    sys.exit(_main())
