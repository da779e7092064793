"""What starting a parallel region costs under each of Numba's threading layers, and
whether a second thread pays for a few microseconds of work.

1. An empty two-task ``prange`` under workqueue, OpenMP and TBB, each in a process of its
   own (a process holds one layer).  Small layers (MiniLM's, at batch 1) do a few
   microseconds of work per call, so this cost decides whether they can use both cores.
2. Two tasks of the same arithmetic (a sum of squares over 1,024 floats, repeated) on one
   thread and on two, the calls back to back as a model's layers would make them: with two
   threads each call should take about half, plus the start; where the second thread
   joins late, it takes as long as on one thread or longer.
3. The lookup itself at batch 1 on the MiniLM shapes (PQ 8x256, RQ 2x8x256), its serial
   and its parallel kernel, called in turn with BLAS's ``x @ W.T`` as a model's layers
   call them: medians, not minima, so that a call slowed by the other pool's threads
   counts.  BLAS's own threads wait for work by spinning, and so do OpenMP's; two pools
   spinning on two cores slow each other down.  All three once more under TBB with
   ``OPENBLAS_THREAD_TIMEOUT=12`` (OpenBLAS's threads stop spinning soon after a call).
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

import sys
sys.path.insert(0, BENCH_DIR)
from _harness import times_of_each
from lut_bench import CONFIGS, make_layer
from vqcompress._kernels import lut

rng = np.random.default_rng(0)
numba.set_num_threads(2)
for out_f, n_in in ((384, 384), (1536, 384), (384, 1536)):
    W = rng.normal(size=(out_f, n_in)).astype(np.float32)
    x = rng.normal(size=(1, n_in)).astype(np.float32)
    for cname in ("pq 8x256 (1 bit/w)", "rq 2x8x256 (2 bits/w)"):
        L = make_layer(CONFIGS[cname], out_f, n_in, rng)
        args = (x, L.books_t, L.per_block, L.stages, L.codes, np.zeros(0, np.float32))
        calls = {"blas": lambda: x @ W.T, "serial": lambda: lut.lookup(*args),
                 "parallel": lambda: lut.lookup_parallel(*args, 2)}
        med = [sorted(v)[len(v) // 2] * 1e6 for v in times_of_each(calls, 2000).values()]
        print("lookup", f"{out_f}x{n_in}", cname.split()[0], *med)
"""


# Each Numba layer in a process of its own; TBB once more with OpenBLAS's threads told
# to stop spinning after 2^12 cycles instead of 2^28 (about 0.1 s) once a call is done.
VARIANTS = [("workqueue", {}), ("omp", {}), ("tbb", {}),
            ("tbb", {"OPENBLAS_THREAD_TIMEOUT": "12"})]


def main():
    header("Starting a parallel region, per Numba threading layer")
    rows, work, lookup = [], [], []
    for layer, extra in VARIANTS:
        env = {**os.environ, "NUMBA_THREADING_LAYER": layer, **extra}
        child = CHILD.replace("BENCH_DIR", repr(os.path.dirname(os.path.abspath(__file__))))
        res = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            rows.append({"asked": layer, "ran": "not available"})
            continue
        lines = res.stdout.splitlines()
        got, lo, med, p90 = lines[0].split()
        got += "".join(f", {k}={v}" for k, v in extra.items())
        rows.append({"asked": layer, "ran": got, "min us": float(lo), "median us": float(med),
                     "p90 us": float(p90)})
        for line in lines[1:]:
            if line.startswith("lookup"):
                _, shape, config, blas, serial, par = line.split()
                lookup.append({"layer": got, "shape": shape, "config": config,
                               "BLAS us": float(blas), "serial us": float(serial),
                               "parallel us": float(par),
                               "BLAS / best lookup": float(blas) / min(float(serial), float(par))})
                continue
            _, reps, one, two = line.split()
            work.append({"layer": got, "sums of 1,024 squares per task": int(reps),
                         "1 thread, median us": float(one), "2 threads, median us": float(two),
                         "2 threads / 1": float(two) / float(one)})
    print("### An empty two-task region\n")
    table(rows, ["asked", "ran", "min us", "median us", "p90 us"])
    print("\n### Two tasks of work, back to back: one thread against two\n")
    table(work, list(work[0]) if work else [])
    print("\n### The lookup at batch 1 in turn with BLAS, two threads, medians of 2,000 rounds\n")
    table(lookup, list(lookup[0]) if lookup else [])


if __name__ == "__main__":
    main()
