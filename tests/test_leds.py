"""LED patterns (pure) and the LED panel on gpiozero's MockFactory."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from linetap.alarms import Alarm
from linetap.config import LedsConfig, LineConfig
from linetap.leds.driver import FAST_BLINK_S, LedPanel
from linetap.leds.patterns import (HEARTBEAT_S, HEARTBEAT_STEP_S, buzzer_silenced, critical_keys, heartbeat_steps,
                                   led_patterns, muted_after)
from helpers import wait_for

STATUS_PIN, LINE1_PIN, LINE2_PIN, BUZZER_PIN, BUTTON_PIN = 5, 6, 13, 19, 26


def alarm(code: str, line: str | None = None) -> Alarm:
    from linetap.alarms import severity
    return Alarm(code, severity(code), line, 0.0)


IDLE = {"line1": "idle", "line2": "idle"}


# --- patterns ---

def test_an_idle_healthy_box_pulses_slowly():
    assert led_patterns(IDLE, []) == {"status": "slow_pulse", "line1": "slow_pulse", "line2": "slow_pulse",
                                      "buzzer": "off"}


def test_a_recording_line_is_steady_and_so_is_the_status_led():
    p = led_patterns({"line1": "recording", "line2": "idle"}, [])
    assert (p["status"], p["line1"], p["line2"]) == ("steady", "steady", "slow_pulse")


def test_a_fault_on_a_line_blinks_that_lines_led_fast():
    p = led_patterns({"line1": "fault", "line2": "recording"}, [alarm("LINE_DEAD", "line1")])
    assert (p["line1"], p["line2"]) == ("fast_blink", "steady")


def test_a_warning_on_a_line_leaves_its_led_alone_and_heartbeats_the_status_led():
    p = led_patterns({"line1": "recording", "line2": "idle"}, [alarm("LINE_CLIPPING", "line1")])
    assert p == {"status": "heartbeat", "line1": "steady", "line2": "slow_pulse", "buzzer": "off"}


@pytest.mark.parametrize("code", ["DISK_LOW", "CLOCK_UNSYNCED", "BROKER_UNREACHABLE"])
def test_a_system_warning_never_hides_the_lines(code):
    p = led_patterns({"line1": "recording", "line2": "idle"}, [alarm(code)])
    assert p == {"status": "heartbeat", "line1": "steady", "line2": "slow_pulse", "buzzer": "off"}


def test_a_box_with_no_network_at_all_still_shows_its_lines_plainly():
    no_network = [alarm("CLOCK_UNSYNCED"), alarm("BROKER_UNREACHABLE")]
    assert led_patterns({"line1": "recording", "line2": "idle"}, no_network) == \
        {"status": "heartbeat", "line1": "steady", "line2": "slow_pulse", "buzzer": "off"}
    assert led_patterns({"line1": "fault", "line2": "idle"}, no_network + [alarm("LINE_DEAD", "line1")]) == \
        {"status": "heartbeat", "line1": "fast_blink", "line2": "slow_pulse", "buzzer": "steady"}


def test_a_critical_system_alarm_blinks_every_led_fast():
    p = led_patterns({"line1": "recording", "line2": "idle"}, [alarm("DISK_WRITE_FAILED")])
    assert p == {"status": "fast_blink", "line1": "fast_blink", "line2": "fast_blink", "buzzer": "steady"}


def test_critical_outranks_warning_on_the_status_led():
    alarms = [alarm("BROKER_UNREACHABLE"), alarm("LINE_NO_DEVICE", "line2")]
    assert led_patterns(IDLE, alarms, lines_with_led={"line1"})["status"] == "fast_blink"
    assert led_patterns(IDLE, alarms, lines_with_led={"line1", "line2"})["status"] == "heartbeat"


def test_a_system_alarm_naming_a_line_is_still_a_system_fault():
    p = led_patterns(IDLE, [alarm("DISK_WRITE_FAILED", "line1")])
    assert (p["status"], p["line2"]) == ("fast_blink", "fast_blink")


def test_a_process_fault_blinks_every_led_fast():
    p = led_patterns(IDLE, [], process_fault=True)
    assert set(p[k] for k in ("status", "line1", "line2")) == {"fast_blink"}


def test_a_line_fault_shows_on_the_status_led_when_the_line_has_no_led_of_its_own():
    alarms = [alarm("LINE_NO_DEVICE", "line2")]
    assert led_patterns(IDLE, alarms, lines_with_led={"line1", "line2"})["status"] == "slow_pulse"
    assert led_patterns(IDLE, alarms, lines_with_led={"line1"})["status"] == "fast_blink"


def test_a_disabled_lines_led_is_off():
    assert led_patterns({"line1": "disabled"}, [])["line1"] == "off"


def test_the_buzzer_sounds_while_a_critical_alarm_is_active_unless_muted():
    assert led_patterns(IDLE, [alarm("LINE_DEAD", "line1")])["buzzer"] == "steady"
    assert led_patterns(IDLE, [alarm("CLOCK_UNSYNCED")])["buzzer"] == "off"
    assert led_patterns(IDLE, [alarm("LINE_DEAD", "line1")], buzzer_muted=True)["buzzer"] == "off"
    assert led_patterns(IDLE, [], process_fault=True)["buzzer"] == "off"  # no alarm to mute: LEDs only


def test_the_heartbeat_is_on_off_on_then_a_long_off_in_50_ms_steps():
    assert heartbeat_steps() == [1, 1, 0, 0, 1, 1] + [0] * 24
    assert len(heartbeat_steps()) * HEARTBEAT_STEP_S == pytest.approx(sum(HEARTBEAT_S)) == pytest.approx(1.5)


DEAD1, NODEV2, DISKFAIL = ("LINE_DEAD", "line1"), ("LINE_NO_DEVICE", "line2"), ("DISK_WRITE_FAILED", None)


def test_critical_keys_are_the_active_critical_alarms_only():
    assert critical_keys([alarm("LINE_DEAD", "line1"), alarm("DISK_LOW"), alarm("LINE_NO_DEVICE", "line2")]) == \
        {DEAD1, NODEV2}


def test_a_press_mutes_the_critical_alarms_active_now():
    muted = muted_after(frozenset(), frozenset({DEAD1}), pressed=True)
    assert muted == {DEAD1} and buzzer_silenced(muted, frozenset({DEAD1}))


def test_a_new_critical_alarm_ends_the_mute():
    muted = frozenset({DEAD1})
    now = frozenset({DEAD1, NODEV2})
    assert muted_after(muted, now, pressed=False) == {DEAD1}
    assert not buzzer_silenced(muted_after(muted, now, pressed=False), now)


def test_a_muted_alarm_that_clears_and_comes_back_sounds_again():
    muted = muted_after(frozenset({DEAD1}), frozenset(), pressed=False)  # cleared: forgotten
    assert muted == frozenset()
    assert not buzzer_silenced(muted_after(muted, frozenset({DEAD1}), pressed=False), frozenset({DEAD1}))


def test_one_of_two_muted_alarms_clearing_keeps_the_other_muted():
    muted = muted_after(frozenset(), frozenset({DEAD1, DISKFAIL}), pressed=True)
    assert buzzer_silenced(muted_after(muted, frozenset({DISKFAIL}), pressed=False), frozenset({DISKFAIL}))


def test_a_buzzer_muted_in_the_config_never_sounds():
    assert buzzer_silenced(frozenset(), frozenset({DEAD1}), config_muted=True)
    assert not buzzer_silenced(frozenset(), frozenset({DEAD1}), config_muted=False)


# --- the panel on mock pins ---

LINES = [LineConfig("line1", "hw:1", led=LINE1_PIN), LineConfig("line2", "hw:2", led=LINE2_PIN),
         LineConfig("line3", "hw:3")]


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def pwm_factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


@pytest.fixture
def panel(factory):
    p = LedPanel(LedsConfig(status=STATUS_PIN, buzzer=BUZZER_PIN), LINES, pin_factory=factory)
    yield p
    p.close()


def transitions(pin) -> list[tuple[float, float]]:
    """(seconds since the previous change, new state) for each change after clear_states()."""
    return [(s.timestamp, float(s.state)) for s in pin.states[1:]]


def test_the_panel_has_the_status_led_the_line_leds_and_the_buzzer(panel):
    assert set(panel.devices) == {"status", "line1", "line2", "buzzer"}
    assert panel.lines_with_led == {"line1", "line2"}
    assert panel.errors == []


def test_steady_turns_the_pin_on_and_off_turns_it_off(panel, factory):
    pin = factory.pin(LINE1_PIN)
    panel.apply({"line1": "steady"})
    assert pin.state
    panel.apply({"line1": "off"})
    assert not pin.state


def test_a_fault_makes_the_lines_led_toggle_at_the_fast_rate_within_250_ms(panel, factory):
    pin = factory.pin(LINE1_PIN)
    pin.clear_states()
    panel.apply({"line1": "fast_blink"})
    # Four changes take 0.3 s at 5 Hz; a busy machine's late steps only add to the wait.
    changes = wait_for(lambda: len(transitions(pin)) >= 4 and transitions(pin), timeout=5)
    assert changes[0][1] == 1.0 and changes[0][0] < 0.25  # on within 250 ms of the alarm
    assert len(changes) >= 4
    on_s, off_s = FAST_BLINK_S
    for seconds, state in changes[1:4]:
        assert seconds == pytest.approx(on_s if state == 0.0 else off_s, abs=0.05)


def test_applying_the_same_pattern_again_does_not_restart_it(panel, factory):
    pin = factory.pin(LINE1_PIN)
    panel.apply({"line1": "fast_blink"})
    time.sleep(0.05)
    pin.clear_states()
    for _ in range(20):
        panel.apply({"line1": "fast_blink"})
    time.sleep(0.25)
    # Restarting would turn the LED on again at each apply; undisturbed it keeps its 0.1 s rhythm.
    assert 1 <= len(transitions(pin)) <= 3


def test_without_pwm_a_slow_pulse_is_a_slow_blink(panel, factory):
    pin = factory.pin(STATUS_PIN)
    pin.clear_states()
    panel.apply({"status": "slow_pulse"})
    time.sleep(0.3)
    assert transitions(pin) == [(pytest.approx(0.0, abs=0.05), 1.0)]  # on, and staying on for a second


def test_with_pwm_a_slow_pulse_fades(pwm_factory):
    panel = LedPanel(LedsConfig(status=STATUS_PIN), [], pin_factory=pwm_factory)
    try:
        pin = pwm_factory.pin(STATUS_PIN)
        panel.apply({"status": "slow_pulse"})
        # A few fade steps (gpiozero's PWM pulse: 25 a second) are enough to tell a fade.
        levels = wait_for(lambda: len(pin.states) >= 8 and [s.state for s in pin.states], timeout=5)
        assert any(0.0 < v < 1.0 for v in levels)  # in between: a fade, not a blink
        assert levels[-1] > levels[1]  # fading in
    finally:
        panel.close()


def test_the_heartbeat_double_blinks_every_1_5_s(panel, factory):
    pin = factory.pin(STATUS_PIN)
    pin.clear_states()
    panel.apply({"status": "heartbeat"})
    # Five changes make one whole beat (1.5 s); waited for, not slept for, so late steps on a
    # busy machine show in the durations asserted below, not as changes missing.
    changes = wait_for(lambda: len(transitions(pin)) >= 5 and transitions(pin), timeout=5)
    # on 0.1, off 0.1, on 0.1, off 1.2, on ...: gpiozero's 50 ms steps are never early, and
    # may each be late on a busy machine; the short flashes stay far shorter than the pause.
    assert [state for _, state in changes[:5]] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert changes[0][0] < 0.25  # on at once
    on1, off1, on2, pause = (seconds for seconds, _ in changes[1:5])
    assert all(0.09 <= x <= 0.35 for x in (on1, off1, on2)), changes
    assert 1.15 <= pause <= 1.6, changes
    panel.apply({"status": "steady"})  # another pattern stops the heartbeat
    time.sleep(0.2)
    pin.clear_states()
    time.sleep(0.3)
    assert transitions(pin) == [] and pin.state


def test_the_buzzer_follows_its_pattern(panel, factory):
    panel.apply({"buzzer": "steady"})
    assert factory.pin(BUZZER_PIN).state
    panel.apply({"buzzer": "off"})
    assert not factory.pin(BUZZER_PIN).state


def test_active_low_leds_are_driven_low_to_light(factory):
    panel = LedPanel(LedsConfig(status=STATUS_PIN, active_high=False), [], pin_factory=factory)
    try:
        panel.apply({"status": "steady"})
        assert not factory.pin(STATUS_PIN).state
    finally:
        panel.close()


def test_keys_without_a_device_are_ignored(panel):
    panel.apply({"line3": "fast_blink", "nonsense": "steady"})
    assert panel.pattern("line3") is None


def test_an_led_that_cannot_be_set_up_is_reported_and_left_out(factory):
    lines = [LineConfig("line1", "hw:1", led=STATUS_PIN)]  # the same GPIO twice
    panel = LedPanel(LedsConfig(status=STATUS_PIN), lines, pin_factory=factory)
    try:
        assert set(panel.devices) == {"status"}
        assert len(panel.errors) == 1 and "line1 on GPIO 5" in panel.errors[0]
    finally:
        panel.close()


def test_closing_the_panel_turns_everything_off(panel, factory):
    panel.apply({"status": "steady", "line1": "fast_blink", "buzzer": "steady"})
    panel.close()
    assert not any(factory.pin(p).state for p in (STATUS_PIN, LINE1_PIN, BUZZER_PIN))


def test_patterns_from_alarms_reach_the_pins(panel, factory):
    patterns = led_patterns({"line1": "fault", "line2": "recording", "line3": "idle"},
                            [alarm("LINE_DEAD", "line1")], lines_with_led=panel.lines_with_led)
    panel.apply(patterns)
    time.sleep(0.05)
    assert panel.pattern("line1") == "fast_blink"
    assert factory.pin(LINE2_PIN).state and factory.pin(BUZZER_PIN).state
    assert panel.pattern("status") == "steady"


def test_the_mute_button_is_a_press_counted_once_and_wakes_the_health_thread(factory):
    panel = LedPanel(LedsConfig(status=STATUS_PIN, buzzer=BUZZER_PIN, mute_button=BUTTON_PIN), [],
                     pin_factory=factory)
    woken: list[bool] = []
    panel.on_mute = lambda: woken.append(True)
    try:
        button = factory.pin(BUTTON_PIN)
        assert button.state  # pulled up: not pressed
        assert panel.take_press() is False
        button.drive_low()  # pressed (to ground)
        wait_for(lambda: woken, timeout=1)
        button.drive_high()
        assert panel.take_press() is True
        assert panel.take_press() is False  # one press, taken once
    finally:
        panel.close()


def test_a_mute_button_that_cannot_be_set_up_is_reported_and_recording_goes_on(factory):
    panel = LedPanel(LedsConfig(status=STATUS_PIN, mute_button=STATUS_PIN), [], pin_factory=factory)
    try:
        assert panel.button is None and len(panel.errors) == 1 and "mute button on GPIO 5" in panel.errors[0]
        assert panel.take_press() is False
    finally:
        panel.close()


def test_the_buzzer_can_be_muted_in_the_config(factory):
    panel = LedPanel(LedsConfig(buzzer=BUZZER_PIN, buzzer_muted=True), [], pin_factory=factory)
    try:
        assert panel.config_muted
    finally:
        panel.close()


# --- the picture of the patterns ---

def test_the_diagram_draws_each_pattern_from_its_definition():
    from linetap.leds.diagram import wave
    assert wave("steady") == [(0.0, 1.0), (3.0, 1.0)]
    assert wave("off") == [(0.0, 0.0), (3.0, 0.0)]
    assert wave("slow_pulse") == [(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (3.0, 1.0)]
    assert wave("heartbeat")[:9] == [(0.0, 1.0), (0.1, 1.0), (0.1, 0.0), (0.2, 0.0), (0.2, 1.0), (0.3, 1.0),
                                     (0.3, 0.0), (1.5, 0.0), (1.5, 1.0)]
    blink = wave("fast_blink")
    assert blink[:4] == [(0.0, 1.0), (0.1, 1.0), (0.1, 0.0), (0.2, 0.0)] and blink[-1] == (3.0, 0.0)
    assert wave("slow_pulse", 2.5)[-1] == (2.5, 0.5)  # a ramp cut mid-way


def test_the_committed_diagram_is_what_the_definitions_draw():
    from pathlib import Path

    from linetap.leds.diagram import svg
    committed = Path(__file__).resolve().parents[1] / "docs" / "led-patterns.svg"
    assert committed.read_text() == svg(), "run ./scripts/gen-led-diagram"
