"""Lookup-table matrix products: outputs computed from codes, never from a dense weight.

Every kernel runs over output rows in parallel (each row by one thread, in a fixed order:
results do not depend on the thread count) and writes into a caller-allocated ``out``.
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def pq_gather(tables, codes, out):  # pragma: no cover - compiled
    """out[b, o] = sum_j sum_s tables[s, b, j, codes[o, j, s]].

    tables : (n_stages, B, n_blocks, K) float32, partial dot products of each input block
        with each codeword (one stage for PQ); codes : (rows, n_blocks, n_stages)
        uint8/uint16; out : (B, rows) float32.
    """
    n_stages, B, nb, _ = tables.shape
    rows = codes.shape[0]
    for o in prange(rows):
        for b in range(B):
            acc = np.float32(0.0)
            for j in range(nb):
                for s in range(n_stages):
                    acc += tables[s, b, j, codes[o, j, s]]
            out[b, o] = acc


@njit(parallel=True, cache=True)
def scalar_bins(x, codes, codebook, out):  # pragma: no cover - compiled
    """Scalar (k-means) codes: out[b, o] = sum_k codebook[k] * (sum of x[b, i] over the i
    with codes[o, i] == k): one add per weight into K bins, then K products.

    x : (B, n_in) float32; codes : (rows, n_in) uint8/uint16; codebook : (K,) float32;
    out : (B, rows) float32.
    """
    B, n_in = x.shape
    rows = codes.shape[0]
    K = codebook.shape[0]
    for o in prange(rows):
        bins = np.zeros(K, dtype=np.float32)
        for b in range(B):
            bins[:] = 0.0
            for i in range(n_in):
                bins[codes[o, i]] += x[b, i]
            acc = np.float32(0.0)
            for k in range(K):
                acc += bins[k] * codebook[k]
            out[b, o] = acc


@njit(parallel=True, cache=True)
def sparse_gather(x, row_ptr, cols, codes, codebook, out):  # pragma: no cover - compiled
    """Sparse rows with codes: out[b, o] = sum_e codebook[codes[e]] * x[b, cols[e]] over the
    entries e of row o.  row_ptr : (rows+1,) int64; cols : (nnz,) int32; codes : (nnz,)."""
    B = x.shape[0]
    rows = row_ptr.shape[0] - 1
    for o in prange(rows):
        for b in range(B):
            acc = np.float32(0.0)
            for e in range(row_ptr[o], row_ptr[o + 1]):
                acc += codebook[codes[e]] * x[b, cols[e]]
            out[b, o] = acc
