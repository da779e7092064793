"""Entropy-constrained scalar quantization (Chou, Lookabaugh and Gray, 1989): each value
takes the codeword of least squared error plus ``penalty`` × its code length in bits,
so frequent codewords grow wide decision intervals, rare ones narrow or none, and the
entropy coder (Huffman or rANS) then stores the codes in fewer bits than their width.

For a sorted codebook c and lengths l, the cost of codeword k at x is
x² - 2 c_k x + c_k² + penalty l_k: lines in x, so the decision regions are the pieces of
their lower envelope, in codebook order, found once per codebook (``envelope``) and then
applied to all values with the sorted-threshold labelling kernel.

Private core: inputs are finite, the codebook sorted.
"""
from __future__ import annotations

import numpy as np

from ._kernels.kmeans1d import label_by_midpoints


def code_lengths(codes: np.ndarray, k: int, weights=None) -> np.ndarray:
    """-log2 of each codeword's share (a codeword never used costs as if seen once)."""
    counts = np.bincount(codes.reshape(-1), weights=weights, minlength=k).astype(np.float64)
    floor = counts.sum() / max(codes.size, 1)  # one (average-weight) occurrence
    return -np.log2(np.maximum(counts, floor) / max(counts.sum(), floor))


def envelope(book: np.ndarray, lengths: np.ndarray, penalty: float):
    """(thresholds, ids): values below thresholds[0] take codeword ids[0], between
    thresholds[i-1] and thresholds[i] ids[i], ...; ``book`` sorted ascending."""
    a = -2.0 * book
    b = book * book + penalty * lengths
    ids, cuts = [], []
    for k in range(book.shape[0]):
        if ids and book[k] == book[ids[-1]]:
            if b[k] >= b[ids[-1]]:
                continue  # same line, higher: never chosen
            ids.pop()
            if cuts:
                cuts.pop()
        while ids:
            j = ids[-1]
            x = (b[k] - b[j]) / (a[j] - a[k])  # where line k starts to win over line j
            if cuts and x <= cuts[-1]:
                ids.pop()
                cuts.pop()
                continue
            cuts.append(x)
            break
        ids.append(k)
    return np.asarray(cuts, np.float64), np.asarray(ids, np.int64)


def assign(x: np.ndarray, book: np.ndarray, lengths: np.ndarray, penalty: float) -> np.ndarray:
    """Codes (int64, like x's shape) of least (x - c)² + penalty × length, ties to the
    lower codeword."""
    cuts, ids = envelope(book, lengths, penalty)
    flat = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    labels = np.empty(flat.shape[0], dtype=np.int32)
    if flat.size:
        label_by_midpoints(flat, cuts, labels)
    return ids[labels].reshape(np.shape(x))


def fit(x: np.ndarray, w: np.ndarray, book: np.ndarray, lam: float, *, max_iter: int = 30):
    """Lloyd iterations for the entropy-constrained cost from a sorted ``book``: assign,
    re-estimate lengths and centroids (weighted means), until the codes settle.
    ``lam`` is relative: the penalty is lam × the weighted mean of x².  Returns
    (book sorted, lengths, penalty): what ``assign`` then needs."""
    scale = float(np.average(x * x, weights=w)) or 1.0
    k = book.shape[0]
    lengths = np.full(k, np.log2(k))
    codes = None
    for _ in range(max_iter):
        new = assign(x, book, lengths, lam * scale)
        if codes is not None and np.array_equal(new, codes):
            break
        codes = new
        lengths = code_lengths(codes, k, w)
        mass = np.bincount(codes, weights=w, minlength=k)
        sums = np.bincount(codes, weights=w * x, minlength=k)
        book = np.where(mass > 0, sums / np.where(mass > 0, mass, 1), book)
        order = np.argsort(book, kind="stable")
        book, lengths = book[order], lengths[order]
        remap = np.empty(k, np.int64)
        remap[order] = np.arange(k)
        codes = remap[codes]
    return book, lengths, lam * scale
