"""What starting a parallel region costs under each of Numba's threading layers, and
whether a second thread pays for a few microseconds of work.

1. An empty two-task ``prange`` under workqueue, OpenMP and TBB, each in a process of its
   own (a process holds one layer).  Small layers (MiniLM's, at batch 1) do a few
   microseconds of work per call, so this cost decides whether they can use both cores.
2. Two tasks of the same arithmetic (a sum of squares over 1,024 floats, repeated) on one
   thread and on two, the calls back to back as a model's layers would make them: with two
   threads each call should take about half, plus the start; where the second thread
   joins late, it takes as long as on one thread or longer.
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

@njit(fastmath=True)
def squares(x, reps):
    s = np.float32(0.0)
    for _ in range(reps):
        acc = np.float32(0.0)
        for i in range(x.shape[0]):
            acc += x[i] * x[i]
        s += acc
    return s

@njit(parallel=True)
def two_tasks(x, reps, out):
    for t in prange(2):
        out[t] = squares(x, reps)

x, out = np.ones(1024, np.float32), np.zeros(2)
two_tasks(x, 1, out)
for reps in (20, 80, 320, 1280):
    med = {}
    for threads in (1, 2, 1, 2):  # twice each, in turn; the better median kept
        numba.set_num_threads(threads)
        t = []
        for _ in range(1000 if reps < 1000 else 200):
            t0 = time.perf_counter()
            two_tasks(x, reps, out)
            t.append(time.perf_counter() - t0)
        t.sort()
        med[threads] = min(med.get(threads, 1e9), t[len(t) // 2] * 1e6)
    print("work", reps, med[1], med[2])
"""


def main():
    header("Starting a parallel region, per Numba threading layer")
    rows, work = [], []
    for layer in ("workqueue", "omp", "tbb"):
        env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
        res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            rows.append({"asked": layer, "ran": "not available"})
            continue
        lines = res.stdout.splitlines()
        got, lo, med, p90 = lines[0].split()
        rows.append({"asked": layer, "ran": got, "min us": float(lo), "median us": float(med),
                     "p90 us": float(p90)})
        for line in lines[1:]:
            _, reps, one, two = line.split()
            work.append({"layer": got, "sums of 1,024 squares per task": int(reps),
                         "1 thread, median us": float(one), "2 threads, median us": float(two),
                         "2 threads / 1": float(two) / float(one)})
    print("### An empty two-task region\n")
    table(rows, ["asked", "ran", "min us", "median us", "p90 us"])
    print("\n### Two tasks of work, back to back: one thread against two\n")
    table(work, list(work[0]) if work else [])


if __name__ == "__main__":
    main()
