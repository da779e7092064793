"""Normal equations of the codebook refit on calibration statistics."""
from numba import njit, prange

from . import FASTMATH


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def gram_by_unknown(idx, order, starts, H, A):
    """A[p, q] += H[j, j'] for every row i, terms t, t' with idx[t, i, j] = p and
    idx[t', i, j'] = q: the Gram matrix of a decoder in which weight (i, j) is the sum over
    t of the unknowns idx[t, i, j].

    idx (T, out, n) int32 in [0, P); ``order`` lists the flat positions of idx sorted by
    their value, ``starts`` (P + 1) bounds each value's run.  Each row of A is written by
    one task in a fixed order, so the result does not depend on the thread count.
    """
    n_terms, out, n = idx.shape
    for p in prange(A.shape[0]):
        row = A[p]
        for e in range(starts[p], starts[p + 1]):
            pos = order[e]
            j = pos % n
            i = (pos // n) % out
            h = H[j]
            for t in range(n_terms):
                targets = idx[t, i]
                for j2 in range(n):
                    row[targets[j2]] += h[j2]
