"""Nearest-center assignment and weighted center sums for Lloyd's algorithm."""
import numpy as np
from numba import njit, prange

from . import CHUNK, FASTMATH
from .simd import LANES, nearest1, nearest4


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def assign_nearest(X, centers, labels, dists):  # pragma: no cover - compiled
    """Label each row of X with its nearest center (ties go to the lower index).

    X : (n, d) float32/float64; centers : (k, d) same dtype.
    labels : (n,) int32 output; dists : (n,) float64 output, squared distance to it.
    """
    n, d = X.shape
    k = centers.shape[0]
    kp = (k + LANES - 1) // LANES * LANES
    # Centers transposed, (d, kp): one vector load per group of centers, each on a 64-byte
    # boundary (kp * itemsize is a multiple of 64) so that no load straddles cache lines.
    raw = np.empty(d * kp + 64 // X.itemsize, dtype=X.dtype)
    skip = (-raw.ctypes.data) % 64 // X.itemsize
    ct = raw[skip:skip + d * kp].reshape(d, kp)
    for j in range(d):  # scalar loops: a slice assignment here made the search 2x slower (scratch)
        for t in range(kp):
            ct[j, t] = centers[t if t < k else 0, j]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        i, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        while i + 4 <= hi:
            nearest4(ct, X, i, labels, dists)
            i += 4
        while i < hi:
            nearest1(ct, X, i, labels, dists)
            i += 1


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
