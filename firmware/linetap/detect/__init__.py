"""Pure signal detectors over line audio: DTMF, caller ID, call-progress tones.

Every detector here is a small stateful object fed with numpy blocks and their absolute sample
index; none of them does I/O, starts threads or imports an audio/hardware library.
Their matrices are tiny: run the process with OPENBLAS_NUM_THREADS=1, or BLAS worker threads
spin and triple the CPU time (see benchmarks/dsp.py).
"""
