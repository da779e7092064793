"""Beam-search encoding for residual quantization."""
import numpy as np
from numba import njit, prange

from . import FASTMATH

_BEAM_CHUNK = 64


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def rq_beam_encode(X, codebooks_t, beam_size, codes, errs):  # pragma: no cover - compiled
    """Encode each row of X as a sum of one codeword per stage, keeping the ``beam_size``
    best partial sums after every stage.

    X : (n, d) float32/float64.
    codebooks_t : (M, d, K) same dtype, stage codebooks transposed (inner loop over K).
    codes : (n, M) int32 output; errs : (n,) float64 output, squared error of the result.
    """
    n, d = X.shape
    n_stages, _, k = codebooks_t.shape
    n_chunks = (n + _BEAM_CHUNK - 1) // _BEAM_CHUNK
    for c in prange(n_chunks):
        res = np.empty((beam_size, d), dtype=X.dtype)
        res_new = np.empty((beam_size, d), dtype=X.dtype)
        bcodes = np.zeros((beam_size, n_stages), dtype=np.int32)
        bcodes_new = np.zeros((beam_size, n_stages), dtype=np.int32)
        cand = np.empty(k, dtype=X.dtype)
        top_err = np.empty(beam_size)
        top_parent = np.empty(beam_size, dtype=np.int64)
        top_code = np.empty(beam_size, dtype=np.int64)
        for i in range(c * _BEAM_CHUNK, min(n, (c + 1) * _BEAM_CHUNK)):
            for j in range(d):
                res[0, j] = X[i, j]
            n_beam = 1
            for s in range(n_stages):
                n_top = 0
                for b in range(n_beam):
                    for t in range(k):
                        cand[t] = 0
                    for j in range(d):
                        rj = res[b, j]
                        for t in range(k):
                            diff = rj - codebooks_t[s, j, t]
                            cand[t] += diff * diff
                    for t in range(k):
                        e = np.float64(cand[t])
                        if n_top == beam_size and e >= top_err[n_top - 1]:
                            continue
                        # insertion into the sorted top list (stable: earlier wins ties)
                        pos = n_top if n_top < beam_size else beam_size - 1
                        while pos > 0 and top_err[pos - 1] > e:
                            if pos < beam_size:
                                top_err[pos] = top_err[pos - 1]
                                top_parent[pos] = top_parent[pos - 1]
                                top_code[pos] = top_code[pos - 1]
                            pos -= 1
                        top_err[pos] = e
                        top_parent[pos] = b
                        top_code[pos] = t
                        if n_top < beam_size:
                            n_top += 1
                for b in range(n_top):
                    p = top_parent[b]
                    t = top_code[b]
                    for j in range(d):
                        res_new[b, j] = res[p, j] - codebooks_t[s, j, t]
                    for q in range(s):
                        bcodes_new[b, q] = bcodes[p, q]
                    bcodes_new[b, s] = t
                res, res_new = res_new, res
                bcodes, bcodes_new = bcodes_new, bcodes
                n_beam = n_top
            for q in range(n_stages):
                codes[i, q] = bcodes[0, q]
            e = 0.0
            for j in range(d):
                e += np.float64(res[0, j]) * np.float64(res[0, j])
            errs[i] = e
