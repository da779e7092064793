"""Lookup-table matrix products: outputs computed from codes, never from a dense weight.

Each output row is summed by one thread in a fixed order, so results do not depend on the thread count or on
whether the serial or the parallel twin runs.  The serial twins exist because starting
Numba's thread pool costs tens of microseconds, more than a small layer's whole work.
"""
import numpy as np
from numba import njit, prange

ROW_CHUNK = 64


@njit(cache=True)
def build_tables(x, books_t, block, out):  # pragma: no cover - compiled
    """out[b, j, s, k] = x[b, j*block : (j+1)*block] . codeword k (partial dot products).

    x : (B, n_in) float32 (the last block zero-padded implicitly); books_t : (n_books,
    block, K) float32, the codebooks transposed so the inner loop runs over contiguous
    codewords, with n_books = 1 (PQ, shared), n_blocks (PQ, per block) or n_stages (RQ);
    out : (B, n_blocks, n_stages, K) float32 with n_stages = 1 unless RQ.
    """
    B, n_in = x.shape
    _, nb, M, K = out.shape
    per_block = books_t.shape[0] == nb and M == 1 and nb > 1
    for b in range(B):
        for j in range(nb):
            for s in range(M):
                book = j if per_block else s
                row = out[b, j, s]
                row[:] = 0.0
                for t in range(block):
                    i = j * block + t
                    if i < n_in:
                        xv = x[b, i]
                        col = books_t[book, t]
                        for k in range(K):
                            row[k] += xv * col[k]


@njit(cache=True, inline="never")
def _gather_rows(tables, codes, out, r0, r1):  # pragma: no cover - compiled
    """out[b, o] = sum_p tables[b, p*K + codes[o, p]] for rows o in [r0, r1).
    tables : (B, P*K) float32; codes : (rows, P) uint8/uint16.  Four interleaved partial
    sums break the add-latency chain; the order is fixed, whatever the chunking."""
    B, PK = tables.shape
    P = codes.shape[1]
    K = PK // P
    P4 = (P // 4) * 4
    for o in range(r0, r1):
        for b in range(B):
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for p in range(0, P4, 4):
                a0 += tables[b, p * K + codes[o, p]]
                a1 += tables[b, (p + 1) * K + codes[o, p + 1]]
                a2 += tables[b, (p + 2) * K + codes[o, p + 2]]
                a3 += tables[b, (p + 3) * K + codes[o, p + 3]]
            for p in range(P4, P):
                a0 += tables[b, p * K + codes[o, p]]
            out[b, o] = (a0 + a1) + (a2 + a3)


@njit(cache=True)
def gather(tables, codes, out):  # pragma: no cover - compiled
    """Serial twin of gather_parallel."""
    _gather_rows(tables, codes, out, 0, codes.shape[0])


@njit(parallel=True, cache=True)
def gather_parallel(tables, codes, out):  # pragma: no cover - compiled
    """out[b, o] = sum over code positions p of tables[b, p*K + codes[o, p]], rows in
    parallel chunks.  tables : (B, P*K) float32; codes : (rows, P); out : (B, rows)."""
    rows = codes.shape[0]
    n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _gather_rows(tables, codes, out, c * ROW_CHUNK, min(rows, (c + 1) * ROW_CHUNK))


@njit(cache=True, inline="never")
def _bins_rows(x, codes, codebook, out, r0, r1):  # pragma: no cover - compiled
    B, n_in = x.shape
    K = codebook.shape[0]
    bins = np.empty(K, dtype=np.float32)
    for o in range(r0, r1):
        for b in range(B):
            bins[:] = 0.0
            for i in range(n_in):
                bins[codes[o, i]] += x[b, i]
            acc = np.float32(0.0)
            for k in range(K):
                acc += bins[k] * codebook[k]
            out[b, o] = acc


@njit(cache=True)
def scalar_bins(x, codes, codebook, out):  # pragma: no cover - compiled
    """Serial twin of scalar_bins_parallel."""
    _bins_rows(x, codes, codebook, out, 0, codes.shape[0])


@njit(parallel=True, cache=True)
def scalar_bins_parallel(x, codes, codebook, out):  # pragma: no cover - compiled
    """Scalar (k-means) codes: out[b, o] = sum_k codebook[k] * (sum of x[b, i] over the i
    with codes[o, i] == k).  x : (B, n_in) float32; codes : (rows, n_in); codebook : (K,)
    float32; out : (B, rows) float32."""
    rows = codes.shape[0]
    n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _bins_rows(x, codes, codebook, out, c * ROW_CHUNK, min(rows, (c + 1) * ROW_CHUNK))


@njit(cache=True, inline="never")
def _sparse_rows(x, row_ptr, cols, codes, codebook, out, r0, r1):  # pragma: no cover
    B = x.shape[0]
    for o in range(r0, r1):
        for b in range(B):
            acc = np.float32(0.0)
            for e in range(row_ptr[o], row_ptr[o + 1]):
                acc += codebook[codes[e]] * x[b, cols[e]]
            out[b, o] = acc


@njit(cache=True)
def sparse_gather(x, row_ptr, cols, codes, codebook, out):  # pragma: no cover - compiled
    """Serial twin of sparse_gather_parallel."""
    _sparse_rows(x, row_ptr, cols, codes, codebook, out, 0, row_ptr.shape[0] - 1)


@njit(parallel=True, cache=True)
def sparse_gather_parallel(x, row_ptr, cols, codes, codebook, out):  # pragma: no cover
    """Sparse rows with codes: out[b, o] = sum_e codebook[codes[e]] * x[b, cols[e]] over the
    entries e of row o.  row_ptr : (rows+1,) int64; cols : (nnz,) int32; codes : (nnz,)."""
    rows = row_ptr.shape[0] - 1
    n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _sparse_rows(x, row_ptr, cols, codes, codebook, out, c * ROW_CHUNK,
                     min(rows, (c + 1) * ROW_CHUNK))


@njit(parallel=True, cache=True)
def decode_block_rows(codes, books, n_in, out):  # pragma: no cover - compiled
    """Dense rows from PQ/RQ codes into a caller buffer: out[o, j*d:(j+1)*d] = sum over
    stages of books[s or j, codes[o, j, s]] (cropped to n_in).  codes : (r, nb, M);
    books : (n_books, K, d); out : (r, n_in) float32."""
    r, nb, M = codes.shape
    d = books.shape[2]
    per_block = books.shape[0] == nb and M == 1 and nb > 1
    full = n_in // d  # blocks that need no cropping
    if M == 1 and not per_block:  # the common case: one shared codebook, plain copies
        book = books[0]
        for o in prange(r):
            for j in range(full):
                c = codes[o, j, 0]
                base = j * d
                for t in range(d):
                    out[o, base + t] = book[c, t]
            for j in range(full, nb):
                c = codes[o, j, 0]
                for t in range(n_in - j * d):
                    out[o, j * d + t] = book[c, t]
        return
    for o in prange(r):
        for j in range(nb):
            for t in range(min(d, n_in - j * d)):
                v = np.float32(0.0)
                for s in range(M):
                    v += books[j if per_block else s, codes[o, j, s], t]
                out[o, j * d + t] = v


@njit(parallel=True, cache=True)
def decode_scalar_rows(codes, codebook, out):  # pragma: no cover - compiled
    """out[o, i] = codebook[codes[o, i]] into a caller buffer (r, n_in) float32."""
    r, n_in = codes.shape
    for o in prange(r):
        for i in range(n_in):
            out[o, i] = codebook[codes[o, i]]
