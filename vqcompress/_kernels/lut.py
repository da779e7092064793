"""Lookup-table matrix products: outputs computed from codes, never from a dense weight.

Each output row is summed by one thread in a fixed order (the PQ/RQ lookup: over each of
its fixed segments of positions, then the segments in order), so results do not depend on
the thread count or on whether the serial or the parallel twin runs.  The serial twins
exist because a second thread does not pay on a small layer: starting a parallel region
costs 2 us under TBB and tens of microseconds under Numba's workqueue, and on the 2-core
machine measured, two threads at batch 1 were slower than one on five of six MiniLM
shapes and codes (docs/benchmarks.md).
"""
import numpy as np
from numba import njit, prange

from .simd import (
    BATCH,
    LANES,
    codeword_dot1,
    codeword_dot2,
    codeword_dot3,
    codeword_dot4,
    decode_row1,
    decode_row2,
    decode_row3,
    decode_row4,
    dot,
    dot_table1,
    dot_table4,
    dot_table_batch,
    dot_table_x4,
    gather_batch_sum,
    gather_dot,
    gather_set,
    gather_sum,
    nibble_dot,
    nibble_set,
    permute_dot,
    permute_dot32,
    permute_set,
    permute_set2,
    permute_set32,
)

ROW_CHUNK = 64


# The lookup splits the code positions into this many runs of whole chunks, each summed
# apart into a buffer of its own and added in order at the end: two tasks then build half
# the tables each (a split by rows builds every table in every task).  Fixed, so that the
# sums do not depend on the thread count, and the serial twin splits alike.
SEGMENTS = 2


@njit(cache=True, inline="never")
def _lookup_rows(x, books_t, per_block, M, codes, out, r0, r1, c0, c1):  # pragma: no cover
    """Row blocks r0 .. r1-1 of lookup(), over the code positions of chunks c0 .. c1-1: one
    chunk at a time, its tables built into a buffer that stays in L1 while every row
    reads them."""
    B, n_in = x.shape
    _, d, K = books_t.shape
    _, _, CH, _ = codes.shape
    P = (n_in + d - 1) // d * M
    wide = K % (4 * LANES) == 0
    full = n_in // d  # blocks not cropped
    tab = np.empty((B, CH * K), dtype=np.float32)
    for ci in range(c0, c1):
        p0 = ci * CH
        j0, j1 = p0 // M, (p0 + min(CH, P - p0)) // M  # the chunk's blocks (all stages)
        for b in range(B):
            for s in range(M):  # position (j - j0) * M + s of the chunk: block j, stage s
                j = j0
                if not per_block:  # four blocks at a time share stage s's codebook
                    while j + 4 <= min(j1, full):
                        dot_table_x4(books_t[s], x[b], j * d, d, d,
                                     tab[b, ((j - j0) * M + s) * K:], M * K)
                        j += 4
                for j in range(j, j1):
                    bt = books_t[j if per_block else s]
                    w = min(d, n_in - j * d)
                    at = ((j - j0) * M + s) * K
                    if wide:
                        dot_table4(bt, x[b], j * d, 0, w, tab[b, at:], 0)
                    else:
                        dot_table1(bt, x[b], j * d, 0, w, tab[b, at:], 0)
        n = min(CH, P - p0)
        for r in range(r0, r1):
            for b in range(B):
                gather_sum(out[b, r * LANES:], tab[b], codes[ci, r], n, K)


@njit(cache=True)
def _outputs(B, n_out, bias):  # pragma: no cover - compiled
    """The (B, n_out) float32 a kernel sums into: each row starts as ``bias`` (length 0 for
    none) followed by zeros."""
    out = np.empty((B, n_out), dtype=np.float32)
    nb = bias.shape[0]
    for b in range(B):
        out[b, :nb] = bias
        out[b, nb:] = 0.0
    return out


@njit(cache=True)
def _segments(codes, out):  # pragma: no cover - compiled
    """The segments' chunk bounds, and a zeroed buffer for each segment after the first
    (the first sums into ``out``)."""
    n_chunks = codes.shape[0]
    S = min(SEGMENTS, n_chunks)
    bounds = np.empty(S + 1, dtype=np.int64)
    for s in range(S + 1):
        bounds[s] = s * n_chunks // S
    return bounds, np.zeros((S - 1,) + out.shape, dtype=np.float32)


@njit(cache=True)
def _add_segments(out, parts):  # pragma: no cover - compiled
    for s in range(parts.shape[0]):
        out += parts[s]


@njit(cache=True)
def lookup(x, books_t, per_block, M, codes, bias):  # pragma: no cover - compiled
    """Serial twin of lookup_parallel."""
    out = _outputs(x.shape[0], codes.shape[1] * LANES, bias)
    bounds, parts = _segments(codes, out)
    nr = codes.shape[1]
    for s in range(bounds.shape[0] - 1):
        _lookup_rows(x, books_t, per_block, M, codes, out if s == 0 else parts[s - 1], 0, nr,
                     bounds[s], bounds[s + 1])
    _add_segments(out, parts)
    return out


@njit(parallel=True, cache=True)
def lookup_parallel(x, books_t, per_block, M, codes, bias, n_tasks):  # pragma: no cover
    """Product/residual codes: out[b, o] = bias[o] + sum over code positions p of x[b,
    block j] . (codeword of row o at p), p = j*M + s for the M stages s; each of
    ``SEGMENTS`` runs of positions summed in order, then the runs added in order.

    x : (B, n_in) float32; books_t : (n_books, d, K) float32, the codebooks transposed, one
    per stage (or one per block when ``per_block``); codes : (n_chunks, n_row_blocks, CH,
    LANES) uint8/uint16 as ``nn.layers.chunk_codes`` lays them out; bias : float32, what
    each output row's sums start from (length 0: zeros).  Returns out (B, n_row_blocks *
    LANES) float32 (rows past the layer's are sums of padding codes).  About
    ``n_tasks`` tasks (one per thread): each takes one segment and a range of row blocks,
    and builds the tables of its segment itself, so no task waits on another and a row's
    sum does not depend on the split."""
    out = _outputs(x.shape[0], codes.shape[1] * LANES, bias)
    bounds, parts = _segments(codes, out)
    S = bounds.shape[0] - 1
    nr = codes.shape[1]
    R = min(nr, max(1, (n_tasks + S - 1) // S))  # row ranges per segment
    per = (nr + R - 1) // R
    for t in prange(S * R):
        s, r = t // R, t % R
        _lookup_rows(x, books_t, per_block, M, codes, out if s == 0 else parts[s - 1],
                     r * per, min(nr, (r + 1) * per), bounds[s], bounds[s + 1])
    _add_segments(out, parts)
    return out


@njit(cache=True, inline="never")
def _codeword_rows(xp, books, per_block, M, codes, out, r0, r1):  # pragma: no cover
    """Row blocks r0 .. r1-1 of codeword_rows for one padded input, eight rows at a time."""
    for r in range(r0, r1):
        for h in range(LANES // 8):
            o = out[r * LANES + h * 8:]
            if M == 1:
                codeword_dot1(o, books, codes, xp, r, h, per_block)
            elif M == 2:
                codeword_dot2(o, books, codes, xp, r, h, per_block)
            elif M == 3:
                codeword_dot3(o, books, codes, xp, r, h, per_block)
            else:
                codeword_dot4(o, books, codes, xp, r, h, per_block)


@njit(cache=True)
def _padded(x):  # pragma: no cover - compiled
    """x (B, n_in) with zeros up to whole blocks of 8 inputs (x itself when it has them)."""
    B, n_in = x.shape
    if n_in % 8 == 0:
        return x
    xp = np.zeros((B, (n_in + 7) // 8 * 8), dtype=np.float32)
    xp[:, :n_in] = x
    return xp


@njit(cache=True)
def codeword_rows(x, books, per_block, M, codes, bias):  # pragma: no cover - compiled
    """Serial twin of codeword_rows_parallel."""
    nr = codes.shape[1]
    out = _outputs(x.shape[0], nr * LANES, bias)
    xp = _padded(x)
    for b in range(x.shape[0]):
        _codeword_rows(xp[b], books, per_block, M, codes, out[b], 0, nr)
    return out


@njit(parallel=True, cache=True)
def codeword_rows_parallel(x, books, per_block, M, codes, bias, n_tasks):  # pragma: no cover
    """lookup_parallel's result computed without tables, for blocks of 8 inputs and 1 to
    4 stages: each row's codewords loaded and multiplied into a running vector block by
    block (simd.codeword_dot1 .. 4), its lanes summed at the end; every row by one task,
    in the same order on any number of them.  x : (B, n_in) float32; books : (n_books, K,
    8) float32, the codebooks as they are; codes, bias as lookup_parallel takes them;
    ``n_tasks`` ranges of row blocks per input.  Returns out (B, n_row_blocks * LANES)."""
    B = x.shape[0]
    nr = codes.shape[1]
    out = _outputs(B, nr * LANES, bias)
    xp = _padded(x)
    R = min(nr, max(1, n_tasks))
    per = (nr + R - 1) // R
    for t in prange(B * R):
        b, r = t // R, t % R
        _codeword_rows(xp[b], books, per_block, M, codes, out[b], min(nr, r * per),
                       min(nr, (r + 1) * per))
    return out


# The batch-major lookup reads its tables this many positions at a time for every row
# (4 x 256 codewords x BATCH floats: 32 KiB, as much as a Zen 3 L1 holds, which beat 2 and
# 16 positions in benchmarks/bench_kernel_parts.py), and gives a task at most
# ROW_BLOCKS_MAX blocks of LANES rows, so that their running sums (32 bytes a row) and one
# chunk's tables stay in L2.
SUB = 4
ROW_BLOCKS_MAX = 256


@njit(cache=True, inline="never")
def _batch_rows(x, books, per_block, M, codes, out, b0, r0, r1):  # pragma: no cover
    """Inputs b0 .. b0+BATCH-1 (those below B) and row blocks r0 .. r1-1 of lookup_batch:
    the inputs transposed into BATCH-wide columns (zeros past B and past n_in, so a
    cropped last block adds exact zeros), then per chunk of positions their tables,
    batch-major, and every row's sums over them, SUB positions at a time."""
    B, n_in = x.shape
    _, K, d = books.shape
    n_chunks, _, CH, _ = codes.shape
    P = (n_in + d - 1) // d * M
    nb = min(BATCH, B - b0)
    xt = np.zeros(((n_in + d - 1) // d * d, BATCH), dtype=np.float32)
    for b in range(nb):
        for i in range(n_in):
            xt[i, b] = x[b0 + b, i]
    acc = np.zeros(((r1 - r0) * LANES, BATCH), dtype=np.float32)
    for b in range(nb):
        for o in range((r1 - r0) * LANES):
            acc[o, b] = out[b0 + b, r0 * LANES + o]
    tab = np.empty((CH, K, BATCH), dtype=np.float32)
    for ci in range(n_chunks):
        p0 = ci * CH
        n = min(CH, P - p0)
        for p in range(p0, p0 + n):
            j = p // M
            dot_table_batch(books[j if per_block else p - j * M], xt[j * d:], tab[p - p0])
        for s in range(0, n, SUB):
            for r in range(r0, r1):
                gather_batch_sum(acc[(r - r0) * LANES:], tab[s:], codes[ci, r, s:],
                                 min(SUB, n - s), K)
    for b in range(nb):
        for o in range((r1 - r0) * LANES):
            out[b0 + b, r0 * LANES + o] = acc[o, b]


@njit(cache=True)
def lookup_batch(x, books, per_block, M, codes, bias):  # pragma: no cover - compiled
    """Serial twin of lookup_batch_parallel."""
    nr = codes.shape[1]
    out = _outputs(x.shape[0], nr * LANES, bias)
    for b0 in range(0, x.shape[0], BATCH):
        for r0 in range(0, nr, ROW_BLOCKS_MAX):
            _batch_rows(x, books, per_block, M, codes, out, b0, r0, min(nr, r0 + ROW_BLOCKS_MAX))
    return out


@njit(parallel=True, cache=True)
def lookup_batch_parallel(x, books, per_block, M, codes, bias, n_tasks):  # pragma: no cover
    """lookup_parallel for a batch of inputs: the same sums (each output over the code
    positions in order, from the bias), with tables that hold BATCH inputs per
    entry, so that each code read serves BATCH inputs with one vector add.  books :
    (n_books, K, d) float32, the codebooks as they are; the rest as lookup_parallel takes
    them.  Tasks split the inputs into blocks of BATCH, and the rows into ranges of at
    most ROW_BLOCKS_MAX blocks, more of them when there are fewer tasks than ``n_tasks``
    (each range builds its block's tables)."""
    B = x.shape[0]
    nr = codes.shape[1]
    out = _outputs(B, nr * LANES, bias)
    n_bb = (B + BATCH - 1) // BATCH
    R = min(nr, max((nr + ROW_BLOCKS_MAX - 1) // ROW_BLOCKS_MAX, (n_tasks + n_bb - 1) // n_bb))
    per = (nr + R - 1) // R
    for t in prange(n_bb * R):
        bb, r = t // R, t % R
        _batch_rows(x, books, per_block, M, codes, out, bb * BATCH, min(nr, r * per),
                    min(nr, (r + 1) * per))
    return out


# Codes of at most 16 entries are held two to a byte (nn.layers.pack_nibbles): in each
# group of NIBBLE_GROUP codes, code i in the low four bits of byte i and code i + 32 in
# the high four; the row's last n_in % NIBBLE_GROUP codes a byte each.  A row of n_in
# codes is then n_in // 64 * 32 + n_in % 64 bytes wide, fewer than n_in from 64 codes on
# (and the same bytes as unpacked below that), which is how the kernels tell the two apart.
NIBBLE_GROUP = 64


@njit(cache=True, inline="never")
def _decode_nibble_row(codes, book, out):  # pragma: no cover - compiled
    """out[i] = book[code i] of a row packed two codes to a byte (book LANES floats): the
    whole groups of NIBBLE_GROUP decoded from their bytes (simd.nibble_set), the codes
    after them (a byte each) LANES at a time (simd.permute_set), then one by one.  Only
    intrinsics take slices here: a call of a compiled function on slices made Numba
    count references to the arrays on every row, which cost more than decoding a
    384-code row (scratch)."""
    n = out.shape[0]
    groups = n // NIBBLE_GROUP
    nibble_set(out, book, codes, groups)
    head = groups * NIBBLE_GROUP
    start = groups * (NIBBLE_GROUP // 2) - head  # code i's byte: start + i
    full = n - (n - head) % LANES
    for i in range(head, full, LANES):
        permute_set(out[i:], book, codes[start + i:])
    for i in range(full, n):
        out[i] = book[codes[start + i]]


@njit(cache=True, inline="never")
def _nibble_rows(x, codes, book, out, r0, r1):  # pragma: no cover - compiled
    """_scalar_rows for one input and rows packed two codes to a byte (16 entries): the
    whole groups of NIBBLE_GROUP decoded from the packed bytes (simd.nibble_dot), then
    the codes after them, a byte each (_nibble_tail_rows).  A function of its own, as is
    the tail's: beside other code using the byte planes, they were held across the loop
    and spilled, and it ran slower (scratch)."""
    groups = x.shape[1] // NIBBLE_GROUP
    if groups * NIBBLE_GROUP < x.shape[1]:
        _nibble_tail_rows(x, codes, book, out, r0, r1)
        return
    x0 = x[0]
    for o in range(r0, r1):
        out[0, o] += nibble_dot(book, codes[o], x0, groups)


@njit(cache=True, inline="never")
def _nibble_tail_rows(x, codes, book, out, r0, r1):  # pragma: no cover - compiled
    """_nibble_rows for rows with codes past their whole groups: those LANES at a time
    (simd.permute_dot), then one by one.  Only intrinsics take slices here: a call of a
    compiled function on slices made Numba count references to the arrays on every
    row, which cost more than a 384-code row's products (scratch)."""
    n = x.shape[1]
    groups = n // NIBBLE_GROUP
    head = groups * NIBBLE_GROUP
    start = groups * (NIBBLE_GROUP // 2)  # the byte of code head
    m = (n - head) // LANES
    x0 = x[0]
    for o in range(r0, r1):
        c = codes[o]
        s = nibble_dot(book, c, x0, groups)
        if m:
            s += permute_dot(book, c[start:], x0[head:], m)
        for i in range(head + m * LANES, n):
            s += book[c[start + i - head]] * x0[i]
        out[0, o] += s


@njit(cache=True, inline="never")
def _scalar_rows(x, codes, book, out, r0, r1):  # pragma: no cover - compiled
    """Rows r0 .. r1-1 of scalar_dot: for one input, each row's codes decoded and
    multiplied in registers; for more, each row decoded once into a buffer that stays in
    L1, then multiplied by every input (simd.dot), in the same order of sums.  Rows packed
    two codes to a byte are decoded from their bytes (_nibble_rows, _decode_nibble_row)."""
    B, n_in = x.shape
    full = n_in // LANES
    if B > 1:
        row = np.empty(n_in, dtype=np.float32)
        for o in range(r0, r1):
            if codes.shape[1] != n_in:
                _decode_nibble_row(codes[o], book, row)
            else:
                _decode_scalar_row(codes[o], book, row)
            for b in range(B):
                s = dot(row, x[b], full)
                for i in range(full * LANES, n_in):
                    s += row[i] * x[b, i]
                out[b, o] += s
        return
    if codes.shape[1] != n_in:
        _nibble_rows(x, codes, book, out, r0, r1)
        return
    entries = book.shape[0]
    for o in range(r0, r1):
        c = codes[o]
        for b in range(B):
            if entries == LANES:
                s = permute_dot(book, c, x[b], full)
            elif entries == 2 * LANES:
                s = permute_dot32(book, c, x[b], full)
            else:
                s = gather_dot(book, c, x[b], full)
            for i in range(full * LANES, n_in):
                s += book[c[i]] * x[b, i]
            out[b, o] += s


@njit(cache=True)
def scalar_dot(x, codes, codebook, bias):  # pragma: no cover - compiled
    """Serial twin of scalar_dot_parallel."""
    out = _outputs(x.shape[0], codes.shape[0], bias)
    _scalar_rows(x, codes, _register_codebook(codebook), out, 0, codes.shape[0])
    return out


@njit(parallel=True, cache=True)
def scalar_dot_parallel(x, codes, codebook, bias):  # pragma: no cover - compiled
    """Scalar (k-means) codes: out[b, o] = bias[o] + sum_i codebook[codes[o, i]] * x[b, i],
    each row's codes decoded LANES at a time in registers and multiplied into running
    vectors in a fixed order (simd.permute_dot for codebooks of up to LANES entries,
    permute_dot32 up to 2 * LANES, gather_dot for larger; for more than one input, the
    row decoded once into a buffer and simd.dot per input), then the inputs past the last
    whole LANES one by one; no dense matrix is written.  x : (B, n_in) float32; codes :
    (rows, n_in) uint8/uint16, or uint8 packed two to a byte (at most 16 entries; see
    NIBBLE_GROUP), C-contiguous; codebook : (K,) float32; bias : (rows,) or (0,)
    float32; returns out (B, rows)."""
    rows = codes.shape[0]
    out = _outputs(x.shape[0], rows, bias)
    book = _register_codebook(codebook)
    n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _scalar_rows(x, codes, book, out, c * ROW_CHUNK, min(rows, (c + 1) * ROW_CHUNK))
    return out


@njit(cache=True, inline="never")
def _sparse_rows(x, xt, row_ptr, cols, codes, codebook, out, r0, r1):  # pragma: no cover
    """Rows r0 .. r1-1 of sparse_gather.  One input: a row's even and odd entries summed
    in two running sums (so that their adds overlap), added at the end.  More: each
    entry's weight decoded once and multiplied by every input's value at its column, read
    from the inputs transposed (``xt``, contiguous across the batch, so one entry's
    products are vector operations), into one running sum per input, in entry order."""
    B = x.shape[0]
    if B == 1:
        x0 = x[0]
        two = np.uint64(2)
        for o in range(r0, r1):
            a0 = a1 = np.float32(0.0)
            e0, e1 = row_ptr[o], row_ptr[o + 1]
            for k in range((e1 - e0) // two):  # even entries into a0, odd into a1
                e = e0 + two * np.uint64(k)
                a0 += codebook[codes[e]] * x0[cols[e]]
                a1 += codebook[codes[e + np.uint64(1)]] * x0[cols[e + np.uint64(1)]]
            if (e1 - e0) % two:
                a0 += codebook[codes[e1 - np.uint64(1)]] * x0[cols[e1 - np.uint64(1)]]
            out[0, o] += a0 + a1
        return
    acc = np.empty(B, dtype=np.float32)
    for o in range(r0, r1):
        acc[:] = 0.0
        for e in range(row_ptr[o], row_ptr[o + 1]):
            w = codebook[codes[e]]
            xc = xt[cols[e]]
            for b in range(B):
                acc[b] += w * xc[b]
        for b in range(B):
            out[b, o] += acc[b]


@njit(cache=True)
def _transposed(x):  # pragma: no cover - compiled
    """x (B, n) as a C-contiguous (n, B) float32 (an empty (0, 0) for one input, which
    _sparse_rows reads directly)."""
    B, n = x.shape
    if B == 1:
        return np.empty((0, 0), dtype=np.float32)
    xt = np.empty((n, B), dtype=np.float32)
    for b in range(B):
        for i in range(n):
            xt[i, b] = x[b, i]
    return xt


@njit(cache=True)
def sparse_gather(x, row_ptr, cols, codes, codebook, bias):  # pragma: no cover - compiled
    """Serial twin of sparse_gather_parallel."""
    out = _outputs(x.shape[0], row_ptr.shape[0] - 1, bias)
    _sparse_rows(x, _transposed(x), row_ptr, cols, codes, codebook, out, 0,
                 row_ptr.shape[0] - 1)
    return out


@njit(parallel=True, cache=True)
def sparse_gather_parallel(x, row_ptr, cols, codes, codebook, bias):  # pragma: no cover
    """Sparse rows with codes: out[b, o] = bias[o] + sum_e codebook[codes[e]] * x[b, cols[e]]
    over the entries e of row o, in order.  row_ptr : (rows+1,) uint64; cols : (nnz,)
    uint32 (unsigned: no negative-index wraparound in the loop); codes : (nnz,); bias as
    scalar_dot_parallel takes it; returns out (B, rows)."""
    rows = row_ptr.shape[0] - 1
    out = _outputs(x.shape[0], rows, bias)
    xt = _transposed(x)
    n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _sparse_rows(x, xt, row_ptr, cols, codes, codebook, out, c * ROW_CHUNK,
                     min(rows, (c + 1) * ROW_CHUNK))
    return out


@njit(cache=True)
def decode_sparse_rows(row_ptr, cols, codes, codebook, rows, out):  # pragma: no cover
    """Dense rows of a sparse layer into a caller buffer: out[i] = zeros with
    codebook[codes[e]] at cols[e] for the entries e of row rows[i].  rows : (r,) int64;
    out : (r, n_in) float32."""
    for i in range(rows.shape[0]):
        o = out[i]
        o[:] = 0.0
        for e in range(row_ptr[rows[i]], row_ptr[rows[i] + 1]):
            o[cols[e]] = codebook[codes[e]]


@njit(cache=True)
def _block_offsets(codes, M):  # pragma: no cover - compiled
    """off[j]: where block j's first code (position j*M) of lane 0, row block 0 sits in
    ``codes.reshape(-1)``; its stage s is LANES * s further on (a chunk holds whole blocks),
    row block rb, lane l add rb * CH * LANES + l."""
    n_chunks, nr, CH, _ = codes.shape
    off = np.empty(n_chunks * CH // M, dtype=np.uint64)
    for j in range(off.shape[0]):
        off[j] = (j * M // CH) * (nr * CH * LANES) + (j * M % CH) * LANES
    return off


@njit(cache=True, inline="never")
def _decode_blocks(codes, books, M, rows, n_in, out, i0, i1):  # pragma: no cover - compiled
    CH = codes.shape[2]
    d = books.shape[2]
    nb = (n_in + d - 1) // d
    pb = 1 if books.shape[0] == nb and M == 1 and nb > 1 else 0  # a codebook per block
    # A row's codes through a table of block offsets, in one loop over its blocks: a loop
    # per chunk of positions instead (its bounds unknown to LLVM) was slower.
    off = _block_offsets(codes, M)
    flat = codes.reshape(-1)
    # The common case, whole 8-wide blocks of up to 4 stages, by simd.decode_row1..4;
    # everything else in _decode_tail.
    full = n_in // 8 if d == 8 and M <= 4 else 0
    for i in range(i0, i1):
        o = out[i]
        c = flat[rows[i] // LANES * CH * LANES + rows[i] % LANES:]  # this row's codes
        if M == 1:
            decode_row1(o, books, c, off, full, pb)
        elif M == 2:
            decode_row2(o, books, c, off, full, pb)
        elif M == 3:
            decode_row3(o, books, c, off, full, pb)
        elif M == 4:
            decode_row4(o, books, c, off, full, pb)
    if full < nb:  # a second pass: a call in the loop above, even untaken, slowed it
        for i in range(i0, i1):
            c = flat[rows[i] // LANES * CH * LANES + rows[i] % LANES:]
            _decode_tail(c, off, books, M, n_in, out[i], full, nb, pb)


@njit(cache=True, inline="never")
def _decode_tail(c, off, books, M, n_in, o, j0, nb, pb):  # pragma: no cover - compiled
    d = books.shape[2]
    for j in range(j0, nb):
        w = min(d, n_in - j * d)
        code = c[off[j]]
        for t in range(w):
            o[j * d + t] = books[j * pb, code, t]
        for s in range(1, M):
            code = c[off[j] + np.uint64(s * LANES)]
            for t in range(w):
                o[j * d + t] += books[s, code, t]


@njit(cache=True)
def decode_block_rows(codes, books, M, rows, n_in, out):  # pragma: no cover - compiled
    """Serial twin of decode_block_rows_parallel."""
    _decode_blocks(codes, books, M, rows, n_in, out, 0, rows.shape[0])


@njit(parallel=True, cache=True)
def decode_block_rows_parallel(codes, books, M, rows, n_in, out):  # pragma: no cover
    """Dense rows from PQ/RQ codes into a caller buffer: out[i, j*d:(j+1)*d] = sum over
    stages s < M, in order, of books[s or j, code of row rows[i] at position j*M + s]
    (cropped to n_in).  codes : as lookup_parallel takes them; books : (n_books, K, d);
    rows : (r,) int64; out : (r, n_in) float32."""
    n = rows.shape[0]
    for c in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        _decode_blocks(codes, books, M, rows, n_in, out, c * ROW_CHUNK,
                       min(n, (c + 1) * ROW_CHUNK))


@njit(cache=True, inline="never")
def _decode_scalar_row(codes, codebook, out):  # pragma: no cover - compiled
    n_in = codes.shape[0]
    full = n_in - n_in % LANES
    pairs = n_in - n_in % (2 * LANES)
    K = codebook.shape[0]
    if K == LANES:  # the whole codebook in registers, 2 * LANES codes at a time
        permute_set2(out, codebook, codes, pairs // (2 * LANES))
        for i in range(pairs, full, LANES):
            permute_set(out[i:], codebook, codes[i:])
    else:
        start = 0
        if K == 2 * LANES:  # in registers too
            start = pairs
            permute_set32(out, codebook, codes, pairs // (2 * LANES))
        for i in range(start, full, LANES):  # LANES codes at a time, as one gather
            gather_set(out[i:], codebook, codes[i:])
    for i in range(full, n_in):
        out[i] = codebook[codes[i]]


@njit(cache=True)
def _register_codebook(codebook):  # pragma: no cover - compiled
    """A codebook of at most LANES (or 2 * LANES) entries padded to that many (never
    picked), else itself."""
    K = codebook.shape[0]
    if K > 2 * LANES or K in (LANES, 2 * LANES):
        return codebook
    padded = np.zeros(LANES if K < LANES else 2 * LANES, dtype=np.float32)
    padded[:K] = codebook
    return padded


@njit(cache=True, inline="never")
def _decode_scalar_rows(codes, book, out, r0, r1):  # pragma: no cover - compiled
    """Rows r0 .. r1-1 of decode_scalar_rows."""
    packed = codes.shape[1] != out.shape[1]
    for o in range(r0, r1):
        if packed:
            _decode_nibble_row(codes[o], book, out[o])
        else:
            _decode_scalar_row(codes[o], book, out[o])


@njit(cache=True)
def decode_scalar_rows(codes, codebook, out):  # pragma: no cover - compiled
    """Serial twin of decode_scalar_rows_parallel."""
    _decode_scalar_rows(codes, _register_codebook(codebook), out, 0, codes.shape[0])


@njit(parallel=True, cache=True)
def decode_scalar_rows_parallel(codes, codebook, out):  # pragma: no cover - compiled
    """out[o, i] = codebook[codes[o, i]] into a caller buffer (r, n_in) float32; codes
    C-contiguous rows, one code per element or packed two to a byte (as scalar_dot takes
    them).  A codebook of up to LANES or 2 * LANES entries is held in registers and
    indexed there, 2 * LANES codes at a time (simd.permute_set2, permute_set32; a last
    LANES by permute_set or a gather), a larger one read by gathers."""
    book = _register_codebook(codebook)
    rows = codes.shape[0]
    for c in prange((rows + ROW_CHUNK - 1) // ROW_CHUNK):
        _decode_scalar_rows(codes, book, out, c * ROW_CHUNK, min(rows, (c + 1) * ROW_CHUNK))
