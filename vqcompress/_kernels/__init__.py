"""Numba kernels: typed, C-contiguous arrays and scalars in, outputs allocated by the caller.

Nothing here validates input; callers in ``vqcompress.cluster`` and
``vqcompress.quantizers`` do.  Importing this package picks Numba's threading layer:
TBB when installed, else Numba's own workqueue, never OpenMP: faiss ships its own OpenMP
runtime, and OpenMP's idle threads spin, as numpy's OpenBLAS threads do, so on two cores
a parallel lookup and the BLAS call beside it each waited for a scheduler tick (a median
of 4 ms where TBB took 23-63 us; docs/benchmarks.md).  An explicit
``NUMBA_THREADING_LAYER`` in the environment wins.

TBB matters for small layers: a parallel region costs about 2 us to start under TBB (and
under OpenMP) and 22-130 us under the workqueue (an empty two-task ``prange`` on the 2-core
AMD EPYC; ``benchmarks/bench_threading.py``).  pip's ``tbb`` package puts libtbb in
``<prefix>/lib``, where the loader does not look, so it is loaded here first.
"""
import ctypes
import os
import sys

import numba


def _load_tbb() -> bool:
    """Load a pip-installed libtbb so that Numba's TBB layer finds it; False if none."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for name in ("libtbb.so.12", "libtbb.12.dylib"):
            path = os.path.join(prefix, "lib", name)
            if os.path.exists(path):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    return True
                except OSError:
                    pass
    return False


_load_tbb()  # also for NUMBA_THREADING_LAYER=tbb
if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]

# Flags shared by the kernels: no NaN/Inf reach a kernel (the boundary rejects them), so
# min/max reductions may vectorise.  No 'reassoc': sums keep their order, which keeps the
# results identical for any thread count.
FASTMATH = {"nnan", "ninf", "nsz", "contract"}

# Work is split into chunks of a fixed size, never "one per thread", so that the order of
# every floating-point accumulation is independent of NUMBA_NUM_THREADS.
CHUNK = 1024
