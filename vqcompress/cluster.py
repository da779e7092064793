"""k-means: validated public functions over the Numba kernels.

``kmeans`` runs Lloyd's algorithm in any dimension; 1-D input (scalar weight sharing)
takes a fast path that sorts the values once and then iterates on prefix sums.
``kmeans_1d_optimal`` returns the globally optimal 1-D clustering by dynamic programming.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._kernels.assign import assign_nearest, center_sums, farthest_in_cluster
from ._kernels.kmeans1d import (
    dc_tree,
    label_by_midpoints,
    optimal_1d,
    penalized_1d,
    prefix_sums,
    sorted_lloyd,
)
from ._kernels.seeding import kmeans_plusplus
from ._validation import as_float_array, as_sample_weight, check_choice, check_int, rng_from
from .errors import InputError, TooFewValuesError

INITS = ("linear", "density", "random", "kmeans++")

# k-means++ seeds from at most this many points per center, drawn at random (Lloyd then
# runs on all of them): each center costs a pass over the points per trial, which made the
# seeding most of a large fit (whole-model PQ: docs/benchmarks.md).  faiss trains on at
# most 256 points per center altogether.
SEED_POINTS_PER_CENTER = 64

# The exact DP keeps one int32 argmin per (cluster, distinct value); refuse beyond this.
_MAX_DP_BYTES = 4 << 30


class KMeansResult(NamedTuple):
    """Result of a k-means run.

    centers : ndarray of shape (n_clusters, n_features), or (n_clusters,) for 1-D input
    labels : ndarray of shape (n_samples,), int32 index of each sample's center
    inertia : float, sum over samples of weight * squared distance to its center
    n_iter : int, Lloyd iterations run (0 for the exact solver)
    """

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def kmeans(X, n_clusters, sample_weight=None, *, init="kmeans++", max_iter=300, tol=1e-4,
           random_state=None, method="auto") -> KMeansResult:
    """Weighted k-means by Lloyd's algorithm.

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Float data.  1-D input is clustered as scalars and returns 1-D centers.
    n_clusters : int
        Number of centers; the data must have at least this many distinct points of
        positive weight.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight of each sample (default all ones).
    init : {'kmeans++', 'linear', 'density', 'random'} or ndarray of shape (n_clusters, n_features)
        'linear' spaces the centers evenly over [min, max] (Deep Compression's choice);
        'density' places them at evenly spaced levels of the weighted CDF (per feature);
        'random' picks distinct samples (Forgy); 'kmeans++' is greedy weighted k-means++
        (on a random subset of ``SEED_POINTS_PER_CENTER`` points per center when there
        are more).
    max_iter : int
        Iteration cap.
    tol : float
        Stop when the centers move less than ``tol`` times the data's standard deviation
        (largest move, 1-D path) or when the sum of squared moves is below ``tol`` times the
        mean per-feature variance (Lloyd path, as scikit-learn).  ``tol=0`` runs
        ``max_iter`` iterations unless the centers stop moving exactly.
    random_state : None, int or numpy Generator
        Seed for 'random' and 'kmeans++'; the same seed gives the same result.
    method : {'auto', 'lloyd', 'sorted'}
        'sorted' is the 1-D fast path (sort once, each iteration O(k log n));
        'auto' uses it for 1-D input.

    Returns
    -------
    KMeansResult
    """
    is_1d = np.ndim(X) == 1
    X = as_float_array(X, name="X", ndim=(1, 2))
    n = X.shape[0]
    w = as_sample_weight(sample_weight, n)
    k = check_int(n_clusters, name="n_clusters", low=1)
    max_iter = check_int(max_iter, name="max_iter", low=1)
    if not np.isfinite(tol) or tol < 0:
        raise InputError(f"tol must be a non-negative number, got {tol!r}")
    check_choice(method, name="method", choices=("auto", "lloyd", "sorted"))
    if isinstance(init, str):
        check_choice(init, name="init", choices=INITS)
    if method == "sorted" and not is_1d:
        raise InputError("method='sorted' needs 1-D X")
    if is_1d and method != "lloyd":
        return _kmeans_sorted(X, w, k, init, max_iter, tol, rng_from(random_state))
    X2 = X.reshape(n, -1)
    _check_enough_points(w, k)
    res = _lloyd(X2, w, k, init, max_iter, tol, rng_from(random_state))
    if is_1d:
        res = res._replace(centers=res.centers[:, 0])
    return res


def kmeans_1d_optimal(x, n_clusters, sample_weight=None) -> KMeansResult:
    """Globally optimal weighted 1-D k-means (dynamic programming over sorted values).

    Parameters
    ----------
    x : array-like of shape (n_samples,)
    n_clusters : int
        Needs at least this many distinct values of positive weight.
    sample_weight : array-like of shape (n_samples,), optional

    Returns
    -------
    KMeansResult
        Centers sorted ascending; the clustering minimises the weighted squared error over
        all partitions (up to float64 rounding).

    Notes
    -----
    For m distinct values, small problems (k*m up to a few million) run the layered dynamic
    program, O(k m log m).  Larger ones use Lagrangian relaxation: the optimal cost is
    convex in the number of clusters (the cost is concave Monge; Aggarwal, Schieber &
    Tokuyama 1994), so a penalty per cluster can be tuned until the unconstrained optimum,
    O(m log m) per penalty, has exactly k clusters.  That is independent of k and needs O(m)
    memory.  When ties leave no penalty with exactly k clusters, the layered program
    settles it.
    """
    x = as_float_array(x, name="x", ndim=1)
    w = as_sample_weight(sample_weight, x.shape[0])
    k = check_int(n_clusters, name="n_clusters", low=1)
    data = _sorted_distinct(x, w, k)
    cuts = _optimal_cuts(data, k)
    centers = (data.A[cuts[1:]] - data.A[cuts[:-1]]) / (data.W[cuts[1:]] - data.W[cuts[:-1]])
    return _finish_1d(x, data, centers, 0)


# --- private core: inputs below are validated --------------------------------------------

# Up to this many (cluster, value) pairs the layered DP is cheaper than the penalty search.
_LAYERED_DP_MAX_CELLS = 4_000_000


def _optimal_cuts(data, k) -> np.ndarray:
    """Boundaries (k+1,) of the optimal clustering of the sorted distinct values."""
    m = data.xs.shape[0]
    if k == 1 or k == m or k * m <= _LAYERED_DP_MAX_CELLS:
        return _layered_dp_cuts(data, k)
    cuts = _penalty_search_cuts(data, k)
    return cuts if cuts is not None else _layered_dp_cuts(data, k)


def _layered_dp_cuts(data, k) -> np.ndarray:
    m = data.xs.shape[0]
    if k * (m + 1) * 4 > _MAX_DP_BYTES:
        raise InputError(
            f"x: exact 1-D k-means with {k} clusters over {m} distinct values hit a tie "
            f"that needs the layered program ({k * (m + 1) * 4 / 2**30:.1f} GiB); use "
            f"kmeans() instead")
    order, level_ptr, left, right = dc_tree(m)
    opt = np.empty((k, m + 1), dtype=np.int32)
    cuts = np.empty(k + 1, dtype=np.int64)
    optimal_1d(data.W, data.A, data.B, order, level_ptr, left, right, opt, cuts)
    return cuts


def _penalty_search_cuts(data, k, max_solves=200):
    """Search the per-cluster penalty whose optimum has exactly k clusters; None on a tie.

    The count falls as the penalty grows, roughly as penalty**(-1/3) (the marginal gain of
    the k-th cluster shrinks like k**-3), so a secant step in log-log space finds it in a few
    solves; bisection in log space guards the bracket.
    """
    m = data.xs.shape[0]
    F = np.empty(m + 1)
    cnt, arg, dq_j, dq_start = (np.empty(m + 1, dtype=np.int64) for _ in range(4))
    total = float(data.B[-1] - data.A[-1] ** 2 / data.W[-1])
    lo_lam, lo_cnt = 0.0, m          # penalty too small: count above k
    hi_lam, hi_cnt = total * 2 + 1e-300, 1  # penalty too large: count below k
    lam = total / k ** 3
    for _ in range(max_solves):
        c = penalized_1d(data.W, data.A, data.B, lam, True, F, cnt, arg, dq_j, dq_start)
        if c > k:
            lo_lam, lo_cnt = lam, c
        elif c == k or penalized_1d(data.W, data.A, data.B, lam, False, F, cnt, arg,
                                    dq_j, dq_start) >= k:
            if cnt[m] != k:  # ties: the fewest is below k, the most is above
                return None
            cuts = np.empty(k + 1, dtype=np.int64)
            cuts[k] = m
            for j in range(k, 0, -1):
                cuts[j - 1] = arg[cuts[j]]
            return cuts
        else:
            hi_lam, hi_cnt = lam, c
        if lo_lam > 0 and hi_lam - lo_lam <= 1e-15 * hi_lam:
            return None
        lam = _next_penalty(lo_lam, lo_cnt, hi_lam, hi_cnt, k)
    return None


def _next_penalty(lo_lam, lo_cnt, hi_lam, hi_cnt, k):
    """Secant step on log(count) against log(penalty), kept inside the bracket."""
    if lo_lam <= 0:
        return hi_lam / 8.0
    a, b = np.log(lo_lam), np.log(hi_lam)
    fa, fb = np.log(lo_cnt), np.log(hi_cnt)
    guess = a + (np.log(k) - fa) * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
    margin = 0.05 * (b - a)
    guess = min(max(guess, a + margin), b - margin)
    return float(np.exp(guess))


class _Sorted1D(NamedTuple):
    xs: np.ndarray      # (m,) float64 distinct values of positive weight, centered, sorted
    W: np.ndarray       # (m+1,) prefix sums of weights
    A: np.ndarray       # (m+1,) prefix sums of weight * xs
    B: np.ndarray       # (m+1,) prefix sums of weight * xs^2
    shift: float        # the weighted mean subtracted from the values


def _sorted_distinct(x, w, k) -> _Sorted1D:
    """Sort once, merge equal values, and build the prefix sums (core: validated input)."""
    keep = w > 0
    if not keep.all():
        x, w = x[keep], w[keep]
    if np.all(w == 1.0):
        xs, ws = np.unique(x, return_counts=True)
    else:
        order = np.argsort(x, kind="stable")
        xsorted = x[order]
        first = np.ones(xsorted.shape[0], dtype=bool)
        first[1:] = xsorted[1:] != xsorted[:-1]
        starts = np.flatnonzero(first)
        xs = xsorted[starts]
        ws = np.add.reduceat(w[order], starts)
    if xs.shape[0] < k:
        raise TooFewValuesError(
            f"x has {xs.shape[0]} distinct values of positive weight, fewer than the "
            f"{k} clusters asked for")
    m = xs.shape[0]
    centered, W, A, B = np.empty(m), np.empty(m + 1), np.empty(m + 1), np.empty(m + 1)
    shift = prefix_sums(xs, np.ascontiguousarray(ws, dtype=np.float64), centered, W, A, B)
    xs = centered
    return _Sorted1D(xs, W, A, B, shift)


def _finish_1d(x, data: _Sorted1D, centers, n_iter) -> KMeansResult:
    """Labels by nearest center and exact inertia, for centers in centered coordinates."""
    centers = np.sort(centers)
    mids = 0.5 * (centers[1:] + centers[:-1]) + data.shift
    labels = np.empty(x.shape[0], dtype=np.int32)
    label_by_midpoints(x, mids, labels)
    # Inertia over the distinct values, from the same prefix sums (O(k log m)).
    cut = np.concatenate([[0], np.searchsorted(data.xs, mids - data.shift, side="left"),
                          [data.xs.shape[0]]])
    dW, dA, dB = (np.diff(P[cut]) for P in (data.W, data.A, data.B))
    inertia = float(np.sum(dB - 2 * centers * dA + centers * centers * dW))
    out = (centers + data.shift).astype(x.dtype)
    return KMeansResult(out, labels, max(inertia, 0.0), n_iter)


def _kmeans_sorted(x, w, k, init, max_iter, tol, rng) -> KMeansResult:
    """1-D Lloyd on sorted values with prefix sums (core: validated input)."""
    data = _sorted_distinct(x, w, k)
    if isinstance(init, str):
        centers = _init_centers(data.xs[:, None], data.W[1:] - data.W[:-1], k, init, rng)[:, 0]
    else:
        centers = _explicit_init(init, k, 1)[:, 0] - data.shift
    centers = np.sort(centers.astype(np.float64))
    std = np.sqrt(max(data.B[-1] / data.W[-1], 0.0))
    n_iter = sorted_lloyd(data.xs, data.W, data.A, data.B, centers, max_iter, tol * std)
    return _finish_1d(x, data, centers, n_iter)


def _check_enough_points(w, k):
    n_pos = int(np.count_nonzero(w))
    if n_pos < k:
        raise TooFewValuesError(f"X has {n_pos} samples of positive weight, fewer than the {k} "
                         f"clusters asked for")


def _explicit_init(init, k, d) -> np.ndarray:
    arr = as_float_array(init, name="init", ndim=(1, 2), dtype=np.float64).reshape(len(init), -1)
    if arr.shape != (k, d):
        raise InputError(f"init: expected shape ({k}, {d}), got {arr.shape}")
    return arr


def _init_centers(X, w, k, init, rng) -> np.ndarray:
    """Initial centers of shape (k, d) float64 (core: validated input)."""
    n, d = X.shape
    if init == "linear":
        lo, hi = X.min(axis=0), X.max(axis=0)
        t = np.linspace(0.0, 1.0, k)[:, None] if k > 1 else np.full((1, 1), 0.5)
        return lo + t * (hi - lo)
    if init == "density":
        levels = (np.arange(k) + 0.5) / k
        out = np.empty((k, d))
        for j in range(d):
            order = np.argsort(X[:, j], kind="stable")
            cdf = np.cumsum(w[order])
            idx = np.searchsorted(cdf, levels * cdf[-1], side="left")
            out[:, j] = X[order[np.minimum(idx, n - 1)], j]
        return out
    pos = np.flatnonzero(w > 0)
    if init == "random":
        return X[np.sort(rng.choice(pos, size=k, replace=False))].astype(np.float64)
    # kmeans++, on a random subset of the points when there are many
    if pos.size > SEED_POINTS_PER_CENTER * k:
        rows = np.sort(rng.choice(pos, size=SEED_POINTS_PER_CENTER * k, replace=False))
        X, w = X[rows], w[rows]
    n_trials = 2 + int(np.log(k))
    uniforms = rng.random((k, n_trials))
    idx = np.empty(k, dtype=np.int64)
    kmeans_plusplus(np.ascontiguousarray(X.T, dtype=np.float64), w, uniforms, idx)
    return X[idx].astype(np.float64)


def _lloyd(X, w, k, init, max_iter, tol, rng) -> KMeansResult:
    """Weighted Lloyd iterations in any dimension (core: validated input, n_pos >= k)."""
    n, d = X.shape
    if isinstance(init, str):
        centers = _init_centers(X, w, k, init, rng)
    else:
        centers = _explicit_init(init, k, d)
    centers = centers.astype(X.dtype)
    wsum_all = w.sum()
    mean = (w @ X) / wsum_all
    var = float(np.sum(w @ (X - mean) ** 2) / wsum_all) / d
    tol_abs = tol * var
    labels = np.empty(n, dtype=np.int32)
    dists = np.empty(n, dtype=np.float64)
    sums = np.empty((k, d))
    wsum = np.empty(k)
    sse = np.empty(k)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        assign_nearest(X, centers, labels, dists)
        center_sums(X, w, labels, dists, sums, wsum, sse)
        empty = wsum <= 0
        new = np.where(empty[:, None], centers, sums / np.where(empty, 1.0, wsum)[:, None])
        for e in np.flatnonzero(empty):
            _reseed(X, w, labels, dists, sse, new, e)
        new = new.astype(X.dtype)
        shift = float(np.sum((new.astype(np.float64) - centers) ** 2))
        centers = new
        if shift <= tol_abs:
            break
    assign_nearest(X, centers, labels, dists)
    inertia = float(w @ dists)
    return KMeansResult(centers, labels, inertia, n_iter)


def _reseed(X, w, labels, dists, sse, centers, empty_idx):
    """Give empty cluster ``empty_idx`` the point farthest from its center in the cluster
    with the largest squared error, splitting that cluster on the next assignment."""
    src = int(np.argmax(sse))
    if sse[src] <= 0:
        raise TooFewValuesError("X has fewer distinct points of positive weight than clusters")
    i = farthest_in_cluster(w, labels, dists, src)
    centers[empty_idx] = X[i]
    sse[src] = 0.0  # the next empty cluster splits another one
    labels[i] = empty_idx
