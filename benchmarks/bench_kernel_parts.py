"""The parts behind the block k-means and lookup-table figures, each beside a peer in the
same process.

1. One nearest-center pass over the 73,728 8-dim blocks of a real MiniLM layer against 256
   centers, on one thread and on all: ours (`assign_nearest`) against faiss's exact search
   (`IndexFlatL2`, the same threads) and numpy's expanded-form distance matrix + argmin.
2. The tiled path of 384x384 and 384x1536 layers at batch 64 (PQ 8x256, RQ 2x8x256,
   k-means 4 bits): decoding one tile of 256 rows against numpy fancy indexing of the same
   codebooks; BLAS multiplying that tile by a contiguous copy of x.T and by the x.T view,
   and the copy itself; the whole layer's decode and multiply apart, and in turn (what the
   tiled path does) with x.T copied once or as a view, these two timed in turn with each
   other.

    python benchmarks/bench_kernel_parts.py
"""
import _harness  # noqa: F401  (first: pins thread counts before numba, BLAS, faiss start)

import faiss
import numba
import numpy as np
from safetensors.numpy import load_file

from _harness import N_THREADS, best_of, best_of_each, header, minilm_safetensors, table
from lut_bench import CONFIGS, make_layer
from vqcompress._kernels.assign import assign_nearest

TENSOR = "encoder.layer.0.intermediate.dense.weight"


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


def tile_rows(rng, reps):
    rows = []
    for n_in in (384, 1536):
        x = rng.normal(size=(64, n_in)).astype(np.float32)
        for cname, make_q in CONFIGS.items():
            layer = make_layer(make_q, 384, n_in, rng)
            layer._tiled(x)
            tile = layer._tile
            x_t, x_view = np.ascontiguousarray(x.T), x.T
            out = np.empty((384, 64), np.float32)
            tiles = [(0, 256), (256, 384)]  # the tiled path's two tiles of this layer

            def decode_all():
                for r0, r1 in tiles:
                    layer._decode_into(slice(r0, r1), tile[:r1 - r0], parallel=False)

            def multiply_all(xt):
                for r0, r1 in tiles:
                    np.matmul(tile[:r1 - r0], xt, out=out[r0:r1])

            def in_turn(copy):  # what the tiled path does, x.T copied or as a view
                xt = np.ascontiguousarray(x.T) if copy else x.T
                for r0, r1 in tiles:
                    layer._decode_into(slice(r0, r1), tile[:r1 - r0], parallel=False)
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
            t.update(best_of_each({"turn copy": lambda: in_turn(True),
                                   "turn view": lambda: in_turn(False)}, reps))
            rows.append({"layer": f"384x{n_in}", "config": cname,
                         "decode 256 rows us": t["dec"] * 1e6, "numpy decode us": t["np"] * 1e6,
                         "BLAS tile @ x.T copy us": t["mul"] * 1e6,
                         "BLAS tile @ x.T view us": t["view"] * 1e6,
                         "copy x.T us": t["copy x.T"] * 1e6,
                         "layer: decode, multiply apart us": (t["dall"] + t["mall"]) * 1e6,
                         "in turn, x.T view us": t["turn view"] * 1e6,
                         "in turn, x.T copied us": t["turn copy"] * 1e6})
    return rows


def main():
    header("Kernel parts: nearest-center pass and tile decoding, beside their peers")
    W = load_file(minilm_safetensors())[TENSOR]
    X = np.ascontiguousarray(W.reshape(-1, 8))
    C = X[np.random.default_rng(0).choice(len(X), 256, replace=False)].copy()
    print("### One nearest-center pass: 73,728 blocks x 256 centers, d=8\n")
    table(nearest_rows(X, C, 30), ["threads", "ours ms", "faiss ms", "numpy ms",
                                   "ours / faiss", "ours / numpy", "labels equal faiss's"])
    print("\n### The tiled path of a 384-row layer, batch 64 (tiles of 256 rows)\n")
    table(tile_rows(np.random.default_rng(0), 200),
          ["layer", "config", "decode 256 rows us", "numpy decode us", "BLAS tile @ x.T copy us",
           "BLAS tile @ x.T view us", "copy x.T us", "layer: decode, multiply apart us",
           "in turn, x.T view us", "in turn, x.T copied us"])


if __name__ == "__main__":
    main()
