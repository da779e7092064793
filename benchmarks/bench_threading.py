"""What starting a parallel region costs under each of Numba's threading layers.

An empty two-task ``prange`` is timed under workqueue, OpenMP and TBB, each in a process of
its own (a process holds one layer).  Small layers (MiniLM's, at batch 1) do a few
microseconds of work per call, so this cost decides whether they can use both cores.
``vqcompress._kernels`` picks TBB when it is installed; this prints which layers load here.

    python benchmarks/bench_threading.py
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import os
import subprocess
import sys

from _harness import header, table

CHILD = r"""
import time
import numpy as np
import vqcompress._kernels  # loads a pip-installed libtbb, as the library does
import numba
from numba import njit, prange

@njit(parallel=True)
def touch(a):
    for t in prange(a.shape[0]):
        a[t] += 1.0

a = np.zeros(numba.get_num_threads())
touch(a)
times = []
for _ in range(3000):
    t0 = time.perf_counter()
    touch(a)
    times.append(time.perf_counter() - t0)
times.sort()
print(numba.threading_layer(), times[0] * 1e6, times[len(times) // 2] * 1e6,
      times[len(times) * 9 // 10] * 1e6)
"""


def main():
    header("Starting a parallel region, per Numba threading layer")
    rows = []
    for layer in ("workqueue", "omp", "tbb"):
        env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
        res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            rows.append({"asked": layer, "ran": "not available"})
            continue
        got, lo, med, p90 = res.stdout.split()
        rows.append({"asked": layer, "ran": got, "min us": float(lo), "median us": float(med),
                     "p90 us": float(p90)})
    table(rows, ["asked", "ran", "min us", "median us", "p90 us"])


if __name__ == "__main__":
    main()
