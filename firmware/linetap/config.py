"""Configuration: one TOML file, loaded once, validated completely up front.

Every problem is reported at once, each with the file and dotted key
(``linetap.toml: line[1].rate: must be one of 8000, 16000, 48000, not 44000``),
unknown keys are errors (a typo must not silently disable a feature), and
secrets are never read here: only the *paths* of files that hold them.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

NAME_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
RATES = (8000, 16000, 22050, 32000, 44100, 48000)
TRIGGERS = ("vox", "offhook", "continuous")
CODECS = ("opus", "flac", "wav")
TONE_SETS = ("us", "uk", "eu")
CALLERID_STANDARDS = ("bell202", "v23", "dtmf")


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    id: str
    data_dir: Path
    heartbeat_s: float = 1.0
    queue_s: float = 10.0


@dataclass(frozen=True, slots=True)
class LineConfig:
    name: str
    pcm: str
    rate: int = 8000
    channels: int = 1
    trigger: str = "vox"
    enabled: bool = True
    offhook_gpio: int | None = None
    offhook_active_low: bool = False
    offhook_debounce_ms: int = 60
    vox_start_dbfs: float = -35.0
    vox_stop_dbfs: float = -45.0
    vox_attack_ms: int = 60
    vox_hang_s: float = 8.0
    preroll_s: float = 3.0
    min_call_s: float = 2.0
    max_call_s: float = 4 * 3600.0
    segment_s: float = 3600.0
    led: int | None = None
    mask_dtmf: bool = False
    tone_set: str = "us"
    end_on_tone: bool = True
    callerid: tuple[str, ...] = CALLERID_STANDARDS
    callerid_window_s: float = 30.0
    retention_days: int | None = None
    min_retention_days: int | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    codec: str = "opus"
    keep_free_mb: int = 512
    max_use_mb: int = 0
    retention_days: int = 0
    min_retention_days: int = 0
    on_min_retention_conflict: str = "alarm"  # alarm | evict
    sync_interval_s: float = 0.4
    encrypt_to: Path | None = None
    opus_bitrate_mode: str = "vbr"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    dead_after_ms: int = 500
    stall_after_ms: int = 500
    clipping_fraction: float = 0.01
    clipping_after_s: float = 2.0
    disk_low_hours: float = 24.0
    check_clock: bool = True
    alarm_clear_s: float = 2.0


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "linetap"
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False
    allow_plaintext_password: bool = False
    keepalive_s: int = 30
    health_interval_s: float = 30.0
    unreachable_after_s: float = 60.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    outbox_max: int = 10000
    protocol: str = "5"  # 5 | 3.1.1 | auto


@dataclass(frozen=True, slots=True)
class LedsConfig:
    status: int | None = None
    buzzer: int | None = None
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    recorder: RecorderConfig
    lines: tuple[LineConfig, ...]
    storage: StorageConfig = field(default_factory=StorageConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    mqtt: MqttConfig | None = None
    leds: LedsConfig | None = None
    web: WebConfig | None = None

    def line(self, name: str) -> LineConfig:
        for line in self.lines:
            if line.name == name:
                return line
        raise KeyError(name)


# --- validation helpers -------------------------------------------------------

Check = Callable[[Any], str | None]


def _describe(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


class _Reader:
    """Reads one TOML table, collecting errors instead of raising."""

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

    def get(self, k: str, kind: type | tuple[type, ...], default: Any, *, required: bool = False,
            check: Check | None = None) -> Any:
        self.known.add(k)
        if k not in self.table:
            if required:
                self.err(k, "is required")
            return default
        v = self.table[k]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints in Python; never accept one for the other.
        if isinstance(v, bool) and bool not in kinds:
            self.err(k, f"must be {_kind_name(kinds)}, not a boolean")
            return default
        if float in kinds and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kinds):
            self.err(k, f"must be {_kind_name(kinds)}, not {_describe(v)}")
            return default
        if check is not None:
            problem = check(v)
            if problem:
                self.err(k, problem)
                return default
        return v

    def finish(self) -> None:
        for k in self.table:
            if k not in self.known:
                hint = difflib.get_close_matches(k, sorted(self.known), n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else ""
                self.errors.append(f"{self.key(k)}: unknown key{more}")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds if k is not int or float not in kinds)


def one_of(options: tuple[Any, ...]) -> Check:
    def check(v: Any) -> str | None:
        if v in options:
            return None
        return f"must be one of {', '.join(str(o) for o in options)}, not {_describe(v)}"
    return check


def between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}, not {v:g}"
    return check


def pin(v: Any) -> str | None:
    return None if 0 <= v <= 27 else f"must be a BCM GPIO number 0..27, not {v}"


def name(v: Any) -> str | None:
    return None if NAME_RE.match(v) else f"must match [a-z0-9_-] (1-32 characters), not {v!r}"


def _path(base: Path) -> Callable[[str | None], Path | None]:
    def to_path(v: str | None) -> Path | None:
        if v is None:
            return None
        p = Path(v).expanduser()
        return p if p.is_absolute() else (base / p)
    return to_path


def default_recorder_id() -> str:
    """A stable id for a box without one configured: from /etc/machine-id."""
    try:
        mid = Path("/etc/machine-id").read_text().strip()
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
    assert cfg is not None
    return cfg


def _build(doc: dict[str, Any], errors: list[str], source: str, base: Path) -> Config | None:
    top = _Reader(errors, "", doc)
    to_path = _path(base)

    r = _Reader(errors, "recorder", top.get("recorder", dict, {}))
    recorder = RecorderConfig(
        id=r.get("id", str, None, check=name) or default_recorder_id(),
        data_dir=to_path(r.get("data_dir", str, "/var/lib/linetap",
                               check=lambda v: None if v.strip() else "must name a directory, not \"\""))
        or Path("/var/lib/linetap"),
        heartbeat_s=r.get("heartbeat_s", float, 1.0, check=between(0.1, 60)),
        queue_s=r.get("queue_s", float, 10.0, check=between(1, 120)),
    )
    r.finish()

    s = _Reader(errors, "storage", top.get("storage", dict, {}))
    storage = StorageConfig(
        codec=s.get("codec", str, "opus", check=one_of(CODECS)),
        keep_free_mb=s.get("keep_free_mb", int, 512, check=between(0, 10**7)),
        max_use_mb=s.get("max_use_mb", int, 0, check=between(0, 10**8)),
        retention_days=s.get("retention_days", int, 0, check=between(0, 36500)),
        min_retention_days=s.get("min_retention_days", int, 0, check=between(0, 36500)),
        on_min_retention_conflict=s.get("on_min_retention_conflict", str, "alarm",
                                        check=one_of(("alarm", "evict"))),
        sync_interval_s=s.get("sync_interval_s", float, 0.4, check=between(0.05, 1.0)),
        encrypt_to=to_path(s.get("encrypt_to", str, None)),
        opus_bitrate_mode=s.get("opus_bitrate_mode", str, "vbr", check=one_of(("vbr", "cbr"))),
    )
    s.finish()
    if storage.retention_days and storage.min_retention_days > storage.retention_days:
        errors.append("storage.min_retention_days: must not exceed storage.retention_days "
                      f"({storage.min_retention_days} > {storage.retention_days})")

    h = _Reader(errors, "health", top.get("health", dict, {}))
    health = HealthConfig(
        dead_after_ms=h.get("dead_after_ms", int, 500, check=between(100, 60000)),
        stall_after_ms=h.get("stall_after_ms", int, 500, check=between(100, 60000)),
        clipping_fraction=h.get("clipping_fraction", float, 0.01, check=between(0.0001, 1)),
        clipping_after_s=h.get("clipping_after_s", float, 2.0, check=between(0.1, 600)),
        disk_low_hours=h.get("disk_low_hours", float, 24.0, check=between(0, 10000)),
        check_clock=h.get("check_clock", bool, True),
        alarm_clear_s=h.get("alarm_clear_s", float, 2.0, check=between(0, 3600)),
    )
    h.finish()

    lines_raw = top.get("line", list, [], required=True)
    lines: list[LineConfig] = []
    seen: set[str] = set()
    if isinstance(lines_raw, list) and not lines_raw and "line" in doc:
        errors.append("line: at least one [[line]] is required")
    for i, raw in enumerate(lines_raw if isinstance(lines_raw, list) else []):
        line = _line(errors, f"line[{i}]", raw, storage)
        if line is None:
            continue
        if line.name in seen:
            errors.append(f"line[{i}].name: {line.name!r} is used by another line")
        seen.add(line.name)
        lines.append(line)

    mqtt = None
    if "mqtt" in doc:
        m = _Reader(errors, "mqtt", top.get("mqtt", dict, {}))
        mqtt = MqttConfig(
            host=m.get("host", str, "127.0.0.1", required=True),
            port=m.get("port", int, 1883, check=between(1, 65535)),
            topic_prefix=m.get("topic_prefix", str, "linetap",
                               check=lambda v: None if v and not set(v) & set("#+") and not v.endswith("/")
                               else "must be a topic level without # + or a trailing /"),
            username=m.get("username", str, None),
            password_file=to_path(m.get("password_file", str, None)),
            tls_ca=to_path(m.get("tls_ca", str, None)),
            tls_cert=to_path(m.get("tls_cert", str, None)),
            tls_key=to_path(m.get("tls_key", str, None)),
            tls_insecure=m.get("tls_insecure", bool, False),
            allow_plaintext_password=m.get("allow_plaintext_password", bool, False),
            keepalive_s=m.get("keepalive_s", int, 30, check=between(5, 3600)),
            health_interval_s=m.get("health_interval_s", float, 30.0, check=between(1, 60)),
            unreachable_after_s=m.get("unreachable_after_s", float, 60.0, check=between(0, 86400)),
            discovery=m.get("discovery", bool, True),
            discovery_prefix=m.get("discovery_prefix", str, "homeassistant"),
            outbox_max=m.get("outbox_max", int, 10000, check=between(10, 10**7)),
            protocol=m.get("protocol", str, "5", check=one_of(("5", "3.1.1", "auto"))),
        )
        if "password" in m.table:
            m.known.add("password")
            m.err("password", "secrets are not accepted in the config; put the password in a file "
                  "readable only by linetap and set mqtt.password_file")
        m.finish()
        if mqtt.password_file and not mqtt.username:
            errors.append("mqtt.username: is required when mqtt.password_file is set")
        if (mqtt.tls_cert is None) != (mqtt.tls_key is None):
            errors.append("mqtt.tls_key: tls_cert and tls_key must be given together")
        if mqtt.password_file and not mqtt.tls_ca and not mqtt.allow_plaintext_password:
            errors.append("mqtt.password_file: refusing to send a password without TLS; set mqtt.tls_ca, "
                          "or mqtt.allow_plaintext_password = true on a trusted network")

    leds = None
    if "leds" in doc:
        lr = _Reader(errors, "leds", top.get("leds", dict, {}))
        leds = LedsConfig(
            status=lr.get("status", int, None, check=pin),
            buzzer=lr.get("buzzer", int, None, check=pin),
            active_high=lr.get("active_high", bool, True),
        )
        lr.finish()

    web = None
    if "web" in doc:
        w = _Reader(errors, "web", top.get("web", dict, {}))
        web = WebConfig(listen=w.get("listen", str, "127.0.0.1"),
                        port=w.get("port", int, 8080, check=between(1, 65535)))
        w.finish()

    top.finish()
    _check_pins(errors, leds, lines)
    return Config(source=source, recorder=recorder, lines=tuple(lines), storage=storage,
                  health=health, mqtt=mqtt, leds=leds, web=web)


def _line(errors: list[str], prefix: str, raw: Any, storage: StorageConfig) -> LineConfig | None:
    r = _Reader(errors, prefix, raw)
    if not r.ok:
        return None
    n_before = len(errors)
    trigger = r.get("trigger", str, "vox", check=one_of(TRIGGERS))
    callerid = r.get("callerid", list, list(CALLERID_STANDARDS))
    if isinstance(callerid, list) and any(c not in CALLERID_STANDARDS for c in callerid):
        r.err("callerid", f"each entry must be one of {', '.join(CALLERID_STANDARDS)}, not {callerid!r}")
        callerid = list(CALLERID_STANDARDS)
    line = LineConfig(
        name=r.get("name", str, f"line{prefix}", required=True, check=name),
        pcm=r.get("pcm", str, "", required=True,
                  check=lambda v: None if v.strip() else "must name an ALSA PCM, e.g. \"hw:CARD=line1,DEV=0\""),
        rate=r.get("rate", int, 8000, check=one_of(RATES)),
        channels=r.get("channels", int, 1, check=one_of((1, 2))),
        trigger=trigger,
        enabled=r.get("enabled", bool, True),
        offhook_gpio=r.get("offhook_gpio", int, None, check=pin),
        offhook_active_low=r.get("offhook_active_low", bool, False),
        offhook_debounce_ms=r.get("offhook_debounce_ms", int, 60, check=between(0, 2000)),
        vox_start_dbfs=r.get("vox_start_dbfs", float, -35.0, check=between(-96, 0)),
        vox_stop_dbfs=r.get("vox_stop_dbfs", float, -45.0, check=between(-96, 0)),
        vox_attack_ms=r.get("vox_attack_ms", int, 60, check=between(0, 2000)),
        vox_hang_s=r.get("vox_hang_s", float, 8.0, check=between(0.1, 600)),
        preroll_s=r.get("preroll_s", float, 3.0, check=between(0, 30)),
        min_call_s=r.get("min_call_s", float, 2.0, check=between(0, 600)),
        max_call_s=r.get("max_call_s", float, 4 * 3600.0, check=between(10, 24 * 3600)),
        segment_s=r.get("segment_s", float, 3600.0, check=between(10, 24 * 3600)),
        led=r.get("led", int, None, check=pin),
        mask_dtmf=r.get("mask_dtmf", bool, False),
        tone_set=r.get("tone_set", str, "us", check=one_of(TONE_SETS)),
        end_on_tone=r.get("end_on_tone", bool, True),
        callerid=tuple(callerid),
        callerid_window_s=r.get("callerid_window_s", float, 30.0, check=between(0, 600)),
        retention_days=r.get("retention_days", int, None, check=between(0, 36500)),
        min_retention_days=r.get("min_retention_days", int, None, check=between(0, 36500)),
    )
    r.finish()
    if line.vox_stop_dbfs > line.vox_start_dbfs:
        errors.append(f"{prefix}.vox_stop_dbfs: must not be above vox_start_dbfs "
                      f"({line.vox_stop_dbfs:g} > {line.vox_start_dbfs:g})")
    if line.trigger == "offhook" and line.offhook_gpio is None and "offhook_gpio" not in r.table:
        errors.append(f"{prefix}.offhook_gpio: is required when trigger = \"offhook\"")
    if line.min_call_s >= line.max_call_s:
        errors.append(f"{prefix}.min_call_s: must be below max_call_s")
    return line if len(errors) == n_before else line


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
    for i, line in enumerate(lines):
        claim(line.led, f"line[{i}].led")
        claim(line.offhook_gpio, f"line[{i}].offhook_gpio")


def mask_secrets(cfg_text: str) -> str:
    """For display: the config with anything secret-looking replaced by ********."""
    return re.sub(r'(?im)^(\s*[a-z_]*(password|secret|token)[a-z_]*\s*=\s*)(".*?"|\S+)',
                  r'\1"********"', cfg_text)
