"""Caller ID sent by an independent implementation (libspandsp), decoded by linetap and by multimon-ng.

The grid (every standard x message type x level/noise/clock cell) runs through the line analyser
directly, as the recorder feeds it (20 ms blocks, batched inside); ``test_line_dsp_e2e.py`` sends a
representative subset (each standard family once) through the real ALSA capture path. Its result is
the conformance table of ``docs/LINE-SIGNALS.md`` between the ``callerid-conformance`` markers:
the test fails if any linetap cell fails or if the committed table differs from this run;
``LINETAP_UPDATE_DOCS=1`` rewrites the table instead.

Signal chain per cell: spandsp's transmission (8000 Hz) scaled to the cell's level in dBm0
(0 dBm0 = -3.14 dBFS, see tests/spandsp.py), between two speech clips (0.5 s apart from the
burst), clock error by band-limited resampling, white Gaussian noise at the cell's SNR relative to
the signal's level over the whole clip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

import spandsp
from linetap.config import LineConfig
from linetap.detect.analyzer import LineAnalyzer
from linetap.detect.callerid import CallerId
from linetap.sim import signals as sig
from linetap.sim.line import speech_clips

pytestmark = pytest.mark.skipif(not spandsp.available(), reason="libspandsp not installed (scripts/setup)")

RATE = 8000
DOC = Path(__file__).resolve().parents[1] / "docs" / "LINE-SIGNALS.md"
START, END = "<!-- callerid-conformance:start -->", "<!-- callerid-conformance:end -->"
HAVE_MULTIMON = shutil.which("multimon-ng") is not None and shutil.which("sox") is not None


@dataclass(frozen=True)
class Condition:
    label: str
    level_dbm0: float
    snr_db: float | None
    clock_error: float


CONDITIONS = (
    Condition("−10 dBm0, no noise, nominal clock", -10.0, None, 0.0),
    Condition("−45 dBm0, 15 dB SNR, nominal clock", -45.0, 15.0, 0.0),
    Condition("−25 dBm0, 15 dB SNR, +1.5 % clock", -25.0, 15.0, 0.015),
    Condition("−40 dBm0, 15 dB SNR, −1.5 % clock", -40.0, 15.0, -0.015),
)


@dataclass(frozen=True)
class Case:
    """One row: what spandsp sends and what it must decode to. (spandsp's alert tone is the
    2130 + 2750 Hz pair for 110 ms, for CLASS the CAS, for CLIP the DT-AS.)"""

    family: str  # the standard, as the table names it
    message: str  # the message type, as the table names it
    expected: CallerId
    spandsp_standard: str = ""
    message_type: int = 0
    fields: tuple[tuple[int, bytes], ...] = ()
    alert: bool = False
    preamble: tuple[int, int, int, int] | None = None
    dtmf: str = ""  # DTMF caller ID: the digits spandsp's DTMF generator sends
    # (spandsp's own DTMF caller-ID transmitter, ADSI_STANDARD_CLIP_DTMF: spandsp_standard "clip_dtmf",
    # message_type the terminator, fields (letter, digits), as adsi_add_field takes them)
    in_call: bool = False  # sent during an established call (call waiting): the FSK decoder rests
    multimon: str | None = None  # what multimon-ng must print (None: n/a, it does not decode this)

    @property
    def is_dtmf(self) -> bool:
        return bool(self.dtmf) or self.spandsp_standard == "clip_dtmf"

    def audio(self) -> np.ndarray:
        if self.dtmf:
            return spandsp.dtmf_audio(self.dtmf)
        return spandsp.adsi_audio(self.spandsp_standard, self.message_type, list(self.fields), alert=self.alert,
                                  preamble=self.preamble)


DATE, NUMBER, NAME = (1, b"11281545"), (2, b"0201234567"), (7, b"BETA LTD")
CALL = CallerId("0201234567", "BETA LTD", "11281545", standard="v23")
CASES = (
    Case("Bell 202 (Telcordia GR-30)", "SDMF call set-up 0x04", CallerId("5551234", None, "11281545"),
         "class", 0x04, ((0, b"11281545"), (0, b"5551234"))),
    Case("Bell 202 (Telcordia GR-30)", "SDMF call set-up 0x04, private", CallerId(None, None, "11281545", "P"),
         "class", 0x04, ((0, b"11281545"), (0, b"P"))),
    Case("Bell 202 (Telcordia GR-30)", "MDMF call set-up 0x80", replace(CALL, standard="bell202"),
         "class", 0x80, (DATE, NUMBER, NAME), multimon="CID=0201234567 CNT=BETA LTD"),
    Case("Bell 202 (Telcordia GR-30)", "MDMF forwarded on busy (0x05)",
         CallerId("0201234567", None, "11281545", redirect_reason="1"),
         "class", 0x80, (DATE, NUMBER, (5, b"1")), multimon="CID=0201234567"),
    Case("Bell 202 (Telcordia GR-30)", "call waiting: CAS, then MDMF 0x80 during a call",
         replace(CALL, standard="bell202", kind="waiting"), "class", 0x80, (DATE, NUMBER, NAME), alert=True,
         preamble=(0, 80, 5, 1), in_call=True, multimon="CID=0201234567 CNT=BETA LTD"),
    Case("Bell 202 (Telcordia GR-30)", "SDMF message waiting 0x06 on",
         CallerId(None, None, None, kind="mwi", message_waiting=True), "class", 0x06, ((0, b"BBB"),)),
    Case("Bell 202 (Telcordia GR-30)", "MDMF message waiting 0x82 off",
         CallerId(None, None, None, kind="mwi", message_waiting=False), "class", 0x82, ((0x0B, b"\x00"),),
         multimon="MWI VI=. Deactivation"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "call set-up 0x80 with call type 0x11",
         replace(CALL, call_type=1), "clip", 0x80, ((0x11, b"\x01"), DATE, NUMBER, NAME),
         multimon="CID=0201234567 CNT=BETA LTD"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "call set-up 0x80, number and name private",
         CallerId(None, None, "11281545", "P", "P", "v23"), "clip", 0x80, (DATE, (4, b"P"), (8, b"P")),
         multimon="RACLI=P"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "call set-up 0x80, redirected (0x1A, 0x12)",
         replace(CALL, redirecting_number="0307654321", first_called="0301111111"), "clip", 0x80,
         (DATE, NUMBER, NAME, (0x1A, b"0307654321"), (0x12, b"0301111111")), multimon="CID=0201234567"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "call set-up 0x80, no channel seizure", replace(CALL, call_type=1),
         "clip", 0x80, (DATE, NUMBER, NAME, (0x11, b"\x01")), preamble=(0, 80, 5, 1),
         multimon="CID=0201234567 CNT=BETA LTD"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "message waiting 0x82 (3 messages)",
         CallerId(None, None, "11281545", standard="v23", kind="mwi", message_waiting=True, messages=3), "clip",
         0x82, (DATE, (0x0B, b"\xff"), (0x13, b"\x03")), multimon="VI=. Activation"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "advice of charge 0x86",
         CallerId(None, None, "11281545", standard="v23", kind="charge"), "clip", 0x86,
         (DATE, (0x20, b"\x01\x23"))),
    Case("V.23 (BT SIN 227)", "DT-AS alert, 96 seizure + 55 mark bits, call set-up 0x80",
         replace(CALL, call_type=1), "clip", 0x80, (DATE, NUMBER, NAME, (0x11, b"\x01")), alert=True,
         preamble=(96, 55, 5, 1), multimon="CID=0201234567 CNT=BETA LTD"),
    Case("V.23 (ETSI EN 300 659, CLIP)", "call waiting: DT-AS, then call set-up 0x80 during a call",
         replace(CALL, kind="waiting"), "clip", 0x80, (DATE, NUMBER, NAME), alert=True, preamble=(0, 80, 5, 1),
         in_call=True, multimon="CID=0201234567 CNT=BETA LTD"),
    Case("V.23 (Telstra ACLIP)", "SDMF call set-up 0x04", CallerId("0398765432", None, "11281545", standard="v23"),
         "aclip", 0x04, ((0, b"11281545"), (0, b"0398765432"))),
    Case("V.23 (Telstra ACLIP)", "MDMF call set-up 0x80", CALL, "aclip", 0x80, (DATE, NUMBER, NAME),
         multimon="CID=0201234567 CNT=BETA LTD"),
    Case("V.23 (NTT JCLIP)", "call set-up 0x40", CallerId("0312345678", None, None, standard="jclip"),
         "jclip", 0x40, ((2, b"0312345678"),)),
    Case("V.23 (NTT JCLIP)", "call set-up 0x40, dialled number, a DLE-stuffed byte",
         CallerId("0312345678", None, None, standard="jclip", dialled_number="0399998888"), "jclip", 0x40,
         ((2, b"0312345678"), (0x21, b"\x10"), (9, b"0399998888"))),
    Case("V.23 (NTT JCLIP)", "call set-up 0x40, private", CallerId(None, None, None, "P", standard="jclip"),
         "jclip", 0x40, ((4, b"P"),)),
    Case("DTMF (EN 300 659-1 annex B)", "A…C number", CallerId("0201234567", None, None, standard="dtmf"),
         dtmf="A0201234567C", multimon="A0201234567C"),
    Case("DTMF (EN 300 659-1 annex B)", "A…# number (#-terminated)",
         CallerId("4512345678", None, None, standard="dtmf"), dtmf="A4512345678#", multimon="A4512345678#"),
    Case("DTMF (EN 300 659-1 annex B)", "D…C number (Denmark)", CallerId("4512345678", None, None, standard="dtmf"),
         dtmf="D4512345678C", multimon="D4512345678C"),
    Case("DTMF (EN 300 659-1 annex B)", "B10C private", CallerId(None, None, None, "P", standard="dtmf"),
         dtmf="B10C", multimon="B10C"),
    Case("DTMF (EN 300 659-1 annex B)", "D1C private (Denmark)", CallerId(None, None, None, "P", standard="dtmf"),
         dtmf="D1C", multimon="D1C"),
    # spandsp's DTMF caller-ID transmitter (adsi_tx, ADSI_STANDARD_CLIP_DTMF): its own framing and timing.
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "A…C number",
         CallerId("0201234567", None, None, standard="dtmf"), "clip_dtmf", ord("C"), ((ord("A"), b"0201234567"),),
         multimon="A0201234567C"),
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "A…D…C number, diverting number",
         CallerId("0201234567", None, None, standard="dtmf", redirecting_number="0307654321"), "clip_dtmf",
         ord("C"), ((ord("A"), b"0201234567"), (ord("D"), b"0307654321")), multimon="A0201234567D0307654321C"),
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "B10…D…C private, diverting number",
         CallerId(None, None, None, "P", standard="dtmf", redirecting_number="0307654321"), "clip_dtmf",
         ord("C"), ((ord("B"), b"10"), (ord("D"), b"0307654321")), multimon="B10D0307654321C"),
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "B00C unavailable",
         CallerId(None, None, None, "O", standard="dtmf"), "clip_dtmf", ord("C"), ((ord("B"), b"00"),),
         multimon="B00C"),
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "A…# number (#-terminated)",
         CallerId("4512345678", None, None, standard="dtmf"), "clip_dtmf", ord("#"), ((ord("A"), b"4512345678"),),
         multimon="A4512345678#"),
    Case("DTMF (spandsp CLIP_DTMF transmitter)", "D3# unavailable (#-terminated)",
         CallerId(None, None, None, "O", standard="dtmf"), "clip_dtmf", ord("#"), ((ord("D"), b"3"),),
         multimon="D3#"),
)


def line_audio(case: Case, cond: Condition) -> np.ndarray:
    """The cell's signal (full scale 1.0, 8000 Hz): speech, the caller ID, speech, impaired."""
    rng = np.random.default_rng(zlib.crc32(f"{case.family}{case.message}{cond.label}".encode()))
    burst = spandsp.scale_to_dbm0(case.audio(), cond.level_dbm0)
    clips = speech_clips(RATE)
    gap = np.zeros(RATE // 2)
    x = np.concatenate((clips[0] / 32768.0, gap, burst, gap, clips[1] / 32768.0, gap))
    if cond.clock_error:
        x = sig.resample_error(x, cond.clock_error)
    if cond.snr_db is not None:
        x = sig.add_noise(x, cond.snr_db, rng=rng, reference_dbfs=cond.level_dbm0 + spandsp.DBM0_TO_DBFS)
    return x


def linetap_decodes(x: np.ndarray, in_call: bool = False) -> list[CallerId]:
    """The line analyser as the recorder runs it: 20 ms int16 blocks, caller-ID events out.
    ``in_call``: as LineCalls sets it during an established call, the FSK decoder rests."""
    analyzer = LineAnalyzer(LineConfig(name="l", pcm="null", rate=RATE))
    analyzer.callerid_paused = in_call
    pcm = sig.to_pcm16(x).reshape(-1, 1)
    events = []
    for i in range(0, len(pcm), RATE // 50):
        events += analyzer.push(pcm[i : i + RATE // 50], i)
    events += analyzer.drain()
    return [e for e in events if isinstance(e, CallerId)]


def multimon_says(x: np.ndarray, dtmf: bool) -> str:
    """multimon-ng's output for the same audio, resampled to its 22050 Hz by sox (``-R``: sox's
    dither is random unless asked to repeat, and multimon-ng's result on a few cells turns on it)."""
    raw = sig.to_pcm16(np.concatenate((x, np.zeros(RATE)))).tobytes()
    fmt = ["-t", "raw", "-e", "signed", "-b", "16", "-c", "1"]
    up = subprocess.run(["sox", "-R", *fmt, "-r", "8000", "-", *fmt, "-r", "22050", "-"], input=raw,
                        capture_output=True, check=True).stdout
    out = subprocess.run(["multimon-ng", "-q", "-t", "raw", "-a", "DTMF" if dtmf else "CLIPFSK", "-"], input=up,
                         capture_output=True, check=True).stdout.decode()
    if dtmf:
        return "".join(re.findall(r"DTMF: (\S)", out))
    return out


def cell(case: Case, cond: Condition) -> tuple[bool, str]:
    """(linetap decoded exactly the expected message and nothing else, the table cell's text)."""
    x = line_audio(case, cond)
    ok = linetap_decodes(x, case.in_call) == [case.expected]
    ours = "✓" if ok else "✗"
    if case.multimon is None or not HAVE_MULTIMON:
        theirs = "n/a"
    else:
        said = multimon_says(x, case.is_dtmf)
        theirs = "✓" if (said == case.multimon if case.is_dtmf else case.multimon in said) else "✗"
    return ok, f"{ours} / {theirs}"


def table() -> tuple[str, list[str]]:
    """The markdown table of the whole grid, and the cells linetap failed."""
    head = ["standard", "message", *(c.label for c in CONDITIONS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    failed = []
    for case in CASES:
        row = [case.family, case.message]
        for cond in CONDITIONS:
            ok, text = cell(case, cond)
            row.append(text)
            if not ok:
                failed.append(f"{case.family} / {case.message} / {cond.label}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), failed


def test_the_message_from_the_tracker_decodes_to_its_number_and_name():
    """ETSI call set-up with a Call Type (0x11, binary 0x01 = voice), as spandsp sends it."""
    fields = [(0x11, b"\x01"), DATE, (2, b"0201234567"), NAME]
    assert spandsp.adsi_message("clip", 0x80, fields)[2:].hex(" ") == \
        "11 01 01 01 08 31 31 32 38 31 35 34 35 02 0a 30 32 30 31 32 33 34 35 36 37 07 08 42 45 54 41 20 4c 54 44"
    x = spandsp.scale_to_dbm0(spandsp.adsi_audio("clip", 0x80, fields), -20)
    (cid,) = linetap_decodes(np.concatenate((np.zeros(RATE // 2), x, np.zeros(RATE // 2))))
    assert (cid.number, cid.name, cid.when, cid.call_type, cid.kind, cid.standard) == \
        ("0201234567", "BETA LTD", "11281545", 1, "call", "v23")


def test_the_level_of_a_cell_is_what_its_label_says():
    x = spandsp.scale_to_dbm0(spandsp.adsi_audio("clip", 0x80, [DATE]), -25.0)
    active = x[np.abs(x) > 1e-4]
    dbfs = 10 * np.log10(2 * np.mean(active**2))  # as a sine's dBFS (AES17)
    assert dbfs == pytest.approx(-25.0 - 3.14, abs=0.3)


def test_conformance_grid_matches_the_committed_table_and_every_linetap_cell_passes():
    text, failed = table()
    doc = DOC.read_text()
    block = f"{START}\n{text}\n{END}"
    if os.environ.get("LINETAP_UPDATE_DOCS") == "1":
        a, b = doc.index(START), doc.index(END) + len(END)
        DOC.write_text(doc[:a] + block + doc[b:])
    assert not failed, failed
    assert block in DOC.read_text(), "docs/LINE-SIGNALS.md's conformance table is stale: rerun with LINETAP_UPDATE_DOCS=1"
