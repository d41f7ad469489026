"""linetap: call-recorder appliance firmware that never fails silently."""

import os as _os

# Before anything imports numpy: the DSP works on small blocks, and OpenBLAS's
# per-core worker threads only spin (they tripled the detectors' CPU time in
# benchmarks/dsp.py) and take cores from the capture threads. An explicit
# setting in the environment still wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
