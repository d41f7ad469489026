"""The caller-ID grid's margin (docs/LINE-SIGNALS.md, "Margin"): every row of
``test_callerid_conformance.py`` at one level, 15 dB SNR, +1.5 % and -1.5 % clock error, over a range
of noise seeds (numpy ``default_rng(1000 + seed)``), through the line analyser as the grid runs it.

    PYTHONPATH=firmware .venv/bin/python tests/callerid_margin.py -45 0 32

prints the number of cells, how many failed, and each failure with what linetap decoded instead.
A measurement, not a test: the committed grid (one seed per cell) is the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import spandsp  # noqa: E402
import test_callerid_conformance as grid  # noqa: E402
from linetap.sim import signals as sig  # noqa: E402


def main(level_dbm0: float, first_seed: int, end_seed: int) -> int:
    clips = grid.speech_clips(grid.RATE)
    gap = np.zeros(grid.RATE // 2)
    failed, cells = [], 0
    for case in grid.CASES:
        audio = spandsp.scale_to_dbm0(case.audio(), level_dbm0)
        for error in (0.015, -0.015):
            for seed in range(first_seed, end_seed):
                x = np.concatenate((clips[0] / 32768.0, gap, audio, gap, clips[1] / 32768.0, gap))
                x = sig.add_noise(sig.resample_error(x, error), 15.0, rng=np.random.default_rng(1000 + seed),
                                  reference_dbfs=level_dbm0 + spandsp.DBM0_TO_DBFS)
                cells += 1
                got = grid.linetap_decodes(x, case.in_call)
                if got != [case.expected]:
                    failed.append((case.family, case.message, error, 1000 + seed, got))
    print(f"{level_dbm0:g} dBm0, seeds {1000 + first_seed}-{999 + end_seed}: {cells} cells, {len(failed)} failed")
    for family, message, error, seed, got in failed:
        print(f"  {family} / {message} / {error:+.1%} / seed {seed} -> {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
