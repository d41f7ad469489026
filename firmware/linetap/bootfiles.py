"""What a boot-partition ``linetap.toml`` brings with it, and what must hold before it is applied.

An installer works with a laptop and the SD card's FAT boot partition: the MQTT password of the
Home Assistant broker, the broker's CA certificate, a client certificate and key, the public key
recordings are sealed to — each is a file they drop next to ``linetap.toml``, or (the password
only) a line ``mqtt.password = "…"`` in it. The data partition is ext4, which Windows and macOS
cannot write, so first boot has to carry these files over; and a config naming a file that is not
there must be *rejected* at first boot (old config kept, ``linetap-error.txt``), not applied and
then fail every start of the recorder.

This module is the pure-ish half of that: :func:`prepare` reads the candidate text and the boot
partition and says which files to import and what the config will look like once an inline
password is moved into a file; :func:`box_checks` says whether what ``linetap run`` needs is
there (files present and readable, the data dir writable by the service user, the encryption key
loadable, PCM names well formed) — the same checks ``linetap check`` runs. :mod:`linetap.firstboot`
does the writing.

Where things go: every imported file lands in the config directory on the data partition
(``<data>/config``, root's, group ``linetap``, mode 0640), at the same relative path the config
names, so the config text needs no rewriting. An inline password becomes ``<config>/mqtt.password``
and the config line becomes ``password_file = "mqtt.password"``; an inline Wi-Fi passphrase
(``[network] wifi_passphrase = "…"``) likewise becomes ``<config>/wifi.passphrase``, but root's
only (0600): first boot renders the Wi-Fi config from it, the recorder never reads it. Secrets of a *rejected* config
(a password, a private key) do not stay on the card either: they move to ``<config>/pending``
(root only, 0700), and the next file may use them again — by naming the same file, or with
``password = "********"`` (the mask shown in the card's copy of the running config), which means
"the password the box already has".
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import config

BOOT_NAME = "linetap.toml"
MASK = "********"
INLINE_PASSWORD_FILE = "mqtt.password"
INLINE_WIFI_FILE = "wifi.passphrase"
PENDING_DIR = "pending"
# A password, a certificate or a key is a few kB; anything this big is the wrong file.
MAX_FILE_BYTES = 64 * 1024

# Config keys that name a file the recorder reads, and whether its content is secret.
FILE_KEYS: dict[str, bool] = {
    "mqtt.password_file": True,
    "mqtt.tls_ca": False,
    "mqtt.tls_cert": False,
    "mqtt.tls_key": True,
    "storage.encrypt_to": False,
    "web.tls_cert": False,  # w-web: the installer's own HTTPS certificate and key
    "web.tls_key": True,
    "archive.rclone_config": True,  # holds the remote's credentials
    "network.wifi_passphrase_file": True,
}
# Secret files only root reads (first boot renders the Wi-Fi config from it): 0600, not 0640.
ROOT_ONLY_KEYS = frozenset({"network.wifi_passphrase_file"})


@dataclass(frozen=True, slots=True)
class Inline:
    """A secret the card's file may give inline (``[table] key = "…"``), moved into ``filename``."""

    table: str
    key: str
    file_key: str  # the key naming the file it becomes
    filename: str
    word: str  # what the installer calls it, in messages


INLINE_SECRETS = (Inline("mqtt", "password", "password_file", INLINE_PASSWORD_FILE, "password"),
                  Inline("network", "wifi_passphrase", "wifi_passphrase_file", INLINE_WIFI_FILE, "passphrase"))

# ALSA PCM names as aplay -L prints them and the contract allows: a name ("default", "line1"), or a
# plugin with arguments ("hw:CARD=line1,DEV=0", "plughw:1,0", "dsnoop:CARD=x"). No white space or
# control characters: those come from a copy-paste, and libasound would fail at every start.
_PCM_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_.\-]*(:[A-Za-z0-9_=,.\-"]+)?$')
# key = "value" lines whose value is a secret (not *_file keys: a file name is no secret).
_SECRET_LINE_RE = re.compile(r'(?im)^(\s*(?:password|passphrase|wifi_passphrase|secret|token)\s*=\s*)(".*?"|\'.*?\'|\S+)')


@dataclass(frozen=True, slots=True)
class FileImport:
    """One file to carry from the card (or from ``pending``) into the config directory."""

    key: str  # the dotted config key naming it
    relpath: PurePosixPath  # as the config names it, relative to the config directory
    source: Path  # where its content is now
    secret: bool


@dataclass(frozen=True, slots=True)
class Prepared:
    """A candidate config made ready: the text to install, the files to import, the problems."""

    text: str
    files: tuple[FileImport, ...] = ()
    password: str | None = None  # an inline mqtt.password, to become <config>/mqtt.password
    had_inline_password: bool = False  # any inline secret (mqtt.password, network.wifi_passphrase)
    wifi_passphrase: str | None = None  # an inline network.wifi_passphrase, to become <config>/wifi.passphrase
    errors: tuple[str, ...] = ()
    failed_keys: frozenset[str] = frozenset()  # the keys ``errors`` speak of

    def secrets_on_card(self, boot_dir: Path) -> list[FileImport]:
        return [f for f in self.files if f.secret and f.source.parent == boot_dir / f.relpath.parent]


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """Who the recorder runs as (``linetap.service``: ``User=linetap``)."""

    uid: int
    gids: frozenset[int]

    @classmethod
    def lookup(cls, name: str = "linetap") -> ServiceUser | None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        gids = {pw.pw_gid, *os.getgrouplist(name, pw.pw_gid)}
        return cls(pw.pw_uid, frozenset(gids))


def _err(key: str, msg: str) -> str:
    return f"{BOOT_NAME}: {key}: {msg}"


def _get(doc: dict[str, Any], dotted: str) -> Any:
    table, key = dotted.split(".")
    t = doc.get(table)
    return t.get(key) if isinstance(t, dict) else None


def prepare(text: str, boot_dir: Path, config_dir: Path) -> Prepared:
    """Which files the candidate ``text`` needs imported, and the text once an inline password is a file.

    A text that is not TOML comes back as it is, with no errors: ``config.load_text`` reports
    the syntax error with its line, as for any config."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return Prepared(text)
    errors: list[str] = []
    had_inline = False
    pending = config_dir / PENDING_DIR
    inline: dict[str, str] = {}  # file name -> secret
    for spec in INLINE_SECRETS:
        table = doc.get(spec.table) if isinstance(doc.get(spec.table), dict) else None
        if table is None or spec.key not in table:
            continue
        had_inline = True
        text, secret, problem = _inline_password(text, doc, config_dir, spec)
        if problem or secret is None:
            errors.append(_err(f"{spec.table}.{spec.key}", problem or "unusable"))
            return Prepared(text, had_inline_password=True, errors=tuple(errors),
                            failed_keys=frozenset({f"{spec.table}.{spec.key}", f"{spec.table}.{spec.file_key}"}))
        inline[spec.filename] = secret
        doc = tomllib.loads(text)
    password = inline.get(INLINE_PASSWORD_FILE)
    files: list[FileImport] = []
    failed: set[str] = set()
    for key, secret in FILE_KEYS.items():
        value = _get(doc, key)
        if not isinstance(value, str) or not value:
            continue  # absent, or a type error config.load_text names
        if any(key == f"{s.table}.{s.file_key}" and value == s.filename and s.filename in inline
               for s in INLINE_SECRETS):
            continue  # written from the inline secret
        rel = PurePosixPath(value.replace("\\", "/"))
        if rel.is_absolute():
            continue  # a file on the box itself (an image that ships it): box_checks looks for it
        if ".." in rel.parts:
            failed.add(key)
            errors.append(_err(key, f"{value!r}: name a file next to {BOOT_NAME}, without '..'"))
            continue
        for where in (boot_dir, pending):
            src = where.joinpath(*rel.parts)
            if os.path.lexists(src):
                problem = _file_problem(key, src)
                if problem:
                    failed.add(key)
                    errors.append(_err(key, f"{value!r} {problem}"))
                else:
                    files.append(FileImport(key, rel, src, secret))
                break
        else:
            if not config_dir.joinpath(*rel.parts).is_file():
                failed.add(key)
                errors.append(_err(key, f"{value!r} is neither next to {BOOT_NAME} on the card nor on the box: "
                                   f"copy the file onto the card next to {BOOT_NAME}"))
    return Prepared(text, tuple(files), password, had_inline, inline.get(INLINE_WIFI_FILE),
                    tuple(errors), frozenset(failed))


def _inline_password(text: str, doc: dict[str, Any], config_dir: Path,
                     spec: Inline = INLINE_SECRETS[0]) -> tuple[str, str | None, str | None]:
    """``mqtt.password = "…"`` → the text with ``password_file`` instead, and the password
    (likewise ``network.wifi_passphrase`` → ``wifi_passphrase_file``, per ``spec``).

    The line is replaced as text (TOML has no writer in the standard library, and the installer's
    comments should survive); the result is parsed again and must be the same document with only
    that key changed, or the password is refused with advice rather than guessed at."""
    table = doc[spec.table]
    value = table[spec.key]
    if not isinstance(value, str) or not value.strip():
        return text, None, f"must be the {spec.word} in quotes, e.g. {spec.key} = \"s3cret\""
    if spec.file_key in table:
        return text, None, f"give the {spec.word} or {spec.file_key}, not both"
    if value == MASK:
        for where in (config_dir / PENDING_DIR / spec.filename, config_dir / spec.filename):
            if where.is_file():
                # A passphrase may begin or end with a space (WPA allows it); a password file's
                # trailing white space is an editor's.
                raw = where.read_text(encoding="utf-8")
                value = raw.strip("\r\n") if spec.key == "wifi_passphrase" else raw.strip()
                break
        else:
            return text, None, (f'"{MASK}" keeps the {spec.word} the box already has, but it has none: '
                                f"write the {spec.word} itself")
    pattern = re.compile(rf'(?m)^([ \t]*){spec.key}([ \t]*)=[^\n]*$')
    matches = list(pattern.finditer(text))
    new_text = None
    for m in matches:
        candidate = text[:m.start()] + f'{m.group(1)}{spec.file_key} = "{spec.filename}"' + text[m.end():]
        try:
            new_doc = tomllib.loads(candidate)
        except tomllib.TOMLDecodeError:
            continue
        want = {**doc, spec.table: {**{k: v for k, v in table.items() if k != spec.key},
                                    spec.file_key: spec.filename}}
        if new_doc == want:
            new_text = candidate
            break
    if new_text is None:
        return text, None, f'write it on a line of its own in the [{spec.table}] table: {spec.key} = "…"'
    if "\n" in value or "\r" in value:
        return text, None, "must be one line"
    if spec.key == "wifi_passphrase":
        from .netconfig import passphrase_problem
        problem = passphrase_problem(value)
        if problem:
            return text, None, problem
    return new_text, value, None


def _file_problem(key: str, path: Path) -> str | None:
    """What is wrong with a file the config names, judged by its content; None if usable."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return "is not a plain file"
        if st.st_size > MAX_FILE_BYTES:
            return f"is larger than {MAX_FILE_BYTES // 1024} kB (is it the right file?)"
        data = path.read_bytes()
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    return content_problem(key, data, path)


def content_problem(key: str, data: bytes, path: Path) -> str | None:
    if key == "mqtt.password_file":
        try:
            pw = data.decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            return "is not plain UTF-8 text"
        if not pw:
            return "is empty"
        if "\n" in pw:
            return "must hold the password on one line"
    elif key == "network.wifi_passphrase_file":
        from .netconfig import passphrase_problem
        try:
            pw = data.decode("utf-8-sig").strip("\r\n")
        except UnicodeDecodeError:
            return "is not plain text"
        problem = passphrase_problem(pw)
        if problem:
            return f"holds no usable Wi-Fi passphrase: it {problem}"
    elif key in ("mqtt.tls_ca", "mqtt.tls_cert"):
        if b"-----BEGIN CERTIFICATE-----" not in data:
            return "is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
    elif key == "mqtt.tls_key":
        if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", data):
            return "is not a PEM private key (-----BEGIN PRIVATE KEY-----)"
    elif key == "storage.encrypt_to":
        from .crypto import CryptoError, load_public_key
        try:
            load_public_key(path)
        except CryptoError as e:
            return f"is not a usable public key: {e}"
        except OSError as e:
            return f"cannot be read: {e.strerror}"
    return None


def box_checks(cfg: config.Config, *, service: ServiceUser | None,
               skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What ``linetap run`` needs beyond a valid config, as one message per problem.

    Run by first boot before it applies a config (with the files already in place) and by
    ``linetap check``. ``service`` is the user the recorder runs as (None: not checked, e.g. a
    development machine without a ``linetap`` user); ``skip``: file keys not to look for (first
    boot checked their content on the card and is about to import them)."""
    errors: list[str] = []
    for key in FILE_KEYS:
        path = _cfg_path(cfg, key)
        if path is None or key in skip:
            continue
        if not path.is_file():
            errors.append(f"{key}: {str(path)!r} does not exist")
            continue
        problem = content_problem(key, _read(path), path)
        if problem:
            errors.append(f"{key}: {str(path)!r} {problem}")
        elif service is not None and key not in ROOT_ONLY_KEYS and not _readable_by(path, service):
            errors.append(f"{key}: {str(path)!r} cannot be read by the recorder's user (uid {service.uid})")
    data_dir = Path(cfg.recorder.data_dir)
    if service is not None:
        problem = _writable_dir_problem(data_dir, service)
        if problem:
            errors.append(f"recorder.data_dir: {str(data_dir)!r} {problem}")
    for i, line in enumerate(cfg.lines):
        if not _PCM_RE.match(line.pcm):
            errors.append(f"line[{i}].pcm: {line.pcm!r} is not an ALSA PCM name "
                          "(like \"hw:CARD=line1,DEV=0\" or \"plughw:1,0\"; no spaces)")
    return errors


def _cfg_path(cfg: config.Config, key: str) -> Path | None:
    table, name = key.split(".")
    section = {"mqtt": cfg.mqtt, "network": cfg.network}.get(table, cfg.storage)
    return getattr(section, name, None) if section is not None else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()[:MAX_FILE_BYTES + 1]
    except OSError:
        return b""


def _allowed(st: os.stat_result, service: ServiceUser, bits: int) -> bool:
    """``bits`` (a mask of r=4, w=2, x=1) granted to ``service`` by the mode bits (no ACLs on the box)."""
    if service.uid == 0:
        return True
    if st.st_uid == service.uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid in service.gids:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def _readable_by(path: Path, service: ServiceUser) -> bool:
    for d in path.parents:
        try:
            if not _allowed(os.stat(d), service, 1):
                return False
        except OSError:
            return False
    return _allowed(os.stat(path), service, 4)


def _writable_dir_problem(path: Path, service: ServiceUser) -> str | None:
    """None if the service user can create files in ``path`` (or create ``path`` itself)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "cannot be created"
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot be created: {str(probe)!r} is not a directory"
    for d in probe.parents:
        if not _allowed(os.stat(d), service, 1):
            return f"cannot be reached by the recorder's user: {str(d)!r} is closed to it"
    if not _allowed(os.stat(probe), service, 3):
        what = "written" if probe == path else "created"
        return f"cannot be {what} by the recorder's user (uid {service.uid}): {str(probe)!r} is not writable to it"
    return None


def mask(text: str) -> str:
    """The config as the card's copy shows it: secret values replaced by ``********``."""
    return _SECRET_LINE_RE.sub(lambda m: m.group(1) + f'"{MASK}"', text)
