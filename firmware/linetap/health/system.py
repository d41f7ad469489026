"""System health: the kernel's NTP state (CLOCK_UNSYNCED).

``clock_synchronized`` is a pure decision on the kernel's answer, which it takes as an
injectable keyword (``adjtimex=``), so tests need no patching. (Disk space and hours
left are the retention sweeper's: ``retention/plan.py``, ``retention/sweeper.py``.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Callable, NamedTuple

logger = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex() return value: the clock is not synchronised
STA_UNSYNC = 0x0040  # status bit: the kernel considers the clock unsynchronised


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; longs follow the platform (32-bit on armhf),
    # which ctypes.c_long does too. The trailing padding is part of the ABI.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_padding", ctypes.c_int * 11),
    ]


class TimexState(NamedTuple):
    result: int  # adjtimex() return: TIME_OK 0 ... TIME_ERROR 5, or -1 on failure
    status: int  # STA_* bits
    maxerror_us: int


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def read_adjtimex() -> TimexState | None:
    """The kernel's clock state (a read-only ``adjtimex`` call: modes = 0, needs no
    privilege); None where libc or the call is not available."""
    try:
        libc = _libc()
        tx = _Timex()
        result = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as e:
        logger.debug("adjtimex unavailable: %s", e)
        return None
    if result < 0:
        logger.debug("adjtimex failed: errno %d", ctypes.get_errno())
        return None
    return TimexState(result, tx.status, tx.maxerror)


def clock_synchronized(*, adjtimex: Callable[[], TimexState | None] = read_adjtimex) -> bool | None:
    """Whether the kernel considers the system clock NTP-synchronised (what
    ``timedatectl``'s "System clock synchronized" reports): the ``STA_UNSYNC``
    status bit clear and the call not returning TIME_ERROR. NTP daemons
    (systemd-timesyncd, chrony, ntpd) clear the bit once they have disciplined
    the clock. None when it cannot be told (no adjtimex)."""
    state = adjtimex()
    if state is None:
        return None
    return state.result != TIME_ERROR and not state.status & STA_UNSYNC
