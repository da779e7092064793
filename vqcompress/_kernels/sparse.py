"""Sparse rows with relative indices (Deep Compression, Han et al. 2016, section 2).

Each row's nonzero codes are stored in order with the gap to the previous one (the first
counts from just before the row start), in ``index_bits`` bits as gap - 1.  A gap longer
than 2**index_bits gets filler entries: code 0 (which decodes to zero) at the farthest
reachable position, as often as needed.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def sparse_encode_kernel(codes, index_bits, entry_codes, rel, row_counts):  # pragma: no cover
    """codes : (rows, cols) uint8/uint16, 0 meaning zero.  entry_codes, rel : outputs with
    room for rows * cols entries (same dtypes as codes / uint16); row_counts : (rows,)
    uint32 output.  Returns the number of entries written."""
    rows, cols = codes.shape
    span = 1 << index_bits
    n = 0
    for r in range(rows):
        start = n
        prev = -1
        for c in range(cols):
            v = codes[r, c]
            if v == 0:
                continue
            gap = c - prev
            while gap > span:
                entry_codes[n] = 0
                rel[n] = span - 1
                n += 1
                prev += span
                gap -= span
            entry_codes[n] = v
            rel[n] = gap - 1
            n += 1
            prev = c
        row_counts[r] = n - start
    return n


@njit(cache=True)
def sparse_decode_kernel(entry_codes, rel, row_counts, out):  # pragma: no cover - compiled
    """Scatter entries into ``out`` (rows, cols), pre-filled with zeros by the caller.
    Returns 0, or 1 if a row's positions run past its end (corrupt stream).  The caller
    has checked that sum(row_counts) == len(entry_codes) == len(rel)."""
    rows, cols = out.shape
    e = 0
    for r in range(rows):
        pos = -1
        for _ in range(row_counts[r]):
            pos += np.int64(rel[e]) + 1
            if pos >= cols:
                return 1
            out[r, pos] = entry_codes[e]
            e += 1
    return 0
