"""System health: disk space and recording rate, and the kernel's NTP state.

Decisions are pure functions of values (``hours_left``, ``disk_low``); the two
places that touch the system (``disk_usage``, ``clock_synchronized``) take the
system call as an injectable keyword, so tests need no patching.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections import deque
from typing import Callable, NamedTuple

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


# --- disk ---------------------------------------------------------------------

def disk_usage(path: str | os.PathLike[str], *,
               statvfs: Callable[[str | os.PathLike[str]], os.statvfs_result] = os.statvfs) -> tuple[int, int]:
    """(free_bytes, total_bytes) of the file system holding ``path``.

    Free is what an unprivileged process may use (``f_bavail``, not ``f_bfree``):
    the recorder does not run as root, so the root reserve is not its to count.
    """
    st = statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def hours_left(free_bytes: int, keep_free_bytes: int, bytes_per_hour: float | None, *,
               reclaimable_bytes: int = 0) -> float | None:
    """Hours of recording that fit before free space reaches the ring buffer's floor.

    ``reclaimable_bytes``: what the ring buffer may still evict (recordings not on
    hold and past their minimum retention); with it a full but healthy ring buffer
    has plenty of hours left, and only space that cannot be freed counts against it.
    None when the rate is not known yet (or nothing is being recorded).
    """
    if bytes_per_hour is None or bytes_per_hour <= 0:
        return None
    usable = free_bytes + reclaimable_bytes - keep_free_bytes
    return max(0.0, usable / bytes_per_hour)


def disk_low(free_bytes: int, keep_free_bytes: int, hours_left: float | None, low_hours: float, *,
             reclaimable_bytes: int = 0) -> bool:
    """DISK_LOW: free space (plus what may be evicted) below the floor, or fewer than
    ``low_hours`` of recording left at the measured rate."""
    if free_bytes + reclaimable_bytes < keep_free_bytes:
        return True
    return hours_left is not None and hours_left < low_hours


class RateMeter:
    """Bytes per hour written to recordings, averaged over a sliding window.

    Fed with ``add(t, nbytes)`` (wall or mono seconds, bytes written since the
    previous sample). Samples are summed into ``bucket_s`` buckets so a day's
    window is at most a few thousand entries. The rate is only reported once
    ``min_span_s`` has been observed: a recorder that started five minutes ago
    during a call would otherwise extrapolate that call to the whole day.

    Seed it at start-up from the index (``add(ended_at, bytes)`` for the calls of
    the last window, with ``start_t`` = now - window) so a restart does not lose
    the history. Not thread-safe: feed and read it from one thread.
    """

    def __init__(self, *, window_s: float = 24 * 3600.0, min_span_s: float = 600.0,
                 bucket_s: float = 60.0, start_t: float | None = None) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.bucket_s = bucket_s
        self.start_t = start_t
        self._buckets: deque[list[float]] = deque()  # [bucket start, bytes]
        self._sum = 0.0

    def add(self, t: float, nbytes: int) -> None:
        if self.start_t is None:
            self.start_t = t
        if nbytes <= 0:
            return
        if self._buckets and t - self._buckets[-1][0] < self.bucket_s:
            self._buckets[-1][1] += nbytes
        else:
            self._buckets.append([t, float(nbytes)])
        self._sum += nbytes

    def bytes_per_hour(self, now: float) -> float | None:
        horizon = now - self.window_s
        while self._buckets and self._buckets[0][0] < horizon:
            self._sum -= self._buckets.popleft()[1]
        if self.start_t is None:
            return None
        span = now - max(self.start_t, horizon)
        if span < self.min_span_s or span <= 0:
            return None
        return max(0.0, self._sum) * 3600.0 / span


# --- clock --------------------------------------------------------------------

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
