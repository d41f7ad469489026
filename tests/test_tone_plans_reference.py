"""The country tone plans checked, figure by figure, against an independent published table.

The table is Asterisk's ``indications.conf`` sample (``configs/samples/indications.conf.sample``,
asterisk/asterisk at commit 0a7fe309, read for this check in December 2026): its zones give, per
country, the dial, busy, congestion and ringing tones and the "info" tone played before
announcements. Its figures were transcribed below (frequencies in Hz, cadences in seconds: its
``425/500,0/500`` is ``("425", (0.5, 0.5))``; a tone written ``f1*f2`` is ``f1`` modulated at
``f2``). They are facts about the networks, carried over as data.

Every (country, kind) pair both have is compared: the frequencies, the modulation, the cadence
(one period: Asterisk writes Australia's busy twice over). The SIT is compared by its three
frequencies (Asterisk's 330-333 ms tones and 0-30 ms gaps are all inside Q.35's 330 +- 70 ms and
the detector's tolerance, ``detect/sit.py``). Where the plan differs on purpose the difference is
listed in :data:`DIFFERENCES` with its reason, and the test fails both on a difference not listed
and on a listed one that is no longer there, so the list in ``docs/LINE-SIGNALS.md`` ("Checked
against Asterisk's table") stays the truth. Ireland (``ie``), Canada (``ca``: Asterisk's ``[us]``)
and the CEPT common tones (``eu``) have no zone of their own there.
"""

from __future__ import annotations

import pytest

from linetap.detect.tones import TONE_PLANS, ToneSpec

_Q35 = (950.0, 1400.0, 1800.0)

# zone -> kind -> (frequencies as Asterisk writes them, cadence in s; () = continuous). "sit" is
# the zone's "info" tone as its three frequencies; "unobtainable" is the zone's number-unobtainable
# tone where the plan has one (Australia's and Singapore's are named "info" and "nutone" there).
ASTERISK: dict[str, dict[str, tuple[str, tuple[float, ...]] | tuple[float, ...]]] = {
    "at": {"dial": ("420", ()), "busy": ("420", (0.4, 0.4)), "reorder": ("420", (0.2, 0.2)),
           "ringback": ("420", (1.0, 5.0)), "sit": (950.0, 1450.0, 1850.0)},
    "au": {"dial": ("413+438", ()), "busy": ("425", (0.375, 0.375, 0.375, 0.375)),
           "reorder": ("425", (0.375, 0.375, 0.375, 0.375)), "ringback": ("413+438", (0.4, 0.2, 0.4, 2.0)),
           "unobtainable": ("425", (2.5, 0.5))},
    "be": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.167, 0.167)),
           "ringback": ("425", (1.0, 3.0)), "sit": (900.0, 1400.0, 1800.0)},
    "br": {"dial": ("425", ()), "busy": ("425", (0.25, 0.25)), "reorder": ("425", (0.25, 0.25, 0.75, 0.25)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "ch": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "de": {"dial": ("425", ()), "busy": ("425", (0.48, 0.48)), "reorder": ("425", (0.24, 0.24)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "dk": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "es": {"dial": ("425", ()), "busy": ("425", (0.2, 0.2)), "reorder": ("425", (0.2, 0.2, 0.2, 0.2, 0.2, 0.6)),
           "ringback": ("425", (1.5, 3.0)), "sit": (950.0,)},
    "fi": {"dial": ("425", ()), "busy": ("425", (0.3, 0.3)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 4.0)), "sit": (950.0, 950.0, 1400.0)},
    "fr": {"dial": ("440", ()), "busy": ("440", (0.5, 0.5)), "reorder": ("440", (0.25, 0.25)),
           "ringback": ("440", (1.5, 3.5)), "sit": _Q35},
    "gb": {"dial": ("350+440", ()), "busy": ("400", (0.375, 0.375)),
           "reorder": ("400", (0.4, 0.35, 0.225, 0.525)), "ringback": ("400+450", (0.4, 0.2, 0.4, 2.0)),
           "unobtainable": ("400", ()), "sit": _Q35},  # zone [uk]
    "in": {"dial": ("400*25", ()), "busy": ("400", (0.75, 0.75)), "reorder": ("400", (0.25, 0.25)),
           "ringback": ("400*25", (0.4, 0.2, 0.4, 2.0)), "sit": _Q35},
    "it": {"dial": ("425", (0.2, 0.2, 0.6, 1.0)), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "jp": {"dial": ("400", ()), "busy": ("400", (0.5, 0.5)), "reorder": ("400", (0.5, 0.5)),
           "ringback": ("400+15", (1.0, 2.0)), "sit": _Q35},
    "mx": {"dial": ("425", ()), "busy": ("425", (0.25, 0.25)), "reorder": ("425", (0.25, 0.25)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "nl": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.25, 0.25)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "no": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "nz": {"dial": ("400", ()), "busy": ("400", (0.5, 0.5)), "reorder": ("400", (0.25, 0.25)),
           "ringback": ("400+450", (0.4, 0.2, 0.4, 2.0)),
           "unobtainable": ("400", (0.075, 0.1, 0.075, 0.1, 0.075, 0.1, 0.075, 0.4)), "sit": (400.0,)},
    "pl": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.5, 0.5)),
           "ringback": ("425", (1.0, 4.0)), "sit": _Q35},
    "pt": {"dial": ("425", ()), "busy": ("425", (0.5, 0.5)), "reorder": ("425", (0.2, 0.2)),
           "ringback": ("425", (1.0, 5.0)), "sit": _Q35},
    "se": {"dial": ("425", ()), "busy": ("425", (0.25, 0.25)), "reorder": ("425", (0.25, 0.75)),
           "ringback": ("425", (1.0, 5.0)), "sit": _Q35},
    "sg": {"dial": ("425", ()), "busy": ("425", (0.75, 0.75)), "reorder": ("425", (0.25, 0.25)),
           "ringback": ("425*24", (0.4, 0.2, 0.4, 2.0)), "unobtainable": ("425", (2.5, 0.5)), "sit": _Q35},
    "us": {"dial": ("350+440", ()), "busy": ("480+620", (0.5, 0.5)), "reorder": ("480+620", (0.25, 0.25)),
           "ringback": ("440+480", (2.0, 4.0)), "sit": _Q35},
    "za": {"dial": ("400*33", ()), "busy": ("400", (0.5, 0.5)), "reorder": ("400", (0.25, 0.25)),
           "ringback": ("400*33", (0.4, 0.2, 0.4, 2.0)), "sit": _Q35},
}

# (plan, kind) -> why the plan keeps its own figure. docs/LINE-SIGNALS.md lists the same.
DIFFERENCES: dict[tuple[str, str], str] = {
    ("au", "dial"): "E.180 and ACIF S002 give 425 Hz modulated at 25 Hz; Asterisk approximates it as 413+438",
    ("au", "ringback"): "the same: 425 x 25 Hz",
    ("au", "reorder"): "every other burst 10 dB lower (ACIF S002; Asterisk's comment says so, its notation "
                       "cannot, and it writes the second burst as 420 Hz)",
    ("jp", "ringback"): "E.180 gives 400 Hz modulated at 16 Hz; Asterisk writes 400+15",
    ("us", "sit"): "the Telcordia encoded SIT; the plan's detector also recognises Asterisk's Q.35 SIT",
    ("be", "sit"): "Q.35's 950 Hz kept; Asterisk's 900 Hz first tone is inside the detector's +-64 Hz",
    ("es", "sit"): "Asterisk's Spanish info tone is a single 950 Hz tone; the plan keeps the Q.35 SIT",
    ("fi", "sit"): "Asterisk's Finnish info tone (950 Hz, then 1400 Hz for 1.3 s) is not a Q.35 SIT; "
                   "the plan keeps the Q.35 SIT",
    ("nz", "sit"): "Asterisk's New Zealand info tone is 400 Hz bursts, not a SIT; the plan keeps the Q.35 SIT",
}


def _period(cadence: tuple[float, ...]) -> tuple[float, ...]:
    """The shortest repeating period of a cadence: (0.375, 0.375, 0.375, 0.375) -> (0.375, 0.375)."""
    for n in range(2, len(cadence) + 1, 2):
        if len(cadence) % n == 0 and cadence == cadence[:n] * (len(cadence) // n):
            return cadence[:n]
    return cadence


def _published(notation: str) -> tuple[tuple[float, ...], float]:
    """(frequencies, modulation Hz): "400*25" is 400 Hz modulated at 25 Hz, "350+440" two tones."""
    if "*" in notation:
        carrier, mod = notation.split("*")
        return (float(carrier),), float(mod)
    return tuple(float(f) for f in notation.split("+")), 0.0


def _differs(spec: ToneSpec, ref: tuple[str, tuple[float, ...]] | tuple[float, ...], kind: str) -> str | None:
    if kind == "sit":
        assert isinstance(ref[0], float)
        return None if spec.freqs_hz == ref else f"SIT {spec.freqs_hz} vs {ref}"
    notation, cadence = ref  # type: ignore[misc]
    freqs, am = _published(notation)
    if spec.freqs_hz != freqs or spec.am_hz != am:
        return f"frequencies {spec.freqs_hz} (AM {spec.am_hz}) vs {notation}"
    if _period(spec.cadence_s) != _period(cadence):
        return f"cadence {spec.cadence_s} vs {cadence}"
    if spec.on_levels_db:
        return f"burst levels {spec.on_levels_db} (not in Asterisk's notation)"
    return None


def _found() -> dict[tuple[str, str], str]:
    out = {}
    for zone, kinds in ASTERISK.items():
        plan = TONE_PLANS[zone]
        for kind, ref in kinds.items():
            assert kind in plan, f"{zone}: Asterisk has a {kind} tone the plan lacks"
            why = _differs(plan[kind], ref, kind)
            if why is not None:
                out[(zone, kind)] = why
    return out


def test_every_plan_with_a_zone_is_compared() -> None:
    """The 25 countries the issue names, less Canada (Asterisk's [us]) and Ireland (no zone)."""
    assert set(ASTERISK) == set(TONE_PLANS) - {"ca", "ie", "uk", "eu"}
    assert sum(len(k) for k in ASTERISK.values()) == 123


@pytest.mark.parametrize("zone", sorted(ASTERISK))
def test_plan_matches_asterisk_or_says_why(zone: str) -> None:
    found = {k: v for k, v in _found().items() if k[0] == zone}
    listed = {k for k in DIFFERENCES if k[0] == zone}
    assert set(found) - listed == set(), f"differences not explained: {found}"
    assert listed - set(found) == set(), f"listed differences that are gone: {listed - set(found)}"


def test_the_differences_are_few() -> None:
    """9 of the 123 figures differ, each for a reason; the other 114 agree exactly."""
    assert len(_found()) == len(DIFFERENCES) == 9
