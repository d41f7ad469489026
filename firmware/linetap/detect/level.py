"""Signal level of a block, in dBFS (0 dBFS = a full-scale square wave)."""

from __future__ import annotations

import math

import numpy as np

FLOOR_DBFS = -120.0
_FULL_POWER = 32768.0 * 32768.0


def _to_dbfs(energy: float, size: int) -> float:
    power = energy / (size * _FULL_POWER)
    if power <= 1e-12:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 10.0 * math.log10(power))


def dbfs(frames: np.ndarray) -> float:
    """RMS level of int16 samples (any shape) in dBFS, floored at -120.

    The sum of squares is exact (float64 holds any sum of up to 2**23 int16 squares exactly),
    so it does not depend on the order of summation: ``block_dbfs`` gives bit-identical levels
    for many blocks at once, and a block's level does not depend on how it was batched."""
    if frames.size == 0:
        return FLOOR_DBFS
    x = frames.astype(np.float64).ravel()
    return _to_dbfs(float(np.dot(x, x)), x.size)


def block_energies(frames: np.ndarray, k: int) -> list[float]:
    """The sum of squares of each of ``k`` equal consecutive blocks of ``frames`` (int16,
    ``(k * n, ...)``), exact (see ``dbfs``), in one numpy call: what ``block_dbfs`` takes the
    levels of, and what a VOX run's thresholds are tested on without a logarithm (``Threshold``)."""
    if k <= 0 or frames.size == 0:
        return [0.0] * max(k, 0)
    x = frames.astype(np.float64).reshape(k, -1)
    # Squared in place, then summed by a product with ones: 3.3 us for ten 20 ms blocks where
    # ``einsum("ij,ij->i")`` took 5.2 (timeit, this VM). Still exact in any order of summation.
    ones = _ONES.get(x.shape[1])
    if ones is None:
        ones = _ONES[x.shape[1]] = np.ones(x.shape[1])
    return np.square(x, out=x).dot(ones).tolist()


_ONES: dict[int, np.ndarray] = {}  # block size -> a vector of that many ones (read-only)


def block_stats(frames: np.ndarray, k: int) -> tuple[list[float], list[float]]:
    """The sum and the sum of squares of each of ``k`` equal consecutive blocks of ``frames``
    (int16, ``(k * n, ...)``): ``(sums, energies)``, ``energies`` as ``block_energies`` gives
    them, both exact (integers below 2**53, whatever the order of summation), in one product.

    Two parts of the pipeline need them for the same run: the dead-line check (``detect.dead``:
    a block of one value is one whose ``n * energy == sum ** 2``, and none touches the rails while
    every energy is under ``32767 ** 2``) and the line's levels (``calls.line``). The last run's are
    kept (``frames`` is read-only by convention), so the second asks for nothing new: for a run of
    ten 20 ms blocks the two took ``block_energies`` and two numpy reductions (the blocks' minima
    and maxima) with their lists, about 9.4 us (timeit, this VM); this and the dead-line check's
    arithmetic on its lists, about 6.4. (A run's ``frames`` of several blocks is a fresh
    concatenation, ``capture.Run``: the memo, which holds the array, never answers for other
    samples.)"""
    global _MEMO
    memo = _MEMO
    if memo is not None and memo[0] is frames and memo[1] == k:
        return memo[2]
    if k <= 0 or frames.size == 0:
        stats: tuple[list[float], list[float]] = ([0.0] * max(k, 0), [0.0] * max(k, 0))
    else:
        x = frames.reshape(k, -1)
        n = x.shape[1]
        z = np.empty((2 * k, n))
        z[:k] = x
        np.square(z[:k], out=z[k:])
        ones = _ONES.get(n)
        if ones is None:
            ones = _ONES[n] = np.ones(n)
        both = z.dot(ones).tolist()
        stats = (both[:k], both[k:])
    _MEMO = (frames, k, stats)  # one assignment: another thread sees the old or the new
    return stats


_MEMO: tuple[np.ndarray, int, tuple[list[float], list[float]]] | None = None  # the last run's block_stats


def energies_dbfs(energies: list[float], size: int) -> list[float]:
    """``dbfs`` of blocks of ``size`` samples from their sums of squares (``block_energies``)."""
    full = size * _FULL_POWER
    log10 = math.log10
    # ``_to_dbfs`` of each, inlined (the same arithmetic, so the same bits as ``dbfs``): a Python
    # call per block was a sixth of this function's cost (10.3 -> 8.7 us for ten blocks).
    return [max(FLOOR_DBFS, 10.0 * log10(p)) if (p := e / full) > 1e-12 else FLOOR_DBFS for e in energies]


def block_dbfs(frames: np.ndarray, k: int) -> list[float]:
    """``dbfs`` of each of ``k`` equal consecutive blocks of ``frames`` (int16, ``(k * n, ...)``),
    in one numpy call instead of ``k``: the pipeline takes several 20 ms blocks of a line at once,
    and per call numpy's overhead, not the arithmetic, is what a 160-sample block costs."""
    if k <= 0 or frames.size == 0:
        return [FLOOR_DBFS] * max(k, 0)
    return energies_dbfs(block_energies(frames, k), frames.size // k)


class Threshold:
    """A level threshold (dBFS, above -120) tested on blocks' sums of squares, as ``dbfs`` would
    test their levels, without taking a logarithm of each: for a run of ten 20 ms blocks the
    levels' Python loop took about 6 us (``block_dbfs`` 14 us, the sums alone 8, timeit on this
    VM), as much as the numpy calls that sum the squares.

    The threshold is turned once into a sum of squares for blocks of ``size`` samples. A sum more
    than a millionth away from it is on that side of it whatever the rounding of ``dbfs`` (exact
    to about 1e-15); one closer is answered by ``dbfs``'s own arithmetic (``energies_dbfs``). So
    every answer is the one the block's level gives (``tests/test_segmenter.py``)."""

    __slots__ = ("dbfs", "size", "lo", "hi")

    def __init__(self, value_dbfs: float, size: int) -> None:
        energy = size * _FULL_POWER * 10.0 ** (value_dbfs / 10.0)
        self.dbfs, self.size = value_dbfs, size
        self.lo, self.hi = energy * (1 - 1e-6), energy * (1 + 1e-6)

    def above(self, energy: float) -> bool:
        """``dbfs > value`` of a block with this sum of squares."""
        if energy > self.hi:
            return True
        return energy >= self.lo and energies_dbfs([energy], self.size)[0] > self.dbfs

    def at_or_above(self, energy: float) -> bool:
        """``dbfs >= value`` of a block with this sum of squares."""
        if energy > self.hi:
            return True
        return energy >= self.lo and energies_dbfs([energy], self.size)[0] >= self.dbfs

    def any_above(self, energies: list[float]) -> bool:
        """Is any block's ``dbfs`` above the threshold? (Their largest sum decides, unless it is
        within a millionth of the threshold's: then each is tested.)"""
        m = max(energies)
        if m > self.hi or m < self.lo:
            return m > self.hi
        return any(map(self.above, energies))

    def all_at_or_above(self, energies: list[float]) -> bool:
        """Is every block's ``dbfs`` at or above the threshold?"""
        m = min(energies)
        if m > self.hi or m < self.lo:
            return m > self.hi
        return all(map(self.at_or_above, energies))
