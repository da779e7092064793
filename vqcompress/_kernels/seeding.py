"""k-means++ seeding (greedy variant, with sample weights), driven by pre-drawn uniforms."""
import numpy as np
from numba import njit, prange

from . import CHUNK


@njit(cache=True)
def _pick(cum, r):  # pragma: no cover - compiled
    """First index whose cumulative weight exceeds r (clipped to the last index)."""
    i = np.searchsorted(cum, r, side="right")
    return min(i, cum.shape[0] - 1)


@njit(parallel=True, cache=True)
def _sq_dist_to(X, row, out):  # pragma: no cover - compiled
    """out[i] = ||X[i] - X[row]||^2 in float64.  X : (n, d); out : (n,) float64."""
    n, d = X.shape
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            s = 0.0
            for j in range(d):
                diff = np.float64(X[i, j]) - np.float64(X[row, j])
                s += diff * diff
            out[i] = s


@njit(cache=True)
def kmeans_plusplus(X, w, uniforms, centers_idx):  # pragma: no cover - compiled
    """Greedy weighted k-means++ (Arthur & Vassilvitskii; local trials as in scikit-learn).

    X : (n, d); w : (n,) float64 sample weights.
    uniforms : (k, n_trials) float64 in [0, 1): row 0, column 0 picks the first center,
        row c >= 1 draws the candidates for center c.
    centers_idx : (k,) int64 output, row indices of X chosen as centers.
    """
    n = X.shape[0]
    k, n_trials = uniforms.shape
    cum = np.cumsum(w)
    first = _pick(cum, uniforms[0, 0] * cum[-1])
    centers_idx[0] = first
    closest = np.empty(n)
    _sq_dist_to(X, first, closest)
    cand_d = np.empty(n)
    best_d = np.empty(n)
    for c in range(1, k):
        cum = np.cumsum(w * closest)
        pot = cum[-1]
        best_pot = np.inf
        best_idx = -1
        for t in range(n_trials):
            if pot > 0:
                cand = _pick(cum, uniforms[c, t] * pot)
            else:  # every point already coincides with a center: any point will do
                cand = _pick(np.cumsum(w), uniforms[c, t] * np.sum(w))
            _sq_dist_to(X, cand, cand_d)
            new_pot = 0.0
            for i in range(n):
                cand_d[i] = min(cand_d[i], closest[i])
                new_pot += w[i] * cand_d[i]
            if new_pot < best_pot:
                best_pot = new_pot
                best_idx = cand
                best_d[:] = cand_d
        centers_idx[c] = best_idx
        closest[:] = best_d
