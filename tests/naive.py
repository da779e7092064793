"""Slow, obviously-correct numpy versions of every kernel, used as oracles in the tests."""
import itertools

import numpy as np


def assign_nearest(X, C):
    """labels (first minimum) and squared distances, from the full distance matrix."""
    D = ((X[:, None, :].astype(np.float64) - C[None, :, :].astype(np.float64)) ** 2).sum(-1)
    labels = D.argmin(axis=1)
    return labels, D[np.arange(X.shape[0]), labels]


def center_sums(X, w, labels, k):
    sums = np.zeros((k, X.shape[1]))
    wsum = np.zeros(k)
    for i in range(X.shape[0]):
        sums[labels[i]] += w[i] * X[i]
        wsum[labels[i]] += w[i]
    return sums, wsum


def lloyd(X, w, centers, n_iter):
    """Plain weighted Lloyd from given centers (test data never empties a cluster)."""
    C = centers.astype(np.float64)
    for _ in range(n_iter):
        labels, _ = assign_nearest(X, C)
        sums, wsum = center_sums(X, w, labels, C.shape[0])
        assert (wsum > 0).all(), "naive lloyd: empty cluster"
        C = sums / wsum[:, None]
    return C


def inertia(X, w, C):
    _, d = assign_nearest(X.reshape(X.shape[0], -1), C.reshape(C.shape[0], -1))
    return float(w @ d)


def optimal_1d_brute(x, w, k):
    """Minimum weighted squared error over *all* assignments of n points to k labels."""
    best = np.inf
    for labels in itertools.product(range(k), repeat=len(x)):
        labels = np.array(labels)
        if len(set(labels)) < k:
            continue
        cost = 0.0
        for c in range(k):
            m = labels == c
            mu = (w[m] @ x[m]) / w[m].sum()
            cost += w[m] @ (x[m] - mu) ** 2
        best = min(best, cost)
    return best


def optimal_1d_dp(x, w, k):
    """O(k n^2) dynamic programming over sorted values: the textbook recurrence, with each
    segment's error computed directly around its own mean."""
    order = np.argsort(x)
    xs, ws = x[order].astype(np.float64), w[order].astype(np.float64)
    n = len(xs)
    cost = np.full((n + 1, n + 1), np.inf)  # cost[j, i]: points j..i-1
    for j in range(n):
        for i in range(j + 1, n + 1):
            ww, xx = ws[j:i], xs[j:i]
            cost[j, i] = ww @ (xx - ww @ xx / ww.sum()) ** 2
    D = np.full(n + 1, np.inf)
    D[0] = 0.0
    for _ in range(k):
        D = np.min(D[:, None] + cost, axis=0)
    return D[n]


def kmeans_plusplus(X, w, uniforms):
    """Greedy weighted k-means++ consuming the uniforms exactly as the kernel does."""
    X = X.astype(np.float64)
    k, n_trials = uniforms.shape

    def pick(cum, r):
        return min(int(np.searchsorted(cum, r, side="right")), len(cum) - 1)

    cum = np.cumsum(w)
    idx = [pick(cum, uniforms[0, 0] * cum[-1])]
    closest = ((X - X[idx[0]]) ** 2).sum(1)
    for c in range(1, k):
        cum = np.cumsum(w * closest)
        best = (np.inf, None, None)
        for t in range(n_trials):
            cand = pick(cum, uniforms[c, t] * cum[-1])
            d = np.minimum(((X - X[cand]) ** 2).sum(1), closest)
            pot = w @ d
            if pot < best[0]:
                best = (pot, cand, d)
        idx.append(best[1])
        closest = best[2]
    return np.array(idx)


def beam_search(X, books, beam):
    """Residual beam search with plain numpy: codes (n, M) and squared errors."""
    n_stages, k, _ = books.shape
    codes = np.zeros((X.shape[0], n_stages), dtype=np.int64)
    errs = np.zeros(X.shape[0])
    for i, x in enumerate(X.astype(np.float64)):
        beams = [((), x)]
        for s in range(n_stages):
            cands = []
            for b, (c, r) in enumerate(beams):
                for t in range(k):
                    res = r - books[s, t]
                    cands.append((float(res @ res), b, t, c + (t,), res))
            cands.sort(key=lambda z: (z[0], z[1], z[2]))
            beams = [(z[3], z[4]) for z in cands[:beam]]
        codes[i] = beams[0][0]
        errs[i] = beams[0][1] @ beams[0][1]
    return codes, errs


def uniform_roundtrip(W, n_bits, group, symmetric):
    """Min/max uniform quantization, one group at a time (float16 scales)."""
    out = np.empty_like(W, dtype=np.float64)
    rows, cols = W.shape
    g = cols if group == "channel" else group
    for r in range(rows):
        for s in range(0, cols, g):
            v = W[r, s:s + g].astype(np.float64)
            if symmetric:
                ext = v[np.argmax(np.abs(v))]
                scale = float(np.float16(ext / -(1 << (n_bits - 1))))
                q = np.clip(np.rint(v / scale), -(1 << (n_bits - 1)), (1 << (n_bits - 1)) - 1)
                out[r, s:s + g] = q * scale
            else:
                lo, hi = min(v.min(), 0.0), max(v.max(), 0.0)
                scale = float(np.float16((hi - lo) / ((1 << n_bits) - 1)))
                z = np.clip(np.rint(-lo / scale), 0, (1 << n_bits) - 1)
                q = np.clip(np.rint(v / scale) + z, 0, (1 << n_bits) - 1)
                out[r, s:s + g] = (q - z) * scale
    return out


def huffman_total_bits(freqs):
    """Size in bits of an optimal (unlimited) Huffman code: the sum of all merge weights."""
    import heapq
    heap = [int(f) for f in freqs if f > 0]
    if len(heap) == 1:
        return heap[0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        total += a + b
        heapq.heappush(heap, a + b)
    return total


def bert_sentence(w, ids, n_layers, n_heads, eps=1e-12):
    """One unpadded sentence through a BERT encoder, mean pooled and normalised: float64,
    one head at a time, erf GELU from math (the oracle for the batched numpy encoder)."""
    import math

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        return x @ w[name + ".weight"].astype(np.float64).T + w[name + ".bias"]

    w = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    d = x.shape[1] // n_heads
    for i in range(n_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + s) for s in ("query", "key", "value"))
        ctx = np.zeros_like(x)
        for h in range(n_heads):
            sl = slice(h * d, (h + 1) * d)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(d)
            a = np.exp(s - s.max(1, keepdims=True))
            ctx[:, sl] = (a / a.sum(1, keepdims=True)) @ v[:, sl]
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        hid = lin(x, p + "intermediate.dense")
        hid = np.vectorize(lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))))(hid)
        x = ln(lin(hid, p + "output.dense") + x, p + "output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)
