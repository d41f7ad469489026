"""Config: every mistake is one clear line naming the file and the key, exit 2, no traceback.

The table goes through the real command line (``linetap.cli.main``, as ``check`` and as
``run``; a few cases also as a separate process), then the loader is tested on its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from linetap import config_docs
from linetap.cli import main
from linetap.config import SECTIONS, ConfigError, LineConfig, OneOf, fields, load, load_text, mask_secrets
from linetap.detect.tones import TONE_SETS

GOOD = """\
[recorder]
id = "shop-01"
data_dir = "{data}"

[storage]
codec = "flac"

[[line]]
name = "line1"
pcm = "hw:CARD=line1,DEV=0"
"""

LINE2 = """
[[line]]
name = "line2"
pcm = "hw:CARD=line2,DEV=0"
"""

LINES = '[[line]]\nname = "line1"\npcm = "hw:CARD=line1,DEV=0"\n' + LINE2

MQTT = """
[mqtt]
host = "broker.local"
"""

# (case id, how the good config is changed, key the message must name, what it must say)
BAD = [
    ("unknown key with a hint", ("codec = \"flac\"", "codecs = \"flac\""),
     "storage.codecs", "unknown key; did you mean 'codec'?"),
    ("unknown table", ("[storage]", "[storgae]"), "storgae", "unknown key; did you mean 'storage'?"),
    ("unknown line key", ("name = \"line1\"", "name = \"line1\"\ntriger = \"vox\""),
     "line[0].triger", "unknown key; did you mean 'trigger'?"),
    ("wrong type", ("name = \"line1\"", "name = \"line1\"\nrate = \"8000\""),
     "line[0].rate", "must be an integer, not '8000'"),
    ("boolean for a number", ("name = \"line1\"", "name = \"line1\"\nchannels = true"),
     "line[0].channels", "must be an integer, not a boolean"),
    ("unsupported rate", ("name = \"line1\"", "name = \"line1\"\nrate = 44000"),
     "line[0].rate", "must be one of 8000, 16000, 22050, 32000, 44100, 48000, not 44000"),
    ("bad line name", ("name = \"line1\"", "name = \"Line 1\""),
     "line[0].name", "must match [a-z0-9_-]"),
    ("duplicate line name", ("name = \"line2\"", "name = \"line1\""),
     "line[1].name", "'line1' is used by another line"),
    ("bad codec", ("codec = \"flac\"", "codec = \"mp3\""),
     "storage.codec", "must be one of opus, flac, wav, not 'mp3'"),
    ("bad trigger", ("name = \"line1\"", "name = \"line1\"\ntrigger = \"voice\""),
     "line[0].trigger", "must be one of vox, offhook, continuous, not 'voice'"),
    ("offhook without its pin", ("name = \"line1\"", "name = \"line1\"\ntrigger = \"offhook\""),
     "line[0].offhook_gpio", "is required when trigger = \"offhook\""),
    ("pin out of range", ("name = \"line1\"", "name = \"line1\"\ntrigger = \"offhook\"\noffhook_gpio = 40"),
     "line[0].offhook_gpio", "must be a BCM GPIO number 0..27, not 40"),
    ("missing pcm", ("pcm = \"hw:CARD=line1,DEV=0\"", ""), "line[0].pcm", "is required"),
    ("missing line name", ("name = \"line1\"", ""), "line[0].name", "is required"),
    ("no line at all", (LINES, ""), "line", "is required"),
    ("an empty list of lines", [(LINES, ""), ("[recorder]", "line = []\n[recorder]")],
     "line", "at least one [[line]] is required"),
    ("empty data_dir", ("data_dir = \"{data}\"", "data_dir = \"\""), "recorder.data_dir", "must name a directory"),
    ("data_dir not a string", ("data_dir = \"{data}\"", "data_dir = 5"), "recorder.data_dir",
     "must be a string, not 5"),
    ("bad recorder id", ("id = \"shop-01\"", "id = \"Shop 01\""), "recorder.id", "must match [a-z0-9_-]"),
    ("stop above start", ("name = \"line1\"", "name = \"line1\"\nvox_start_dbfs = -50.0"),
     "line[0].vox_stop_dbfs", "must not be above vox_start_dbfs (-45 > -50)"),
    ("password_file without TLS", ("[storage]", MQTT + "username = \"u\"\npassword_file = \"/etc/pw\"\n[storage]"),
     "mqtt.password_file", "refusing to send a password without TLS"),
    ("secret in the config", ("[storage]", MQTT + "password = \"hunter2\"\n[storage]"),
     "mqtt.password", "secrets are not accepted in the config"),
    ("a line that is not a table", [(LINES, ""), ("[recorder]", "line = [\"line1\"]\n[recorder]")],
     "line[0]", "must be a table, not str"),
]


def bad_config(tmp_path: Path, change: tuple[str, str] | list[tuple[str, str]]) -> Path:
    data = tmp_path / "data"
    text = (GOOD + LINE2).replace("{data}", str(data))
    for old, new in change if isinstance(change, list) else [change]:
        old, new = old.replace("{data}", str(data)), new.replace("{data}", str(data))
        assert old in text, f"the case does not apply to the good config: {old!r}"
        text = text.replace(old, new, 1)
    path = tmp_path / "linetap.toml"
    path.write_text(text)
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def test_the_good_config_of_the_table_is_valid(tmp_path):
    cfg = load(bad_config(tmp_path, ("", "")))
    assert [line.name for line in cfg.lines] == ["line1", "line2"]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("change,key,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_config_is_one_line_naming_file_and_key_and_exit_2(tmp_path, capsys, command, change, key, message):
    path = bad_config(tmp_path, change)
    with pytest.raises(ConfigError):  # never let `run` start on a config that turned out valid
        load(path)
    assert main([command, "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err).startswith(f"linetap: config error: {path}: {key}: {message}")
    assert "hunter2" not in err
    assert not (tmp_path / "data").exists(), "a bad config must be refused before anything is created"


def test_a_toml_syntax_error_names_the_file_and_where(tmp_path, capsys):
    path = tmp_path / "linetap.toml"
    path.write_text('[recorder]\nid = "shop-01\n')
    assert main(["check", "-c", str(path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"linetap: config error: {path}: not valid TOML: ")
    assert "line 2" in line


def test_a_missing_config_file_is_named(tmp_path, capsys):
    path = tmp_path / "nowhere.toml"
    assert main(["run", "-c", str(path)]) == 2
    assert one_line(capsys.readouterr().err) == f"linetap: config error: {path}: no such file"


def test_every_problem_is_reported_at_once_one_line_each(tmp_path, capsys):
    path = bad_config(tmp_path, ("codec = \"flac\"", "codec = \"mp3\"\nkeep_free = 5"))
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"linetap: config error: {path}: storage.codec: must be one of opus, flac, wav, not 'mp3'",
                   f"linetap: config error: {path}: storage.keep_free: unknown key; did you mean 'keep_free_mb'?"]


@pytest.mark.parametrize("command", ["check", "run"])
def test_as_a_process_a_bad_config_exits_2_with_one_line_on_stderr(tmp_path, command):
    path = bad_config(tmp_path, ("name = \"line1\"", "name = \"line1\"\ntrigger = \"voice\""))
    p = subprocess.run([sys.executable, "-m", "linetap", command, "-c", str(path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert p.stdout == ""
    assert one_line(p.stderr) == (f"linetap: config error: {path}: line[0].trigger: "
                                  "must be one of vox, offhook, continuous, not 'voice'")


def test_as_a_process_a_missing_file_exits_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "linetap", "run", "-c", str(tmp_path / "x.toml")],
                       capture_output=True, text=True, timeout=30)
    assert (p.returncode, one_line(p.stderr)) == (2, f"linetap: config error: {tmp_path / 'x.toml'}: no such file")


# --- the loader on its own ----------------------------------------------------

def test_defaults_are_the_documented_ones():
    cfg = load_text('[[line]]\nname = "line1"\npcm = "null"\n', base=Path("/etc/linetap"))
    line = cfg.lines[0]
    assert (line.rate, line.channels, line.trigger) == (8000, 1, "vox")
    assert (line.vox_start_dbfs, line.vox_stop_dbfs, line.vox_hang_s) == (-35.0, -45.0, 8.0)
    assert (line.preroll_s, line.min_call_s, line.max_call_s, line.segment_s) == (3.0, 2.0, 4 * 3600.0, 3600.0)
    assert (cfg.storage.codec, cfg.storage.keep_free_mb, cfg.storage.retention_days) == ("opus", 512, 0)
    assert cfg.recorder.data_dir == Path("/var/lib/linetap")
    assert cfg.recorder.id.startswith("linetap")
    assert cfg.mqtt is None and cfg.leds is None


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    path = tmp_path / "etc" / "linetap.toml"
    path.parent.mkdir()
    path.write_text('[recorder]\ndata_dir = "data"\n[[line]]\nname = "a"\npcm = "null"\n'
                    '[mqtt]\nhost = "h"\ntls_ca = "ca.pem"\n')
    cfg = load(path)
    assert cfg.recorder.data_dir == tmp_path / "etc" / "data"
    assert cfg.mqtt is not None and cfg.mqtt.tls_ca == tmp_path / "etc" / "ca.pem"


def test_integers_are_accepted_where_numbers_are_expected():
    cfg = load_text('[[line]]\nname = "a"\npcm = "null"\nvox_hang_s = 5\n')
    assert cfg.lines[0].vox_hang_s == 5.0 and isinstance(cfg.lines[0].vox_hang_s, float)


def test_a_table_of_mqtt_is_optional_and_takes_the_contract_defaults():
    cfg = load_text('[[line]]\nname = "a"\npcm = "null"\n[mqtt]\nhost = "10.0.0.2"\n')
    assert cfg.mqtt is not None
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.topic_prefix) == ("10.0.0.2", 1883, "linetap")


def test_a_password_file_with_tls_is_accepted():
    cfg = load_text('[[line]]\nname = "a"\npcm = "null"\n[mqtt]\nhost = "h"\nusername = "u"\n'
                    'password_file = "/etc/linetap/pw"\ntls_ca = "/etc/ssl/ca.pem"\n')
    assert cfg.mqtt is not None and cfg.mqtt.password_file == Path("/etc/linetap/pw")


def test_a_gpio_pin_used_twice_is_an_error():
    with pytest.raises(ConfigError) as e:
        load_text('[leds]\nstatus = 17\n[[line]]\nname = "a"\npcm = "null"\ntrigger = "offhook"\n'
                  'offhook_gpio = 17\n')
    assert e.value.errors == ["<config>: line[0].offhook_gpio: GPIO 17 is already used by leds.status"]


def test_config_errors_carry_every_message_with_the_source():
    with pytest.raises(ConfigError) as e:
        load_text('[[line]]\nname = "a"\npcm = ""\nrate = 1\n', source="x.toml")
    assert e.value.errors == [
        'x.toml: line[0].pcm: must name an ALSA PCM, e.g. "hw:CARD=line1,DEV=0"',
        "x.toml: line[0].rate: must be one of 8000, 16000, 22050, 32000, 44100, 48000, not 1",
    ]


def test_line_lookup_by_name():
    cfg = load_text('[[line]]\nname = "a"\npcm = "null"\n[[line]]\nname = "b"\npcm = "null"\n')
    assert cfg.line("b").name == "b"
    with pytest.raises(KeyError):
        cfg.line("c")


def test_secrets_are_masked_for_display():
    shown = mask_secrets('[mqtt]\nusername = "u"\npassword = "hunter2"\napi_token = abc\n')
    assert "hunter2" not in shown and "abc" not in shown
    assert 'password = "********"' in shown and 'username = "u"' in shown


def test_an_unknown_key_of_the_web_table_is_named():
    with pytest.raises(ConfigError) as e:
        load_text('[[line]]\nname = "a"\npcm = "null"\n[web]\nport = 8080\n')
    assert e.value.errors == ["<config>: web.port: unknown key"]


def test_a_web_certificate_needs_its_key():
    with pytest.raises(ConfigError) as e:
        load_text('[[line]]\nname = "a"\npcm = "null"\n[web]\ntls_cert = "/etc/c.pem"\n')
    assert e.value.errors == ["<config>: web.tls_cert: tls_cert and tls_key go together (set both or neither)"]


def test_an_unknown_time_zone_is_named():
    with pytest.raises(ConfigError) as e:
        load_text('[recorder]\ntimezone = "Mars/Olympus"\n[[line]]\nname = "a"\npcm = "null"\n')
    assert e.value.errors == ['<config>: recorder.timezone: \'Mars/Olympus\' is not a known time zone '
                              '(an IANA name like "Europe/Berlin")']


def test_opus_bitrate_mode_is_an_unknown_key_since_nothing_reads_it():
    with pytest.raises(ConfigError) as e:
        load_text('[[line]]\nname = "a"\npcm = "null"\n[storage]\nopus_bitrate_mode = "cbr"\n')
    [error] = e.value.errors
    assert error.startswith("<config>: storage.opus_bitrate_mode: unknown key")


def test_the_tone_sets_allowed_are_the_ones_the_detector_has():
    line = next(f for f in fields(LineConfig) if f.name == "tone_set")
    assert isinstance(line.decl.check, OneOf) and line.decl.check.options == TONE_SETS


def test_every_key_is_declared_with_a_doc():
    for section in SECTIONS:
        for f in fields(section.cls):
            assert f.decl.doc.strip(), f"{section.name}.{f.name} has no doc"


# --- the docs generated from the declarations --------------------------------

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "docs" / "linetap.schema.json"


def test_the_readme_configuration_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    assert config_docs.replace_table(readme, config_docs.markdown_table()) == readme, \
        "the README's configuration table is stale: run scripts/gen-config-docs"


def test_the_committed_json_schema_is_the_generated_one():
    assert SCHEMA.read_text() == config_docs.json_schema_text(), \
        "docs/linetap.schema.json is stale: run scripts/gen-config-docs"


def test_the_generated_table_has_a_row_for_every_key_the_loader_reads():
    table = config_docs.markdown_table()
    for section in SECTIONS:
        for f in fields(section.cls):
            assert f"| `{section.name}.{f.name}` |" in table


_JSON_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
               "boolean": bool}


def schema_errors(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """The JSON Schema keywords docs/linetap.schema.json uses, checked the way a validator does
    (no JSON Schema library is a dependency of the project)."""
    kind = _JSON_TYPES[schema["type"]]
    if not isinstance(value, kind) or (isinstance(value, bool) and schema["type"] != "boolean"):
        return [f"{where}: not {schema['type']}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: above {schema['maximum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        errors += [f"{where}.{k}: required" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in schema["properties"]:
                errors += schema_errors(v, schema["properties"][k], f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{k}: additional property")
    return errors


def doc_examples() -> dict[str, str]:
    """Every TOML example in the docs (README.md, docs/, the package's .md files), by file and number."""
    found = {}
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
                 *sorted((REPO / "firmware" / "linetap").rglob("*.md"))]:
        blocks = re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)
        for i, block in enumerate(blocks):
            if tomllib.loads(block):  # not just a comment (the #:schema line)
                found[f"{path.relative_to(REPO)} #{i}"] = block
    return found


EXAMPLES = {
    **doc_examples(),
    "firmware/linetap/data/box.toml": (REPO / "firmware" / "linetap" / "data" / "box.toml").read_text(),
    "the test table's good config": GOOD + LINE2 + MQTT + 'port = 8883\nprotocol = "auto"\n',
}


def test_the_docs_have_toml_examples_to_check():
    assert {"README.md #1", "docs/INSTALL.md #0", "firmware/linetap/mqtt/TOPICS.md #0"} <= set(EXAMPLES)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_schema_accepts_the_example_configs(example):
    text = EXAMPLES[example].replace("{data}", "/tmp/x")
    if "[[line]]" not in text:  # a fragment (e.g. just [mqtt]): the loader needs a line to say yes
        text += '\n[[line]]\nname = "line1"\npcm = "null"\n'
    load_text(text)  # the loader accepts it too
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_errors(tomllib.loads(text), schema) == []


@pytest.mark.parametrize("change,error", [
    (("codec = \"flac\"", "codecs = \"flac\""), ".storage.codecs: additional property"),
    (("[storage]", "[storgae]"), ".storgae: additional property"),
    (("name = \"line2\"", "name = \"line2\"\ntriger = \"vox\""), ".line[1].triger: additional property"),
    (("name = \"line2\"", "name = \"line2\"\nrate = 44000"), ".line[1].rate: not one of"),
    (("name = \"line2\"", "name = \"line2\"\nvox_hang_s = 0.01"), ".line[1].vox_hang_s: below 0.1"),
    (("name = \"line2\"", "name = \"line2\"\nchannels = true"), ".line[1].channels: not integer"),
    (("name = \"line2\"", "name = \"Line 2\""), ".line[1].name: does not match"),
    (("codec = \"flac\"", "codec = \"flac\"\n[web]\nport = 8080"), ".web.port: additional property"),
], ids=["unknown key", "unknown table", "unknown line key", "rate", "below minimum", "boolean", "pattern", "web"])
def test_the_schema_rejects_what_the_loader_rejects(change, error):
    text = (GOOD + LINE2).replace("{data}", "/tmp/x").replace(*change, 1)
    with pytest.raises(ConfigError):
        load_text(text)
    errors = schema_errors(tomllib.loads(text), json.loads(SCHEMA.read_text()))
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_the_docs_module_prints_both_as_a_process():
    for flag, expect in (("--markdown", config_docs.markdown_table()),
                         ("--json-schema", config_docs.json_schema_text())):
        p = subprocess.run([sys.executable, "-m", "linetap.config_docs", flag], capture_output=True, text=True,
                           timeout=30)
        assert (p.returncode, p.stdout) == (0, expect)
