"""hw/pins.toml is the truth: the factory config, the udev rules and the docs agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from linetap import config

REPO = Path(__file__).resolve().parents[1]
PINS = tomllib.loads((REPO / "hw/pins.toml").read_text())
GPIOS: list[dict[str, Any]] = PINS["gpio"]
USB_PORTS: list[dict[str, Any]] = PINS["usb_port"]
BOX_TOML = REPO / "firmware/linetap/data/box.toml"
SOUND_RULES = REPO / "hw/udev/70-linetap-sound.rules"

# The Raspberry Pi's 40-pin header: physical pin -> BCM GPIO (every model since the B+).
HEADER_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}
# ID EEPROM (0, 1), I2C with fixed pull-ups (2, 3), the serial console (14, 15).
RESERVED_BCM = {0, 1, 2, 3, 14, 15}


def config_value(cfg: config.Config, dotted: str) -> Any:
    """``leds.status`` or ``line.<name>.<key>`` in a loaded config."""
    section, *rest = dotted.split(".")
    if section == "line":
        name, key = rest
        return getattr(cfg.line(name), key)
    obj = getattr(cfg, section)
    return None if obj is None else getattr(obj, rest[0])


@pytest.fixture(scope="module")
def factory() -> config.Config:
    return config.load(BOX_TOML)


@pytest.mark.parametrize("gpio", GPIOS, ids=lambda g: g["signal"])
def test_header_pin_is_where_that_bcm_gpio_really_is(gpio):
    assert HEADER_TO_BCM[gpio["header"]] == gpio["bcm"]


def test_no_gpio_is_used_twice():
    bcms = [g["bcm"] for g in GPIOS]
    assert len(bcms) == len(set(bcms))


def test_no_gpio_takes_a_pin_the_pi_needs_for_something_else():
    assert {g["bcm"] for g in GPIOS} & RESERVED_BCM == set()


@pytest.mark.parametrize("gpio", [g for g in GPIOS if g["in_factory_config"]], ids=lambda g: g["signal"])
def test_factory_config_uses_the_pin_map(factory, gpio):
    assert config_value(factory, gpio["config"]) == gpio["bcm"]


def test_factory_config_uses_no_pin_the_map_does_not_know(factory):
    used = {factory.leds.status, factory.leds.buzzer} | {line.led for line in factory.lines} \
        | {line.offhook_gpio for line in factory.lines}
    assert used - {None} <= {g["bcm"] for g in GPIOS}


def test_optional_pins_are_left_out_of_the_factory_config(factory):
    for gpio in GPIOS:
        if not gpio["in_factory_config"]:
            assert config_value(factory, gpio["config"]) is None


def test_switching_every_line_to_offhook_with_the_documented_pins_is_a_valid_config():
    offhook = {g["config"].split(".")[1]: g["bcm"] for g in GPIOS if g["config"].endswith(".offhook_gpio")}
    text = BOX_TOML.read_text()
    for name, bcm in offhook.items():
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\ntrigger = "offhook"\noffhook_gpio = {bcm}\n'
                            'offhook_active_low = true\n', 1)
    text = text.replace('trigger = "vox"\n', "")
    cfg = config.load_text(text, source="box.toml")
    assert {line.name: (line.trigger, line.offhook_gpio) for line in cfg.lines} == \
        {name: ("offhook", bcm) for name, bcm in offhook.items()}


def test_factory_config_records_every_line_at_8khz_mono_by_voice(factory):
    assert [(l.name, l.pcm, l.rate, l.channels, l.trigger) for l in factory.lines] == [
        ("line1", "hw:CARD=line1,DEV=0", 8000, 1, "vox"),
        ("line2", "hw:CARD=line2,DEV=0", 8000, 1, "vox"),
    ]


# --- udev: stable card ids per USB socket -------------------------------------------------

def sound_rules() -> list[tuple[str, str]]:
    """(ID_PATH, card id) of every naming rule."""
    rules = []
    for line in SOUND_RULES.read_text().splitlines():
        found = re.fullmatch(r'ENV\{ID_PATH\}=="([^"]+)", ATTR\{id\}="([^"]+)"', line.strip())
        if found:
            rules.append((found.group(1), found.group(2)))
    return rules


def test_udev_rules_name_exactly_the_sockets_of_the_pin_map():
    assert sorted(sound_rules()) == sorted((p["id_path"], p["card"]) for p in USB_PORTS)


def test_each_board_names_each_card_once():
    seen: dict[str, list[str]] = {}
    for port in USB_PORTS:
        seen.setdefault(port["board"], []).append(port["card"])
    for cards in seen.values():
        assert len(cards) == len(set(cards))


def test_every_pcm_of_the_factory_config_is_a_card_the_udev_rules_name_on_every_board(factory):
    boards = {p["board"] for p in USB_PORTS}
    for line in factory.lines:
        card = re.match(r"hw:CARD=([^,]+),", line.pcm).group(1)
        assert {p["board"] for p in USB_PORTS if p["card"] == card} == boards


def test_udev_rule_lines_are_well_formed():
    key = r'[A-Z]+(\{[^}]+\})?(==|!=|=|\+=|:=)"[^"]*"'
    for path in sorted((REPO / "hw/udev").glob("*.rules")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                assert re.fullmatch(rf"{key}(, {key})*", line.strip()), f"{path.name}:{n}: {line}"


def test_the_naming_rules_run_only_for_added_sound_cards():
    text = SOUND_RULES.read_text()
    for guard in ('SUBSYSTEM!="sound", GOTO="linetap_sound_end"', 'ACTION!="add", GOTO="linetap_sound_end"',
                  'KERNEL!="card*", GOTO="linetap_sound_end"', 'LABEL="linetap_sound_end"'):
        assert guard in text


# --- the rest of the hardware reference -----------------------------------------------------

def test_config_txt_turns_the_hardware_watchdog_on():
    assert "dtparam=watchdog=on" in (REPO / "hw/config.txt").read_text().splitlines()


def firmware_gpio_settings() -> dict[int, set[str]]:
    """BCM pin -> options of config.txt's ``gpio=`` lines (``gpio=5,6=op,dl``, ``gpio=2-4=ip``)."""
    settings: dict[int, set[str]] = {}
    for line in (REPO / "hw/config.txt").read_text().splitlines():
        found = re.fullmatch(r"gpio=([0-9,-]+)=([a-z,]+)", line.strip())
        if not found:
            continue
        for part in found.group(1).split(","):
            lo, _, hi = part.partition("-")
            for bcm in range(int(lo), int(hi or lo) + 1):
                settings.setdefault(bcm, set()).update(found.group(2).split(","))
    return settings


def test_config_txt_keeps_every_led_and_the_buzzer_off_from_power_on():
    outputs = {g["bcm"] for g in GPIOS if g["direction"] == "output"}
    settings = firmware_gpio_settings()
    assert {bcm: settings.get(bcm) for bcm in outputs} == {bcm: {"op", "dl"} for bcm in outputs}


def test_config_txt_never_drives_an_input():
    inputs = {g["bcm"] for g in GPIOS if g["direction"] == "input"}
    assert inputs & set(firmware_gpio_settings()) == set()


def test_the_readme_pin_table_matches_the_pin_map():
    readme = (REPO / "hw/README.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| (\d+) \| (\d+) \| (in|out) \|", readme, re.M)
    assert sorted((int(b), int(h), d) for b, h, d in rows) == \
        sorted((g["bcm"], g["header"], "out" if g["direction"] == "output" else "in") for g in GPIOS)
