"""Lookup-table matrix products: outputs computed from codes, never from a dense weight.

Each output row is summed by one thread in a fixed order, so results do not depend on the thread count or on
whether the serial or the parallel twin runs.  The serial twins exist because starting
Numba's thread pool costs tens of microseconds, more than a small layer's whole work.
"""
import numpy as np
from numba import njit, prange

from .simd import LANES, copy8, gather_add, gather_set, sum8

ROW_CHUNK = 64


@njit(cache=True, inline="never")
def _gather_blocks(tables, codes, out, r0, r1, chunk):  # pragma: no cover - compiled
    """out[b, LANES*r + l] = sum over p of tables[b, p*K + codes[r, p, l]] for the row
    blocks r in [r0, r1).  The positions are taken ``chunk`` at a time over all those rows,
    so that the tables in use stay in L1; each sum still runs over p in order, whatever
    ``chunk`` and the thread count."""
    B, PK = tables.shape
    P = codes.shape[1]
    K = PK // P
    for r in range(r0, r1):
        for b in range(B):
            out[b, r * LANES:(r + 1) * LANES] = 0.0
    for p0 in range(0, P, chunk):
        p1 = min(P, p0 + chunk)
        for r in range(r0, r1):
            for b in range(B):
                acc = out[b, r * LANES:(r + 1) * LANES]
                t = tables[b]
                for p in range(p0, p1):
                    gather_add(acc, t[p * K:], codes[r, p])


@njit(cache=True)
def gather(tables, codes, out, chunk):  # pragma: no cover - compiled
    """Serial twin of gather_parallel."""
    _gather_blocks(tables, codes, out, 0, codes.shape[0], chunk)


@njit(parallel=True, cache=True)
def gather_parallel(tables, codes, out, chunk):  # pragma: no cover - compiled
    """Product/residual codes: out[b, o] = sum over code positions p of
    tables[b, p*K + code of row o at p], row blocks in parallel tasks.

    tables : (B, P*K) float32, the partial dot products; codes : (n_row_blocks, P, LANES)
    uint8/uint16, the codes of rows LANES*r .. LANES*r + LANES-1 side by side (rows
    padded to a multiple of LANES); out : (B, n_row_blocks * LANES) float32."""
    nr = codes.shape[0]
    step = ROW_CHUNK // LANES
    for c in prange((nr + step - 1) // step):
        _gather_blocks(tables, codes, out, c * step, min(nr, (c + 1) * step), chunk)


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


@njit(cache=True, inline="never")
def _decode_blocks(codes, books, rows, n_in, out, i0, i1):  # pragma: no cover - compiled
    d = books.shape[2]
    nb = (n_in + d - 1) // d
    M = codes.shape[1] // nb
    pb = 1 if books.shape[0] == nb and M == 1 and nb > 1 else 0  # a codebook per block
    # The common case, whole 8-wide blocks, as vectors; everything else in _decode_tail.
    # (Kept out of this loop, the tail and a branch on pb halve its time.)
    full = n_in // 8 if d == 8 else 0
    for i in range(i0, i1):
        rb = rows[i] // LANES
        lane = rows[i] % LANES
        o = out[i]
        c = codes[rb]  # (nb*M, LANES); taken once per row, it keeps the stage loop cheap
        if M == 1:
            for j in range(full):
                copy8(o[j * 8:], books[j * pb, c[j, lane]])
        else:  # residual stages add their codewords, in order; two in one vector sum
            for j in range(full):
                sum8(o[j * 8:], books[0, c[j * M, lane]], books[1, c[j * M + 1, lane]])
                for s in range(2, M):
                    sum8(o[j * 8:], o[j * 8:], books[s, c[j * M + s, lane]])
    if full < nb:  # a second pass: a call in the loop above, even untaken, slows it by 40%
        for i in range(i0, i1):
            _decode_tail(codes, books, rows[i] // LANES, rows[i] % LANES, n_in, out[i],
                         full, nb, M, pb)


@njit(cache=True, inline="never")
def _decode_tail(codes, books, rb, lane, n_in, o, j0, nb, M, pb):  # pragma: no cover
    d = books.shape[2]
    for j in range(j0, nb):
        w = min(d, n_in - j * d)
        c = codes[rb, j * M, lane]
        for t in range(w):
            o[j * d + t] = books[j * pb, c, t]
        for s in range(1, M):
            c = codes[rb, j * M + s, lane]
            for t in range(w):
                o[j * d + t] += books[s, c, t]


@njit(cache=True)
def decode_block_rows(codes, books, rows, n_in, out):  # pragma: no cover - compiled
    """Serial twin of decode_block_rows_parallel."""
    _decode_blocks(codes, books, rows, n_in, out, 0, rows.shape[0])


@njit(parallel=True, cache=True)
def decode_block_rows_parallel(codes, books, rows, n_in, out):  # pragma: no cover
    """Dense rows from PQ/RQ codes into a caller buffer: out[i, j*d:(j+1)*d] = sum over
    stages s, in order, of books[s or j, code of row rows[i] at position j*M + s] (cropped
    to n_in).  codes : (n_row_blocks, nb*M, LANES) as gather_parallel takes them; books :
    (n_books, K, d); rows : (r,) int64; out : (r, n_in) float32."""
    n = rows.shape[0]
    for c in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        _decode_blocks(codes, books, rows, n_in, out, c * ROW_CHUNK, min(n, (c + 1) * ROW_CHUNK))


@njit(cache=True, inline="never")
def _decode_scalar_row(codes, codebook, out):  # pragma: no cover - compiled
    n_in = codes.shape[0]
    full = n_in - n_in % LANES
    for i in range(0, full, LANES):  # LANES codes at a time, as one gather
        gather_set(out[i:], codebook, codes[i:])
    for i in range(full, n_in):
        out[i] = codebook[codes[i]]


@njit(cache=True)
def decode_scalar_rows(codes, codebook, out):  # pragma: no cover - compiled
    """Serial twin of decode_scalar_rows_parallel."""
    for o in range(codes.shape[0]):
        _decode_scalar_row(codes[o], codebook, out[o])


@njit(parallel=True, cache=True)
def decode_scalar_rows_parallel(codes, codebook, out):  # pragma: no cover - compiled
    """out[o, i] = codebook[codes[o, i]] into a caller buffer (r, n_in) float32; codes
    C-contiguous rows."""
    for o in prange(codes.shape[0]):
        _decode_scalar_row(codes[o], codebook, out[o])
