"""On-hook caller ID: FSK (Bell 202, V.23; SDMF, MDMF) and DTMF-signalled."""

from __future__ import annotations

import shutil
import subprocess
import zlib

import numpy as np
import pytest

from linetap.sim import signals as sig
from linetap.detect.callerid import (CallerId, CallerIdDecoder, CasDetector, DtmfCallerIdParser, parse_jclip,
                                     parse_message)
from linetap.detect.dtmf import DtmfDigit


def decode(x: np.ndarray, rate: int = 8000, block: int | None = None, **kwargs) -> list[CallerId]:
    """Feed int16 blocks of 20 ms (by default), as the recorder does, then end the stream."""
    pcm = sig.to_pcm16(x)
    block = block or rate // 50
    dec = CallerIdDecoder(rate, **kwargs)
    found: list[CallerId] = []
    for i in range(0, len(pcm), block):
        found += dec.feed(pcm[i : i + block], i)
    return found + dec.flush()


# message fields -> the CallerId expected (standard filled in per test)
MESSAGES = {
    "mdmf_number_name_date": dict(number="0123456789", name="JOHN DOE", when="11281530"),
    "mdmf_private_number_and_name": dict(when="01020304", number_absent="P", name_absent="P"),
    "mdmf_international_number_name_unavailable": dict(number="+441234567890", name_absent="O"),
    "mdmf_name_only_number_out_of_area": dict(name="Acme Ltd", when="12312359", number_absent="O"),
    "sdmf_number": dict(number="5551234", when="06151200", sdmf=True),
    "sdmf_private": dict(number_absent="P", when="06151200", sdmf=True),
    "sdmf_out_of_area": dict(number_absent="O", when="07040930", sdmf=True),
}


def burst(standard: str, rate: int, level_dbfs: float, fields: dict, **kwargs) -> tuple[np.ndarray, CallerId]:
    f = dict(fields)
    sdmf = f.pop("sdmf", False)
    x = sig.fsk_callerid(f.get("number"), f.get("name"), f.get("when"), standard, rate, level_dbfs, sdmf=sdmf,
                         number_absent=f.get("number_absent"), name_absent=f.get("name_absent"), **kwargs)
    expected = CallerId(f.get("number"), f.get("name"), f.get("when"), f.get("number_absent"),
                        f.get("name_absent"), standard)
    return x, expected


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("message", list(MESSAGES))
def test_every_message_decodes_exactly_at_minus_10_to_minus_40_dbfs_with_noise_and_clock_error(standard, rate, message):
    rng = np.random.default_rng(zlib.crc32(f"{standard}{rate}{message}".encode()))
    for level_dbfs, clock_error in ((-10, 0.0), (-25, 0.01), (-40, -0.01)):
        x, expected = burst(standard, rate, level_dbfs, MESSAGES[message], phase_rad=rng.uniform(0, 6.3))
        if clock_error:
            x = sig.resample_error(x, clock_error)
        assert decode(sig.add_noise(x, 20, rng=rng), rate) == [expected], (level_dbfs, clock_error)


def test_v23_mdmf_with_private_number_decodes_absence_reason():
    x, _ = burst("v23", 8000, -20, dict(when="03141592", number_absent="P", name="Withheld Ltd"))
    (cid,) = decode(sig.add_noise(x, 20))
    assert (cid.number, cid.number_absent, cid.name, cid.standard) == (None, "P", "Withheld Ltd", "v23")


def test_bell202_sdmf_out_of_area_decodes_absence_reason():
    x, _ = burst("bell202", 8000, -20, dict(when="12250700", number_absent="O", sdmf=True))
    (cid,) = decode(sig.add_noise(x, 20))
    assert (cid.number, cid.number_absent, cid.when, cid.standard) == (None, "O", "12250700", "bell202")


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("sdmf", [False, True])
def test_a_corrupted_checksum_yields_nothing(standard, sdmf):
    fields = dict(number="0123456789", when="11281530")
    if not sdmf:
        fields["name"] = "JOHN DOE"
    x = sig.fsk_callerid(fields.get("number"), fields.get("name"), fields["when"], standard, 8000, -20,
                         sdmf=sdmf, corrupt_checksum=True)
    assert decode(sig.add_noise(x, 20)) == []


def test_message_bytes_match_the_bellcore_sdmf_example():
    msg = sig.callerid_message("6095551212", None, "09301224", sdmf=True)
    assert msg.hex(" ") == "04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51"


def test_a_message_whose_parameters_overrun_its_length_is_rejected():
    body = bytes([0x80, 5, 0x02, 9, ord("1"), ord("2"), ord("3")])  # parameter claims 9 bytes
    assert parse_message(body + bytes([(-sum(body)) & 0xFF]), "bell202") is None


def _msg(*body: int) -> bytes:
    b = bytes(body)
    return b + bytes([(-sum(b)) & 0xFF])


def test_message_waiting_is_a_message_waiting_indicator_not_a_caller_and_other_types_are_ignored():
    on = parse_message(_msg(0x82, 3, 0x0B, 1, 0xFF), "bell202")  # MDMF visual message-waiting indicator
    assert on == CallerId(None, None, None, standard="bell202", kind="mwi", message_waiting=True)
    off = parse_message(_msg(0x82, 3, 0x0B, 1, 0x00), "bell202")
    assert (off.kind, off.message_waiting) == ("mwi", False)
    assert parse_message(_msg(0x82, 3, 0x0B, 1, 0x42), "bell202") is None  # neither on nor off
    sdmf_on, sdmf_off = parse_message(_msg(0x06, 3, 0x42, 0x42, 0x42), "bell202"), \
        parse_message(_msg(0x06, 3, 0x6F, 0x6F, 0x6F), "bell202")
    assert (sdmf_on.kind, sdmf_on.message_waiting, sdmf_off.message_waiting) == ("mwi", True, False)
    etsi = parse_message(_msg(0x82, 6, 0x13, 1, 3, 0x0B, 1, 0xFF), "v23")  # 3 messages, indicator on
    assert (etsi.kind, etsi.message_waiting, etsi.messages) == ("mwi", True, 3)
    assert parse_message(_msg(0x89, 3, 0x02, 1, ord("1")), "v23") is None  # ETSI SMS: not ours


def test_a_call_type_parameter_is_a_binary_value_not_text_that_spoils_the_message():
    body = (b"\x80\x23\x11\x01\x01\x01\x08" + b"11281545" + b"\x02\x0a" + b"0201234567"
            + b"\x07\x08" + b"BETA LTD")
    cid = parse_message(body + bytes([(-sum(body)) & 0xFF]), "v23")
    assert cid == CallerId("0201234567", "BETA LTD", "11281545", standard="v23", call_type=1)


def test_unknown_parameters_are_skipped_by_their_length_whatever_their_bytes():
    body = (b"\x80\x19" + b"\x55\x03\x00\xff\x0a" + b"\x02\x07" + b"5551234" + b"\x99\x00"
            + b"\x50\x07\x01\x02\x03\x04\x05\x06\x07")
    assert len(body) == 2 + 0x19
    cid = parse_message(body + bytes([(-sum(body)) & 0xFF]), "bell202")
    assert cid == CallerId("5551234", None, None)


def test_redirected_call_keeps_the_redirecting_and_first_called_numbers_and_the_dialled_line():
    params = [(0x02, b"0201234567"), (0x1A, b"0307654321"), (0x12, b"0301111111"), (0x03, b"0409999")]
    payload = b"".join(bytes([t, len(v)]) + v for t, v in params)
    cid = parse_message(_msg(0x80, len(payload), *payload), "v23")
    assert (cid.number, cid.redirecting_number, cid.first_called, cid.dialled_number, cid.redirected_from) == \
        ("0201234567", "0307654321", "0301111111", "0409999", "0307654321")
    only_first = parse_message(_msg(0x80, 14, 0x02, 2, ord("1"), ord("2"), 0x12, 8, *b"03011111"), "v23")
    assert only_first.redirected_from == "03011111"
    bell = parse_message(_msg(0x80, 8, 0x02, 3, *b"555", 0x05, 1, ord("1")), "bell202")
    assert (bell.number, bell.redirect_reason) == ("555", "1")


def test_a_text_field_that_is_not_printable_is_dropped_not_the_whole_message():
    cid = parse_message(_msg(0x80, 10, 0x02, 3, *b"555", 0x07, 3, 0x00, 0x01, 0x02), "bell202")
    assert cid == CallerId("555", None, None)
    bad_date = parse_message(_msg(0x80, 9, 0x01, 2, *b"11", 0x02, 3, *b"555"), "bell202")
    assert (bad_date.number, bad_date.when) == ("555", None)


def test_a_call_set_up_without_number_name_or_reason_says_nothing():
    assert parse_message(_msg(0x80, 3, 0x11, 1, 0x01), "v23") is None


def test_advice_of_charge_is_parsed_as_charge_not_as_a_call():
    cid = parse_message(_msg(0x86, 10, 0x01, 8, *b"11281545"), "v23")
    assert (cid.kind, cid.when, cid.number) == ("charge", "11281545", None)


def test_bt_style_burst_without_channel_seizure_and_a_short_mark_run_decodes():
    x, expected = burst("v23", 8000, -20, MESSAGES["mdmf_number_name_date"], seizure_bits=0, mark_bits=55)
    assert decode(sig.add_noise(x, 20)) == [expected]


def test_extra_stop_bits_between_characters_are_tolerated():
    x, expected = burst("bell202", 8000, -20, MESSAGES["mdmf_number_name_date"], stop_bits=5)
    assert decode(sig.add_noise(x, 20)) == [expected]


def test_decoder_restricted_to_bell202_ignores_v23_and_the_reverse():
    x, expected = burst("v23", 8000, -20, MESSAGES["mdmf_number_name_date"])
    assert decode(x, standards=("bell202",)) == []
    assert decode(x, standards=("v23",)) == [expected]
    y, expected_bell = burst("bell202", 8000, -20, MESSAGES["mdmf_number_name_date"])
    assert decode(y, standards=("v23", "dtmf")) == []
    assert decode(y, standards=("bell202",)) == [expected_bell]


def test_the_caller_id_is_reported_when_its_carrier_stops_and_carries_its_position():
    x, expected = burst("bell202", 8000, -15, MESSAGES["sdmf_number"], lead_ms=500, tail_ms=1000)
    pcm = sig.to_pcm16(x)
    dec = CallerIdDecoder(8000)
    burst_end = len(pcm) - 8000
    reported_at = None
    for i in range(0, len(pcm), 160):
        if dec.feed(pcm[i : i + 160], 50_000 + i):
            reported_at = i + 160
            break
    assert reported_at is not None and burst_end <= reported_at <= burst_end + 800  # within 100 ms
    x2 = sig.to_pcm16(x)
    dec2 = CallerIdDecoder(8000)
    (cid,) = dec2.feed(x2, 50_000)
    assert 50_000 + 4000 <= cid.start_frame < cid.end_frame <= 50_000 + burst_end


def test_two_calls_in_one_stream_give_two_caller_ids():
    a, ea = burst("v23", 8000, -20, MESSAGES["mdmf_number_name_date"])
    b, eb = burst("v23", 8000, -20, MESSAGES["sdmf_private"])
    x = np.concatenate((a, np.zeros(16000), b))
    assert decode(sig.add_noise(x, 25)) == [ea, eb]


def test_speech_yields_no_caller_id():
    x = sig.speech_like(120, 8000, rng=np.random.default_rng(21))
    assert decode(sig.add_noise(x, 30)) == []


def test_unknown_standard_is_refused():
    with pytest.raises(ValueError, match="unknown caller ID standard"):
        CallerIdDecoder(8000, standards=("bell202", "v.23"))


# ------------------------------------------------------------------------------ DTMF caller ID
@pytest.mark.parametrize(
    ("number", "absent", "style", "expected"),
    [
        ("0123456789", None, "A", CallerId("0123456789", None, None, None, None, "dtmf")),
        ("4512345678", None, "D", CallerId("4512345678", None, None, None, None, "dtmf")),
        (None, "P", "A", CallerId(None, None, None, "P", None, "dtmf")),  # B10C
        (None, "O", "A", CallerId(None, None, None, "O", None, "dtmf")),  # B00C
        (None, "P", "D", CallerId(None, None, None, "P", None, "dtmf")),  # D1C
        (None, "O", "D", CallerId(None, None, None, "O", None, "dtmf")),  # D2C
    ],
    ids=["A-number-C", "D-number-C", "B10C-private", "B00C-unavailable", "D1C-private", "D2C-unavailable"],
)
def test_dtmf_caller_id_strings_decode(number, absent, style, expected):
    x = sig.dtmf_callerid(number, 8000, -20, number_absent=absent, style=style)
    assert decode(sig.add_noise(x, 20)) == [expected]


def test_dtmf_caller_id_works_at_16_khz():
    x = sig.dtmf_callerid("0123456789", 16000, -25)
    assert decode(sig.add_noise(x, 20), 16000) == [CallerId("0123456789", None, None, None, None, "dtmf")]


def _digits(text: str, gap: int = 1120) -> list[DtmfDigit]:
    return [DtmfDigit(c, i * gap, i * gap + 560) for i, c in enumerate(text)]


@pytest.mark.parametrize("text", ["B77C", "A12B4C", "0123C", "D1", "AC"])
def test_dtmf_strings_that_are_not_caller_id_yield_nothing(text):
    assert DtmfCallerIdParser(8000).feed_digits(_digits(text)) == []


def _cid(number=None, absent=None, redirecting=None) -> CallerId:
    return CallerId(number, None, None, absent, None, "dtmf", redirecting_number=redirecting)


@pytest.mark.parametrize(("text", "expected"), [
    # libspandsp's CLIP_DTMF messages (adsi_add_field): number, then D + the diverting number
    ("A0201234567D0307654321C", _cid("0201234567", redirecting="0307654321")),
    ("A0201234567D0307654321#", _cid("0201234567", redirecting="0307654321")),
    ("B10D0307654321C", _cid(absent="P", redirecting="0307654321")),  # private caller, forwarded
    ("B00D0307654321C", _cid(absent="O", redirecting="0307654321")),
    ("A0201234567B10C", _cid("0201234567", absent="P")),  # as FSK: both kept as sent
    ("A0201234567D1#", _cid("0201234567", absent="P")),  # D + one digit: a reason code, never a number
    ("D3#", _cid(absent="O")),
    ("A" + "1" * 20 + "D" + "2" * 20 + "C", _cid("1" * 20, redirecting="2" * 20)),  # ETSI's longest numbers
], ids=["A-D-C", "A-D-hash", "B10-D", "B00-D", "A-B10", "A-D1-hash", "D3-hash", "20-and-20-digits"])
def test_dtmf_caller_id_with_a_redirecting_number_or_a_reason_decodes(text, expected):
    assert DtmfCallerIdParser(8000).feed_digits(_digits(text)) == [expected]
    assert expected.redirected_from == expected.redirecting_number  # the field FSK's 0x1A fills


@pytest.mark.parametrize("text", ["A12A34C", "AD12C", "A12DC", "A12D34D56C", "A12B10B00C", "A1*2C",
                                  "4512345678#", "4512345678C", "A12D9C"])
def test_dtmf_strings_with_a_field_twice_empty_unknown_or_no_start_letter_yield_nothing(text):
    # "4512345678#": the unmarked form; keys pressed in a call end in "#" just as well (module docstring).
    assert DtmfCallerIdParser(8000).feed_digits(_digits(text)) == []


def test_dtmf_caller_id_abandoned_after_a_long_silence():
    digits = _digits("A0123") + [DtmfDigit(c, 100_000 + i * 1120, 100_560 + i * 1120) for i, c in enumerate("45C")]
    assert DtmfCallerIdParser(8000).feed_digits(digits) == []


# ------------------------------------------------------------------------ independent decoder
@pytest.mark.skipif(shutil.which("multimon-ng") is None, reason="multimon-ng not installed")
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_generated_fsk_is_what_multimon_ng_decodes_too(standard):
    x = sig.fsk_callerid("0123456789", "JOHN DOE", "11281530", standard, 22050, -10)
    raw = sig.to_pcm16(np.concatenate((x, np.zeros(22050)))).tobytes()
    out = subprocess.run(["multimon-ng", "-q", "-t", "raw", "-a", "CLIPFSK", "-"], input=raw,
                         capture_output=True, check=True).stdout.decode()
    assert "DATE=11281530 CID=0123456789 CNT=JOHN DOE" in out
    bad = sig.fsk_callerid("0123456789", "JOHN DOE", "11281530", standard, 22050, -10, corrupt_checksum=True)
    raw = sig.to_pcm16(np.concatenate((bad, np.zeros(22050)))).tobytes()
    out = subprocess.run(["multimon-ng", "-q", "-t", "raw", "-a", "CLIPFSK", "-"], input=raw,
                         capture_output=True, check=True).stdout.decode()
    assert "CID=" not in out


# ------------------------------------------------------------------------------------------ JCLIP
def _jclip(body: bytes, *, stuff_length: bool = True) -> bytes:
    """A JCLIP transmission built from the NTT layout (as libspandsp sends it, see callerid.py)."""
    def parity(b: int) -> int:
        return b | 0x80 if bin(b).count("1") % 2 else b
    stuffed = body.replace(b"\x10", b"\x10\x10")
    seven = b"\x10\x01\x07\x10\x02" + stuffed + b"\x10\x03"
    sent = bytes(parity(b) for b in seven)
    crc = 0
    for b in sent[2:]:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return sent + bytes([crc & 0xFF, crc >> 8])


def test_jclip_framing_parity_and_crc_are_all_checked():
    good = _jclip(b"\x40\x0c\x02\x0a0312345678")
    assert parse_jclip(good) == CallerId("0312345678", None, None, standard="jclip")
    assert parse_jclip(good[:-1] + bytes([good[-1] ^ 1])) is None  # CRC
    flipped = bytearray(good)
    flipped[10] ^= 0x80  # a parity bit (the CRC recomputed, so only parity can catch it)
    assert parse_jclip(_recrc(bytes(flipped))) is None
    assert parse_jclip(_jclip(b"\x41\x0c\x02\x0a0312345678")) is None  # not a call set-up
    assert parse_jclip(_jclip(b"\x40\x0d\x02\x0a0312345678")) is None  # wrong length
    public = parse_jclip(_jclip(b"\x40\x03\x04\x01C"))  # public phone: number unavailable
    assert (public.number, public.number_absent) == (None, "O")


def _recrc(msg: bytes) -> bytes:
    crc = 0
    for b in msg[2:-2]:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return msg[:-2] + bytes([crc & 0xFF, crc >> 8])


# ------------------------------------------------------------------- call-waiting alert (CAS)
def cas_ends(x: np.ndarray, block: int = 160) -> list[int]:
    pcm = sig.to_pcm16(x)
    det = CasDetector(8000)
    ends: list[int] = []
    for i in range(0, len(pcm), block):
        ends += det.feed(pcm[i : i + block], i)
    return ends


@pytest.mark.parametrize("level_dbfs", [-15.0, -45.0])
@pytest.mark.parametrize("clock_error", [0.0, 0.015, -0.015])
def test_the_call_waiting_alert_is_found_where_it_ends_with_noise_and_clock_error(level_dbfs, clock_error):
    x = np.concatenate((np.zeros(3000), sig.cas_tone(8000, level_dbfs, ms=75.0), np.zeros(3000)))
    x = sig.resample_error(x, clock_error) if clock_error else x
    x = sig.add_noise(x, 15, rng=np.random.default_rng(4), reference_dbfs=level_dbfs)
    end = (3000 + 600) / (1 + clock_error)
    (found,) = cas_ends(x)
    assert end - 40 <= found <= end + 40


def test_cas_probe_finds_every_alert_the_full_test_finds():
    """Fed 1 s batches, the detector tests every 11th 5 ms block and the last ten first, and only
    then (if one is an alert's) every block. One alert of 50-85 ms per second, at every offset to
    the 5 ms blocks and the batches, some astride a batch edge, over speech and noise: 1 s batches
    find exactly what 20 ms blocks (every block tested) find."""
    rng = np.random.default_rng(18)
    x = sig.add_noise(sig.speech_like(60, 8000, rng=rng, level_dbfs=-20), 25, rng=rng)
    for k in range(58):
        tone = sig.add_noise(sig.cas_tone(8000, -20.0 - (k % 3) * 10, ms=(50.0, 56.0, 60.0, 75.0, 85.0)[k % 5]), 20,
                             rng=rng)
        offset = 8000 - len(tone) // 2 if k % 6 == 0 else (k * 997) % (8000 - len(tone))
        x[k * 8000 + offset : k * 8000 + offset + len(tone)] = tone
    by_block = cas_ends(x, block=160)
    assert 30 <= len(by_block) <= 58  # the 55 ms and longer ones, not the 50 ms ones
    assert cas_ends(x, block=8000) == by_block


def test_one_tone_of_the_pair_a_short_blip_or_speech_is_no_alert():
    t = np.arange(800) / 8000
    one = 0.1 * np.sin(2 * np.pi * 2130 * t)
    short = sig.cas_tone(8000, -15.0, ms=40.0)
    speech = sig.speech_like(600, 8000, rng=np.random.default_rng(31))
    assert cas_ends(np.concatenate((np.zeros(800), one, np.zeros(800), short, np.zeros(800)))) == []
    assert cas_ends(sig.add_noise(speech, 30), block=8000) == []  # 10 minutes: no talk-off
