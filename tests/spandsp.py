"""libspandsp as an independent caller-ID signal source for the tests (through ctypes).

The project's own generator (``linetap.sim.signals``) and decoder were written from the same
reading of the standards, so tests that pair them cannot catch a shared misreading. spandsp's ADSI
transmitter (``/usr/include/spandsp/adsi.h``; Debian ``libspandsp-dev``, ``libspandsp.so.2``) is a
widely deployed telephony implementation (Asterisk, FreeSWITCH): what it sends is what exchanges
and their test sets send.

Standards of ``adsi_tx_init`` (``ADSI_STANDARD_*``) used here:

* ``CLASS`` (1): Bell 202 FSK, Telcordia GR-30 SDMF (0x04, 0x06) and MDMF (0x80, 0x82) messages.
* ``CLIP`` (2): ETSI EN 300 659 / BT SIN 227 V.23 FSK, MDMF only (0x80 call set-up, 0x82 message
  waiting, 0x86 advice of charge, 0x89 SMS).
* ``ACLIP`` (3): Australian caller ID (Telstra), V.23 FSK framed like CLASS (SDMF 0x04, MDMF 0x80).
* ``JCLIP`` (4): Japanese caller ID (NTT): V.23 FSK, DLE-framed message (0x40) with a CRC-16.
* ``CLIP_DTMF`` (5): DTMF-signalled caller ID (``A<number>C``, ``D<reason>C``, ...).

Levels: spandsp's full-scale sine is +3.14 dBm0 (the G.711 convention: a 0 dBm0 sine is 3.14 dB
below digital full scale), so a signal at ``L`` dBm0 is ``L - 3.14`` dBFS (sine = 0 dBFS, AES17).
:func:`scale_to_dbm0` sets the level of the generated audio exactly, whatever spandsp's default
transmit level is (the modulation and framing are what the oracle is for; the level is linear).
spandsp generates 8000 Hz audio only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["DBM0_TO_DBFS", "STANDARDS", "adsi_message", "adsi_audio", "available", "dtmf_audio", "scale_to_dbm0"]

RATE = 8000
DBM0_TO_DBFS = -3.14  # 0 dBm0 = -3.14 dBFS (G.711; spandsp's DBM0_MAX_SINE_POWER = 3.14 dBm0 at full scale)
STANDARDS = {"class": 1, "clip": 2, "aclip": 3, "jclip": 4, "clip_dtmf": 5}


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    lib.adsi_tx_init.restype = vp
    lib.adsi_tx_init.argtypes = [vp, i]
    lib.adsi_add_field.restype = i
    lib.adsi_add_field.argtypes = [vp, c, i, ctypes.c_uint8, c, i]
    lib.adsi_tx_put_message.restype = i
    lib.adsi_tx_put_message.argtypes = [vp, c, i]
    lib.adsi_tx.restype = i
    lib.adsi_tx.argtypes = [vp, vp, i]
    lib.adsi_tx_free.argtypes = [vp]
    lib.adsi_tx_send_alert_tone.argtypes = [vp]
    lib.adsi_tx_set_preamble.argtypes = [vp, i, i, i, i]
    lib.dtmf_tx_init.restype = vp
    lib.dtmf_tx_init.argtypes = [vp]
    lib.dtmf_tx_put.restype = i
    lib.dtmf_tx_put.argtypes = [vp, c, i]
    lib.dtmf_tx.restype = i
    lib.dtmf_tx.argtypes = [vp, vp, i]
    lib.dtmf_tx_set_level.argtypes = [vp, i, i]
    lib.dtmf_tx_set_timing.argtypes = [vp, i, i]
    lib.dtmf_tx_free.argtypes = [vp]
    return lib


_LIB = _load()


def available() -> bool:
    """libspandsp could be loaded (tests skip otherwise; ``scripts/setup`` installs it)."""
    return _LIB is not None


def _lib() -> ctypes.CDLL:
    if _LIB is None:
        raise RuntimeError("libspandsp.so.2 not found (Debian package libspandsp-dev)")
    return _LIB


def _drain(tx: int, generate) -> np.ndarray:  # type: ignore[no-untyped-def]
    out: list[np.ndarray] = []
    buf = (ctypes.c_int16 * 800)()
    while True:
        n = generate(tx, buf, 800)
        out.append(np.frombuffer(buf, dtype=np.int16)[:n].copy())
        if n < 800:
            break
    return np.concatenate(out)


def adsi_message(standard: str, message_type: int, fields: Sequence[tuple[int, bytes]]) -> bytes:
    """The message as spandsp's ``adsi_add_field`` assembles it (before ``adsi_tx_put_message``
    adds the length/checksum or JCLIP's framing)."""
    lib = _lib()
    tx = lib.adsi_tx_init(None, STANDARDS[standard])
    try:
        buf = ctypes.create_string_buffer(512)
        n = lib.adsi_add_field(tx, buf, 0, message_type, None, 0)
        for ftype, body in fields:
            n = lib.adsi_add_field(tx, buf, n, ftype, body, len(body))
            if n < 0:
                raise ValueError(f"spandsp refused field {ftype:#x}")
        return buf.raw[:n]
    finally:
        lib.adsi_tx_free(tx)


def adsi_audio(standard: str, message_type: int, fields: Sequence[tuple[int, bytes]], *, alert: bool = False,
               preamble: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """spandsp's complete transmission of one message, int16 at 8000 Hz.

    ``alert`` first sends spandsp's alert tone (for CLIP the ETSI/BT dual-tone alerting signal
    2130 + 2750 Hz). ``preamble`` = (seizure bits, mark bits, trailing mark bits, stop bits) for
    ``adsi_tx_set_preamble``; spandsp's defaults are the standard's (e.g. CLIP: 300 seizure bits,
    180 marks; BT omits the seizure: ``(0, 80, 5, 1)``)."""
    lib = _lib()
    tx = lib.adsi_tx_init(None, STANDARDS[standard])
    try:
        buf = ctypes.create_string_buffer(512)
        n = lib.adsi_add_field(tx, buf, 0, message_type, None, 0)
        for ftype, body in fields:
            n = lib.adsi_add_field(tx, buf, n, ftype, body, len(body))
        if preamble is not None:
            lib.adsi_tx_set_preamble(tx, *preamble)
        if alert:
            lib.adsi_tx_send_alert_tone(tx)
        if lib.adsi_tx_put_message(tx, buf, n) != n:
            raise ValueError("spandsp refused the message")
        return _drain(tx, lib.adsi_tx)
    finally:
        lib.adsi_tx_free(tx)


def dtmf_audio(digits: str, *, level_dbm0: int = -10, twist_db: int = 0, on_ms: int = 50,
               off_ms: int = 55) -> np.ndarray:
    """spandsp's DTMF generator: ``digits`` as tones (int16, 8000 Hz). ``level_dbm0`` is the low
    tone's level; spandsp's default timing is 50 ms on / 55 ms off."""
    lib = _lib()
    tx = lib.dtmf_tx_init(None)
    try:
        lib.dtmf_tx_set_level(tx, level_dbm0, twist_db)
        lib.dtmf_tx_set_timing(tx, on_ms, off_ms)
        text = digits.encode("ascii")
        if lib.dtmf_tx_put(tx, text, len(text)) != 0:  # 0.0.6 returns the digits that did not fit
            raise ValueError("too many digits for spandsp's buffer")
        return _drain(tx, lib.dtmf_tx)
    finally:
        lib.dtmf_tx_free(tx)


def scale_to_dbm0(x: np.ndarray, level_dbm0: float) -> np.ndarray:
    """``x`` (int16 units) as float with full scale 1.0, scaled so that its active part (samples
    whose 10 ms neighbourhood is not silent) has the power of a sine at ``level_dbm0``."""
    y = np.asarray(x, dtype=np.float64) / 32768.0
    k = 80
    m = len(y) // k
    blocks = y[: m * k].reshape(m, k)
    power = np.mean(blocks * blocks, axis=1)
    active = power > 1e-7
    p = float(np.mean(power[active])) if active.any() else 0.0
    if p == 0.0:
        return y
    target = 0.5 * 10 ** ((level_dbm0 + DBM0_TO_DBFS) / 10)
    return y * math.sqrt(target / p)
