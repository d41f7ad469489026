"""Call-progress tone detection (dial, busy, reorder/congestion, ringback, number unobtainable)
with cadence checking, for the tone plan of one country.

A tone is reported once, when its frequencies *and* its cadence have been confirmed, and again only
after it stopped and started again. ``tone_set`` is an ISO 3166 country code (``"de"``, ``"jp"``);
:data:`TONE_PLANS` holds each country's tones with the source of its figures, and the table in
``docs/LINE-SIGNALS.md`` lists them all with the conformance results. Aliases kept from the first
three tone sets: ``"us"`` (the North American plan, also ``"ca"``), ``"uk"`` (= ``"gb"``, BT SIN 350)
and ``"eu"`` (the CEPT/ETSI common 425 Hz tones, ETSI TR 101 041).

The kind vocabulary is the same everywhere: ``"dial"``, ``"busy"``, ``"reorder"`` (called
*congestion* in the UK and in CEPT documents), ``"ringback"``, ``"unobtainable"`` (number
unobtainable, where a country has its own tone for it) and ``"sit"`` (the special information tone:
950/1400/1800 Hz, ITU-T Q.35, and North America's encoded SITs, whose code is the event's
``variant``). Where a country's congestion tone *is* its busy tone (MX, PL, JP), the detector cannot
tell them apart and reports ``"busy"`` (:func:`reported_kind`).

**The SIT** is not looked for by the per-frame DFT: its tones lie far above every other tone (up to
1850 Hz), and stretching the DFT's bin grid to them would multiply its cost by up to eight. A gate
on three autocorrelation lags of each frame (one steady tone in the SIT's band?) costs two products
per sample; only the rare runs it passes are measured (``detect/sit.py``).

**Australia's congestion** has busy's frequency and cadence (425 Hz, 0.375/0.375 s) with every
other burst 10 dB lower (``on_levels_db``). Each signature's bursts keep their strongest frame's
power: with both kinds on one signature, congestion needs consecutive bursts >= 5 dB apart, busy
within 5 dB of each other. Where the weak bursts are lost (under the floor, or under noise: at
15 dB SNR they are 5 dB above it and come and go frame by frame) congestion is matched on its strong
bursts alone (0.375 on, 1.125 off; confirmed after 3 s instead of 1.5 s).

Amplitude-modulated tones (``am_hz`` > 0: India's and South Africa's 400 Hz x 25/33 Hz dial and
ringback, Australia's and Singapore's 425 x 25/24 Hz, Japan's 400 x 16 Hz ringback) are detected
with the plain tone of the same carrier: the signature measures the carrier and both sidebands
together. The modulation itself is not checked: with 40 ms frames and the clock 1.5 % off, a
sideband 25 Hz from its carrier cannot be told from the carrier's own leakage (measured with the
clock 1.5 % fast: a plain 425 Hz tone puts 13 % of its power into the 400 and 450 Hz bins, a
425 x 25 Hz tone at 80 % depth 25-33 %, but from frame to frame anywhere between 0 % and 29 % per
sideband, so a per-sideband test drops the tone). No plan needs it: in every
plan the modulated and the plain tones on one carrier have different cadences (AU dial 425 x 25
continuous vs busy 425 0.375/0.375 and unobtainable 425 2.5/0.5).

How it works: the audio is cut into 40 ms rectangular-window frames every 20 ms; one matrix product
per call gives, for every 20 ms half-frame, the DFT at the plan's frequencies and on the orthogonal
bin grid (25 Hz) around them, and a frame's is its first half's plus its second half's rotated by
the phase a 20 ms delay gives each frequency (a second, small product). Only that country's
frequencies are computed: a plan's cost grows with its own distinct frequencies, not with the
number of countries. A frame is "on" for a frequency
signature (e.g. 480+620 Hz) when the signature's band (its frequencies +-3 % +-50 Hz) holds >= 80 %
of the frame's DC-free energy, every component is above -55 dBFS (a tone at -45 dBm0 is a sine at
-48.1 dBFS; 1.5 % clock error costs up to 2 dB at the exact frequencies) and, for a dual tone,
each holds >= 12 % of the pair and the pair >= 40 % of the band (a single 400 Hz tone between
350 and 440 Hz is not UK dial tone); a single or modulated tone must hold >= 70 % of its band (UK
busy 400 Hz vs ringback 400+450 Hz). Changes of state must last two frames; only they are handled in Python. Each
edge is placed from the frame that caught it part-way (with a rectangular window its amplitude is
proportional to the covered share), so run lengths are accurate to ~5 ms and matched against each
kind's cadence with a tolerance of 20 % (at least 70 ms). Busy and reorder are confirmed after two
cycles, ringback, cadenced dial tone (IT) and unobtainable after one cycle (at the start of the next
"on"), continuous dial tone after 1 s, or 1.5 times the longest "on" of another tone of the same
frequency (EU ringback is 1 s of the same 425 Hz: 1.5 s). When one tone's cadence could still turn
out to be a part of another's (Spain: busy 0.2/0.2, congestion three 0.2 s bursts and 0.6 s off),
the shorter one waits until the longer one is ruled out.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .sit import SitTracker, sit_codes_for

__all__ = [
    "DETECTED_KINDS", "KINDS", "TONE_PLANS", "TONE_SETS", "TonePlan", "ToneDetector", "ToneEvent", "ToneSpec",
    "reported_kind",
]

KINDS = ("dial", "busy", "reorder", "ringback", "unobtainable", "sit")
DETECTED_KINDS = KINDS


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """One call-progress tone: its frequencies and its cadence (on, off, on, off, ... seconds).

    An empty cadence means a continuous tone. ``alt_cadences`` lists tolerated national variants.
    ``on_levels_db``: the level of each "on" in turn relative to the first (Australia's congestion:
    ``(0, -10)``, every other burst 10 dB lower); empty when every burst has the same level.
    ``am_hz`` > 0: the single frequency is a carrier amplitude-modulated at ``am_hz`` (written
    "400*25" in Asterisk's ``indications.conf``, "400 x 25" in E.180). ``sequential``: the
    frequencies are played one per "on" in turn (the special information tone), not together.
    """

    freqs_hz: tuple[float, ...]
    cadence_s: tuple[float, ...]
    alt_cadences: tuple[tuple[float, ...], ...] = ()
    am_hz: float = 0.0
    sequential: bool = False
    on_levels_db: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class TonePlan(Mapping[str, ToneSpec]):
    """A country's call-progress tones (kind -> tone) and where the figures come from."""

    country: str
    source: str
    tones: dict[str, ToneSpec]

    def __getitem__(self, kind: str) -> ToneSpec:
        return self.tones[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tones)

    def __len__(self) -> int:
        return len(self.tones)


def _tone(freqs: str, *cadence_s: float, am_hz: float = 0.0, alt: tuple[tuple[float, ...], ...] = ()) -> ToneSpec:
    """A tone from its published notation: ``"425"``, ``"350+440"`` (together), ``"400*25"`` (AM)."""
    if "*" in freqs:
        carrier, mod = freqs.split("*")
        return ToneSpec((float(carrier),), tuple(cadence_s), alt, am_hz=float(mod))
    return ToneSpec(tuple(float(f) for f in freqs.split("+")), tuple(cadence_s), alt, am_hz=am_hz)


# North America: the Telcordia encoded SIT (detect/sit.py has all its codes); the generators play
# its intercept code (913.8 Hz 274 ms, 1370.6 Hz 274 ms, 1776.7 Hz 380 ms, no gaps), then 1 s off.
_SIT_NA = ToneSpec((913.8, 1370.6, 1776.7), (0.274, 0.0, 0.274, 0.0, 0.38, 1.0), sequential=True)

# ITU-T Q.35 / E.180 Suppl. 2: three tones of 330 ms (950, 1400, 1800 Hz +-50) with gaps of up to
# 30 ms, then 1 s of silence. Austria's (E.180 Suppl. 2, indications.conf [at]) is 950/1450/1850.
_SIT = ToneSpec((950.0, 1400.0, 1800.0), (0.33, 0.03, 0.33, 0.03, 0.33, 1.0), sequential=True)
_SIT_AT = ToneSpec((950.0, 1450.0, 1850.0), (0.33, 0.03, 0.33, 0.03, 0.33, 1.0), sequential=True)

# "Asterisk" is Asterisk's configs/samples/indications.conf.sample (the zone named in brackets),
# "E.180" ITU-T E.180 Supplement 2 (2003), "Various tones used in national networks". Where they
# differ the national operator's figure is taken and named. The plain-425 Hz CEPT countries differ
# only in their cadences. tests/test_tone_plans_reference.py compares every plan with Asterisk's
# table figure by figure (114 of 123 agree; the 9 differences are listed there with their reasons).
_NA = TonePlan("United States / Canada", "ANSI T1.401, Telcordia LSSGR; Asterisk [us]", {
    "dial": _tone("350+440"),
    "busy": _tone("480+620", 0.5, 0.5),
    "reorder": _tone("480+620", 0.25, 0.25),
    "ringback": _tone("440+480", 2.0, 4.0),
    "sit": _SIT_NA,
})
_GB = TonePlan("United Kingdom", "BT SIN 350; Asterisk [uk]", {
    "dial": _tone("350+440"),
    "busy": _tone("400", 0.375, 0.375),
    "reorder": _tone("400", 0.4, 0.35, 0.225, 0.525),
    "ringback": _tone("400+450", 0.4, 0.2, 0.4, 2.0),
    "unobtainable": _tone("400"),
    "sit": _SIT,
})


def _cept(country: str, source: str, busy_s: tuple[float, ...], reorder_s: tuple[float, ...],
          ringback_s: tuple[float, ...], freq: str = "425", **more: ToneSpec) -> TonePlan:
    """A plan of the CEPT kind: one frequency, continuous dial tone, the SIT; ``more`` overrides."""
    tones = {"dial": _tone(freq), "busy": _tone(freq, *busy_s), "reorder": _tone(freq, *reorder_s),
             "ringback": _tone(freq, *ringback_s), "sit": _SIT}
    tones.update(more)
    return TonePlan(country, source, tones)


TONE_PLANS: dict[str, TonePlan] = {
    "us": _NA,
    "ca": _NA,
    "mx": _cept("Mexico", "Asterisk [mx]; E.180 (busy = congestion)", (0.25, 0.25), (0.25, 0.25), (1.0, 4.0)),
    "br": _cept("Brazil", "Asterisk [br]; E.180", (0.25, 0.25), (0.25, 0.25, 0.75, 0.25), (1.0, 4.0)),
    "gb": _GB,
    "ie": _cept("Ireland", "E.180 (Asterisk has no [ie] zone)", (0.5, 0.5), (0.25, 0.25), (1.0, 4.0),
                ringback=_tone("400+450", 0.4, 0.2, 0.4, 2.0)),
    "de": _cept("Germany", "Asterisk [de]; E.180", (0.48, 0.48), (0.24, 0.24), (1.0, 4.0)),
    "fr": _cept("France", "Asterisk [fr]; E.180", (0.5, 0.5), (0.25, 0.25), (1.5, 3.5), freq="440"),
    "it": _cept("Italy", "Asterisk [it]; E.180", (0.5, 0.5), (0.2, 0.2), (1.0, 4.0),
                dial=_tone("425", 0.2, 0.2, 0.6, 1.0)),
    "es": _cept("Spain", "Asterisk [es]; E.180", (0.2, 0.2), (0.2, 0.2, 0.2, 0.2, 0.2, 0.6), (1.5, 3.0)),
    "pt": _cept("Portugal", "Asterisk [pt]; E.180", (0.5, 0.5), (0.2, 0.2), (1.0, 5.0)),
    "nl": _cept("Netherlands", "Asterisk [nl]; E.180", (0.5, 0.5), (0.25, 0.25), (1.0, 4.0)),
    "be": _cept("Belgium", "Asterisk [be]; E.180", (0.5, 0.5), (0.167, 0.167), (1.0, 3.0)),
    "ch": _cept("Switzerland", "Asterisk [ch]; E.180", (0.5, 0.5), (0.2, 0.2), (1.0, 4.0)),
    "at": _cept("Austria", "Asterisk [at]; E.180", (0.4, 0.4), (0.2, 0.2), (1.0, 5.0), freq="420", sit=_SIT_AT),
    "se": _cept("Sweden", "Asterisk [se]; E.180", (0.25, 0.25), (0.25, 0.75), (1.0, 5.0)),
    "no": _cept("Norway", "Asterisk [no]; E.180", (0.5, 0.5), (0.2, 0.2), (1.0, 4.0)),
    "dk": _cept("Denmark", "Asterisk [dk]; E.180", (0.5, 0.5), (0.2, 0.2), (1.0, 4.0)),
    "fi": _cept("Finland", "Asterisk [fi]; E.180", (0.3, 0.3), (0.2, 0.2), (1.0, 4.0)),
    "pl": _cept("Poland", "Asterisk [pl]; E.180 (busy = congestion)", (0.5, 0.5), (0.5, 0.5), (1.0, 4.0)),
    "au": TonePlan("Australia", "E.180 (425 x 25); Asterisk [au] (413+438 there)", {
        "dial": _tone("425*25"),
        "busy": _tone("425", 0.375, 0.375),
        # Congestion is busy's cadence with every other burst 10 dB lower (ACIF S002; Asterisk's
        # [au] notes it). When the weaker burst is lost (under the detector's floor, or under
        # noise: at 15 dB SNR it is 5 dB above the noise) the strong ones are 0.375 on, 1.125 off.
        "reorder": ToneSpec((425.0,), (0.375, 0.375), ((0.375, 1.125),), on_levels_db=(0.0, -10.0)),
        "ringback": _tone("425*25", 0.4, 0.2, 0.4, 2.0),
        "unobtainable": _tone("425", 2.5, 0.5),
    }),
    "nz": TonePlan("New Zealand", "Asterisk [nz]; E.180", {
        "dial": _tone("400"),
        "busy": _tone("400", 0.5, 0.5),
        "reorder": _tone("400", 0.25, 0.25),
        "ringback": _tone("400+450", 0.4, 0.2, 0.4, 2.0),
        "unobtainable": _tone("400", 0.075, 0.1, 0.075, 0.1, 0.075, 0.1, 0.075, 0.4),
        "sit": _SIT,
    }),
    "jp": TonePlan("Japan", "E.180 (400 x 16); Asterisk [jp] (400+15 there)", {
        "dial": _tone("400"),
        "busy": _tone("400", 0.5, 0.5),
        "reorder": _tone("400", 0.5, 0.5),
        "ringback": _tone("400*16", 1.0, 2.0),
        "sit": _SIT,
    }),
    "in": TonePlan("India", "Asterisk [in]; E.180", {
        "dial": _tone("400*25"),
        "busy": _tone("400", 0.75, 0.75),
        "reorder": _tone("400", 0.25, 0.25),
        "ringback": _tone("400*25", 0.4, 0.2, 0.4, 2.0),
        "sit": _SIT,
    }),
    "za": TonePlan("South Africa", "Asterisk [za]; E.180", {
        "dial": _tone("400*33"),
        "busy": _tone("400", 0.5, 0.5),
        "reorder": _tone("400", 0.25, 0.25),
        "ringback": _tone("400*33", 0.4, 0.2, 0.4, 2.0),
        "sit": _SIT,
    }),
    "sg": TonePlan("Singapore", "Asterisk [sg]; E.180", {
        "dial": _tone("425"),
        "busy": _tone("425", 0.75, 0.75),
        "reorder": _tone("425", 0.25, 0.25),
        "ringback": _tone("425*24", 0.4, 0.2, 0.4, 2.0),
        "unobtainable": _tone("425", 2.5, 0.5),
        "sit": _SIT,
    }),
    # The first three tone sets, kept as accepted values: "uk" is "gb"; "eu" the CEPT common tones
    # (ETSI TR 101 041), whose congestion also accepts the 0.2/0.2 variant.
    "uk": _GB,
    "eu": _cept("CEPT common tones", "ETSI TR 101 041; E.180", (0.5, 0.5), (0.25, 0.25), (1.0, 4.0),
                reorder=_tone("425", 0.25, 0.25, alt=((0.2, 0.2),))),
}

TONE_SETS: tuple[str, ...] = tuple(TONE_PLANS)


def reported_kind(tone_set: str, kind: str) -> str:
    """The kind the detector reports for ``kind``'s tone: the first kind with the very same tone."""
    plan = TONE_PLANS[tone_set]
    spec = plan[kind]
    return next(k for k in KINDS if k in plan and plan[k] == spec)


@dataclass(frozen=True, slots=True)
class ToneEvent:
    """A call-progress tone whose cadence was confirmed.

    ``start_frame`` is the sample index where the confirmed tone pattern began, ``confirmed_frame``
    the sample index at which the cadence was confirmed (both in the line's stream). ``variant``:
    for a North American SIT its code (``"IC"``, ``"VC"``, ``"RO'"``, ... :data:`linetap.detect.sit.NA_SIT_CODES`),
    otherwise None.
    """

    kind: str
    start_frame: int
    confirmed_frame: int
    variant: str | None = None


# Detection parameters. Levels are dBFS where a full-scale sine is 0 dBFS.
_FRAME_S = 0.040
_MIN_LEVEL_DBFS = -55.0  # weakest tone component accepted: -45 dBm0 (-48.1 dBFS) with margin for 1.5 % clock error
_PURITY = 0.80  # share of the frame's (DC-free) energy in the signature's band
_SINGLE_SHARE = 0.70  # a single tone holds >= 70 % of its band's energy
_MIN_COMPONENT_SHARE = 0.12  # each component of a dual tone holds >= 12 % of the pair (~8.5 dB twist)
_DUAL_SHARE = 0.40  # a dual tone's two components hold >= 40 % of its band (not one tone between them)
_REL_TOL = 0.20
_ABS_TOL_S = 0.070
_CONTINUOUS_MIN_S = 1.0
_CONTINUOUS_GAP_S = 0.2  # a continuous tone off for this long has stopped
_DEBOUNCE_FRAMES = 2  # a change of state must hold for 2 frames (40 ms) to count
_CADENCE_CYCLES = {"dial": 1, "busy": 2, "reorder": 2, "ringback": 1, "unobtainable": 1}
_HISTORY = 12  # segments kept per signature
_LEVEL_STEP_DB = 5.0  # bursts this much apart are of different levels (AU congestion: 10 dB; noise: +-1 dB)


def _ratio(power: float, ref: float) -> float:
    return min(1.0, math.sqrt(power / ref)) if ref > 0 else 1.0


def _tol(want_s: float) -> float:
    return max(_REL_TOL * want_s, _ABS_TOL_S)


def _cadence_matches(durations: list[float], pattern: tuple[float, ...], first_is_on: bool) -> bool:
    """Whether consecutive on/off durations fit the cyclic pattern at some phase."""
    n = len(pattern)
    for phase in range(n):
        if (phase % 2 == 0) != first_is_on:  # even pattern positions are "on"
            continue
        if all(abs(d - pattern[(phase + i) % n]) <= _tol(pattern[(phase + i) % n]) for i, d in enumerate(durations)):
            return True
    return False


class _Signature:
    """On/off history of one frequency signature and the cadence state of its kinds."""

    __slots__ = ("freqs", "am_hz", "bins", "kinds", "recent", "on", "pending", "pending_pos", "pending_count",
                 "segments",
                 "seg_start", "active", "continuous_confirm_s", "on_peak", "on_levels", "levelled")

    def __init__(self, freqs: tuple[float, ...], am_hz: float, bins: list[int], kinds: list[str]) -> None:
        self.freqs = freqs  # the frequencies measured: the tone's, or a carrier and its two sidebands
        self.am_hz = am_hz
        self.bins = bins
        self.kinds = kinds
        self.recent: deque[tuple[int, float]] = deque(maxlen=6)  # (frame start, tone power)
        self.on = False  # debounced state
        self.pending: bool | None = None  # raw state waiting to be confirmed
        self.pending_pos = 0
        self.pending_count = 0
        self.segments: list[tuple[bool, float, int]] = []  # completed (on, duration_s, start), oldest first
        self.seg_start: int | None = None  # start of the current segment (None before the first "on")
        self.active: dict[str, bool] = {k: False for k in kinds}
        self.continuous_confirm_s = _CONTINUOUS_MIN_S
        self.on_peak = 0.0  # the running "on"'s strongest frame (tone power)
        self.on_levels: dict[int, float] = {}  # start of each completed "on" -> its strongest frame
        self.levelled = False  # a kind of this signature has bursts of different levels


class ToneDetector:
    """Streaming call-progress tone detector for one line.

    ``feed`` takes a mono block (int16, or float with full scale 1.0) of any length together with
    the absolute sample index of its first sample, and returns the tones confirmed in this call.
    A gap in the sample index restarts the cadence tracking.
    """

    def __init__(self, rate: int, tone_set: str) -> None:
        if tone_set not in TONE_PLANS:
            raise ValueError(f"tone_set must be one of {', '.join(sorted(TONE_SETS))}, not {tone_set!r}")
        if rate < 4000:
            raise ValueError(f"rate must be at least 4000 Hz, not {rate}")
        self.rate = int(rate)
        self.tone_set = tone_set
        self._plan = TONE_PLANS[tone_set]
        hop = int(round(rate * _FRAME_S / 2))
        n = 2 * hop
        self._hop = hop
        self._n = n
        # One signature per distinct frequency set; a kind whose tone is another's (MX busy and
        # congestion) is reported as the first of them, and the SIT is not looked for.
        # A modulated tone joins the plain tone of its carrier (their cadences tell them apart),
        # and the signature then measures the carrier with both sidebands.
        by_freqs: dict[tuple[float, ...], list[str]] = {}
        am_of: dict[tuple[float, ...], float] = {}
        for kind in DETECTED_KINDS:
            spec = self._plan.get(kind)
            if spec is not None and not spec.sequential and reported_kind(tone_set, kind) == kind:
                by_freqs.setdefault(spec.freqs_hz, []).append(kind)
                if spec.am_hz:
                    am_of.setdefault(spec.freqs_hz, spec.am_hz)
        measured = {f: (f[0] - am_of[f], f[0], f[0] + am_of[f]) if f in am_of else f for f in by_freqs}
        freqs = sorted({x for f in measured.values() for x in f})
        index = {f: i for i, f in enumerate(freqs)}
        self._sigs = [_Signature(measured[f], am_of.get(f, 0.0), [index[x] for x in measured[f]], k)
                      for f, k in by_freqs.items()]
        for sig in self._sigs:
            # A continuous tone must outlast every "on" of a cadenced tone with the same frequencies
            # (EU ringback is 1 s of the same 425 Hz as dial tone; SG's unobtainable 2.5 s).
            longest_on = max((max(self._plan[k].cadence_s[0::2]) for k in sig.kinds if self._plan[k].cadence_s),
                             default=0.0)
            sig.continuous_confirm_s = max(_CONTINUOUS_MIN_S, 1.5 * longest_on)
            sig.levelled = any(self._plan[k].on_levels_db for k in sig.kinds)
        # Rectangular-window DFT of each 2-hop frame as the sum of two half-frame projections, at
        # the tone frequencies and on the orthogonal bin grid (rate / n) around them. The grid bins
        # measure each signature's band energy (Parseval), which does not depend on exactly where
        # in the band two close tones (440 + 480 Hz) fall; the exact bins tell the components apart.
        step = rate / n
        lo = min(freqs) * (1 - 0.03) - 2 * step
        hi = max(freqs) * (1 + 0.03) + 2 * step
        grid = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
        allf = np.concatenate((np.array(freqs), grid))
        t = np.arange(n)
        ang = 2 * math.pi * allf[None, :] / rate * t[:, None]
        amp = math.sqrt(2.0) / n
        basis = np.hstack((amp * np.cos(ang), -amp * np.sin(ang), np.full((n, 1), 1.0 / n)))
        self._k = len(freqs)
        self._nf = len(allf)
        self._ncol = basis.shape[1]
        band = np.zeros((len(grid), len(self._sigs)))
        for j, sig in enumerate(self._sigs):
            f_lo = min(sig.freqs) * (1 - 0.03) - 2 * step
            f_hi = max(sig.freqs) * (1 + 0.03) + 2 * step
            band[(grid >= f_lo) & (grid <= f_hi), j] = 1.0
        sig_sum = np.zeros((self._k, len(self._sigs)))
        for j, sig in enumerate(self._sigs):
            sig_sum[sig.bins, j] = 1.0
        # Level: every component of a dual tone, the carrier of a modulated one. Share: the weaker
        # of a dual tone's two components.
        dual = np.array([len(sig.bins) == 2 for sig in self._sigs])
        level_a = [sig.bins[1] if sig.am_hz else sig.bins[0] for sig in self._sigs]
        level_b = [sig.bins[1] if sig.am_hz else sig.bins[-1] for sig in self._sigs]
        first_bin = [sig.bins[0] for sig in self._sigs]
        last_bin = [sig.bins[-1] for sig in self._sigs]
        self._share = np.where(dual, _MIN_COMPONENT_SHARE, 0.0)
        self._single = np.where(dual, _DUAL_SHARE, _SINGLE_SHARE)
        # The four component columns per signature in one gather, and the pair and band sums in
        # one product (fewer numpy calls per batch: each costs about a microsecond).
        self._gather = np.array(level_a + level_b + first_bin + last_bin, dtype=np.intp)
        ns = len(self._sigs)
        pair_band = np.zeros((self._k + len(grid), 2 * ns))
        pair_band[: self._k, :ns] = sig_sum
        pair_band[self._k :, ns:] = band
        self._pair_band = pair_band
        # Only the first half-frame's basis is projected: with a rectangular window the second
        # half's is the same sinusoid a phase phi = w hop later, so the projection of row i + 1 on
        # it is a rotation of that row's own (cos, -sin) pair: cos' = cos phi C + sin phi S,
        # sin' = -sin phi C + cos phi S (the DC column carries over). One (rows x half the
        # columns) product and a small one per batch instead of rows x all: a quarter of the
        # detector's instructions was this product (benchmarks/dsp.py --callgrind).
        phi = 2 * math.pi * allf * hop / rate
        nq = len(allf)
        rot = np.zeros((basis.shape[1], basis.shape[1]))
        diag = np.arange(nq)
        rot[diag, diag] = rot[nq + diag, nq + diag] = np.cos(phi)
        rot[nq + diag, diag] = np.sin(phi)  # from S (the -sin column) into cos'
        rot[diag, nq + diag] = -np.sin(phi)  # from C into -sin'
        rot[-1, -1] = 1.0
        self._rot = rot.astype(np.float32)
        first = basis[:hop]
        # float32: the projection is most of the detector's CPU and BLAS does float32 in about
        # half the time of float64 (~26 vs ~62 us per 1 s batch at 8 kHz); int16 samples are exact in
        # float32 and a 160-sample product sum keeps ~7 significant digits, far below line noise.
        self._bases = {True: (first / 32768.0).astype(np.float32), False: first.astype(np.float32)}
        self._escale = {True: 1.0 / (n * 32768.0**2), False: 1.0 / n}
        self._min_power = 0.5 * 10 ** (_MIN_LEVEL_DBFS / 10)
        self._quiet_peak = 0.9 * 10 ** (_MIN_LEVEL_DBFS / 20)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start: int | None = None
        self._int_units = True
        sit = self._plan.get("sit")
        codes = sit_codes_for(None if sit is None else tuple(zip(sit.freqs_hz, sit.cadence_s[0::2])),
                              north_american=sit is _SIT_NA)
        self._sit = SitTracker(self.rate, hop, codes) if codes else None

    # -- public -------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray, start_frame: int) -> list[ToneEvent]:
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError("samples must be a mono (1-D) block")
        is_int = x.dtype.kind in "iu"
        if self._buf_start is None or start_frame != self._buf_start + len(self._buf):
            self._restart(start_frame, is_int)
        if is_int != self._int_units:
            x = x * (32768.0 if self._int_units else 1.0 / 32768.0)
        if len(x) == 0:
            return []
        buf = np.concatenate((self._buf, x), dtype=np.float32)
        hop = self._hop
        m = len(buf) // hop
        if m < 2:
            self._buf = buf
            return []
        keep = (m - 1) * hop
        pos0 = self._buf_start
        assert pos0 is not None
        self._buf = buf[keep:]
        self._buf_start = pos0 + keep
        scale = 32768.0 if self._int_units else 1.0
        sit = self._sit
        idle = not any(sig.on or sig.pending is not None for sig in self._sigs)
        events: list[ToneEvent] = []
        if idle and self._quiet_peak * scale > max(float(x.max()), -float(x.min())):
            on = pw = None  # quiet: every signature is off in every frame
            nf = m - 1
            if sit is not None and sit.busy:
                self._sit_events(sit.frames(buf[: m * hop].reshape(m, hop), None, None, pos0, nf), events)
        else:
            rows = buf[: m * hop].reshape(m, hop)
            e = np.einsum("ij,ij->i", rows, rows).astype(np.float64) * self._escale[self._int_units]
            frame_ms = e[:-1] + e[1:]  # each frame's mean square
            nf = len(frame_ms)
            if idle and 2 * float(frame_ms.max()) < self._min_power:
                # Too little energy for any component at the floor (a projection on the cos/sin pair
                # holds at most twice the frame's mean square): an idle line's noise ends here.
                on = pw = None
                if sit is not None and sit.busy:
                    self._sit_events(sit.frames(rows, None, None, pos0, nf), events)
            else:
                proj = rows @ self._bases[self._int_units]  # each half-frame on the first half's basis
                s = (proj[:-1] + proj[1:] @ self._rot).astype(np.float64)  # frame i: rows i and i + 1
                dc = s[:, -1]
                total = frame_ms - dc * dc
                nfq = self._nf
                p = s[:, :nfq] ** 2 + s[:, nfq : 2 * nfq] ** 2
                res = self._classify(p, total)
                on, pw = res if res is not None else (None, None)
                if sit is not None:
                    g, f = sit.gate(buf, m, total, dc, self._escale[self._int_units], self._min_power)
                    self._sit_events(sit.frames(rows, g, f, pos0, nf), events)
        # Which signatures are on in any / every frame: one call each for all of them.
        any_on: list[bool] = [False] * len(self._sigs) if on is None else on.any(axis=0).tolist()
        all_on: list[bool] = [False] * len(self._sigs) if on is None or idle else on.all(axis=0).tolist()
        for j, sig in enumerate(self._sigs):
            col = None if on is None else on[:, j]
            if col is not None and pw is not None and sig.on and sig.pending is None and all_on[j]:
                # Steady "on": nothing to track; remember the level for placing the coming edge.
                k0 = max(0, nf - sig.recent.maxlen)  # type: ignore[operator]
                sig.recent.extend((pos0 + i * hop, float(pw[i, j])) for i in range(k0, nf))
                if sig.levelled:
                    sig.on_peak = max(sig.on_peak, float(pw[:nf, j].max()))
                self._check_running(sig, pos0 + nf * hop, events)
                continue
            if not any_on[j] and not sig.on and sig.pending is None:
                self._check_running(sig, pos0 + nf * hop, events)  # steady "off"
                continue
            self._track(sig, col, None if pw is None else pw[:, j], pos0, nf, events)
            self._check_running(sig, pos0 + nf * hop, events)
        return events

    @property
    def active_kinds(self) -> set[str]:
        """Kinds confirmed and still going on (as of the audio fed so far)."""
        kinds = {k for sig in self._sigs for k, on in sig.active.items() if on}
        if self._sit is not None and self._buf_start is not None and self._sit.active(self._buf_start):
            kinds.add("sit")
        return kinds

    def _sit_events(self, found: list[tuple[int, int, str | None]], events: list[ToneEvent]) -> None:
        events += [ToneEvent("sit", start, confirmed, variant) for start, confirmed, variant in found]

    def pending_start(self, kinds: Collection[str]) -> int | None:
        """Start of the earliest tone of ``kinds`` that is in progress but not yet confirmed.

        A tone is in progress while the on/off segments since one of its "on"s fit a prefix of its
        cadence (a continuous tone: while it is on). The recorder holds back the audio from here
        on, so that when the tone is confirmed the recording can end where the tone began. None
        when nothing that could become one of ``kinds`` is going on.
        """
        best: int | None = None
        now = self._buf_start
        if now is None:
            return None
        for sig in self._sigs:
            if sig.seg_start is None and not (sig.pending and not sig.on):
                continue  # never on, no rise pending: nothing in progress (see _pending_in)
            wanted = [k for k in sig.kinds if k in kinds]
            if not wanted or any(sig.active.values()):
                continue
            start = self._pending_in(sig, wanted, now)
            if start is not None and (best is None or start < best):
                best = start
        if "sit" in kinds and self._sit is not None and not self._sit.active(now):
            start = self._sit.pending_start(now)
            if start is not None and (best is None or start < best):
                best = start
        return best

    def _pending_in(self, sig: _Signature, kinds: list[str], now: int) -> int | None:
        # A rise still waiting for its debounce may be the start of one.
        earliest: int | None = sig.pending_pos if sig.pending and not sig.on else None
        if sig.seg_start is None:
            return earliest
        run_s = (now - sig.seg_start) / self.rate
        segs = sig.segments
        for kind in kinds:
            spec = self._plan[kind]
            if not spec.cadence_s:
                if sig.on:
                    earliest = sig.seg_start if earliest is None else min(earliest, sig.seg_start)
                continue
            for pat in (spec.cadence_s, *spec.alt_cadences):
                same = pat[0::2] if sig.on else pat[1::2]
                if run_s > max(same) + _tol(max(same)):
                    continue  # the running segment is already too long for this cadence
                for i, (on, _d, st) in enumerate(segs):
                    if on and _cadence_matches([d for _on, d, _st in segs[i:]], pat, True):
                        earliest = st if earliest is None else min(earliest, st)
                        break
                else:
                    if sig.on:  # the running "on" may be the first of the cadence
                        earliest = sig.seg_start if earliest is None else min(earliest, sig.seg_start)
        return earliest

    # -- internals ----------------------------------------------------------------------------
    def _restart(self, start_frame: int, is_int: bool) -> None:
        """Start a new contiguous stream (first call or a gap in the sample index)."""
        for sig in self._sigs:
            sig.on = False
            sig.pending = None
            sig.segments.clear()
            sig.seg_start = None
            for k in sig.kinds:
                sig.active[k] = False
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = start_frame
        self._int_units = is_int
        if self._sit is not None:
            self._sit.reset()

    def _classify(self, p_all: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per frame and signature: is it on? Also the signatures' component powers (F, S)."""
        ns = len(self._sigs)
        comp = p_all[:, self._gather]  # per signature: level_a, level_b, first, second
        level = np.minimum(comp[:, :ns], comp[:, ns : 2 * ns])  # weakest required component
        if not np.count_nonzero(level >= self._min_power):
            return None
        low = np.minimum(comp[:, 2 * ns : 3 * ns], comp[:, 3 * ns :])
        ref = total[:, None]
        pair_band = p_all @ self._pair_band
        pair, band = pair_band[:, :ns], pair_band[:, ns:]  # the components' sum; energy in the band
        on = (band >= _PURITY * ref) & (level >= self._min_power) & (low >= self._share * pair)
        # A single tone is alone in its band (UK 400 vs 400 + 450); a dual tone's pair is most of it.
        on &= pair >= self._single * band
        return on, pair

    def _track(
        self, sig: _Signature, col: np.ndarray | None, pw: np.ndarray | None, pos0: int, nf: int,
        events: list[ToneEvent],
    ) -> None:
        """Debounce the raw per-frame states and hand committed changes to the cadence logic."""
        hop = self._hop
        for i in range(nf):
            pos = pos0 + i * hop
            sig.recent.append((pos, 0.0 if pw is None else float(pw[i])))
            raw = bool(col[i]) if col is not None else False
            if sig.levelled and raw and sig.on and pw is not None:
                sig.on_peak = max(sig.on_peak, float(pw[i]))
            if raw == sig.on:
                sig.pending = None
                continue
            if sig.pending is None:
                sig.pending, sig.pending_count, sig.pending_pos = raw, 0, pos
            sig.pending_count += 1
            if sig.pending_count >= _DEBOUNCE_FRAMES:
                self._commit(sig, raw, self._edge(sig, raw, sig.pending_pos), events)
                sig.pending = None

    def _edge(self, sig: _Signature, rising: bool, first_pos: int) -> int:
        """Where the tone started (rising) or stopped, from frames that caught the edge part-way.

        With a rectangular window the amplitude is proportional to the share of the frame the tone
        covers, so a frame at ``pos`` with amplitude ratio c puts the edge at ``pos + (1 - c) n``
        (start) or ``pos + c n`` (end).
        """
        n = self._n
        frames = list(sig.recent)
        if rising:
            after = [p for q, p in frames if q >= first_pos]
            ref = max(after, default=0.0)
            first = [p for q, p in frames if q == first_pos]
            return int(round(first_pos + (1 - _ratio(first[0], ref)) * n)) if first else first_pos
        before = [p for q, p in frames if q < first_pos - self._hop]
        ref = max(before, default=0.0)
        cands = [pos + _ratio(p, ref) * n for pos, p in frames if first_pos - self._hop <= pos <= first_pos]
        return int(round(max(cands))) if cands else first_pos

    def _commit(self, sig: _Signature, now_on: bool, pos: int, events: list[ToneEvent]) -> None:
        if sig.seg_start is not None:
            sig.segments.append((sig.on, (pos - sig.seg_start) / self.rate, sig.seg_start))
            del sig.segments[:-_HISTORY]
            if sig.levelled and sig.on:
                sig.on_levels[sig.seg_start] = sig.on_peak
                if len(sig.on_levels) > _HISTORY:
                    del sig.on_levels[min(sig.on_levels)]
        if now_on:
            sig.on_peak = 0.0
        sig.on = now_on
        if sig.seg_start is None and not now_on:
            return
        sig.seg_start = pos
        self._evaluate(sig, pos, events)

    def _check_running(self, sig: _Signature, now: int, events: list[ToneEvent]) -> None:
        """Time-based checks between transitions: continuous tones, and tones that stopped."""
        if sig.seg_start is None:
            return
        run_s = (now - sig.seg_start) / self.rate
        for kind in sig.kinds:
            spec = self._plan[kind]
            if not spec.cadence_s:
                if sig.on and not sig.active[kind] and run_s >= sig.continuous_confirm_s:
                    sig.active[kind] = True
                    confirmed = sig.seg_start + int(sig.continuous_confirm_s * self.rate)
                    events.append(ToneEvent(kind, sig.seg_start, confirmed))
                elif sig.active[kind] and not sig.on and run_s >= _CONTINUOUS_GAP_S:
                    sig.active[kind] = False
            elif sig.active[kind]:
                longest = max(max(p[0::2] if sig.on else p[1::2]) for p in (spec.cadence_s, *spec.alt_cadences))
                if run_s > longest + _tol(longest):
                    sig.active[kind] = False  # held on or off too long: the cadence stopped

    def _evaluate(self, sig: _Signature, pos: int, events: list[ToneEvent]) -> None:
        """At each committed change: continue, end or confirm each cadenced kind."""
        for kind in sig.kinds:
            spec = self._plan[kind]
            done = sig.segments
            if not spec.cadence_s:
                if sig.active[kind] and done and done[-1][0] and done[-1][1] < sig.continuous_confirm_s:
                    sig.active[kind] = False
                continue
            patterns = (spec.cadence_s, *spec.alt_cadences)
            # A tone whose bursts alternate in level (AU congestion) is matched twice: its own
            # cadence on every burst (levels checked), its alternative on the strong bursts alone.
            views = [(done, patterns)]
            if sig.levelled and spec.on_levels_db:
                views = [(done, (spec.cadence_s,)), (self._strong(sig, spec), spec.alt_cadences)]
            if sig.active[kind]:
                # (the strong bursts' view: its last segment may be an "off" still going on)
                tails = [(v[-len(spec.cadence_s):] if i == 0 else v[-len(spec.cadence_s) - 1 : -1], pats)
                         for i, (v, pats) in enumerate(views)]
                fits = any(_cadence_matches([s[1] for s in tail], pat, tail[0][0])
                           for tail, pats in tails if tail for pat in pats)
                if all(tail for tail, _p in tails) and not fits:
                    sig.active[kind] = False
                continue
            need = max(2, len(spec.cadence_s) * _CADENCE_CYCLES[kind])
            # Confirm at the start of an "on", over completed segments that begin with an "on".
            if not sig.on:
                continue
            for segs, pats in views:
                tail = segs[-need:]
                if len(segs) < need or not tail[0][0]:
                    continue
                if any(_cadence_matches([s[1] for s in tail], pat, True) and self._levels_fit(sig, kind, pat, tail)
                       for pat in pats):
                    run_start, run = self._fitting_run(segs, pats)
                    if self._fits_another(sig, kind, run, run_start):
                        continue
                    sig.active[kind] = True
                    events.append(ToneEvent(kind, min(run_start, tail[0][2]), pos))
                    break

    @staticmethod
    def _fitting_run(done: list[tuple[bool, float, int]],
                     patterns: tuple[tuple[float, ...], ...]) -> tuple[int, list[float]]:
        """The longest run of completed segments, from an "on", that fits one of ``patterns``."""
        for i in range(len(done)):
            if done[i][0]:
                durations = [d for _on, d, _st in done[i:]]
                if any(_cadence_matches(durations, pat, True) for pat in patterns):
                    return done[i][2], durations
        return done[-1][2], []

    def _fits_another(self, sig: _Signature, kind: str, run: list[float], run_start: int) -> bool:
        """Whether everything heard of ``kind`` so far (``run``) also fits another cadenced kind.

        Spain's busy (0.2/0.2) is a part of its congestion (0.2 on/off three times, 0.6 off): busy
        waits until a 0.2 s "off" comes where congestion would have 0.6 s. Australia's busy and
        congestion have one cadence: the bursts' levels rule one of them out at once.
        """
        if not run:
            return False
        segs = [x for x in sig.segments if x[2] >= run_start]
        for other in sig.kinds:
            spec = self._plan[other]
            if other == kind or not spec.cadence_s:
                continue
            if any(_cadence_matches(run, pat, True) and self._levels_fit(sig, other, pat, segs)
                   for pat in (spec.cadence_s, *spec.alt_cadences)):
                return True
        return False

    @staticmethod
    def _strong(sig: _Signature, spec: ToneSpec) -> list[tuple[bool, float, int]]:
        """The completed segments with the weak bursts of a tone whose bursts alternate in level
        (AU congestion) counted as "off": what is left when they are lost, whole or in pieces
        (near the noise they come and go frame by frame). A burst is weak when it is
        :data:`_LEVEL_STEP_DB` below the strongest recent one, or shorter than half the tone's
        shortest "on"."""
        shortest = min(min(p[0::2]) for p in (spec.cadence_s, *spec.alt_cadences))
        ref = max((sig.on_levels.get(st, 0.0) for on, _d, st in sig.segments if on), default=0.0)
        ratio = 10 ** (_LEVEL_STEP_DB / 10)
        out: list[tuple[bool, float, int]] = []
        for on, d, st in sig.segments:
            if on and sig.on_levels.get(st, 0.0) * ratio >= ref and d >= 0.5 * shortest:
                out.append((True, d, st))
            elif out and not out[-1][0]:
                out[-1] = (False, out[-1][1] + d, out[-1][2])
            else:
                out.append((False, d, st))
        return out

    def _levels_fit(self, sig: _Signature, kind: str, pattern: tuple[float, ...],
                    segs: list[tuple[bool, float, int]]) -> bool:
        """Whether the bursts' levels in ``segs`` fit ``kind`` heard with ``pattern``.

        On a signature where one kind's bursts alternate in level (AU congestion, 10 dB) and
        another's do not (AU busy): with the kind's own cadence, consecutive bursts must differ by
        at least :data:`_LEVEL_STEP_DB` (alternating) or all be within it (steady). An alternative
        cadence of the alternating kind (the weaker bursts lost) is not checked: what is left of it
        is steady.
        """
        if not sig.levelled:
            return True
        stepped = bool(self._plan[kind].on_levels_db)
        if stepped and pattern != self._plan[kind].cadence_s:
            return True
        levels = [sig.on_levels.get(st, 0.0) for on, _d, st in segs if on]
        if len(levels) < 2:
            return not stepped
        ratio = 10 ** (_LEVEL_STEP_DB / 10)
        apart = [max(a, b) > ratio * min(a, b) for a, b in zip(levels, levels[1:])]
        return all(apart) if stepped else not any(apart)
