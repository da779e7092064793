"""Fixed-width bit packing: codes of n_bits each, back to back, least significant first."""
import numpy as np
from numba import njit


@njit(cache=True)
def pack_bits(codes, n_bits, out):  # pragma: no cover - compiled
    """codes : (n,) uint8/uint16/int32, each < 2**n_bits; out : (ceil(n*n_bits/8),) uint8."""
    acc = np.uint64(0)
    n_acc = 0
    pos = 0
    for i in range(codes.shape[0]):
        acc |= np.uint64(codes[i]) << np.uint64(n_acc)
        n_acc += n_bits
        while n_acc >= 8:
            out[pos] = np.uint8(acc & np.uint64(0xFF))
            acc >>= np.uint64(8)
            n_acc -= 8
            pos += 1
    if n_acc > 0:
        out[pos] = np.uint8(acc & np.uint64(0xFF))


@njit(cache=True)
def unpack_bits(packed, n_bits, out):  # pragma: no cover - compiled
    """Inverse of pack_bits.  packed : (m,) uint8 with m == ceil(n*n_bits/8) (the caller
    checks); out : (n,) uint8/uint16 output."""
    mask = np.uint64((1 << n_bits) - 1)
    acc = np.uint64(0)
    n_acc = 0
    pos = 0
    for i in range(out.shape[0]):
        while n_acc < n_bits:
            acc |= np.uint64(packed[pos]) << np.uint64(n_acc)
            pos += 1
            n_acc += 8
        out[i] = acc & mask
        acc >>= np.uint64(n_bits)
        n_acc -= n_bits
