"""Automatic bit allocation: each tensor's setting chosen from a few candidates so that the
total error is least under a whole-file size budget.

Every candidate is measured (compressed for real: its bytes are the bytes it would
write), then chosen by marginal error per byte: on each tensor's lower convex hull of
(bytes, error), the step with the largest error saved per byte added is taken first,
while the budget allows.  That greedy choice is the Lagrangian optimum at the budget it
reaches (Shoham and Gersho, 1988).  The errors are relative: the calibrated output error
over the output's energy when the tensor has calibration statistics, else the weight error
over the weights' energy; each multiplied by the tensor's ``sensitivity`` (default 1),
for callers who have measured how much a tensor's error costs the model's own metric.

Private core, called by ``compress``.
"""
from __future__ import annotations

import heapq

import numpy as np

DEFAULT_CANDIDATES = tuple(f"method:kmeans,bits:{b}" for b in (2, 3, 4, 5, 6, 8))


def relative_error(W, t, stats=None) -> float:
    """The tensor ``t``'s error on W: output-weighted when ``stats`` are given."""
    W = np.asarray(W, np.float64).reshape(W.shape[0], -1)
    D = W - np.asarray(t.decompress(), np.float64).reshape(W.shape)
    if stats is None:
        signal, err = float(np.sum(W * W)), float(np.sum(D * D))
    else:
        H = stats.hessian()
        signal, err = float(np.sum((W @ H) * W)), float(np.sum((D @ H) * D))
    return err / signal if signal > 0 else 0.0


def hull(points: list) -> list:
    """Indices of the lower convex hull of (bytes, error) points, from fewest bytes on,
    with error strictly falling."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    keep = []
    for i in order:
        if keep and points[i][1] >= points[keep[-1]][1]:
            continue  # not better than something no larger
        while len(keep) >= 2:
            (b0, e0), (b1, e1), (b2, e2) = (points[k] for k in (keep[-2], keep[-1], i))
            if (e0 - e1) * (b2 - b1) <= (e1 - e2) * (b1 - b0):
                keep.pop()  # the middle point saves less per byte than going straight on
            else:
                break
        keep.append(i)
    return keep


def choose(points: dict, budget: float) -> dict | None:
    """{name: index into points[name]} of least total error with total bytes <= budget,
    or None when even the smallest candidates exceed it.

    ``points[name]`` lists (bytes, error) per candidate.
    """
    hulls = {n: hull(p) for n, p in points.items()}
    pos = {n: 0 for n in points}
    used = sum(points[n][h[0]][0] for n, h in hulls.items())
    if used > budget:
        return None
    heap = []

    def push(n):
        h, k = hulls[n], pos[n]
        if k + 1 < len(h):
            (b0, e0), (b1, e1) = points[n][h[k]], points[n][h[k + 1]]
            heapq.heappush(heap, (-(e0 - e1) / max(b1 - b0, 1), n))

    for n in points:
        push(n)
    while heap:
        _, n = heapq.heappop(heap)
        h, k = hulls[n], pos[n]
        step = points[n][h[k + 1]][0] - points[n][h[k]][0]
        if used + step > budget:
            continue  # this tensor's next step does not fit; others' may
        used += step
        pos[n] = k + 1
        push(n)
    return {n: hulls[n][pos[n]] for n in points}


def step_down(points: dict, chosen: dict) -> str | None:
    """The tensor whose next smaller hull point costs the least error per byte saved
    (to get back under the budget when the header came out larger than estimated)."""
    best, name = None, None
    for n, i in chosen.items():
        h = hull(points[n])
        k = h.index(i)
        if k == 0:
            continue
        (b0, e0), (b1, e1) = points[n][h[k - 1]], points[n][i]
        cost = (e0 - e1) / max(b1 - b0, 1)
        if best is None or cost < best:
            best, name = cost, n
    if name is not None:
        h = hull(points[name])
        chosen[name] = h[h.index(chosen[name]) - 1]
    return name


def measure_sensitivity(weights: dict, loss, *, probe: str = "method:kmeans,bits:3",
                        calibration=None, names=None, **options) -> dict:
    """{name: sensitivity}: how much the model's own ``loss`` rises per unit of relative
    error in each tensor, for ``compress(..., sensitivity=...)``.

    Each tensor in ``names`` (default: every float tensor of rank >= 2) is compressed alone
    with the ``probe`` spec (and its ``calibration``, if any); ``loss(weights)`` is
    evaluated with that tensor decoded and the others as they are; the sensitivity is
    the rise in loss over the tensor's relative error (measured as the allocation
    measures it), assumed to hold at other settings.  One call of ``loss`` per tensor, plus
    one for the reference (``weights`` itself).  In each probe's dict only the probed
    tensor is a new object, so a loss can recompute just what depends on it
    (benchmarks/bench_minilm.py reruns the encoder from the probed layer up).
    """
    from . import calibration as calib
    from .pipeline import compress

    if isinstance(calibration, str):
        calibration = calib.load(calibration)
    calibration = calibration or {}
    names = [n for n in weights if np.asarray(weights[n]).ndim >= 2 and
             np.asarray(weights[n]).dtype.kind == "f"] if names is None else list(names)
    base = float(loss(weights))
    out = {}
    for name in names:
        W = np.asarray(weights[name])
        cal = {name: calibration[name]} if name in calibration and \
            not isinstance(calibration[name], calib.RowCounts) else None  # counts: hot_rows
        t = compress({name: W}, policy=[f"{name}={probe}"], calibration=cal, **options)[name]
        stats = calib.as_stats(cal[name], name=name, in_features=W.shape[1]) if cal else None
        err = relative_error(W, t, stats)
        rise = float(loss({**weights, name: t.decompress()})) - base
        out[name] = max(rise, 0.0) / err if err > 0 else 0.0
    return out
