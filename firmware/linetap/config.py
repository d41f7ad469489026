"""Configuration: one TOML file, loaded once, validated completely up front.

Every problem is reported at once, each with the file and dotted key
(``linetap.toml: line[1].rate: must be one of 8000, 16000, 48000, not 44000``),
unknown keys are errors (a typo must not silently disable a feature), and
secrets are never read here: only the *paths* of files that hold them.

Each key is declared once, as a field of its section's dataclass: the annotation is its type,
``key(...)`` gives its default, its check (bounds or choices) and a one-line doc. The loader is a
loop over those declarations (``_read_section``); the README's configuration table and
``docs/linetap.schema.json`` are generated from them too (``linetap.config_docs``). Rules that
tie several keys together (pins used twice, VOX thresholds, MQTT password without TLS) are code
after the loop.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .detect.names import CALLERID_STANDARDS, TONE_SETS  # not the detectors: they load numpy
# The network checks live next to the renderers they protect.
from .netconfig import network_problems, timezone_problem

NAME_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
RATES = (8000, 16000, 22050, 32000, 44100, 48000)
TRIGGERS = ("vox", "offhook", "continuous")
CODECS = ("opus", "flac", "wav")


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- checks: plain data, so the docs and the JSON Schema can state them too (config_docs.py) -----

def _describe(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True, slots=True)
class OneOf:
    """The value must be one of ``options`` (for a list: each entry)."""

    options: tuple[Any, ...]

    def __call__(self, v: Any) -> str | None:
        if v in self.options:
            return None
        return f"must be one of {', '.join(str(o) for o in self.options)}, not {_describe(v)}"


@dataclass(frozen=True, slots=True)
class Between:
    """An inclusive range; ``what`` replaces the generic message (e.g. for GPIO pins)."""

    lo: float
    hi: float
    what: str = ""

    def __call__(self, v: Any) -> str | None:
        if self.lo <= v <= self.hi:
            return None
        if self.what:
            return f"must be {self.what} {_num(self.lo)}..{_num(self.hi)}, not {_num(v)}"
        return f"must be between {_num(self.lo)} and {_num(self.hi)}, not {_num(v)}"


@dataclass(frozen=True, slots=True)
class Matches:
    """A string matching ``pattern`` (a regex Python and JSON Schema read alike); ``shown``
    says it in words for the README."""

    pattern: str
    message: str
    shown: str

    def __call__(self, v: Any) -> str | None:
        return None if re.search(self.pattern, v) else self.message.format(v=v)


Check = OneOf | Between | Matches


def one_of(options: tuple[Any, ...]) -> OneOf:
    return OneOf(tuple(options))


def between(lo: float, hi: float) -> Between:
    return Between(lo, hi)


PIN = Between(0, 27, what="a BCM GPIO number")
NAME = Matches(NAME_RE.pattern, "must match [a-z0-9_-] (1-32 characters), not {v!r}", "`[a-z0-9_-]`, 1–32")


# --- declarations ---------------------------------------------------------------------------------

_NO_DEFAULT = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Key:
    """What the loader and the docs know about one key (kept in its field's ``metadata``)."""

    doc: str
    check: Check | None = None
    required: bool = False
    fallback: Any = None  # the loader's value for a key without a dataclass default (a callable: called)
    shown_default: str | None = None  # the docs' default when the value alone would mislead


def key(default: Any = _NO_DEFAULT, *, doc: str, check: Check | None = None, required: bool = False,
        fallback: Any = None, shown_default: str | None = None) -> Any:
    """A config field: its default, check and doc in one place (``field()`` with metadata)."""
    meta = {"key": Key(doc, check, required, fallback, shown_default)}
    if default is _NO_DEFAULT:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    id: str = key(doc="the box's name on MQTT and in exports", check=NAME,
                  fallback=lambda: default_recorder_id(),
                  shown_default="from the board's serial number, else `/etc/machine-id`")
    data_dir: Path = key(doc="recordings, `index.db`, `outbox.db`, `status.json`",
                         check=Matches(r"\S", 'must name a directory, not ""', "a directory"),
                         fallback=Path("/var/lib/linetap"), shown_default="`/var/lib/linetap`")
    heartbeat_s: float = key(1.0, doc="housekeeping tick: watchdog heartbeat, `status.json` "
                             "(ticks at least every 1 s)", check=between(0.1, 60))
    queue_s: float = key(10.0, doc="audio the pipeline may fall behind before blocks are dropped "
                         "(and alarmed as an overrun)", check=between(1, 120))
    timezone: str = key("UTC", doc="the box's time zone, an IANA name like `Europe/Berlin` (set at every boot; "
                        "the web pages show times in it; recordings are still indexed in UTC)",
                        check=Matches(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
                                      'must be an IANA time zone name like "Europe/Berlin", not {v!r}',
                                      "an IANA time zone name"))


@dataclass(frozen=True, slots=True)
class LineConfig:
    name: str = key(doc="the line's name in the index, on MQTT and in file names", check=NAME,
                    required=True)
    pcm: str = key(doc="the ALSA capture PCM",
                   check=Matches(r"\S", 'must name an ALSA PCM, e.g. "hw:CARD=line1,DEV=0"', "an ALSA PCM name"),
                   required=True, fallback="")
    rate: int = key(8000, doc="sample rate in Hz", check=one_of(RATES))
    channels: int = key(1, doc="channels captured (2: both legs of a stereo tap)", check=one_of((1, 2)))
    trigger: str = key("vox", doc="what starts a call: voice activity, the off-hook input, or always",
                       check=one_of(TRIGGERS))
    enabled: bool = key(True, doc="a disabled line is shown as `disabled`, not captured")
    offhook_gpio: int | None = key(None, doc="loop-current detector input for `offhook`", check=PIN)
    offhook_active_low: bool = key(False, doc="the off-hook input reads low while off hook")
    offhook_debounce_ms: int = key(60, doc="the off-hook input must hold this long to count",
                                   check=between(0, 2000))
    vox_start_dbfs: float = key(-35.0, doc="VOX: a call starts above this level", check=between(-96, 0))
    vox_stop_dbfs: float = key(-45.0, doc="VOX: a call ends after `vox_hang_s` below this level",
                               check=between(-96, 0))
    vox_attack_ms: int = key(60, doc="VOX: the level must stay above `vox_start_dbfs` this long",
                             check=between(0, 2000))
    vox_hang_s: float = key(8.0, doc="VOX: silence that ends a call", check=between(0.1, 600))
    preroll_s: float = key(3.0, doc="audio kept in RAM and put at the head of every call "
                           "(the first word is never clipped)", check=between(0, 30))
    min_call_s: float = key(2.0, doc="shorter sounds are not kept as calls", check=between(0, 600))
    max_call_s: float = key(4 * 3600.0, doc="longer calls are split (`end_reason = \"max_length\"`), "
                            "the next part continues seamlessly", check=between(10, 24 * 3600))
    segment_s: float = key(3600.0, doc="segment length for `continuous`", check=between(10, 24 * 3600))
    led: int | None = key(None, doc="BCM pin of the line's LED", check=PIN)
    mask_dtmf: bool = key(False, doc="replace DTMF digits in the audio with silence (PCI)")
    tone_set: str = key("us", doc="the country's call-progress tones", check=one_of(TONE_SETS))
    end_on_tone: bool = key(True, doc="a dial/busy/reorder tone or a special information tone ends the call")
    callerid: tuple[str, ...] = key(CALLERID_STANDARDS, doc="caller ID formats to decode",
                                    check=one_of(CALLERID_STANDARDS))
    callerid_window_s: float = key(30.0, doc="caller ID heard up to this long before a recording starts "
                                   "is attached to it", check=between(0, 600))
    capture_gain_db: float | None = key(None, doc="capture volume of the line's sound card in dB, set at line "
                                        "open through the card's capture mixer control (none: left as it is)",
                                        check=between(-100, 60))
    retention_days: int | None = key(None, doc="per-line override of `storage.retention_days`",
                                     check=between(0, 36500), shown_default="storage's")
    min_retention_days: int | None = key(None, doc="per-line override of `storage.min_retention_days`",
                                         check=between(0, 36500), shown_default="storage's")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    codec: str = key("opus", doc="recording format", check=one_of(CODECS))
    keep_free_mb: int = key(512, doc="ring buffer floor: the oldest recordings go to keep this free",
                            check=between(0, 10**7))
    max_use_mb: int = key(0, doc="optional quota for recordings (0: none)", check=between(0, 10**8))
    retention_days: int = key(0, doc="delete after N days (0: only when space is needed)",
                              check=between(0, 36500))
    min_retention_days: int = key(0, doc="never evict recordings younger than M days",
                                  check=between(0, 36500))
    on_min_retention_conflict: str = key("alarm", doc="`alarm`: keep young recordings, raise DISK_LOW; "
                                         "`evict`: free space anyway, logged", check=one_of(("alarm", "evict")))
    confirm_deletion: int = key(0, doc="a change of retention, `keep_free_mb`, `max_use_mb` or `data_dir` that "
                                "would delete or orphan more than 10% (and more than 10) of the recordings at "
                                "once is applied only if this is at least that number (the error names it)",
                                check=between(0, 10**9))
    sync_interval_s: float = key(0.4, doc="flush + fsync interval in seconds of audio: a power cut loses "
                                 "at most this, plus up to 0.3 s on its way to the writer, plus what the codec "
                                 "holds (see Storage): under 1 s by default", check=between(0.05, 1.0))
    encrypt_to: Path | None = key(None, doc="public key file (`linetap keygen`: an age recipient, or an older "
                                  "linetap key): recordings are encrypted to it as they are written, the "
                                  "private key stays off the box")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    dead_after_ms: int = key(500, doc="LINE_DEAD after this much constant audio", check=between(100, 60000))
    stall_after_ms: int = key(500, doc="LINE_DEAD (stalled) after this long without frames",
                              check=between(100, 60000))
    clipping_fraction: float = key(0.01, doc="LINE_CLIPPING when at least this fraction of samples "
                                   "clip for `clipping_after_s`",
                                   check=between(0.0001, 1))
    clipping_after_s: float = key(2.0, doc="how long clipping must last to raise LINE_CLIPPING",
                                  check=between(0.1, 600))
    disk_low_hours: float = key(24.0, doc="DISK_LOW when fewer hours of recording are left at the measured "
                                "rate", check=between(0, 10000))
    check_clock: bool = key(True, doc="CLOCK_UNSYNCED when the kernel says the clock is not "
                            "NTP-synchronised")
    alarm_clear_s: float = key(2.0, doc="a condition must be gone this long before its alarm clears "
                               "(no flapping)", check=between(0, 3600))


TOPIC_PREFIX = Matches(r"^[^#+]*[^#+/]$", "must be a topic level without # + or a trailing /",
                       "no `#`, `+` or trailing `/`")


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = key("127.0.0.1", doc="the broker's host name or address", required=True)
    port: int = key(1883, doc="the broker's port", check=between(1, 65535))
    topic_prefix: str = key("linetap", doc="first topic level (`<prefix>/<id>/...`)", check=TOPIC_PREFIX)
    username: str | None = key(None, doc="MQTT user name")
    password_file: Path | None = key(None, doc="file holding the password (never the password itself); "
                                     "needs `username`, and `tls_ca` or `allow_plaintext_password`")
    tls_ca: Path | None = key(None, doc="CA certificate file: connect with TLS")
    tls_cert: Path | None = key(None, doc="client certificate file (with `tls_key`)")
    tls_key: Path | None = key(None, doc="client key file (with `tls_cert`)")
    tls_insecure: bool = key(False, doc="skip the broker's host name check")
    allow_plaintext_password: bool = key(False, doc="send the password without TLS (trusted network only)")
    keepalive_s: int = key(30, doc="MQTT keepalive", check=between(5, 3600))
    health_interval_s: float = key(30.0, doc="how often health is published", check=between(1, 60))
    unreachable_after_s: float = key(60.0, doc="BROKER_UNREACHABLE after this long disconnected",
                                     check=between(0, 86400))
    discovery: bool = key(True, doc="publish Home Assistant discovery")
    discovery_prefix: str = key("homeassistant", doc="Home Assistant's discovery prefix", check=TOPIC_PREFIX)
    discovery_delay_max_s: float = key(5.0, doc="after Home Assistant's birth message, re-announce after a "
                                       "random delay up to this long (spreads a fleet's announcements)",
                                       check=between(0, 300))
    outbox_max: int = key(10000, doc="events kept on disk while the broker is unreachable "
                          "(when full, the oldest go)",
                          check=between(10, 10**7))
    publish_dtmf: bool = key(False, doc="publish the DTMF digits dialled during a call in `call_ended` "
                             "(default: one `*` per digit; digits are often card numbers or PINs)")
    protocol: str = key("5", doc="MQTT protocol version", check=one_of(("5", "3.1.1", "auto")))
    publish_caller_id: bool = key(True, doc="send the caller's number and name, a forwarded call's original "
                                  "number, the call-waiting callers and the DTMF digits in call events; false "
                                  "sends them as null (the index on the box keeps them)")


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    tsa_url: str | None = key(None, doc="RFC 3161 time-stamping authority: each new signed checkpoint is also "
                              "time-stamped there (at most one request per 10 s)",
                              check=Matches(r"^https?://\S+$", "must be an http(s) URL, not {v!r}", "an http(s) URL"))
    tsa_timeout_s: float = key(5.0, doc="how long one time-stamp request may take", check=between(0.5, 60))


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    remote: str = key("", doc="rclone remote, `name:bucket/prefix`: recordings keep their index `path` under it",
                      required=True,
                      check=Matches(r"^[A-Za-z0-9_][A-Za-z0-9_. -]*:\S*$", 'must be "name:bucket/prefix"',
                                    "`name:bucket/prefix`"))
    rclone_config: Path | None = key(None, doc="rclone's config file (a secret: imported from the boot partition "
                                     "at first boot)")
    required: bool = key(False, doc="never evict a recording that is not archived yet")
    bandwidth: str = key("1M", doc="upload bandwidth limit (rclone `--bwlimit`: `512k`, `1M`, `off`)",
                         check=Matches(r"^(off|[0-9]+(\.[0-9]+)?[BbKkMmGgTtPp]?)$", 'must be like "1M", "512k" or "off"',
                                       "`1M`, `512k`, `off`"))
    behind_after_h: float = key(24.0, doc="`ARCHIVE_BEHIND` while a recording that ended this long ago is not "
                                "archived", check=between(0.01, 8760))


@dataclass(frozen=True, slots=True)
class LedsConfig:
    status: int | None = key(None, doc="BCM pin of the status LED", check=PIN)
    buzzer: int | None = key(None, doc="BCM pin of the buzzer", check=PIN)
    active_high: bool = key(True, doc="the LEDs and buzzer are on when their pin is high")
    buzzer_muted: bool = key(False, doc="never sound the buzzer (critical alarms still blink the LEDs "
                                        "and reach MQTT)")
    mute_button: int | None = key(None, doc="BCM pin of a push button (to ground) that silences the "
                                            "buzzer until a new critical alarm is raised", check=PIN)


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: str = key("0.0.0.0:8443", doc="address and port `linetap web` listens on (HTTPS)",
                      check=Matches(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$",
                                    "must be HOST:PORT, e.g. \"0.0.0.0:8443\", not {v!r}", "`HOST:PORT`"))
    tls_cert: Path | None = key(None, doc="the installer's certificate (PEM; with `tls_key`); "
                                "absent: a self-signed one is made at first start")
    tls_key: Path | None = key(None, doc="the key of `tls_cert` (PEM)")
    session_hours: float = key(12.0, doc="a login lasts this long", check=between(0.1, 720))
    admin_password_hash: str | None = key(None, doc="argon2 hash (`linetap web --hash-password`) of the first "
                                          "admin's password: user `admin` is made from it while there is "
                                          "no admin; without it, a setup token is shown by `linetap status`")


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    wifi_ssid: str | None = key(None, doc="Wi-Fi network name (a Pi Zero 2 W has no Ethernet); "
                                "needs `wifi_country` and a passphrase")
    wifi_passphrase_file: Path | None = key(None, doc="file holding the WPA passphrase (8-63 characters or 64 hex "
                                            "digits); on the card, `wifi_passphrase = \"…\"` is moved into one")
    wifi_country: str | None = key(None, doc="regulatory country of the radio, ISO 3166 alpha-2 (`DE`, `US`)")
    address: str | None = key(None, doc="static address with prefix length (`192.168.1.50/24`); "
                              "absent: DHCP")
    gateway: str | None = key(None, doc="default gateway with a static `address`")
    dns: tuple[str, ...] = key((), doc="DNS servers (addresses) with a static `address`")
    ntp: tuple[str, ...] = key((), doc="NTP servers (host names or addresses); none: Debian's pool "
                               "or what DHCP gives")


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    recorder: RecorderConfig
    lines: tuple[LineConfig, ...]
    storage: StorageConfig = field(default_factory=StorageConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    mqtt: MqttConfig | None = None
    leds: LedsConfig | None = None
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    web: WebConfig = field(default_factory=WebConfig)
    archive: ArchiveConfig | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def line(self, name: str) -> LineConfig:
        for line in self.lines:
            if line.name == name:
                return line
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Section:
    """A top-level table: ``[name]`` (or ``[[name]]`` when ``many``)."""

    name: str
    cls: type
    doc: str
    optional: bool = False  # absent -> None (else absent -> the defaults)
    many: bool = False


SECTIONS = (
    Section("recorder", RecorderConfig, "the box"),
    Section("line", LineConfig, "one per phone line (at least one)", many=True),
    Section("storage", StorageConfig, "recordings on disk"),
    Section("health", HealthConfig, "alarm thresholds"),
    Section("mqtt", MqttConfig, "reporting to a broker; absent: no MQTT", optional=True),
    Section("leds", LedsConfig, "status LED and buzzer; absent: none", optional=True),
    Section("evidence", EvidenceConfig, "signed checkpoints and trusted time-stamps"),
    Section("web", WebConfig, "the web interface (`linetap web`)"),
    Section("archive", ArchiveConfig, "copies of the recordings off the box (rclone); absent: none", optional=True),
    Section("network", NetworkConfig, "Wi-Fi, static address, NTP (applied at every boot); absent: DHCP"),
)


@dataclass(frozen=True, slots=True)
class Field:
    """One declared key, resolved: its TOML type, whether it may be absent, its declaration."""

    name: str
    kind: type  # str, int, float, bool, Path (a string, relative to the config file) or tuple (a list)
    item: type | None  # a list's entry type
    optional: bool  # the value may be None
    default: Any  # _NO_DEFAULT when the dataclass has none
    decl: Key


@functools.cache
def fields(cls: type) -> tuple[Field, ...]:
    """The declared keys of a section's dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = hints[f.name], False
        if isinstance(kind, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = args[0], True
        item = None
        if typing.get_origin(kind) is tuple:
            kind, item = tuple, typing.get_args(kind)[0]
        out.append(Field(f.name, kind, item, optional, f.default, f.metadata["key"]))
    return tuple(out)


# --- the reader: a loop over the declarations -------------------------------------------------------

_KIND_NAMES = {str: "a string", Path: "a string", int: "an integer", float: "a number", bool: "true or false",
               tuple: "a list", dict: "a table", list: "a list"}
_TOML_TYPES = {str: (str,), Path: (str,), int: (int,), float: (int, float), bool: (bool,), tuple: (list,)}


class _Table:
    """One TOML table: reads declared keys, collecting errors instead of raising."""

    def __init__(self, errors: list[str], prefix: str, table: Any) -> None:
        self.errors = errors
        self.prefix = prefix
        self.ok = isinstance(table, dict)
        if not self.ok:
            errors.append(f"{prefix}: must be a table, not {type(table).__name__}")
        self.table: dict[str, Any] = table if self.ok else {}
        self.known: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.prefix}.{k}" if self.prefix else k

    def err(self, k: str, msg: str) -> None:
        self.errors.append(f"{self.key(k)}: {msg}")

    def raw(self, k: str, expected: type, default: Any, *, required: bool = False) -> Any:
        """A value of one TOML type (a table or list of tables), unchecked beyond its type."""
        self.known.add(k)
        if k not in self.table:
            if required:
                self.err(k, "is required")
            return default
        v = self.table[k]
        if isinstance(v, bool):
            self.err(k, f"must be {_KIND_NAMES[expected]}, not a boolean")
            return default
        if not isinstance(v, expected):
            self.err(k, f"must be {_KIND_NAMES[expected]}, not {_describe(v)}")
            return default
        return v

    def read(self, f: Field, to_path: Callable[[str], Path]) -> Any:
        """The key's value, or its default when it is absent or wrong (with the error noted)."""
        self.known.add(f.name)
        default = f.decl.fallback if f.default is _NO_DEFAULT else f.default
        if callable(default):
            default = default()
        if f.name not in self.table:
            if f.decl.required:
                self.err(f.name, "is required")
            return default
        v = self.table[f.name]
        # TOML booleans are ints in Python; never accept one for the other.
        if isinstance(v, bool) and f.kind is not bool:
            self.err(f.name, f"must be {_KIND_NAMES[f.kind]}, not a boolean")
            return default
        if not isinstance(v, _TOML_TYPES[f.kind]):
            self.err(f.name, f"must be {_KIND_NAMES[f.kind]}, not {_describe(v)}")
            return default
        if f.kind is tuple:
            if f.decl.check is not None and any(f.decl.check(x) for x in v):
                assert isinstance(f.decl.check, OneOf)
                self.err(f.name, f"each entry must be one of {', '.join(map(str, f.decl.check.options))}, "
                         f"not {v!r}")
                return default
            return tuple(v)
        if f.decl.check is not None:
            problem = f.decl.check(v)
            if problem:
                self.err(f.name, problem)
                return default
        if f.kind is float:
            return float(v)
        if f.kind is Path:
            return to_path(v)
        return v

    def finish(self) -> None:
        for k in self.table:
            if k not in self.known:
                hint = difflib.get_close_matches(k, sorted(self.known), n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else ""
                self.errors.append(f"{self.key(k)}: unknown key{more}")


def _read_section(t: _Table, cls: type, to_path: Callable[[str], Path]) -> dict[str, Any]:
    """Every declared key of ``cls`` from the table ``t``: the one loop the validation is."""
    return {f.name: t.read(f, to_path) for f in fields(cls)}


def _path(base: Path) -> Callable[[str], Path]:
    def to_path(v: str) -> Path:
        p = Path(v).expanduser()
        return p if p.is_absolute() else (base / p)
    return to_path


SERIAL_FILES = (Path("/proc/device-tree/serial-number"), Path("/proc/cpuinfo"))
MODEL_FILE = Path("/proc/device-tree/model")


def board_serial(files: tuple[Path, ...] = SERIAL_FILES) -> str | None:
    """The board's serial number (a Pi: the device tree's ``serial-number``, or ``Serial`` in
    /proc/cpuinfo), lower-case hex/alphanumerics; None on a machine without one (or all zeros)."""
    for path in files:
        try:
            text = path.read_bytes().decode("ascii", "replace")
        except OSError:
            continue
        if path.name == "cpuinfo":
            m = re.search(r"^Serial\s*:\s*(\S+)", text, re.M)
            text = m.group(1) if m else ""
        serial = re.sub(r"[^0-9a-z]", "", text.strip("\x00 \n").lower())
        if serial.strip("0"):
            return serial
    return None


def board_model(path: Path = MODEL_FILE) -> str | None:
    """The board's model (``Raspberry Pi 4 Model B Rev 1.5``), or None."""
    try:
        return path.read_bytes().decode("utf-8", "replace").strip("\x00 \n") or None
    except OSError:
        return None


def default_recorder_id(serial_files: tuple[Path, ...] = SERIAL_FILES,
                        machine_id: Path = Path("/etc/machine-id")) -> str:
    """A stable id for a box without ``recorder.id``: the board's serial number, which survives
    a reflash (so Home Assistant keeps the device and its history), else /etc/machine-id
    (kept across boots by firstboot.py, but new after a reflash)."""
    serial = board_serial(serial_files)
    if serial:
        return f"linetap-{serial[-8:]}"
    try:
        mid = machine_id.read_text().strip()
    except OSError:
        mid = ""
    return f"linetap-{mid[:8]}" if mid else "linetap"


# --- the loader ---------------------------------------------------------------

def load(path: str | Path) -> Config:
    """Load and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: cannot read: {e}"]) from None
    return load_text(text, source=str(p), base=p.resolve().parent)


def load_text(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{source}: not valid TOML: {e}"]) from None
    errors: list[str] = []
    cfg = _build(doc, errors, source, base or Path.cwd())
    if errors:
        raise ConfigError([f"{source}: {e}" for e in errors])
    return cfg


def _build(doc: dict[str, Any], errors: list[str], source: str, base: Path) -> Config:
    top = _Table(errors, "", doc)
    to_path = _path(base)

    r = _Table(errors, "recorder", top.raw("recorder", dict, {}))
    recorder = RecorderConfig(**_read_section(r, RecorderConfig, to_path))
    r.finish()

    s = _Table(errors, "storage", top.raw("storage", dict, {}))
    storage = StorageConfig(**_read_section(s, StorageConfig, to_path))
    s.finish()
    if storage.retention_days and storage.min_retention_days > storage.retention_days:
        errors.append("storage.min_retention_days: must not exceed storage.retention_days "
                      f"({storage.min_retention_days} > {storage.retention_days})")

    h = _Table(errors, "health", top.raw("health", dict, {}))
    health = HealthConfig(**_read_section(h, HealthConfig, to_path))
    h.finish()

    lines_raw = top.raw("line", list, [], required=True)
    if not lines_raw and "line" in doc and isinstance(doc["line"], list):
        errors.append("line: at least one [[line]] is required")
    lines: list[LineConfig] = []
    seen: set[str] = set()
    for i, raw in enumerate(lines_raw):
        line = _line(errors, f"line[{i}]", raw, to_path)
        if line is None:
            continue
        if line.name in seen:
            errors.append(f"line[{i}].name: {line.name!r} is used by another line")
        seen.add(line.name)
        lines.append(line)

    mqtt = None
    if "mqtt" in doc:
        m = _Table(errors, "mqtt", top.raw("mqtt", dict, {}))
        mqtt = MqttConfig(**_read_section(m, MqttConfig, to_path))
        if "password" in m.table:
            m.known.add("password")
            m.err("password", "secrets are not accepted in the config; put the password in a file "
                  "readable only by linetap and set mqtt.password_file")
        m.finish()
        _check_mqtt(errors, mqtt)

    leds = None
    if "leds" in doc:
        lr = _Table(errors, "leds", top.raw("leds", dict, {}))
        leds = LedsConfig(**_read_section(lr, LedsConfig, to_path))
        lr.finish()

    ev = _Table(errors, "evidence", top.raw("evidence", dict, {}))
    evidence = EvidenceConfig(**_read_section(ev, EvidenceConfig, to_path))
    ev.finish()
    w = _Table(errors, "web", top.raw("web", dict, {}))
    web = WebConfig(**_read_section(w, WebConfig, to_path))
    w.finish()
    if (web.tls_cert is None) != (web.tls_key is None):
        errors.append("web.tls_cert: tls_cert and tls_key go together (set both or neither)")
    archive = None
    if "archive" in doc:
        ar = _Table(errors, "archive", top.raw("archive", dict, {}))
        archive = ArchiveConfig(**_read_section(ar, ArchiveConfig, to_path))
        ar.finish()

    nt = _Table(errors, "network", top.raw("network", dict, {}))
    network = NetworkConfig(**_read_section(nt, NetworkConfig, to_path))
    if "wifi_passphrase" in nt.table:
        nt.known.add("wifi_passphrase")
        nt.err("wifi_passphrase", "secrets are not accepted in the config; on the boot partition's linetap.toml "
               "it is moved into a file at the next boot, else set network.wifi_passphrase_file")
    nt.finish()
    _check_network(errors, network)
    _check_timezone(errors, recorder.timezone, "timezone" in r.table)

    top.finish()
    _check_pins(errors, leds, lines)
    return Config(source=source, recorder=recorder, lines=tuple(lines), storage=storage,
                  health=health, mqtt=mqtt, leds=leds, evidence=evidence, web=web, archive=archive,
                  network=network)


def _line(errors: list[str], prefix: str, raw: Any, to_path: Callable[[str], Path]) -> LineConfig | None:
    r = _Table(errors, prefix, raw)
    if not r.ok:
        return None
    values = _read_section(r, LineConfig, to_path)
    if values["name"] is None:  # missing (already an error): a name no other line can have
        values["name"] = f"line{prefix}"
    line = LineConfig(**values)
    r.finish()
    if line.vox_stop_dbfs > line.vox_start_dbfs:
        errors.append(f"{prefix}.vox_stop_dbfs: must not be above vox_start_dbfs "
                      f"({line.vox_stop_dbfs:g} > {line.vox_start_dbfs:g})")
    if line.trigger == "offhook" and line.offhook_gpio is None and "offhook_gpio" not in r.table:
        errors.append(f"{prefix}.offhook_gpio: is required when trigger = \"offhook\"")
    if line.min_call_s >= line.max_call_s:
        errors.append(f"{prefix}.min_call_s: must be below max_call_s")
    return line


def _check_mqtt(errors: list[str], mqtt: MqttConfig) -> None:
    if mqtt.password_file and not mqtt.username:
        errors.append("mqtt.username: is required when mqtt.password_file is set")
    if (mqtt.tls_cert is None) != (mqtt.tls_key is None):
        errors.append("mqtt.tls_key: tls_cert and tls_key must be given together")
    if mqtt.password_file and not mqtt.tls_ca and not mqtt.allow_plaintext_password:
        errors.append("mqtt.password_file: refusing to send a password without TLS; set mqtt.tls_ca, "
                      "or mqtt.allow_plaintext_password = true on a trusted network")


def _check_network(errors: list[str], net: NetworkConfig) -> None:
    errors.extend(f"network.{k}: {msg}" for k, msg in network_problems(net))


def _check_timezone(errors: list[str], name: str, given: bool) -> None:
    problem = timezone_problem(name) if given else None
    if problem:
        errors.append(f"recorder.timezone: {problem}")


def _check_pins(errors: list[str], leds: LedsConfig | None, lines: list[LineConfig]) -> None:
    used: dict[int, str] = {}

    def claim(p: int | None, key: str) -> None:
        if p is None:
            return
        if p in used:
            errors.append(f"{key}: GPIO {p} is already used by {used[p]}")
        else:
            used[p] = key

    if leds:
        claim(leds.status, "leds.status")
        claim(leds.buzzer, "leds.buzzer")
        claim(leds.mute_button, "leds.mute_button")
    for i, line in enumerate(lines):
        claim(line.led, f"line[{i}].led")
        claim(line.offhook_gpio, f"line[{i}].offhook_gpio")


def mask_secrets(cfg_text: str) -> str:
    """For display: the config with anything secret-looking replaced by ********."""
    return re.sub(r'(?im)^(\s*[a-z_]*(password|passphrase|secret|token)[a-z_]*\s*=\s*)(".*?"|\S+)',
                  r'\1"********"', cfg_text)
