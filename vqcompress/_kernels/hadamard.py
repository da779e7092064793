"""Fast Walsh-Hadamard transform along the last axis, in blocks of a power of two."""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def fwht_rows(X, block):
    """In place: each row of X (n, m) is cut into m / block consecutive blocks and each
    block replaced by its orthonormal Walsh-Hadamard transform (H_block / sqrt(block),
    Sylvester order).  ``block`` is a power of two dividing m.  Rows are independent, so
    the result does not depend on the thread count."""
    n, m = X.shape
    scale = 1.0 / np.sqrt(block)
    for i in prange(n):
        row = X[i]
        for b0 in range(0, m, block):
            h = 1
            while h < block:
                for s in range(b0, b0 + block, 2 * h):
                    for j in range(s, s + h):
                        a = row[j]
                        c = row[j + h]
                        row[j] = a + c
                        row[j + h] = a - c
                h *= 2
            for j in range(b0, b0 + block):
                row[j] *= scale
