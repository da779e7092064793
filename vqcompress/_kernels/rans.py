"""Byte-wise rANS (range asymmetric numeral systems), 32-bit state, static model."""
import numpy as np
from numba import njit

RANS_L = 1 << 23  # lower bound of the normalised state


@njit(cache=True)
def rans_encode_kernel(symbols, freq, cum, scale_bits, out):  # pragma: no cover - compiled
    """Encode symbols in reverse into the end of ``out`` and return the start offset of the
    stream (the stream is out[start:]).  freq, cum : (n_symbols,) uint32, quantised
    frequencies summing to 2**scale_bits and their exclusive prefix sums; every symbol
    present has freq >= 1.  ``out`` needs room for the worst case (callers allocate
    n * (scale_bits / 8 + 1) + 8 bytes)."""
    x = np.uint64(RANS_L)
    pos = out.shape[0]
    for i in range(symbols.shape[0] - 1, -1, -1):
        s = symbols[i]
        f = np.uint64(freq[s])
        x_max = np.uint64(((RANS_L >> scale_bits) << 8)) * f
        while x >= x_max:
            pos -= 1
            out[pos] = np.uint8(x & np.uint64(0xFF))
            x >>= np.uint64(8)
        x = ((x // f) << np.uint64(scale_bits)) + (x % f) + np.uint64(cum[s])
    for _ in range(4):
        pos -= 1
        out[pos] = np.uint8(x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return pos


@njit(cache=True)
def rans_decode_kernel(stream, freq, cum, slot_sym, scale_bits, out):  # pragma: no cover
    """Decode out.shape[0] symbols.  slot_sym : (2**scale_bits,) symbol of each slot.
    Returns 0 on success, 2 if the stream ran out, 3 if the final state is not the
    initial one (corrupt stream)."""
    n = stream.shape[0]
    if n < 4:
        return 2
    x = np.uint64(0)
    for k in range(4):  # the state was written little end last, read it big end first
        x = (x << np.uint64(8)) | np.uint64(stream[k])
    pos = 4
    mask = np.uint64((1 << scale_bits) - 1)
    for i in range(out.shape[0]):
        slot = x & mask
        s = slot_sym[slot]
        out[i] = s
        x = np.uint64(freq[s]) * (x >> np.uint64(scale_bits)) + slot - np.uint64(cum[s])
        while x < np.uint64(RANS_L):
            if pos >= n:
                return 2
            x = (x << np.uint64(8)) | np.uint64(stream[pos])
            pos += 1
    if x != np.uint64(RANS_L) or pos != n:
        return 3
    return 0
