"""The parts behind the block k-means and lookup-table figures, each beside a peer in the
same process.

1. One nearest-center pass over the 73,728 8-dim blocks of a real MiniLM layer against 256
   centers, on one thread and on all: ours (`assign_nearest`) against faiss's exact search
   (`IndexFlatL2`, the same threads) and numpy's expanded-form distance matrix + argmin.
2. The tiled path of 384x384 and 384x1536 layers at batch 64 (PQ 8x256, RQ 2x8x256 and
   3x8x256, k-means 4 bits): decoding one tile of 256 rows against numpy fancy indexing
   of the same codebooks; BLAS multiplying that tile by a contiguous copy of x.T and by the x.T view,
   and the copy itself; the whole layer's decode and multiply apart, and in turn (what the
   tiled path does) with x.T copied once or as a view, and with the tile decoded by the
   parallel kernel, these three timed in turn with each other.
3. The lookup at batch 1 on the MiniLM shapes and 4096x4096 (PQ 8x256, RQ 2x8x256): the
   serial table kernel whole and with one row block only (about its tables alone), and
   the codewords kernel (lut.codeword_rows, no tables), each timed inside Numba over 200
   calls (10 on 4096x4096) so that no call overhead counts, the two in turn; then, called
   from Python in turn with BLAS, the serial and the parallel table kernel; and in turn
   with the kernel the layer runs, the layer (with a bias): its time past the kernel's is
   what a call adds around it.  And its tables alone, built a block at a time
   (simd.dot_table4) or four blocks at a time sharing each load of the codewords
   (simd.dot_table_x4), timed in turn.
4. The batch-major lookup on 1536x384 PQ 8x256, one block of 8 inputs, inside Numba: its
   table build (one position's 256 entries of 8 inputs) and its sums per row and position,
   reading the tables of 1, 2, 4 or all 16 positions of a chunk for every row before the
   next (the kernel takes lut.SUB); then, from Python in turn with BLAS at batch 64, the
   serial batch-major kernel and the one with a table per input.

5. The tiled path at batch 64 with tiles of 128, 256, 512 and 768 rows (those smaller than
   the layer) on 384x384, 1536x384, 384x1536 and 4096x4096, each against BLAS on the
   dense weight, in turn (speed against BLAS: over 1 is faster).
6. Pruned layers (k-means 5 bits, 30% and 10% of the weights kept) on the same shapes,
   batch 1, 4, 16, 64: held as compressed sparse rows, their gather and their tiled path,
   and held as every code (pruned ones 0.0), the k-means lookup; each against BLAS on
   the dense weight, in turn; the bytes each way holds; and the batch from which the
   tiled path beats the gather.

    python benchmarks/bench_kernel_parts.py [--part N ...]
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import argparse

import faiss
import numba
import numpy as np
from safetensors.numpy import load_file

import vqcompress as vq

from _harness import N_THREADS, best_of, best_of_each, header, minilm_safetensors, table
from lut_bench import CONFIGS, first_win, make_layer
from vqcompress._kernels import lut
from vqcompress._kernels.assign import assign_nearest
from vqcompress._kernels.simd import (
    BATCH,
    LANES,
    dot_table4,
    dot_table_batch,
    dot_table_x4,
    gather_batch_sum,
)

TENSOR = "encoder.layer.0.intermediate.dense.weight"
NO_BIAS = np.zeros(0, np.float32)  # the lookup kernels' sums then start from zeros


def nearest_rows(X, C, reps):
    rows = []
    for threads in sorted({1, N_THREADS}):
        numba.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
        labels, dists = np.empty(len(X), np.int32), np.empty(len(X))
        assign_nearest(X, C, labels, dists)
        index = faiss.IndexFlatL2(C.shape[1])
        index.add(C)
        cn = (C.astype(np.float32) ** 2).sum(1)

        def numpy_argmin():
            return np.argmin(cn - 2 * (X @ C.T), axis=1)

        t_ours, _ = best_of(lambda: assign_nearest(X, C, labels, dists), reps)
        t_faiss, (_, got) = best_of(lambda: index.search(X, 1), reps)
        t_np, _ = best_of(numpy_argmin, reps)
        rows.append({"threads": threads, "ours ms": t_ours * 1e3, "faiss ms": t_faiss * 1e3,
                     "numpy ms": t_np * 1e3, "ours / faiss": t_ours / t_faiss,
                     "ours / numpy": t_ours / t_np,
                     "labels equal faiss's": float(np.mean(got[:, 0] == labels))})
    numba.set_num_threads(N_THREADS)
    faiss.omp_set_num_threads(N_THREADS)
    return rows


def numpy_decode(layer, r0, r1):
    """The same rows by numpy fancy indexing of the layer's codebooks (the peer)."""
    codes = layer.codes  # (chunks, row blocks, positions, lanes) for pq/rq; (rows, n_in) for kmeans
    if layer.kind == "kmeans":
        return layer.codebook[codes[r0:r1]]
    rows = np.arange(r0, r1)
    M, nb = layer.stages, layer.n_blocks
    c = codes[:, rows // 16, :, rows % 16]  # (rows, chunks, chunk)
    c = c.reshape(r1 - r0, -1)[:, :nb * M]  # (rows, nb * M)
    out = layer.books[0][c[:, 0::M]]
    for s in range(1, M):
        out = out + layer.books[s][c[:, s::M]]
    return out.reshape(r1 - r0, nb * layer.books.shape[2])[:, :layer.in_features]


TILE_CONFIGS = {**CONFIGS, "rq 3x8x256 (3 bits/w)": lambda: vq.ResidualQuantizer(
    8, 8, 3, beam_size=1, n_refine=0, random_state=0, max_iter=5)}


def tile_rows(rng, reps):
    rows = []
    for n_in in (384, 1536):
        x = rng.normal(size=(64, n_in)).astype(np.float32)
        for cname, make_q in TILE_CONFIGS.items():
            layer = make_layer(make_q, 384, n_in, rng)
            assert layer.tile_rows == 256
            tile = np.empty((256, n_in), np.float32)
            x_t, x_view = np.ascontiguousarray(x.T), x.T
            out = np.empty((384, 64), np.float32)
            tiles = [(0, 256), (256, 384)]  # the tiled path's two tiles of this layer

            def decode_all():
                for r0, r1 in tiles:
                    layer._decode_into(slice(r0, r1), tile[:r1 - r0], parallel=False)

            def multiply_all(xt):
                for r0, r1 in tiles:
                    np.matmul(tile[:r1 - r0], xt, out=out[r0:r1])

            def in_turn(copy, par=False):  # what the tiled path does, x.T copied or a view
                xt = np.ascontiguousarray(x.T) if copy else x.T
                for r0, r1 in tiles:
                    layer._decode_into(slice(r0, r1), tile[:r1 - r0], parallel=par)
                    np.matmul(tile[:r1 - r0], xt, out=out[r0:r1])

            decode_all()
            np.testing.assert_array_equal(tile[:128], numpy_decode(layer, 256, 384))
            t = {name: best_of(fn, reps)[0] for name, fn in {
                "dec": lambda: layer._decode_into(slice(0, 256), tile, parallel=False),
                "np": lambda: numpy_decode(layer, 0, 256),
                "mul": lambda: np.matmul(tile, x_t, out=out[:256]),
                "view": lambda: np.matmul(tile, x_view, out=out[:256]),
                "copy x.T": lambda: np.ascontiguousarray(x.T),
                "dall": decode_all, "mall": lambda: multiply_all(x_view)}.items()}
            in_turn(False, True)
            t.update(best_of_each({"turn copy": lambda: in_turn(True),
                                   "turn view": lambda: in_turn(False),
                                   "turn par": lambda: in_turn(False, True)}, reps))
            rows.append({"layer": f"384x{n_in}", "config": cname,
                         "decode 256 rows us": t["dec"] * 1e6, "numpy decode us": t["np"] * 1e6,
                         "BLAS tile @ x.T copy us": t["mul"] * 1e6,
                         "BLAS tile @ x.T view us": t["view"] * 1e6,
                         "copy x.T us": t["copy x.T"] * 1e6,
                         "layer: decode, multiply apart us": (t["dall"] + t["mall"]) * 1e6,
                         "in turn, x.T view us": t["turn view"] * 1e6,
                         "in turn, x.T copied us": t["turn copy"] * 1e6,
                         "in turn, parallel decode us": t["turn par"] * 1e6})
    return rows


@numba.njit
def _lookup_repeated(n, x, books_t, per_block, M, codes, bias):
    for _ in range(n):
        lut.lookup(x, books_t, per_block, M, codes, bias)


@numba.njit
def _tables_one_by_one(n, ct, x, tab):
    K = ct.shape[1]
    for _ in range(n):
        for j in range(x.shape[0] // 8):
            dot_table4(ct, x, j * 8, 0, 8, tab[j * K:], 0)


@numba.njit
def _tables_four_at_once(n, ct, x, tab):
    K = ct.shape[1]
    for _ in range(n):
        for j in range(0, x.shape[0] // 8, 4):
            dot_table_x4(ct, x, j * 8, 8, 8, tab[j * K:], K)


def table_rows(rng, reps):
    """The per-input lookup's tables of 384 and 1536 inputs from one 256 x 8 codebook, a
    block at a time and four blocks sharing each codeword load; timed in turn."""
    rows = []
    ct = rng.normal(size=(8, 256)).astype(np.float32)
    for n_in in (384, 1536):
        x = rng.normal(size=n_in).astype(np.float32)
        tab = np.empty(n_in // 8 * 256, np.float32)
        t = best_of_each({"one": lambda: _tables_one_by_one(100, ct, x, tab),
                          "four": lambda: _tables_four_at_once(100, ct, x, tab)}, reps)
        per = 100 * n_in // 8
        rows.append({"inputs": n_in, "one block at a time ns/block": t["one"] / per * 1e9,
                     "four at a time ns/block": t["four"] / per * 1e9,
                     "four / one": t["four"] / t["one"]})
    return rows


@numba.njit
def _codewords_repeated(n, x, books, per_block, M, codes, bias):
    for _ in range(n):
        lut.codeword_rows(x, books, per_block, M, codes, bias)


def lookup_rows(rng, reps):
    rows = []
    for out_f, n_in in ((384, 384), (1536, 384), (384, 1536), (4096, 4096)):
        W = rng.normal(size=(out_f, n_in)).astype(np.float32)
        x = rng.normal(size=(1, n_in)).astype(np.float32)
        n = 200 if out_f * n_in < 1e6 else 10
        for cname in ("pq 8x256 (1 bit/w)", "rq 2x8x256 (2 bits/w)"):
            L = make_layer(CONFIGS[cname], out_f, n_in, rng,
                           bias=rng.normal(size=out_f).astype(np.float32))
            args = (x, L.books_t, L.per_block, L.stages)
            cw_args = (x, L.books, L.per_block, L.stages, L.codes, L.bias)
            one = np.ascontiguousarray(L.codes[:, :1])  # one row block: mostly the tables
            t_in = best_of_each({  # inside Numba, in turn
                "whole": lambda: _lookup_repeated(n, *args, L.codes, L.bias),
                "codewords": lambda: _codewords_repeated(n, *cw_args)}, reps)
            tables = best_of(lambda: _lookup_repeated(n, *args, one, NO_BIAS), reps)[0] / n
            serial = lambda: lut.lookup(*args, L.codes, L.bias)  # noqa: E731
            par = lambda: lut.lookup_parallel(*args, L.codes, L.bias, N_THREADS)  # noqa: E731
            par()
            t = best_of_each({"blas": lambda: x @ W.T, "serial": serial, "par": par}, 10 * reps)
            # apart: after the parallel kernel, TBB's thread shared a core with the next call
            kernel = (serial if L.path(1) == "lookup"
                      else lambda: lut.codeword_rows(*cw_args))
            t_call = best_of_each({"kernel": kernel, "layer": lambda: L(x)}, 10 * reps)
            rows.append({"shape": f"{out_f}x{n_in}", "config": cname,
                         "kernel us": t_in["whole"] / n * 1e6, "one row block us": tables * 1e6,
                         "codewords us": t_in["codewords"] / n * 1e6,
                         "codewords / kernel": t_in["codewords"] / t_in["whole"],
                         "BLAS us": t["blas"] * 1e6, "serial us": t["serial"] * 1e6,
                         "parallel us": t["par"] * 1e6, "parallel / serial": t["par"] / t["serial"],
                         "layer path": L.path(1), "layer us": t_call["layer"] * 1e6,
                         "layer - its kernel us": (t_call["layer"] - t_call["kernel"]) * 1e6})
    return rows


@numba.njit
def _tables_repeated(n, books, xt, tab):
    for _ in range(n):
        for p in range(tab.shape[0]):
            dot_table_batch(books[0], xt[p * 8:], tab[p])


@numba.njit
def _sums_repeated(n, acc, tab, codes, sub):
    K = tab.shape[1]
    for _ in range(n):
        for s in range(0, tab.shape[0], sub):
            for r in range(codes.shape[1]):
                gather_batch_sum(acc[r * LANES:], tab[s:], codes[0, r, s:], sub, K)


def batch_major_rows(rng, reps):
    L = make_layer(CONFIGS["pq 8x256 (1 bit/w)"], 1536, 384, rng)
    CH, K = L.codes.shape[2], L.books.shape[1]
    xt = rng.normal(size=(384, BATCH)).astype(np.float32)
    tab = np.empty((CH, K, BATCH), np.float32)
    acc = np.zeros((L.codes.shape[1] * LANES, BATCH), np.float32)
    rows = []
    t = best_of(lambda: _tables_repeated(20, L.books, xt, tab), reps)[0] / (20 * CH)
    rows.append({"part": "table of one position (256 x 8 inputs)", "ns": t * 1e9,
                 "per": f"{256 * 8 * BATCH / t / 1e9:.1f} G multiply-adds/s"})
    for sub in (1, 2, 4, CH):
        t = best_of(lambda: _sums_repeated(20, acc, tab, L.codes, sub), reps)[0] / (
            20 * CH * 1536)
        rows.append({"part": f"sums, {sub} positions at a time", "ns": t * 1e9,
                     "per": f"row and position ({BATCH} adds)"})
    W = rng.normal(size=(1536, 384)).astype(np.float32)
    x = rng.normal(size=(64, 384)).astype(np.float32)
    t = best_of_each({"blas": lambda: x @ W.T,
                      "batch": lambda: lut.lookup_batch(x, L.books, L.per_block, L.stages,
                                                        L.codes, NO_BIAS),
                      "per-input": lambda: lut.lookup(x, L.books_t, L.per_block, L.stages,
                                                      L.codes, NO_BIAS)}, reps)
    for k, name in (("blas", "BLAS x @ W.T, batch 64"),
                    ("batch", "batch-major lookup, serial, batch 64"),
                    ("per-input", "table-per-input lookup, serial, batch 64")):
        rows.append({"part": name, "ns": t[k] * 1e9, "per": "call"})
    return rows


def tile_size_rows(rng, reps):
    """The tiled path at batch 64 with tiles of 128 to 768 rows (those smaller than the
    layer), each against BLAS on the dense weight, all timed in turn."""
    rows = []
    for out_f, n_in in ((384, 384), (1536, 384), (384, 1536), (4096, 4096)):
        W = rng.normal(size=(out_f, n_in)).astype(np.float32)
        x = rng.normal(size=(64, n_in)).astype(np.float32)
        for cname in ("pq 8x256 (1 bit/w)", "rq 2x8x256 (2 bits/w)", "kmeans 4 bits"):
            calls = {"blas": lambda: x @ W.T}
            for tr in TILE_SIZES:
                if tr < out_f:
                    L = make_layer(CONFIGS[cname], out_f, n_in, np.random.default_rng(1))
                    L.tile_rows = tr
                    calls[tr] = L._tiled
            t = best_of_each({k: (f if k == "blas" else (lambda f=f: f(x)))
                              for k, f in calls.items()}, reps if out_f < 4096 else 5)
            row = {"layer": f"{out_f}x{n_in}", "config": cname, "BLAS us": t["blas"] * 1e6}
            row.update({f"{tr} rows": t["blas"] / t[tr] for tr in TILE_SIZES if tr in t})
            rows.append(row)
    return rows


TILE_SIZES = (128, 256, 512, 768)


def pruned_rows(rng, reps):
    """Pruned k-means layers, as sparse rows and as every code, against BLAS, in turn."""
    rows = []
    for out_f, n_in in ((384, 384), (1536, 384), (384, 1536), (4096, 4096)):
        W = rng.normal(size=(out_f, n_in)).astype(np.float32)
        for kept in (0.3, 0.1):
            t = vq.compress({"w": W}, method="kmeans", bits=5, prune=1 - kept,
                            min_elements=16)["w"]
            csr, codes = vq.nn.LUTLinear(t, sparse=True), vq.nn.LUTLinear(t, sparse=False)
            Wd = codes.dense_weight()
            for B in (1, 4, 16, 64):
                x = rng.normal(size=(B, n_in)).astype(np.float32)
                t_ = best_of_each({"blas": lambda: x @ Wd.T, "gather": lambda: csr._lookup(x),
                                   "tiled": lambda: csr._tiled(x),
                                   "codes": lambda: codes._lookup(x)},
                                  reps if out_f < 4096 else 5)
                rows.append({"layer": f"{out_f}x{n_in}", "kept": kept, "batch": B,
                             "BLAS us": t_["blas"] * 1e6,
                             "sparse rows: gather": t_["blas"] / t_["gather"],
                             "sparse rows: tiled": t_["blas"] / t_["tiled"],
                             "every code: lookup": t_["blas"] / t_["codes"],
                             "bytes sparse rows / every code": f"{csr.nbytes} / {codes.nbytes}"})
            rows[-1]["tiled beats the gather from batch"] = first_win(
                csr, n_in, rng, lambda m, x: m._tiled(x), lambda m, x: m._lookup(x),
                (1, 2, 4, 8, 16, 32, 64))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", type=int, choices=range(1, 7), action="append",
                    help="run only this part (repeatable); all six by default")
    parts = set(ap.parse_args().part or range(1, 7))
    header("Kernel parts: nearest-center pass and tile decoding, beside their peers")
    if 1 in parts:
        W = load_file(minilm_safetensors())[TENSOR]
        X = np.ascontiguousarray(W.reshape(-1, 8))
        C = X[np.random.default_rng(0).choice(len(X), 256, replace=False)].copy()
        print("### One nearest-center pass: 73,728 blocks x 256 centers, d=8\n")
        table(nearest_rows(X, C, 30), ["threads", "ours ms", "faiss ms", "numpy ms",
                                       "ours / faiss", "ours / numpy", "labels equal faiss's"])
    if 2 in parts:
        print("\n### The tiled path of a 384-row layer, batch 64 (tiles of 256 rows)\n")
        table(tile_rows(np.random.default_rng(0), 200),
              ["layer", "config", "decode 256 rows us", "numpy decode us",
               "BLAS tile @ x.T copy us", "BLAS tile @ x.T view us", "copy x.T us",
               "layer: decode, multiply apart us", "in turn, x.T view us",
               "in turn, x.T copied us", "in turn, parallel decode us"])
    if 3 in parts:
        print(f"\n### The lookup at batch 1, {N_THREADS} threads for the parallel kernel\n")
        table(lookup_rows(np.random.default_rng(0), 20),
              ["shape", "config", "kernel us", "one row block us", "codewords us",
               "codewords / kernel", "BLAS us", "serial us", "parallel us",
               "parallel / serial", "layer path", "layer us", "layer - its kernel us"])
        print("\nIts tables (256 codewords of 8 dimensions, one codebook for every block)\n")
        table(table_rows(np.random.default_rng(0), 30),
              ["inputs", "one block at a time ns/block", "four at a time ns/block", "four / one"])
    if 4 in parts:
        print("\n### The batch-major lookup's parts, 1536x384 PQ 8x256\n")
        table(batch_major_rows(np.random.default_rng(0), 20), ["part", "ns", "per"])
    if 5 in parts:
        print("\n### The tiled path at batch 64 by tile size: BLAS time / tiled time\n")
        table(tile_size_rows(np.random.default_rng(0), 20),
              ["layer", "config", "BLAS us"] + [f"{tr} rows" for tr in TILE_SIZES])
    if 6 in parts:
        print("\n### Pruned k-means layers, 5 bits: speed against BLAS\n")
        table(pruned_rows(np.random.default_rng(0), 20),
              ["layer", "kept", "batch", "BLAS us", "sparse rows: gather", "sparse rows: tiled",
               "every code: lookup", "bytes sparse rows / every code",
               "tiled beats the gather from batch"])


if __name__ == "__main__":
    main()
