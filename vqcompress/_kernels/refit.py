"""Normal equations of the codebook refit on calibration statistics."""
import numpy as np
from numba import njit, prange

from . import FASTMATH


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def gram_by_unknown(idx, order, starts, H, A):
    """A[p, q] += H[j, j'] for every row i, terms t, t' with idx[t, i, j] = p and
    idx[t', i, j'] = q: the Gram matrix of a decoder in which weight (i, j) is the sum over
    t of the unknowns idx[t, i, j].

    idx (T, out, n) int32 in [0, P); ``order`` lists the flat positions of idx sorted by
    their value (stably, so a row's positions come together), ``starts`` (P + 1) bounds
    each value's run.  For each unknown p and row i, the rows H[j] of the positions j where
    p appears are first summed as whole vectors, then scattered once through the row's
    index maps: one scatter per (p, i) instead of one per position, whose adds to the few
    entries of a small codebook waited on each other.  Each row of A is written by one task
    in a fixed order, so the result does not depend on the thread count.
    """
    n_terms, out, n = idx.shape
    for p in prange(A.shape[0]):
        row = A[p]
        g = np.zeros(n)
        e = starts[p]
        while e < starts[p + 1]:
            i = (order[e] // n) % out
            g[:] = 0.0
            while e < starts[p + 1] and (order[e] // n) % out == i:
                h = H[order[e] % n]
                for j2 in range(n):
                    g[j2] += h[j2]
                e += 1
            for t in range(n_terms):
                targets = idx[t, i]
                for j2 in range(n):
                    row[targets[j2]] += g[j2]
