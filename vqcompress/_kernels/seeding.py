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
def _trials(Xt, w, rows, closest, out, partial):  # pragma: no cover - compiled
    """For each candidate t: out[t, i] = min(closest[i], ||x_i - x_rows[t]||^2), and
    returns pot[t] = sum_i w[i] * out[t, i].

    Xt : (d, n) float64, the data transposed so the inner loop runs over points
    (vectorised).  All candidates go in one parallel pass; sums go per fixed-size chunk
    (partial : (n_trials, n_chunks)) then in chunk order, independent of the thread count.
    """
    d, n = Xt.shape
    n_trials = rows.shape[0]
    n_chunks = partial.shape[1]
    for c in prange(n_chunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        m = hi - lo
        buf = np.empty(m)
        cl = closest[lo:hi]
        ww = w[lo:hi]
        for t in range(n_trials):
            r = rows[t]
            buf[:] = 0.0
            for j in range(d):
                row = Xt[j, lo:hi]  # 1-D views: Numba vectorises these loops, not 2-D indexing
                xr = Xt[j, r]
                for i in range(m):
                    e = row[i] - xr
                    buf[i] += e * e
            ot = out[t, lo:hi]
            acc = 0.0
            for i in range(m):
                v = min(buf[i], cl[i])
                ot[i] = v
                acc += ww[i] * v
            partial[t, c] = acc
    pots = np.empty(n_trials)
    for t in range(n_trials):
        pots[t] = partial[t].sum()
    return pots


@njit(cache=True)
def kmeans_plusplus(Xt, w, uniforms, centers_idx):  # pragma: no cover - compiled
    """Greedy weighted k-means++ (Arthur & Vassilvitskii; local trials as in scikit-learn).

    Xt : (d, n) float64, the data transposed; w : (n,) float64 sample weights.
    uniforms : (k, n_trials) float64 in [0, 1): row 0, column 0 picks the first center,
        row c >= 1 draws the candidates for center c.
    centers_idx : (k,) int64 output, indices of the points chosen as centers.
    """
    n = Xt.shape[1]
    k, n_trials = uniforms.shape
    partial = np.empty((n_trials, (n + CHUNK - 1) // CHUNK))
    cand_d = np.empty((n_trials, n))
    rows = np.empty(n_trials, dtype=np.int64)
    closest = np.full(n, np.inf)
    cum = np.cumsum(w)
    rows[0] = _pick(cum, uniforms[0, 0] * cum[-1])
    centers_idx[0] = rows[0]
    _trials(Xt, w, rows[:1], closest, cand_d[:1], partial[:1])
    closest[:] = cand_d[0]
    for c in range(1, k):
        cum = np.cumsum(w * closest)
        pot = cum[-1]
        for t in range(n_trials):
            if pot > 0:
                rows[t] = _pick(cum, uniforms[c, t] * pot)
            else:  # every point already coincides with a center: any point will do
                rows[t] = _pick(np.cumsum(w), uniforms[c, t] * np.sum(w))
        pots = _trials(Xt, w, rows, closest, cand_d, partial)
        best = 0
        for t in range(1, n_trials):
            if pots[t] < pots[best]:
                best = t
        centers_idx[c] = rows[best]
        closest[:] = cand_d[best]
