"""Lookup-table layers against numpy float32 `x @ W.T` (BLAS), same process.

Shapes of all-MiniLM-L6-v2 (384x384, 1536x384, 384x1536) and LLM-sized (4096x4096,
11008x4096); batch 1, 8, 64; PQ 8-dim x 256 (1 bit/weight), RQ 2 stages of 8-dim x 256
(2 bits/weight), k-means 4 bits.  Compute cost does not depend on codebook values, so each
layer is built from a quantizer fitted on a small sample of the same width, with random
codes at full size.  BLAS, the tiled path and the layer are each timed as the fastest of
calls made in turn with the other two, so that a slow spell of the machine falls on all of
them and each call finds the caches and thread pools as the others left them, as between
the layers of a model.  "lookup us" is the lookup the layer would run at that batch (a
table per input, or batch-major tables for PQ/RQ; below batch 8 on PQ/RQ layers with few
rows per table entry, the codewords kernel, which builds no tables), timed apart, also
where the layer runs tiled.  "BLAS alone" repeats BLAS back to back (its weight stays in
cache, its threads awake).  "speed vs BLAS" > 1 means faster than BLAS.  "path" is what
the layer ran (``LUTLinear.path``).  Also measures the dispatch crossovers: the batch
from which the PQ/RQ lookup with batch-major tables beats the kernel the layer runs at
batch 1, and the batch from which the tiled BLAS path beats the lookup the layer would
run.  Last, batch 1 on one core each: BLAS limited to one thread (threadpoolctl) and
the layer's kernels to one (numba.set_num_threads), in turn: where the first table's
ratio is under 1 and this one's is not, BLAS won with its second core.

    python benchmarks/lut_bench.py [--quick]
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import vqcompress as vq
from _harness import best_of_each, header, table
from vqcompress._kernels.lut import BATCH
from vqcompress.nn import LUTLinear
from vqcompress.pipeline import CompressedTensor

SHAPES = [(384, 384), (1536, 384), (384, 1536), (4096, 4096), (11008, 4096)]
CONFIGS = {
    "pq 8x256 (1 bit/w)": lambda: vq.ProductQuantizer(8, 8, random_state=0, max_iter=5),
    "rq 2x8x256 (2 bits/w)": lambda: vq.ResidualQuantizer(8, 8, 2, beam_size=1, n_refine=0,
                                                          random_state=0, max_iter=5),
    "kmeans 4 bits": lambda: vq.KMeansQuantizer(4),
}


def make_layer(make_q, out, n_in, rng, bias=None):
    q = make_q().fit(rng.normal(size=(512, n_in)).astype(np.float32))
    q.shape_, q.n_weights_ = (out, n_in), out * n_in
    k = 1 << q.n_bits
    codes = rng.integers(0, k, size=q.code_shape()).astype(np.uint8)
    t = CompressedTensor("w", (out, n_in), "float32", {"KMeansQuantizer": "kmeans",
                         "ProductQuantizer": "pq"}.get(type(q).__name__, "rq"),
                         quantizer=q, codes=codes)
    return LUTLinear(t, bias)


def lookup_bytes(layer, B):
    """Bytes a lookup call reads: codes, codebooks and the tables it builds (batch-major
    ones for whole blocks of BATCH inputs)."""
    if layer.kind in ("pq", "rq"):
        M, K = layer.stages, layer.books.shape[1]
        path = layer._lookup_path(B)
        if path == "codewords":  # no tables
            return layer.codes.nbytes + layer.books.nbytes
        if path == "batch lookup":
            B = -(-B // BATCH) * BATCH
        return layer.codes.nbytes + layer.books.nbytes + M * B * layer.quantizer.n_blocks_ * K * 4
    return layer.codes.nbytes + layer.codebook.nbytes + B * layer.in_features * 4


def first_win(layer, n_in, rng, fast, slow, batches):
    """The first batch in ``batches`` at which ``fast(layer, x)`` beat ``slow(layer, x)``."""
    for B in batches:
        x = rng.normal(size=(B, n_in)).astype(np.float32)
        t = best_of_each({"fast": lambda: fast(layer, x), "slow": lambda: slow(layer, x)}, 5)
        if t["fast"] < t["slow"]:
            return B
    return f">{batches[-1]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="MiniLM shapes only")
    args = ap.parse_args()
    header("Lookup-table inference vs BLAS x @ W.T")
    rng = np.random.default_rng(0)
    rows, crossover_rows, one_core_rows = [], [], []
    for out, n_in in SHAPES[:3] if args.quick else SHAPES:
        W = rng.normal(size=(out, n_in)).astype(np.float32)
        reps = 30 if out * n_in < 2e6 else 7
        for cname, make_q in CONFIGS.items():
            layer = make_layer(make_q, out, n_in, rng)
            layer(np.ones((1, n_in), np.float32))  # compile outside the timings
            for B in (1, 8, 64):
                x = rng.normal(size=(B, n_in)).astype(np.float32)
                t = best_of_each({"blas": lambda: x @ W.T, "tiled": lambda: layer._tiled(x),
                                  "layer": lambda: layer(x)}, reps)
                t_blas, t_tile, t_disp = t["blas"], t["tiled"], t["layer"]
                t_lut = best_of_each({"lookup": lambda: layer._lookup(x)}, reps)["lookup"]
                t_alone = best_of_each({"blas": lambda: x @ W.T}, reps)["blas"]
                rows.append({"shape": f"{out}x{n_in}", "config": cname, "batch": B,
                             "path": layer.path(B), "BLAS us": t_blas * 1e6, "lookup us": t_lut * 1e6,
                             "tiled us": t_tile * 1e6, "layer us": t_disp * 1e6,
                             "speed vs BLAS": t_blas / t_disp,
                             "BLAS alone us": t_alone * 1e6,
                             "speed vs BLAS alone": t_alone / t_disp,
                             "MB read (BLAS / lookup)":
                                 f"{W.nbytes / 1e6:.2f} / {lookup_bytes(layer, B) / 1e6:.2f}"})
            one_core_rows.append(one_core(layer, W, rng, reps) | {
                "shape": f"{out}x{n_in}", "config": cname})
            # crossovers: from which batch the batch-major lookup beats the per-input one,
            # and the tiled path the lookup the layer would run
            cross = {"shape": f"{out}x{n_in}", "config": cname}
            if layer.kind in ("pq", "rq"):
                cross["batch-major lookup beats the batch-1 kernel from batch"] = first_win(
                    layer, n_in, rng, lambda m, x: m._lookup(x, "batch lookup"),
                    lambda m, x: m._lookup(x, m._lookup_path(1)), (1, 2, 4, 8, 16))
            cross["tiled beats the lookup from batch"] = first_win(
                layer, n_in, rng, lambda m, x: m._tiled(x), lambda m, x: m._lookup(x),
                (1, 2, 4, 8, 16, 32, 64))
            crossover_rows.append(cross)
    table(rows, ["shape", "config", "batch", "path", "BLAS us", "lookup us", "tiled us", "layer us",
                 "speed vs BLAS", "BLAS alone us", "speed vs BLAS alone",
                 "MB read (BLAS / lookup)"])
    print("Measured dispatch crossovers (CROSSOVER, BATCH_LOOKUP_FROM and CODEWORD_BATCH_UNTIL "
          "in vqcompress.nn.layers hold what the layers use):\n")
    table(crossover_rows, ["shape", "config",
                           "batch-major lookup beats the batch-1 kernel from batch",
                           "tiled beats the lookup from batch"])
    print("Batch 1 on one core each (BLAS and the layer's kernels limited to one thread), in "
          "turn:\n")
    table(one_core_rows, ["shape", "config", "path", "BLAS 1 thread us", "layer 1 thread us",
                          "speed vs BLAS, one core each"])


def one_core(layer, W, rng, reps):
    """Batch 1 with BLAS and the layer on one thread each, timed in turn."""
    x = rng.normal(size=(1, W.shape[1])).astype(np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            t = best_of_each({"blas": lambda: x @ W.T, "layer": lambda: layer(x)}, reps)
    finally:
        numba.set_num_threads(threads)
    return {"path": layer.path(1), "BLAS 1 thread us": t["blas"] * 1e6,
            "layer 1 thread us": t["layer"] * 1e6,
            "speed vs BLAS, one core each": t["blas"] / t["layer"]}


if __name__ == "__main__":
    main()
