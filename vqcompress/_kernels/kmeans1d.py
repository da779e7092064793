"""1-D k-means on sorted, de-duplicated values.

All kernels take the sorted distinct values ``xs`` (m,) float64, centered on their weighted
mean, and the prefix sums of the weights and of weight*x and weight*x^2:
``W, A, B`` (m+1,) float64 with ``W[0] = A[0] = B[0] = 0``.  A cluster is then a
half-open range [lo, hi) of ``xs`` and its mean and squared error cost O(1).
"""
import numpy as np
from numba import njit, prange

from . import CHUNK


@njit(cache=True)
def _sse(W, A, B, lo, hi):  # pragma: no cover - compiled
    """Weighted squared error of xs[lo:hi] around its mean (0 for an empty range)."""
    dw = W[hi] - W[lo]
    if dw <= 0.0:
        return 0.0
    da = A[hi] - A[lo]
    v = B[hi] - B[lo] - da * da / dw
    return v if v > 0.0 else 0.0


@njit(cache=True)
def sorted_lloyd(xs, W, A, B, centers, max_iter, tol):  # pragma: no cover - compiled
    """Lloyd iterations whose cost is O(k log m) each, independent of the number of weights.

    centers : (k,) float64, sorted, in/out (same centered coordinates as xs).
    Needs m >= k (callers check).  An empty cluster takes the upper half of the cluster
    with the largest squared error, split at that cluster's mean.
    Returns the number of iterations run.
    """
    m = xs.shape[0]
    k = centers.shape[0]
    lo = np.empty(k, dtype=np.int64)
    hi = np.empty(k, dtype=np.int64)
    new = np.empty(k)
    it = 0
    while it < max_iter:
        it += 1
        prev = 0
        for j in range(k - 1):
            p = np.searchsorted(xs, 0.5 * (centers[j] + centers[j + 1]), side="right")
            p = max(p, prev)
            lo[j] = prev
            hi[j] = p
            prev = p
        lo[k - 1] = prev
        hi[k - 1] = m
        for e in range(k):
            if hi[e] > lo[e]:
                continue
            s = 0
            worst = -1.0
            for j in range(k):
                v = _sse(W, A, B, lo[j], hi[j])
                if v > worst:
                    worst = v
                    s = j
            mean = (A[hi[s]] - A[lo[s]]) / (W[hi[s]] - W[lo[s]])
            p = lo[s] + np.searchsorted(xs[lo[s]:hi[s]], mean, side="right")
            p = min(max(p, lo[s] + 1), hi[s] - 1)  # both halves keep >= 1 value (m >= k)
            lo[e] = p
            hi[e] = hi[s]
            hi[s] = p
        for j in range(k):
            new[j] = (A[hi[j]] - A[lo[j]]) / (W[hi[j]] - W[lo[j]])
        new.sort()
        shift = 0.0
        for j in range(k):
            shift = max(shift, abs(new[j] - centers[j]))
            centers[j] = new[j]
        if shift <= tol:
            break
    return it


@njit(parallel=True, cache=True)
def label_by_midpoints(x, mids, labels):  # pragma: no cover - compiled
    """labels[i] = number of midpoints strictly below x[i]: the nearest of sorted centers,
    ties to the lower one.  x : (n,) float; mids : (k-1,) float64 sorted; labels : (n,) int32.

    A uniform grid of buckets over [min(x), max(x)] gives each value a starting label; a
    short walk then reaches the exact answer, so rounding at bucket edges cannot matter.
    """
    n = x.shape[0]
    n_mids = mids.shape[0]
    lo = np.float64(x[0])
    hi = lo
    for i in range(n):
        v = np.float64(x[i])
        lo = min(lo, v)
        hi = max(hi, v)
    n_buckets = max(1024, 8 * n_mids)
    scale = n_buckets / (hi - lo) if hi > lo else 0.0
    start = np.empty(n_buckets, dtype=np.int64)
    for b in range(n_buckets):
        start[b] = np.searchsorted(mids, lo + b / scale if scale > 0 else lo, side="left")
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            v = np.float64(x[i])
            b = min(int((v - lo) * scale), n_buckets - 1)
            j = start[b]
            while j > 0 and mids[j - 1] >= v:
                j -= 1
            while j < n_mids and mids[j] < v:
                j += 1
            labels[i] = j


@njit(cache=True)
def dc_tree(m):  # pragma: no cover - compiled
    """The divide-and-conquer recursion over positions 1..m, flattened level by level.

    Returns order (m,) int64 positions in breadth-first order, level_ptr (levels+1,)
    int64 offsets into order, and left, right (m+1,) int64: for position i, the positions
    whose argmins bound its search range (0 and m+1 mean no bound).
    """
    order = np.empty(m, dtype=np.int64)
    left = np.zeros(m + 1, dtype=np.int64)
    right = np.zeros(m + 1, dtype=np.int64)
    level_ptr = np.zeros(64, dtype=np.int64)
    cur_a = np.empty(m + 1, dtype=np.int64)
    cur_b = np.empty(m + 1, dtype=np.int64)
    nxt_a = np.empty(m + 1, dtype=np.int64)
    nxt_b = np.empty(m + 1, dtype=np.int64)
    cur_a[0] = 1
    cur_b[0] = m
    n_cur = 1
    n_out = 0
    n_levels = 0
    while n_cur > 0:
        level_ptr[n_levels] = n_out
        n_levels += 1
        n_nxt = 0
        for t in range(n_cur):
            a = cur_a[t]
            b = cur_b[t]
            mid = (a + b) // 2
            order[n_out] = mid
            n_out += 1
            left[mid] = a - 1
            right[mid] = b + 1
            if a <= mid - 1:
                nxt_a[n_nxt] = a
                nxt_b[n_nxt] = mid - 1
                n_nxt += 1
            if mid + 1 <= b:
                nxt_a[n_nxt] = mid + 1
                nxt_b[n_nxt] = b
                n_nxt += 1
        cur_a, nxt_a = nxt_a, cur_a
        cur_b, nxt_b = nxt_b, cur_b
        n_cur = n_nxt
    level_ptr[n_levels] = n_out
    return order, level_ptr[: n_levels + 1].copy(), left, right


@njit(parallel=True, cache=True)
def optimal_1d(W, A, B, order, level_ptr, left, right, opt, cuts):  # pragma: no cover - compiled
    """Globally optimal 1-D k-means by dynamic programming over the sorted values.

    D[l][i] = min_j D[l-1][j] + sse(j, i) is solved per layer l by divide and conquer on
    the monotone argmin (the cost is concave Monge), level by level so that the positions
    of one level run in parallel; the previous layer's argmin is a second lower bound.
    O(k m log m) time.  order/level_ptr/left/right come from ``dc_tree(m)``.
    opt : (k, m+1) int32 scratch (argmins, kept for backtracking).
    cuts : (k+1,) int64 output, cluster l is xs[cuts[l]:cuts[l+1]].
    Returns the optimal weighted squared error.
    """
    m = W.shape[0] - 1
    k = opt.shape[0]
    prev = np.empty(m + 1)
    cur = np.empty(m + 1)
    for i in range(m + 1):
        prev[i] = _sse(W, A, B, 0, i)
        opt[0, i] = 0
    n_levels = level_ptr.shape[0] - 1
    for lay in range(1, k):  # lay + 1 clusters; position i needs i >= lay + 1
        for i in range(lay + 1):
            cur[i] = np.inf
            opt[lay, i] = lay
        for lev in range(n_levels):
            for t in prange(level_ptr[lev], level_ptr[lev + 1]):
                i = order[t]
                if i <= lay:
                    continue
                jlo = lay
                if left[i] > lay:
                    jlo = max(jlo, opt[lay, left[i]])
                if lay >= 2:
                    jlo = max(jlo, opt[lay - 1, i])
                jhi = i - 1
                if right[i] <= m:
                    jhi = min(jhi, opt[lay, right[i]])
                best = np.inf
                arg = jlo
                for j in range(jlo, jhi + 1):
                    v = prev[j] + _sse(W, A, B, j, i)
                    if v < best:
                        best = v
                        arg = j
                cur[i] = best
                opt[lay, i] = arg
        prev, cur = cur, prev
    cuts[k] = m
    for lay in range(k - 1, 0, -1):
        cuts[lay] = opt[lay, cuts[lay + 1]]
    cuts[0] = 0
    return prev[m]


@njit(cache=True)
def prefix_sums(values, weights, xs, W, A, B):  # pragma: no cover - compiled
    """One pass: centered values and the prefix sums every 1-D kernel works from.

    values : (m,) sorted distinct float32/float64; weights : (m,) float64 (> 0).
    xs : (m,) float64 output, values minus their weighted mean; W, A, B : (m+1,) float64
    outputs, prefix sums of weights, weight*xs and weight*xs^2.  Returns the mean.
    """
    m = values.shape[0]
    tw = 0.0
    tx = 0.0
    for i in range(m):
        tw += weights[i]
        tx += weights[i] * values[i]
    shift = tx / tw
    W[0] = 0.0
    A[0] = 0.0
    B[0] = 0.0
    for i in range(m):
        v = np.float64(values[i]) - shift
        xs[i] = v
        wi = weights[i]
        W[i + 1] = W[i] + wi
        A[i + 1] = A[i] + wi * v
        B[i + 1] = B[i] + wi * v * v
    return shift


@njit(cache=True)
def _beats(F, cnt, W, A, B, new, old, pos, prefer_fewer):  # pragma: no cover - compiled
    """Is ending the previous segment at ``new`` better than at ``old`` for position ``pos``?
    Ties go to the smaller (prefer_fewer) or larger cluster count."""
    vn = F[new] + _sse(W, A, B, new, pos)
    vo = F[old] + _sse(W, A, B, old, pos)
    if vn != vo:
        return vn < vo
    if prefer_fewer:
        return cnt[new] < cnt[old]
    return cnt[new] > cnt[old]


@njit(cache=True)
def penalized_1d(W, A, B, lam, prefer_fewer, F, cnt, arg, dq_j, dq_start):  # pragma: no cover
    """Optimal 1-D clustering with a penalty ``lam`` per cluster and no fixed count.

    F[i] = min_j F[j] + sse(j, i) + lam over prefixes i = 1..m, in O(m log m): because the
    cost is concave Monge, a later candidate j that beats an earlier one at position p beats
    it at every position after p, so the candidates form a deque of dominance intervals
    (found by a galloping search).
    F : (m+1,) float64, cnt, arg : (m+1,) int64, dq_j, dq_start : (m+1,) int64, all scratch
    outputs; arg[i] is the start of the last cluster of the best clustering of prefix i.
    Returns the number of clusters of the solution for the whole range.
    """
    m = W.shape[0] - 1
    F[0] = 0.0
    cnt[0] = 0
    head = 0
    tail = 1
    dq_j[0] = 0
    dq_start[0] = 1
    for i in range(1, m + 1):
        while tail - head > 1 and dq_start[head + 1] <= i:
            head += 1
        j = dq_j[head]
        F[i] = F[j] + _sse(W, A, B, j, i) + lam
        cnt[i] = cnt[j] + 1
        arg[i] = j
        if i == m:
            break
        # candidate i competes for positions i+1..m
        while tail > head:
            s = max(dq_start[tail - 1], i + 1)
            if _beats(F, cnt, W, A, B, i, dq_j[tail - 1], s, prefer_fewer):
                tail -= 1
            else:
                break
        if tail == head:
            dq_j[tail] = i
            dq_start[tail] = i + 1
            tail += 1
            continue
        lo = max(dq_start[tail - 1], i + 1)
        old = dq_j[tail - 1]
        # gallop from lo (the crossing is usually near), then bisect: local memory access
        step = 1
        hi = lo + 1
        while hi <= m and not _beats(F, cnt, W, A, B, i, old, hi, prefer_fewer):
            lo = hi + 1
            step *= 2
            hi = lo + step
        hi = min(hi, m + 1)
        while lo < hi:
            mid = (lo + hi) // 2
            if _beats(F, cnt, W, A, B, i, old, mid, prefer_fewer):
                hi = mid
            else:
                lo = mid + 1
        if lo <= m:
            dq_j[tail] = i
            dq_start[tail] = lo
            tail += 1
    return cnt[m]
