"""Canonical Huffman coding: MSB-first bit stream, table-driven decoding."""
import numpy as np
from numba import njit


@njit(cache=True)
def huffman_encode_kernel(symbols, codes, lengths, out):  # pragma: no cover - compiled
    """Write the code of each symbol, most significant bit first.

    symbols : (n,) uint8/uint16; codes : (n_symbols,) uint32 canonical codes; lengths :
    (n_symbols,) uint8 (every symbol present has length >= 1); out : uint8 output with room
    for ceil(sum of lengths / 8) bytes.  Returns the number of bytes written.
    """
    acc = np.uint64(0)
    n_acc = 0
    pos = 0
    for i in range(symbols.shape[0]):
        s = symbols[i]
        ln = np.int64(lengths[s])
        acc = (acc << np.uint64(ln)) | np.uint64(codes[s])
        n_acc += ln
        while n_acc >= 8:
            n_acc -= 8
            out[pos] = np.uint8((acc >> np.uint64(n_acc)) & np.uint64(0xFF))
            pos += 1
    if n_acc > 0:
        out[pos] = np.uint8((acc << np.uint64(8 - n_acc)) & np.uint64(0xFF))
        pos += 1
    return pos


@njit(cache=True)
def huffman_decode_kernel(stream, table_sym, table_len, max_len, out):  # pragma: no cover
    """Decode ``out.shape[0]`` symbols.  table_sym / table_len : (2**max_len,) map every
    max_len-bit prefix to its symbol and code length (0 = no code starts so: corrupt).
    Returns 0 on success, 1 for an invalid code, 2 if the stream ran out."""
    n_bytes = stream.shape[0]
    acc = np.uint64(0)
    n_acc = 0
    pos = 0
    mask = np.uint64((1 << max_len) - 1)
    for i in range(out.shape[0]):
        while n_acc < max_len:
            byte = np.uint64(0)
            if pos < n_bytes:
                byte = np.uint64(stream[pos])
            elif pos >= n_bytes + 8:
                return 2
            acc = (acc << np.uint64(8)) | byte
            pos += 1
            n_acc += 8
        idx = (acc >> np.uint64(n_acc - max_len)) & mask
        ln = table_len[idx]
        if ln == 0:
            return 1
        out[i] = table_sym[idx]
        n_acc -= ln
        acc &= np.uint64((1 << n_acc) - 1)  # n_acc < max_len + 8 <= 24: no overflow
    # every consumed bit must lie inside the stream
    consumed_bits = pos * 8 - n_acc
    if consumed_bits > n_bytes * 8:
        return 2
    return 0
