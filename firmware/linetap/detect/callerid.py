"""On-hook caller ID: FSK (Bell 202 and V.23) and DTMF-signalled.

FSK (Telcordia GR-30-CORE; ETSI EN 300 659-1/-3; BT SIN 227)
    1200 baud binary FSK: Bell 202 mark 1200 Hz / space 2200 Hz, V.23 mark 1300 Hz / space 2100 Hz.
    Channel seizure (alternating 0/1, optional here), a mark run of >= 25 bits, then async
    characters (start bit 0, 8 data bits LSB first, stop bit 1, extra marks allowed between them):
    message type, length, payload, checksum. The checksum makes the byte sum 0 mod 256; a message
    that fails it, or whose parameters do not exactly fill it, yields nothing.

    * SDMF, type 0x04: ``MMDDHHMM`` then the number, or ``O`` (unavailable) / ``P`` (private).
      Australia's ACLIP sends the same messages over V.23.
    * MDMF, type 0x80 (Bellcore MDMF, ETSI "call set-up"): parameters 0x01 date/time ``MMDDHHMM``,
      0x02 number, 0x04 reason the number is absent (``O``/``P``), 0x07 name, 0x08 reason the name
      is absent (``O``/``P``), call type 0x11 (binary), redirecting / first called / dialled
      numbers; every other parameter is skipped by its length (see :func:`parse_message`).
    * Message waiting (SDMF 0x06, MDMF 0x82) and advice of charge (0x86) are decoded too, with
      ``kind`` saying they are not a call.
    * JCLIP (Japan, V.23): DLE-framed, parity, CRC-16 (see :func:`parse_jclip`).

    Both standards share the 1700 Hz centre and the baud rate, so one demodulator serves both: the
    audio is mixed down by 1700 Hz, low-pass filtered, and the sign of the instantaneous frequency
    gives the bit. The standard is told apart by the measured mark frequency (1200 vs 1300 Hz).
    The demodulator runs only on stretches that a cheap per-10 ms gate (level and lag
    autocorrelation: a narrowband signal between about 1.1 and 2.3 kHz) marks as a carrier.

DTMF caller ID (ETSI EN 300 659-1 annex B style, as used in e.g. Denmark, the Netherlands, Sweden,
Finland, Iceland, Belgium, Brazil, India, Saudi Arabia, Uruguay, Taiwan; the forms libspandsp's
``ADSI_STANDARD_CLIP_DTMF`` transmitter sends)
    A message is fields, each a letter and its digits, ended by ``C`` (``#`` is accepted instead):
    ``A<digits>`` the number; ``B00`` number unavailable (``O``), ``B10`` private (``P``);
    ``D<digits>`` after another field: the redirecting (diverting) number, e.g.
    ``A0201234567D0307654321C``: number 0201234567, forwarded from 0307654321 (``redirecting_number``,
    as FSK's 0x1A). As the first field ``D<digits>`` is the number (``D0201234567C``), and a single
    digit after ``D`` a reason code: ``D1`` private (``P``), ``D2``/``D3`` unavailable (``O``)
    (Danish ``#`` convention, spandsp's ``CLIP_DTMF_HASH_ABSENCE``).
    Anything else (a letter twice, unknown ``B`` codes, an empty field, no terminator within 1.5 s of
    the last digit) yields nothing.
    Not decoded: the unmarked ``<digits>#`` form (spandsp's ``CLIP_DTMF_HASH_UNSPECIFIED``, some Danish
    and Dutch exchanges). Without a start letter it cannot be told from keys a user presses ending in
    ``#`` (a PIN or an IVR menu in the first seconds of a call): taking those for a caller ID would
    name the call after the PIN and drop the keys from the call's ``dtmf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .dtmf import DtmfDetector, DtmfDigit

__all__ = [
    "CAS_HZ", "STANDARDS", "CallerId", "CallerIdDecoder", "CasDetector", "DtmfCallerIdParser", "decode_fsk",
    "demodulate", "parameters", "parse_jclip", "parse_message",
]

STANDARDS = ("bell202", "v23", "dtmf")
_CENTRE_HZ = 1700.0
_BAUD = 1200.0
_MIN_MARK_BITS = 25
_MAX_GAP_BITS = 40  # marks allowed between two characters of one message
_GATE_S = 0.010
_GATE_MIN_DBFS = -50.0
_GATE_RHO1 = (-0.15, 0.65)  # lag autocorrelation of 1.1-2.3 kHz tones (lag = rate / 8000 samples)
_GATE_TONAL = 0.35  # |rho2 - (2 rho1^2 - 1)|: 0 for a pure tone, ~1 for white noise
_GATE_END = 4  # sub-blocks without carrier that end a burst
_MIN_BURST = 8  # sub-blocks with carrier needed before a burst is demodulated (80 ms)
_MAX_BURST_S = 5.0
_DTMF_TIMEOUT_S = 1.5
# Keys of one DTMF caller ID: a number and a redirecting number of up to 20 digits each (ETSI EN
# 300 659-3's longest), their two letters and a reason code: 45; more is not a caller ID.
_DTMF_MAX_CHARS = 48


@dataclass(frozen=True, slots=True)
class CallerId:
    """A decoded caller ID message. ``when`` is ``MMDDHHMM`` as sent; ``*_absent`` is ``O`` or ``P``.

    ``kind`` says what the message is: ``"call"`` (call set-up: SDMF 0x04, MDMF 0x80), which names
    a call; ``"waiting"``, a call set-up heard after a call-waiting alert during a call (set by
    the line analyser): a second caller on the call in progress; ``"mwi"`` (message waiting
    indicator: SDMF 0x06, MDMF 0x82) and ``"charge"`` (advice of charge, 0x86), which are not
    calls. Only ``"call"`` names a call. The fields after ``standard`` are
    filled where the message carries them (see :func:`parse_message`).
    ``start_frame``/``end_frame`` locate the signal in the line's stream (not part of equality).
    """

    number: str | None
    name: str | None
    when: str | None
    number_absent: str | None = None
    name_absent: str | None = None
    standard: str = "bell202"
    kind: str = "call"
    call_type: int | None = None  # ETSI 0x11: 1 voice, 2 ring-back-when-free, 0x81 message waiting
    redirecting_number: str | None = None  # ETSI 0x1A: who diverted the call to this line
    first_called: str | None = None  # ETSI 0x12: the number the caller dialled first
    dialled_number: str | None = None  # ETSI/Bell 0x03: the called line (several numbers on one line)
    redirect_reason: str | None = None  # Bell 0x05: forwarded "0" always, "1" on busy, "2" no answer
    message_waiting: bool | None = None  # kind "mwi": messages waiting (True) or none (False)
    messages: int | None = None  # ETSI 0x13: how many messages wait
    start_frame: int = field(default=0, compare=False)
    end_frame: int = field(default=0, compare=False)

    @property
    def redirected_from(self) -> str | None:
        """The number a redirected (forwarded) call was first meant for, if the message says."""
        return self.redirecting_number or self.first_called


# ------------------------------------------------------------------------------------ messages
MSG_SDMF_CALL = 0x04  # Telcordia SDMF caller ID (also Australia's ACLIP)
MSG_SDMF_MWI = 0x06  # Telcordia SDMF message waiting: 0x42 x3 on, 0x6F x3 off
MSG_CALL = 0x80  # MDMF / ETSI call set-up
MSG_MWI = 0x82  # MDMF / ETSI message waiting indicator
MSG_CHARGE = 0x86  # ETSI advice of charge
_KINDS = {MSG_CALL: "call", MSG_MWI: "mwi", MSG_CHARGE: "charge"}

# MDMF parameters (ETSI EN 300 659-3 table 3; Telcordia GR-30 MDMF; spandsp adsi.h CLIP_*/MCLASS_*)
P_DATETIME = 0x01
P_NUMBER = 0x02
P_DIALLED = 0x03
P_NUMBER_ABSENT = 0x04
P_REDIRECT_REASON = 0x05  # Bell
P_NAME = 0x07
P_NAME_ABSENT = 0x08
P_VISUAL_INDICATOR = 0x0B  # 0xFF on, 0x00 off (Bell MDMF, ETSI)
P_CALL_TYPE = 0x11
P_FIRST_CALLED = 0x12
P_MESSAGES = 0x13  # network message system status: the number of messages, one binary byte
P_REDIRECTING = 0x1A
_TEXT = (P_DATETIME, P_NUMBER, P_DIALLED, P_NUMBER_ABSENT, P_REDIRECT_REASON, P_NAME, P_NAME_ABSENT,
         P_FIRST_CALLED, P_REDIRECTING)


def _text(value: bytes) -> str | None:
    text = value.decode("latin-1")  # every byte decodes
    return text if text and text.isprintable() else None


def _reason(value: str | None) -> str | None:
    """``O``/``P`` as sent; Bell's lower-case variants read the same; anything else is no reason."""
    return value.upper() if value is not None and value.upper() in ("O", "P") else None


def parameters(payload: bytes) -> dict[int, bytes] | None:
    """The (type, length, value) parameters of an MDMF payload, first of each type; None unless
    they fill the payload exactly. Values are bytes: a parameter is binary or text by its type."""
    values: dict[int, bytes] = {}
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            return None
        ptype, plen = payload[i], payload[i + 1]
        value = payload[i + 2 : i + 2 + plen]
        if len(value) != plen:
            return None
        values.setdefault(ptype, value)
        i += 2 + plen
    return values


def parse_message(msg: bytes, standard: str) -> CallerId | None:
    """A caller ID from a complete message (type, length, payload, checksum), or None.

    Parsed: call set-up (SDMF 0x04, MDMF 0x80), message waiting (SDMF 0x06, MDMF 0x82) and advice
    of charge (0x86); other types (e.g. ETSI 0x89 SMS) yield None. Parameters the standards define
    as text (date-time, numbers, names, absence reasons) are read where printable (a text field
    that is not is dropped, not the message); call type and message count are one binary byte;
    every other parameter is skipped by its length whatever its bytes (ETSI EN 300 659-3 5.3:
    "unknown parameters shall be ignored"). A call set-up message says something only if it
    carries a number, a name or a reason for their absence.
    """
    if len(msg) < 3 or len(msg) != msg[1] + 3 or sum(msg) & 0xFF:
        return None
    mtype, payload = msg[0], msg[2:-1]
    if mtype == MSG_SDMF_CALL:
        text = _text(payload)
        if text is None or len(text) < 9 or not text[:8].isdigit():
            return None
        rest = text[8:]
        if _reason(rest):
            return CallerId(None, None, text[:8], _reason(rest), None, standard)
        return CallerId(rest, None, text[:8], None, None, standard)
    if mtype == MSG_SDMF_MWI:
        state = {b"\x42\x42\x42": True, b"\x6f\x6f\x6f": False}.get(bytes(payload))
        if state is None:
            return None
        return CallerId(None, None, None, standard=standard, kind="mwi", message_waiting=state)
    kind = _KINDS.get(mtype)
    if kind is None:
        return None
    raw = parameters(payload)
    if raw is None:
        return None
    text = {t: _text(v) for t, v in raw.items() if t in _TEXT}
    when = text.get(P_DATETIME)
    if when is not None and not (len(when) == 8 and when.isdigit()):
        when = None
    number, name = text.get(P_NUMBER), text.get(P_NAME)
    number_absent, name_absent = _reason(text.get(P_NUMBER_ABSENT)), _reason(text.get(P_NAME_ABSENT))
    call_type = raw[P_CALL_TYPE][0] if len(raw.get(P_CALL_TYPE, b"")) == 1 else None
    messages = raw[P_MESSAGES][0] if len(raw.get(P_MESSAGES, b"")) == 1 else None
    waiting: bool | None = None
    if kind == "mwi":
        indicator = raw.get(P_VISUAL_INDICATOR)
        if indicator is not None and len(indicator) == 1 and indicator[0] in (0x00, 0xFF):
            waiting = indicator[0] == 0xFF
        elif messages is not None:
            waiting = messages > 0
        else:
            return None
    elif number is None and name is None and number_absent is None and name_absent is None:
        if kind == "call":
            return None
    return CallerId(number, name, when, number_absent, name_absent, standard, kind=kind, call_type=call_type,
                    redirecting_number=text.get(P_REDIRECTING), first_called=text.get(P_FIRST_CALLED),
                    dialled_number=text.get(P_DIALLED), redirect_reason=text.get(P_REDIRECT_REASON),
                    message_waiting=waiting, messages=messages)


# JCLIP (NTT, Japan): V.23 FSK; 7 data bits + even parity per character except the CRC;
# DLE SOH 0x07 DLE STX <type 0x40> <length> <parameters> DLE ETX <CRC-16 low, high>, a DLE inside
# the data sent twice; the CRC (polynomial 0x1021 bit-reversed, initial 0, "CRC-16/KERMIT") covers
# everything after DLE SOH up to ETX as sent. Layout and CRC as libspandsp's ADSI_STANDARD_JCLIP.
_DLE, _SOH, _STX, _ETX_7 = 0x10, 0x01, 0x02, 0x03
_JCLIP_DLE = 0x90  # DLE with its even-parity bit
_ETX = 0x03  # ETX: two bits set, parity bit 0
_MAX_CHARS = 300
MSG_JCLIP_CALL = 0x40
_JCLIP_ABSENT = {"P": "P", "O": "O", "C": "O", "S": "O"}  # C public phone, S service conflict: unavailable
P_JCLIP_DIALLED = 0x09


def _crc16_kermit(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def parse_jclip(msg: bytes) -> CallerId | None:
    """A caller ID from a whole JCLIP transmission (as :func:`_read_message` reads it), or None:
    parity, CRC, framing and the parameters' lengths must all hold. Parameters: 0x02 number,
    0x04 reason for its absence (``P`` private, ``O`` unavailable, ``C`` public phone and ``S``
    service conflict read as ``O``), 0x09 dialled number; others are skipped by their length."""
    if len(msg) < 11 or _crc16_kermit(msg[2:]) != 0:
        return None
    chars = msg[:-2]
    if any(bin(b).count("1") % 2 for b in chars):
        return None
    seven = bytes(b & 0x7F for b in chars)
    if seven[:5] != bytes([_DLE, _SOH, 0x07, _DLE, _STX]) or seven[-2:] != bytes([_DLE, _ETX_7]):
        return None
    body, i = bytearray(), 5
    while i < len(seven) - 2:
        if seven[i] == _DLE:
            if seven[i + 1] != _DLE:
                return None
            i += 1
        body.append(seven[i])
        i += 1
    # The length byte counts the parameters with or without the stuffing DLEs (spandsp counts
    # them, as sent; accepting both costs nothing as the CRC already vouches for the bytes).
    sent = len(seven) - 5 - 2 - 1 - (2 if len(body) > 1 and body[1] == _DLE else 1)  # header, DLE ETX, type, length
    if len(body) < 2 or body[0] != MSG_JCLIP_CALL or body[1] not in (len(body) - 2, sent):
        return None
    raw = parameters(bytes(body[2:]))
    if raw is None:
        return None
    text = {t: _text(v) for t, v in raw.items() if t in (P_NUMBER, P_NUMBER_ABSENT, P_JCLIP_DIALLED)}
    number = text.get(P_NUMBER)
    absent = _JCLIP_ABSENT.get(text.get(P_NUMBER_ABSENT) or "")
    if number is None and absent is None:
        return None
    return CallerId(number, None, None, absent, None, "jclip", dialled_number=text.get(P_JCLIP_DIALLED))


# ---------------------------------------------------------------------------------------- FSK
def _lowpass_taps(rate: int) -> np.ndarray:
    """Hamming-windowed sinc, cut-off 1.2 kHz: passes +-500 Hz FSK with its sidebands, stops the
    image at -3.4 kHz left by the 1700 Hz mix-down."""
    n = 2 * int(round(12 * rate / 8000)) + 1
    k = np.arange(n) - n // 2
    fc = 1200.0 / rate
    taps = 2 * fc * np.sinc(2 * fc * k) * np.hamming(n)
    normalised: np.ndarray = taps / taps.sum()
    return normalised


_MIXERS: dict[int, np.ndarray] = {}
_TAPS: dict[int, np.ndarray] = {}


def _mixer(rate: int, n: int) -> np.ndarray:
    """``exp(-2j pi 1700 / rate k)`` for k < n: computed once per rate (the complex exponential is
    a sixth of a burst's demodulation; a burst is at most 5 s) and grown when a longer one comes."""
    table = _MIXERS.get(rate)
    if table is None or len(table) < n:
        k = np.arange(max(n, int(rate * (_MAX_BURST_S + 0.1))))
        table = _MIXERS[rate] = np.exp(-2j * math.pi * _CENTRE_HZ / rate * k)
    return table[:n]


def demodulate(x: np.ndarray, rate: int) -> np.ndarray:
    """Instantaneous frequency offset from 1700 Hz in Hz, per sample (negative = mark)."""
    taps = _TAPS.get(rate)
    if taps is None:
        taps = _TAPS[rate] = _lowpass_taps(rate)
    z = np.asarray(x, dtype=np.float64) * _mixer(rate, len(x))
    z = np.convolve(z, taps, mode="same")
    d = np.angle(z[1:] * np.conj(z[:-1])) * (rate / (2 * math.pi))
    d = np.concatenate((d[:1], d))
    # Smooth over about half a bit: noise averages out, the bit centres are kept.
    k = max(1, int(round(rate / _BAUD / 2)))
    return np.convolve(d, np.ones(k) / k, mode="same")


def decode_fsk(
    x: np.ndarray, rate: int, start_frame: int = 0, standards: Iterable[str] = ("bell202", "v23")
) -> list[CallerId]:
    """Every valid caller ID message in a stretch of audio (float, full scale 1.0, or int16)."""
    x = np.asarray(x)
    if x.dtype.kind in "iu":
        x = x.astype(np.float64) / 32768.0
    wanted = set(standards)
    if len(x) < int(rate * 0.05):
        return []
    freq = demodulate(x, rate)
    mark = freq < 0
    period = rate / _BAUD
    out: list[CallerId] = []
    # Long mark runs: boundaries of runs of True in `mark`.
    edges = np.flatnonzero(np.diff(mark.astype(np.int8))) + 1
    bounds = np.concatenate(([0], edges, [len(mark)]))
    starts, ends = bounds[:-1], bounds[1:]
    keep = mark[starts] & (ends - starts >= _MIN_MARK_BITS * period)
    long_runs = list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))
    falling = np.flatnonzero(mark[:-1] & ~mark[1:]) + 1  # mark -> space: candidate start bits
    resume = 0
    for run_start, run_end in long_runs:
        if run_end < resume:
            continue
        msg, end = _read_message(mark, falling, int(run_end), period)
        if msg is None:
            continue
        resume = end
        mark_hz = _CENTRE_HZ + float(np.median(freq[run_start + int(period) : run_end - int(period)]))
        standard = "bell202" if mark_hz < 1250.0 else "v23"
        if standard not in wanted:
            continue
        jclip = msg[0] == _JCLIP_DLE and standard == "v23"  # V.23 is JCLIP's modulation
        cid = parse_jclip(msg) if jclip else parse_message(msg, standard)
        if cid is not None:
            out.append(replace(cid, start_frame=start_frame + int(run_start), end_frame=start_frame + int(end)))
    return out


def _complete(data: bytearray) -> bool:
    """The characters read so far make a whole message: ETSI/Bell by their length byte; JCLIP
    (first character DLE with its parity bit) two CRC bytes after an unstuffed DLE ETX."""
    if data[0] == _JCLIP_DLE:
        return (len(data) >= 6 and data[-3] == _ETX and data[-4] == _JCLIP_DLE
                and _run_of(data, len(data) - 4) % 2 == 1)
    return len(data) >= 2 and len(data) == data[1] + 3


def _run_of(data: bytearray, end: int) -> int:
    """How many DLEs end at ``data[end]`` (an even run is stuffed data, the odd one out frames)."""
    k = end
    while k >= 0 and data[k] == _JCLIP_DLE:
        k -= 1
    return end - k


def _read_message(mark: np.ndarray, falling: np.ndarray, pos: int, period: float) -> tuple[bytes | None, int]:
    """Async characters from ``pos`` on until :func:`_complete` says the message is whole (at most
    ``_MAX_CHARS``). (None, pos) on error."""
    data = bytearray()
    n = len(mark)
    offsets = (np.arange(10) + 0.5) * period
    while not data or not _complete(data):
        if len(data) >= _MAX_CHARS:
            return None, pos
        i = int(np.searchsorted(falling, pos))
        if i >= len(falling):
            return None, pos
        edge = int(falling[i])
        if data and edge - pos > _MAX_GAP_BITS * period:
            return None, pos
        if not data and edge - pos > 2 * period:
            return None, pos  # the message must follow its mark run directly
        idx = (edge + offsets).astype(np.int64)
        if idx[-1] >= n:
            return None, pos
        bits = mark[idx]
        if bits[0] or not bits[9]:
            return None, pos  # framing error
        byte = int(np.dot(bits[1:9].astype(np.int64), 1 << np.arange(8)))
        data.append(byte)
        pos = int(edge + 9.5 * period)
    return bytes(data), pos


class _FskReceiver:
    """Streaming carrier gate + burst capture; demodulates only what the gate lets through."""

    def __init__(self, rate: int, standards: Sequence[str]) -> None:
        self.rate = rate
        self.standards = tuple(standards)
        self.sub = int(round(rate * _GATE_S))
        self.lag = max(1, int(round(rate / 8000)))
        self.min_energy = 0.5 * 10 ** (_GATE_MIN_DBFS / 10) * self.sub
        self.quiet_peak = 0.9 * 10 ** (_GATE_MIN_DBFS / 20)
        self._reset(None, True)

    def _reset(self, start: int | None, is_int: bool) -> None:
        self.buf = np.zeros(0)
        self.buf_start = start
        self.int_units = is_int
        self.pre: list[np.ndarray] = []  # last sub-blocks before a burst (pre-roll)
        self.burst: list[np.ndarray] | None = None
        self.burst_start = 0
        self.burst_len = 0
        self.carrier = 0  # sub-blocks with carrier in this burst
        self.misses = 0
        self.done_to = -1  # stream index up to which messages were already reported

    def feed(self, x: np.ndarray, start_frame: int) -> list[CallerId]:
        is_int = x.dtype.kind in "iu"
        out: list[CallerId] = []
        if self.buf_start is None or start_frame != self.buf_start + len(self.buf):
            out.extend(self.flush())
            self._reset(start_frame, is_int)
        if is_int != self.int_units:
            x = x * (32768.0 if self.int_units else 1.0 / 32768.0)
        buf = np.concatenate((self.buf, x))
        sub = self.sub
        m = len(buf) // sub
        if m == 0:
            self.buf = buf
            return out
        pos0 = self.buf_start
        assert pos0 is not None
        self.buf = buf[m * sub :]
        self.buf_start = pos0 + m * sub
        blocks = buf[: m * sub].reshape(m, sub)
        scale = 32768.0 if self.int_units else 1.0
        if self.burst is None and self.quiet_peak * scale > max(float(x.max()), -float(x.min())):
            self.pre = [blocks[-2:]] if m >= 2 else (self.pre + [blocks])[-2:]
            return out
        e0 = np.einsum("ij,ij->i", blocks, blocks)
        lag = self.lag
        e1 = np.einsum("ij,ij->i", blocks[:, lag:], blocks[:, :-lag])
        gate = (e0 >= self.min_energy * scale * scale) & (e1 >= _GATE_RHO1[0] * e0) & (e1 <= _GATE_RHO1[1] * e0)
        if gate.any():
            # Tonal check only where the cheap tests pass: rho2 = 2 rho1^2 - 1 for a pure tone.
            e2 = np.einsum("ij,ij->i", blocks[:, 2 * lag :], blocks[:, : -2 * lag])
            e0 = np.maximum(e0, 1e-30)
            rho1 = e1 / e0
            gate &= np.abs(e2 / e0 - (2 * rho1 * rho1 - 1)) <= _GATE_TONAL
        elif self.burst is None:
            self.pre = [blocks[-2:]] if m >= 2 else (self.pre + [blocks])[-2:]
            return out
        gates: list[bool] = gate.tolist()
        i = 0
        while i < m:
            if self.burst is None:
                # Straight to the next sub-block with carrier; the two before it are the pre-roll.
                try:
                    j = gates.index(True, i)
                except ValueError:
                    j = m
                if j - i >= 2:
                    self.pre = [blocks[j - 2 : j]]
                elif j - i == 1:
                    self.pre = (self.pre + [blocks[i : i + 1]])[-2:]
                if j == m:
                    break
                i = j
                pre = np.concatenate(self.pre).reshape(-1) if self.pre else np.zeros(0)
                pre = pre[-2 * sub :]
                self.burst = [pre]
                self.burst_start = pos0 + i * sub - len(pre)
                self.burst_len = len(pre)
                self.carrier = 0
                self.misses = 0
                self.pre = []
            self.burst.append(blocks[i])
            self.burst_len += sub
            if gates[i]:
                self.carrier += 1
                self.misses = 0
            else:
                self.misses += 1
            if self.misses >= _GATE_END or self.burst_len >= _MAX_BURST_S * self.rate:
                out.extend(self._finish())
            i += 1
        return out

    def _finish(self) -> list[CallerId]:
        burst, self.burst = self.burst, None
        if burst is None or self.carrier < _MIN_BURST:
            return []
        x = np.concatenate(burst)
        if self.int_units:
            x = x / 32768.0
        found = decode_fsk(x, self.rate, self.burst_start, self.standards)
        fresh = [c for c in found if c.end_frame > self.done_to]
        if fresh:
            self.done_to = max(c.end_frame for c in fresh)
        return fresh

    def flush(self) -> list[CallerId]:
        """End of stream: demodulate a burst still being captured, then expect a new stream."""
        out = self._finish() if self.burst is not None else []
        self._reset(None, True)
        return out


# ------------------------------------------------------------------------- call waiting alert
CAS_HZ = (2130.0, 2750.0)  # CPE alerting signal (Telcordia GR-30 CAS; ETSI EN 300 659-2 DT-AS)
_CAS_BLOCK_S = 0.005  # short blocks: a bin 200 Hz wide keeps a tone 1.5 % off frequency
_CAS_MIN_BLOCKS = 11  # whole 5 ms blocks (55 ms): the CAS lasts 75-85 ms (GR-30), DT-AS 80 +- 5 ms off hook
_CAS_SHARE = 0.6  # the two tones' share of a block's power (white noise 15 dB down leaves ~0.97)
_CAS_TWIST = 0.25  # each tone at least a quarter (6 dB) of the other's power
_CAS_MIN_DBFS = -50.0


class CasDetector:
    """Finds the CPE alerting signal (2130 + 2750 Hz) that announces caller ID on call waiting.

    ``feed`` takes consecutive mono blocks (int16 or float) and returns the stream frames where
    alerts ended. Per 5 ms block, the power at the two frequencies (a DFT bin each, as a tone's
    power) must be most of the block's power, the two within 6 dB of each other, at -50 dBFS or
    more; 11 such blocks in a row (55 ms) make an alert. Talk-off: none in 600 s of
    ``sim.signals.speech_like`` nor in the speech clips (tests/test_callerid.py)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.sub = int(round(rate * _CAS_BLOCK_S))
        t = np.arange(self.sub) / rate
        w = 2 * math.pi * np.outer(t, CAS_HZ)
        self.basis = np.hstack((np.cos(w), np.sin(w)))  # (sub, 4): one real product gives both DFT bins
        # Samples are kept in int16 units (float input is scaled by 32768): scaling by a power of two
        # is exact, so only the level threshold carries the unit (the shares are ratios).
        self.min_power = 0.5 * 10 ** (_CAS_MIN_DBFS / 10) * 32768.0**2
        self.buf = np.zeros(0, dtype=np.int16)
        self.buf_start: int | None = None
        self.run = 0
        self._probes: dict[int, np.ndarray] = {}

    def feed(self, x: np.ndarray, start_frame: int) -> list[int]:
        arr = np.asarray(x)
        if self.buf_start is None or start_frame != self.buf_start + len(self.buf):
            self.buf, self.buf_start, self.run = np.zeros(0, dtype=np.int16), start_frame, 0
        buf = np.concatenate((self.buf, arr if arr.dtype.kind in "iu" else arr * 32768.0))
        m = len(buf) // self.sub
        pos0 = self.buf_start
        self.buf = buf[m * self.sub :]
        self.buf_start = pos0 + m * self.sub
        if m == 0:
            return []
        blocks = buf[: m * self.sub].reshape(m, self.sub)
        if self.run == 0 and m > 3 * _CAS_MIN_BLOCKS:
            # Probe first: every 11th block, and the last 10 (where a run may be going on into the
            # next call). A run of 11 hits anywhere has a probed block among them, so if no probe
            # hits, no alert ends here and none is carried on: the usual case, at an eighth of the
            # work (test_cas_probe_finds_every_alert_the_full_test_finds).
            probes = self._probes.get(m)
            if probes is None:
                probes = self._probes[m] = np.concatenate((np.arange(_CAS_MIN_BLOCKS - 1, m - _CAS_MIN_BLOCKS + 1,
                                                                     _CAS_MIN_BLOCKS),
                                                           np.arange(m - _CAS_MIN_BLOCKS + 1, m)))
            if not np.count_nonzero(self._hits(blocks[probes])):
                return []
        hit = self._hits(blocks)
        if self.run == 0 and not np.count_nonzero(hit):
            return []  # the usual case: nothing like an alert in this block
        # Runs of hits (the first continues the run carried over from the last call).
        edges = np.diff(np.concatenate(([0], hit.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        ends: list[int] = []
        carry, self.run = self.run, 0
        if not len(starts) or starts[0] != 0:
            if carry >= _CAS_MIN_BLOCKS:
                ends.append(pos0)
            carry = 0
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            length = b - a + (carry if a == 0 else 0)
            if b == m:
                self.run = length  # still going at the end of this block
            elif length >= _CAS_MIN_BLOCKS:
                ends.append(pos0 + b * self.sub)
        return ends

    def _hits(self, blocks: np.ndarray) -> np.ndarray:
        """Per 5 ms block: an alert's two tones, loud enough and most of its power?"""
        if blocks.dtype != np.float64:
            blocks = blocks.astype(np.float64)
        total = np.einsum("ij,ij->i", blocks, blocks) / self.sub
        loud = total >= self.min_power
        if not np.count_nonzero(loud):
            return loud
        c = blocks @ self.basis
        c *= c
        tones = (c[:, :2] + c[:, 2:]) * (2 / self.sub**2)  # (m, 2): each tone's power
        t0, t1 = tones[:, 0], tones[:, 1]
        # Both within 6 dB of each other: the weaker >= a quarter of the stronger.
        hit: np.ndarray = loud & (t0 + t1 >= _CAS_SHARE * total) & (t0 >= _CAS_TWIST * t1) & (t1 >= _CAS_TWIST * t0)
        return hit


# --------------------------------------------------------------------------------------- DTMF
class DtmfCallerIdParser:
    """Turns DTMF digits (from a :class:`DtmfDetector`) into caller IDs; see the module docstring."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._text = ""
        self._start = 0
        self._last_end = 0

    def feed_digits(self, digits: Iterable[DtmfDigit]) -> list[CallerId]:
        out: list[CallerId] = []
        timeout = int(_DTMF_TIMEOUT_S * self.rate)
        for d in digits:
            if self._text and d.start_frame - self._last_end > timeout:
                self._text = ""
            if not self._text:
                if d.digit in "ABD":
                    self._text, self._start = d.digit, d.start_frame
                self._last_end = d.end_frame
                continue
            self._last_end = d.end_frame
            if d.digit in "C#":
                cid = _parse_dtmf_cid(self._text)
                if cid is not None:
                    out.append(replace(cid, start_frame=self._start, end_frame=d.end_frame))
                self._text = ""
            elif len(self._text) > _DTMF_MAX_CHARS:
                self._text = ""
            else:
                self._text += d.digit
        return out


def _parse_dtmf_cid(text: str) -> CallerId | None:
    """``text`` is the start letter and what followed it, without the terminator (see the module
    docstring for the fields)."""
    fields: list[tuple[str, str]] = []
    for ch in text:
        if ch in "ABD":
            if any(code == ch for code, _ in fields):
                return None  # a letter twice
            fields.append((ch, ""))
        elif ch.isdigit() and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + ch)
        else:
            return None
    if any(not body for _, body in fields):
        return None
    number = redirecting = reason = None
    for k, (code, body) in enumerate(fields):
        if code == "A" or (code == "D" and k == 0 and len(body) > 1):
            if number is not None:
                return None  # two numbers (A...D...): not a form any transmitter sends
            number = body
        elif code == "B":
            reason = {"00": "O", "10": "P"}.get(body)
            if reason is None:
                return None
        elif len(body) == 1:  # D<one digit>: a reason code, never a number
            reason = {"1": "P", "2": "O", "3": "O"}.get(body)
            if reason is None:
                return None
        else:  # D<digits> after another field: who diverted the call
            redirecting = body
    if number is None and reason is None:
        return None
    return CallerId(number, None, None, reason, None, "dtmf", redirecting_number=redirecting)


# ------------------------------------------------------------------------------------ decoder
class CallerIdDecoder:
    """Streaming caller ID decoder for one line.

    ``feed`` takes a mono block (int16, or float with full scale 1.0) of any length and the sample
    index of its first sample, and returns the caller IDs completed in this call. An FSK message
    is reported when its carrier stops (a few tens of ms after its checksum); a DTMF one at its
    terminating ``C``. If the pipeline already runs a :class:`DtmfDetector`, build this decoder
    without ``"dtmf"`` and pass that detector's digits to a :class:`DtmfCallerIdParser` instead.
    """

    def __init__(self, rate: int, standards: Sequence[str] = STANDARDS) -> None:
        unknown = [s for s in standards if s not in STANDARDS]
        if unknown:
            raise ValueError(f"unknown caller ID standard(s) {unknown}; known: {', '.join(STANDARDS)}")
        if rate < 8000:
            raise ValueError(f"rate must be at least 8000 Hz, not {rate}")
        self.rate = int(rate)
        fsk = [s for s in standards if s != "dtmf"]
        self._fsk = _FskReceiver(self.rate, fsk) if fsk else None
        self._dtmf = DtmfDetector(self.rate) if "dtmf" in standards else None
        self._parser = DtmfCallerIdParser(self.rate)

    def feed(self, samples: np.ndarray, start_frame: int) -> list[CallerId]:
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError("samples must be a mono (1-D) block")
        out: list[CallerId] = []
        if self._fsk is not None and len(x):
            out.extend(self._fsk.feed(x, start_frame))
        if self._dtmf is not None:
            out.extend(self._parser.feed_digits(self._dtmf.feed(x, start_frame)))
        return out

    def flush(self) -> list[CallerId]:
        """End of stream: decode a burst still being captured."""
        out: list[CallerId] = []
        if self._fsk is not None:
            out.extend(self._fsk.flush())
        if self._dtmf is not None:
            out.extend(self._parser.feed_digits(self._dtmf.flush()))
        return out
