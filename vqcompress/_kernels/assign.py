"""Nearest-center assignment and weighted center sums for Lloyd's algorithm."""
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from . import CHUNK, FASTMATH


def argmin_nonneg(buf):  # pragma: no cover - replaced by the overload inside kernels
    """Index of the smallest of non-negative floats (ties: lowest index)."""
    raise NotImplementedError


@overload(argmin_nonneg, jit_options={"fastmath": FASTMATH})
def _argmin_nonneg_impl(buf):
    # Non-negative IEEE floats order like their bit patterns read as integers, and integer
    # min reductions vectorise where float ones do not.  float32: the bits and the index
    # share one int64 key, so a single vector pass finds both (ties: lowest index).
    # float64 leaves no room for the index: one pass for the minimum, one for its index.
    if buf.dtype == types.float32:
        def impl(buf):
            ibuf = buf.view(np.int32)
            key = np.int64(ibuf[0]) << 32
            for t in range(1, ibuf.shape[0]):
                key = min(key, (np.int64(ibuf[t]) << 32) | t)
            return key & 0xFFFFFFFF
        return impl

    def impl(buf):
        ibuf = buf.view(np.int64)
        k = ibuf.shape[0]
        m = ibuf[0]
        for t in range(1, k):
            m = min(m, ibuf[t])
        arg = k
        for t in range(k):
            arg = min(arg, t if ibuf[t] == m else k)
        return arg

    return impl


@njit(cache=True, fastmath=FASTMATH)
def _sq_dists(X, i, ct, buf):  # pragma: no cover - compiled
    """buf[t] = ||X[i] - center t||^2 for centers given transposed, ct : (d, k)."""
    d, k = ct.shape
    for t in range(k):
        buf[t] = 0
    for j in range(d):
        xj = X[i, j]
        for t in range(k):
            diff = ct[j, t] - xj
            buf[t] += diff * diff


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def assign_nearest(X, centers, labels, dists):  # pragma: no cover - compiled
    """Label each row of X with its nearest center (ties go to the lower index).

    X : (n, d) float32/float64; centers : (k, d) same dtype.
    labels : (n,) int32 output; dists : (n,) float64 output, squared distance to it.
    """
    n = X.shape[0]
    k = centers.shape[0]
    ct = np.ascontiguousarray(centers.T)  # (d, k): the inner loop runs over k, vectorised
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        buf = np.empty(k, dtype=X.dtype)
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            _sq_dists(X, i, ct, buf)
            arg = argmin_nonneg(buf)
            labels[i] = arg
            dists[i] = buf[arg]


@njit(cache=True)
def center_sums(X, w, labels, dists, sums, wsum, sse):  # pragma: no cover - compiled
    """Per-cluster weighted sums for the Lloyd update, in float64 and a fixed order.

    X : (n, d); w : (n,) float64; labels : (n,) int32; dists : (n,) float64.
    sums : (k, d) float64 output; wsum : (k,) float64 output; sse : (k,) float64 output
    (weighted squared error of each cluster).
    """
    n, d = X.shape
    sums[:] = 0.0
    wsum[:] = 0.0
    sse[:] = 0.0
    for i in range(n):
        lab = labels[i]
        wi = w[i]
        wsum[lab] += wi
        sse[lab] += wi * dists[i]
        for j in range(d):
            sums[lab, j] += wi * X[i, j]


@njit(cache=True)
def farthest_in_cluster(w, labels, dists, cluster):  # pragma: no cover - compiled
    """Index of the positive-weight point of ``cluster`` farthest from its center, or -1."""
    best = -1.0
    arg = -1
    for i in range(labels.shape[0]):
        if labels[i] == cluster and w[i] > 0 and dists[i] > best:
            best = dists[i]
            arg = i
    return arg
