"""Capture gain (``line.capture_gain_db``) set through the card's mixer at line open.

No machine the tests run on has a sound card, so the mixer calls cannot run for real here: the
decision (which control, clamped to its range) is a pure function tested with values, the
adapter's calls are checked against a fake ``alsaaudio`` module at the adapter seam (the names
and arguments pyalsaaudio 0.11 takes), and the real ALSA ``file`` PCM shows that a line with no
card behind it still opens, with the gain reported as not applied.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from linetap.capture import alsa as alsa_adapter
from linetap.capture.alsa import AlsaSource, GainDecision, MixerControl, decide_capture_gain, set_capture_gain

RATE = 8000
PERIOD = 160


def test_the_capture_control_is_preferred_over_the_first_one():
    controls = [MixerControl("Speaker", None), MixerControl("Mic", (-1200, 3000)),
                MixerControl("Capture", (-1725, 3000))]
    assert decide_capture_gain(controls, 6.0) == GainDecision("Capture", 600, None)


def test_mic_when_there_is_no_capture_control():
    controls = [MixerControl("Speaker", None), MixerControl("Auto Gain Control", None),
                MixerControl("Mic", (0, 2362))]
    assert decide_capture_gain(controls, 12.5) == GainDecision("Mic", 1250, None)


def test_an_unknown_name_with_a_capture_range_is_used_when_no_preferred_one_has_one():
    controls = [MixerControl("Capture", None), MixerControl("PGA", (-1200, 4000))]
    assert decide_capture_gain(controls, -3.0) == GainDecision("PGA", -300, None)


def test_a_value_outside_the_range_is_clamped_and_said():
    controls = [MixerControl("Mic", (0, 2362))]
    assert decide_capture_gain(controls, 40.0) == GainDecision(
        "Mic", 2362, "capture_gain_db = 40 is outside 'Mic''s range 0..23.62 dB; set to 23.62 dB")
    assert decide_capture_gain(controls, -10.0) == GainDecision(
        "Mic", 0, "capture_gain_db = -10 is outside 'Mic''s range 0..23.62 dB; set to 0 dB")


def test_no_capture_control_sets_nothing_and_says_so():
    controls = [MixerControl("Speaker", None), MixerControl("Capture", (0, 0))]
    assert decide_capture_gain(controls, 6.0) == GainDecision(
        None, None, "the card has no capture volume control in dB (controls: Speaker, Capture); "
                    "capture_gain_db = 6 not applied")


class FakeAlsa:
    """``alsaaudio`` as the adapter uses it: ``mixers``, ``Mixer`` and the constants."""

    PCM_CAPTURE = 1
    VOLUME_UNITS_DB = 2

    class ALSAAudioError(Exception):
        pass

    def __init__(self, controls: dict[str, tuple[list[str], tuple[int, int]]], fail_set: bool = False) -> None:
        self.controls = controls
        self.fail_set = fail_set
        self.calls: list[tuple] = []
        self.closed = 0

    def mixers(self, cardindex: int) -> list[str]:
        self.calls.append(("mixers", cardindex))
        return list(self.controls)

    def Mixer(self, control: str, cardindex: int):  # noqa: N802 - pyalsaaudio's name
        fake = self
        caps, rng = self.controls[control]

        class M:
            def volumecap(self) -> list[str]:
                return caps

            def getrange(self, pcmtype: int, units: int) -> tuple[int, int]:
                assert (pcmtype, units) == (fake.PCM_CAPTURE, fake.VOLUME_UNITS_DB)
                return rng

            def setvolume(self, volume: int, pcmtype: int, units: int) -> None:
                if fake.fail_set:
                    raise fake.ALSAAudioError("Operation not permitted [hw:1]")
                fake.calls.append(("setvolume", control, cardindex, volume, pcmtype, units))

            def close(self) -> None:
                fake.closed += 1

        return M()


@pytest.fixture
def fake_alsa(monkeypatch):
    def install(**kw) -> FakeAlsa:
        fake = FakeAlsa(**kw)
        monkeypatch.setattr(alsa_adapter, "alsaaudio", types.SimpleNamespace(
            mixers=fake.mixers, Mixer=fake.Mixer, PCM_CAPTURE=fake.PCM_CAPTURE,
            VOLUME_UNITS_DB=fake.VOLUME_UNITS_DB, ALSAAudioError=FakeAlsa.ALSAAudioError))
        return fake
    return install


def test_the_adapter_sets_the_chosen_control_of_the_lines_card_in_hundredths_of_a_db(fake_alsa):
    fake = fake_alsa(controls={"Speaker": (["Playback Volume"], (0, 0)),
                               "Mic": (["Capture Volume", "Joined Capture Volume"], (0, 2362))})
    assert set_capture_gain(1, 9.0) is None
    assert fake.calls == [("mixers", 1), ("setvolume", "Mic", 1, 900, 1, 2)]
    assert fake.closed == 3  # every mixer opened is closed again


def test_a_mixer_that_refuses_is_a_warning_not_an_exception(fake_alsa, caplog):
    fake_alsa(controls={"Mic": (["Capture Volume"], (0, 2362))}, fail_set=True)
    with caplog.at_level(logging.WARNING, logger="linetap.capture.alsa"):
        problem = set_capture_gain(1, 9.0)
    assert problem == "cannot set the capture volume: Operation not permitted [hw:1]"
    assert "card 1: cannot set the capture volume: Operation not permitted [hw:1]" in caplog.messages


def test_a_line_without_a_card_opens_and_says_the_gain_was_not_applied(alsa):
    """The real ALSA ``file`` PCM: no card, so no mixer; capture still works."""
    (line,) = alsa.lines(1)
    feeder = line.feed((np.arange(RATE) % 1000).astype(np.int16), speed=1.0, keep_open=True)
    src = AlsaSource(line.pcm, RATE, 1, PERIOD, capture_gain_db=6.0)
    try:
        assert src.card_no == -1
        assert src.gain_problem == f"{line.pcm} has no sound card behind it; capture_gain_db not applied"
        while (r := src.read()).frames is None:
            pass
        assert r.frames.shape == (PERIOD, 1)
    finally:
        src.close()
        feeder.stop()
