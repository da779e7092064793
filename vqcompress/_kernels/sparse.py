"""Sparse codes with relative indices (Deep Compression, Han et al. 2016, section 2).

The nonzero codes of the flattened tensor are stored in order with the gap to the previous
one (the first counts from just before position 0), in ``index_bits`` bits as gap - 1.  A
gap longer than 2**index_bits gets filler entries: code 0 (which decodes to zero) at the
farthest reachable position, as often as needed.  Gaps run across row ends, so an empty
row costs a filler per 2**index_bits positions, not a per-row count.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def sparse_encode_kernel(codes, index_bits, entry_codes, rel):  # pragma: no cover - compiled
    """codes : (n,) uint8/uint16, 0 meaning zero.  entry_codes, rel : outputs with room
    for n entries (same dtype as codes / uint16).  Returns the number of entries written."""
    span = 1 << index_bits
    n = 0
    prev = -1
    for c in range(codes.shape[0]):
        v = codes[c]
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
    return n


@njit(cache=True)
def sparse_decode_kernel(entry_codes, rel, out):  # pragma: no cover - compiled
    """Scatter entries into ``out`` (n,), pre-filled with zeros by the caller.  Returns 0,
    or 1 if the positions run past the end (corrupt stream).  The caller has checked that
    len(entry_codes) == len(rel)."""
    pos = -1
    for e in range(rel.shape[0]):
        pos += np.int64(rel[e]) + 1
        if pos >= out.shape[0]:
            return 1
        out[pos] = entry_codes[e]
    return 0
