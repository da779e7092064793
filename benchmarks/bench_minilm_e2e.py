"""End to end on all-MiniLM-L6-v2's safetensors file: `vqcompress compress` with three
settings; wall time (a fresh process each, Numba compilation included unless cached),
file size, ratio, bits per weight, and zstd on the same input.

    python benchmarks/bench_minilm_e2e.py [--jobs 1]
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _harness import header, minilm_safetensors, table


SETTINGS = {
    "kmeans 4 bits": ["--method", "kmeans", "--bits", "4"],
    "pq 8-dim, 8 bits": ["--method", "pq", "--bits", "8", "--block-size", "8"],
    "prune 50% + kmeans 5 bits": ["--method", "kmeans", "--bits", "5", "--prune", "0.5"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    header("End to end: vqcompress compress on all-MiniLM-L6-v2 (22.7 M weights)")
    src = minilm_safetensors()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in SETTINGS.items():
            out = os.path.join(tmp, "m.vqz")
            cmd = [sys.executable, "-m", "vqcompress", "compress", src, out, "--json", "--force",
                   "--jobs", str(args.jobs), *opts]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            elapsed = time.perf_counter() - t0
            tot = json.loads(res.stdout)["totals"]
            assert tot["file_bytes"] == os.path.getsize(out)
            rows.append({"setting": " ".join(opts), "time s": elapsed,
                         "file bytes": tot["file_bytes"], "bits/weight": tot["bits_per_weight"],
                         "ratio": tot["ratio"], "zstd ratio": tot["zstd_ratio"]})
    table(rows, ["setting", "time s", "file bytes", "bits/weight", "ratio", "zstd ratio"])


if __name__ == "__main__":
    main()
