"""Signal level of a block, in dBFS (0 dBFS = a full-scale square wave)."""

from __future__ import annotations

import math

import numpy as np

FLOOR_DBFS = -120.0


def dbfs(frames: np.ndarray) -> float:
    """RMS level of int16 samples (any shape) in dBFS, floored at -120."""
    if frames.size == 0:
        return FLOOR_DBFS
    x = frames.astype(np.float32, copy=False).ravel()
    power = float(np.dot(x, x)) / (x.size * 32768.0 * 32768.0)
    if power <= 1e-12:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 10.0 * math.log10(power))
