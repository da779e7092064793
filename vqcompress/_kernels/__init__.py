"""Numba kernels: typed, C-contiguous arrays and scalars in, outputs allocated by the caller.

Nothing here validates input; callers in ``vqcompress.cluster`` and
``vqcompress.quantizers`` do.  Importing this package picks Numba's threading layer:
faiss ships its own OpenMP runtime, so we never let Numba start a second one in the same
process (TBB when installed, else Numba's own workqueue).  An explicit
``NUMBA_THREADING_LAYER`` in the environment wins.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]

# Flags shared by the kernels: no NaN/Inf reach a kernel (the boundary rejects them), so
# min/max reductions may vectorise.  No 'reassoc': sums keep their order, which keeps the
# results identical for any thread count.
FASTMATH = {"nnan", "ninf", "nsz", "contract"}

# Work is split into chunks of a fixed size, never "one per thread", so that the order of
# every floating-point accumulation is independent of NUMBA_NUM_THREADS.
CHUNK = 1024
