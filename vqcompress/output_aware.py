"""Output-aware quantization: codes and codebooks chosen for the error of the layer's
output on calibration inputs, ||X (W - Ŵ)ᵀ||² = n tr(ΔW H ΔWᵀ) with H = XᵀX / n, rather
than for the error of the weights.

Three steps, for k-means, product and residual codes alike:
- the codebooks are first learned as usual (k-means codebooks with each weight counted by
  its input's importance, the diagonal of H);
- GPTQ-style sequential assignment (Frantar et al., 2023; for vector codebooks as in
  GPTVQ, van Baalen et al., 2024): the input dimension is quantized one block of
  ``block_size`` columns at a time, the blocks whose inputs carry the most energy first
  (GPTQ's "act order"; whole blocks, so vector codes keep their layout).  With U the upper
  Cholesky factor of the damped H⁻¹ in that order, the codes of block B minimise
  ||(w_B - q) U_BB⁻¹||² (the output error left once the later columns have compensated),
  and the block's error is fed forward into the columns not yet quantized through U;
- the codebooks are refitted for those codes by least squares on H (the M-step of Stock
  et al., 2020, "And the Bit Goes Down"), which never increases the calibrated error.
Assignment and refit alternate for ``rounds`` rounds; the best round is kept.

Private core: the caller passes a finite float32 matrix, an unfitted quantizer of one of
the three kinds, and a valid ``Stats``.
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import scipy.linalg

from . import ecsq
from ._kernels.assign import assign_nearest
from ._kernels.refit import gram_by_unknown
from .errors import InputError
from .quantizers import KMeansQuantizer, ProductQuantizer, ResidualQuantizer
from .quantizers._base import code_dtype
from .quantizers.residual import _beam_encode

BATCH_COLUMNS = 128  # columns updated lazily between two feed-forward products (as GPTQ)


def fit_encode(q, W: np.ndarray, stats, *, damp: float = 0.01, rounds: int = 1):
    """Fit ``q`` on the matrix W (out, in) for the calibrated output error; returns
    (codes, info) with info holding the relative output error before and after."""
    H = stats.hessian()
    if q.__class__ is KMeansQuantizer:
        importance = np.diag(H) + 1e-12 * float(np.diag(H).max())  # caller: max > 0
        q.fit(W, sample_weight=np.broadcast_to(importance, W.shape))
        part = _Scalar(q)
    elif q.__class__ is ProductQuantizer:
        part = _Product(q.fit(W))
    elif q.__class__ is ResidualQuantizer:
        part = _Residual(q.fit(W))
    else:
        raise InputError(f"calibration works with kmeans, pq and rq, not "
                         f"{type(q).__name__}")
    n = part.n_columns
    Wp = np.zeros((W.shape[0], n))
    Wp[:, : W.shape[1]] = W
    Hp = np.zeros((n, n))
    Hp[: H.shape[0], : H.shape[0]] = H
    signal = _output_error(Wp, np.zeros_like(Wp), Hp)
    if getattr(q, "entropy_lambda", 0):
        # entropy-constrained: output error per weight relative to the mean output
        # energy per weight, plus lambda x code length (see vqcompress.ecsq)
        part.penalty = float(q.entropy_lambda) * signal / W.size
        part.lengths = q.code_lengths_.copy()
    plain = _output_error(Wp, part.decode(part.nearest(Wp)), Hp)
    best = None
    for _ in range(rounds):
        codes = _gptq(Wp, Hp, part, damp)
        before = _output_error(Wp, part.decode(codes), Hp)
        c = _refit(Wp, Hp, part.index_maps(codes), part.unknowns())
        kept = part.unknowns()
        part.set_unknowns(c)
        err = _output_error(Wp, part.decode(codes), Hp)
        if err > before:  # only storage rounding can make the refit worse
            part.set_unknowns(kept)
            err = before
        if best is None or err < best[0]:
            best = (err, codes, part.unknowns())
    err, codes, c = best
    part.set_unknowns(c)
    codes = part.finish(codes)
    rel = (lambda e: round(float(e / signal), 8) if signal > 0 else None)
    return codes, {"output_error_nearest": rel(plain), "output_error": rel(err),
                   "calibration_rows": stats.count, "rounds": rounds}


# --- the linear algebra ---------------------------------------------------------------------


# The latest factors by their input: the allocation fits each tensor at every candidate
# setting, in turn, with the same statistics (and, for one block size, the same order).
# At most this many bytes are kept, so a large model's factors are not held after its fits.
_FACTORS: dict = {}
_FACTORS_BYTES = 64 << 20


def _inverse_cholesky(H, damp):
    """Upper U with UᵀU = (H + λI)⁻¹, λ = damp × mean diagonal (dead inputs included);
    a factor computed for the same H and damp moments ago is reused (read-only)."""
    H = np.ascontiguousarray(H)
    key = (hashlib.blake2b(H.view(np.uint8), digest_size=16).digest(), H.shape, float(damp))
    if key in _FACTORS:
        return _FACTORS[key]
    U = _factor(H, damp)
    U.setflags(write=False)
    if U.nbytes <= _FACTORS_BYTES:
        while sum(f.nbytes for f in _FACTORS.values()) + U.nbytes > _FACTORS_BYTES:
            del _FACTORS[next(iter(_FACTORS))]  # the oldest
        _FACTORS[key] = U
    return U


def _factor(H, damp):
    diag = np.diag(H)
    lam = damp * (float(diag.mean()) if diag.any() else 1.0)
    Hd = H + lam * np.eye(H.shape[0])
    for _ in range(4):
        try:
            low = scipy.linalg.cholesky(Hd, lower=True)
            Hinv = scipy.linalg.cho_solve((low, True), np.eye(H.shape[0]))
            return scipy.linalg.cholesky(Hinv, lower=False)
        except np.linalg.LinAlgError:
            lam *= 10
            Hd = H + lam * np.eye(H.shape[0])
    raise InputError("calibration statistics are not positive semi-definite")


def _output_error(W, Q, H):
    D = W - Q
    return float(np.sum((D @ H) * D))


def _block_order(H, d):
    """Blocks of d columns by falling input energy (the diagonal of H summed over the
    block): GPTQ's "act order", at block granularity so vector blocks stay whole."""
    n = H.shape[0]
    energy = np.diag(H).reshape(n // d, d).sum(axis=1)
    return np.argsort(-energy, kind="stable")


def _gptq(W, H, part, damp):
    """Codes for W (out, n), block by block in falling input energy, each block's error
    fed forward into the blocks not yet quantized; returned in the blocks' own order."""
    d = part.d
    order = _block_order(H, d)
    cols = (order[:, None] * d + np.arange(d)).reshape(-1)
    U = _inverse_cholesky(H[np.ix_(cols, cols)], damp)
    W = W[:, cols]  # a copy, updated in place below
    n = W.shape[1]
    batch = max(d, BATCH_COLUMNS // d * d)
    codes = [None] * len(order)
    for b0 in range(0, n, batch):
        b1 = min(b0 + batch, n)
        err = np.empty((W.shape[0], b1 - b0))
        for j0 in range(b0, b1, d):
            j1 = j0 + d
            L = 1.0 / U[j0:j1, j0:j1] if d == 1 else \
                scipy.linalg.solve_triangular(U[j0:j1, j0:j1], np.eye(d), lower=False)
            c, Q = part.assign(W[:, j0:j1], int(order[j0 // d]), L)
            e = (W[:, j0:j1] - Q) @ L
            W[:, j1:b1] -= e @ U[j0:j1, j1:b1]
            err[:, j0 - b0: j1 - b0] = e
            codes[order[j0 // d]] = c
        W[:, b1:] -= err @ U[b0:b1, b1:]
    return np.stack(codes, axis=1)


def _refit(W, H, idx, old):
    """Unknowns c minimising sum_i (W_i - Ŵ_i) H (W_i - Ŵ_i)ᵀ for fixed index maps idx
    (T, out, n), Ŵ[i, j] = sum_t c[idx[t, i, j]]; a small ridge toward ``old`` keeps
    unused unknowns where they were."""
    P = old.size
    flat = idx.reshape(-1)
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(P + 1))
    A = np.zeros((P, P))
    gram_by_unknown(idx, order, starts, np.ascontiguousarray(H), A)
    WH = (W @ H).reshape(-1)
    b = sum(np.bincount(idx[t].reshape(-1), weights=WH, minlength=P) for t in range(len(idx)))
    eps = 1e-9 * max(float(np.trace(A)) / P, 1e-300)
    with warnings.catch_warnings():  # unused unknowns make A singular; the ridge holds them
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        try:
            return scipy.linalg.solve(A + eps * np.eye(P), b + eps * old, assume_a="pos")
        except (np.linalg.LinAlgError, ValueError):
            return scipy.linalg.lstsq(A + eps * np.eye(P), b + eps * old)[0]


# --- one adapter per kind of code: assignment, decoding, unknowns ---------------------------


class _Scalar:
    """k-means weight sharing: one column per block, one shared codebook."""

    d = 1
    penalty = 0.0  # entropy-constrained assignment: per unit of output error, see fit_encode

    def __init__(self, q):
        self.q = q
        self.n_columns = q.shape_[1]  # fitted on the matrix W (out, in)
        self.set_unknowns(q.codebook_.astype(np.float64))

    def set_unknowns(self, c):
        self.book = np.asarray(c, self.q.codebook_.dtype).astype(np.float64)
        self.order = np.argsort(self.book, kind="stable")
        s = self.book[self.order]
        self.mid = 0.5 * (s[1:] + s[:-1])

    def unknowns(self):
        return self.book.copy()

    def nearest(self, W):
        return self.order[np.searchsorted(self.mid, W)]

    def assign(self, Wb, j, L):
        if self.penalty:
            # the column's output error is (w - q)² L², so the length penalty in w units
            pos = ecsq.assign(Wb[:, 0], self.book[self.order], self.lengths[self.order],
                              self.penalty / float(L[0, 0]) ** 2)
            c = self.order[pos]
        else:
            c = self.nearest(Wb[:, 0])
        return c, self.book[c][:, None]

    def decode(self, codes):
        return self.book[codes]

    def index_maps(self, codes):
        return codes.astype(np.int32)[None]

    def finish(self, codes):
        """Store the codebook sorted (as the format wants) and remap the codes."""
        remap = np.empty_like(self.order)
        remap[self.order] = np.arange(self.order.size)
        self.q.codebook_ = self.book[self.order].astype(self.q.codebook_.dtype)
        return remap[codes].astype(code_dtype(self.q.n_bits))


class _Blocks:
    """Shared by product and residual codes: blocks of d columns, books (S, K, d)."""

    def __init__(self, q):
        self.q = q
        self.d = q.block_size
        self.n_columns = q.n_blocks_ * q.block_size
        self.set_unknowns(q.codebooks_.astype(np.float64))

    def set_unknowns(self, c):
        self.books = np.asarray(c, self.q.codebooks_.dtype).astype(np.float64).reshape(
            self.q.codebooks_.shape)

    def unknowns(self):
        return self.books.reshape(-1).copy()

    def _positions(self):
        j = np.arange(self.n_columns)
        return j // self.d, j % self.d

    def finish(self, codes):
        self.q.codebooks_ = self.books.astype(self.q.codebooks_.dtype)
        return codes.astype(code_dtype(self.q.n_bits))


class _Product(_Blocks):
    def assign(self, Wb, j, L):
        book = self.books[j if self.q.codebook_per_block else 0]
        labels = np.empty(Wb.shape[0], np.int32)
        dists = np.empty(Wb.shape[0])
        assign_nearest(np.ascontiguousarray(Wb @ L, np.float32),
                       np.ascontiguousarray(book @ L, np.float32), labels, dists)
        return labels, book[labels]

    def nearest(self, W):
        out = W.shape[0]
        blocks = W.reshape(out, -1, self.d)
        return np.stack([self.assign(blocks[:, j], j, np.eye(self.d))[0]
                         for j in range(blocks.shape[1])], axis=1)

    def decode(self, codes):
        nb = codes.shape[1]
        which = np.arange(nb) if self.q.codebook_per_block else np.zeros(nb, int)
        return self.books[which[None, :], codes].reshape(codes.shape[0], -1)

    def index_maps(self, codes):
        block, pos = self._positions()
        k = self.books.shape[1]
        which = block if self.q.codebook_per_block else 0
        return ((which * k + codes[:, block]) * self.d + pos).astype(np.int32)[None]


class _Residual(_Blocks):
    def assign(self, Wb, j, L):
        codes, _ = _beam_encode(Wb @ L, self.books @ L, self.q.beam_size)
        return codes, self._sum(codes)

    def _sum(self, codes):
        return sum(self.books[s][codes[:, s]] for s in range(self.books.shape[0]))

    def nearest(self, W):
        out = W.shape[0]
        codes, _ = _beam_encode(W.reshape(-1, self.d), self.books, self.q.beam_size)
        return codes.reshape(out, -1, self.books.shape[0])

    def decode(self, codes):
        out, nb, s = codes.shape
        return self._sum(codes.reshape(-1, s)).reshape(out, nb * self.d)

    def index_maps(self, codes):
        block, pos = self._positions()
        n_stages, k = self.books.shape[:2]
        return np.stack([((s * k + codes[:, block, s]) * self.d + pos)
                         for s in range(n_stages)]).astype(np.int32)

