"""Residual quantization: each block is a sum of one codeword from each of several stages."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .._kernels.beam import rq_beam_encode
from .._validation import check_int, rng_from
from ._base import (
    BlockQuantizer,
    as_matrix,
    check_codes,
    code_dtype,
    to_blocks,
    training_sample,
)


class ResidualQuantizer(BlockQuantizer):
    """Residual (additive, stage-wise) quantization of a weight matrix.

    Stage ``s`` has its own codebook of ``2**n_bits`` vectors of ``block_size`` and is
    trained by k-means on the residuals the previous stages leave.  Encoding is a beam
    search keeping the ``beam_size`` best partial sums.  After training, the codebooks of all
    stages are refitted jointly by least squares for the current codes (``n_refine``
    rounds, each followed by re-encoding, kept only while the error falls).

    Parameters
    ----------
    block_size : int
    n_bits : int in [1, 16], bits per stage
    n_stages : int
    beam_size : int
    init, max_iter, tol : k-means settings for each stage
    n_refine : int, rounds of joint least-squares codebook refit
    max_points_per_centroid : int or None, training sample size per codeword (None: all)
    random_state : seed
    codebook_dtype : {'float32', 'float16'}

    Attributes
    ----------
    codebooks_ : ndarray of shape (n_stages, 2**n_bits, block_size)
    in_features_, n_blocks_, shape_, n_weights_
    """

    def __init__(self, block_size=8, n_bits=8, n_stages=2, beam_size=8, init="kmeans++",
                 max_iter=25, tol=1e-4, n_refine=2, max_points_per_centroid=None,
                 random_state=None, codebook_dtype="float32"):
        self.block_size = block_size
        self.n_bits = n_bits
        self.n_stages = n_stages
        self.beam_size = beam_size
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_refine = n_refine
        self.max_points_per_centroid = max_points_per_centroid
        self.random_state = random_state
        self.codebook_dtype = codebook_dtype

    def fit(self, W):
        """Learn the stage codebooks from W of shape (out_features, in_features)."""
        n_bits, d, max_iter, cb_dtype, n_stages, beam, n_refine = self._check_params()
        Wm = as_matrix(W)
        blocks = to_blocks(Wm, d)
        k = 1 << n_bits
        rng = rng_from(self.random_state)
        # one sample for all stages: each stage trains on the residuals of the same blocks
        X = np.ascontiguousarray(training_sample(blocks.reshape(-1, d), k,
                                                 self.max_points_per_centroid, rng))
        books = np.zeros((n_stages, k, d), dtype=np.float32)
        residual = X
        for s in range(n_stages):
            what = "W" if s == 0 else f"W's residuals after stage {s} of {n_stages}"
            books[s] = self._train_codebook(residual, k, max_iter, rng, sample=False,
                                            what=what)
            codes, errs = _beam_encode(X, books[: s + 1], beam)
            residual = X - _reconstruct(books[: s + 1], codes)
        err = errs.sum()
        for _ in range(n_refine):
            new_books = _least_squares_codebooks(X, codes, books)
            new_codes, new_errs = _beam_encode(X, new_books, beam)
            if new_errs.sum() >= err:
                break
            books, codes, err = new_books, new_codes, new_errs.sum()
        self.codebooks_ = books.astype(cb_dtype)
        self.in_features_ = Wm.shape[1]
        self.n_blocks_ = blocks.shape[1]
        self.shape_ = np.shape(W)
        self.n_weights_ = int(Wm.size)
        return self

    _DECODE_PARAMS = BlockQuantizer._DECODE_PARAMS + ("n_stages",)

    def _check_params(self):
        return (*self._check_vector_params(),
                check_int(self.n_stages, name="n_stages", low=1),
                check_int(self.beam_size, name="beam_size", low=1),
                check_int(self.n_refine, name="n_refine", low=0))

    def encode(self, W) -> np.ndarray:
        """Codes of shape (out_features, n_blocks, n_stages), by beam search."""
        self._check_fitted()
        Wm = as_matrix(W)
        self._check_in_features(Wm)
        blocks = to_blocks(Wm, self.block_size)
        out, nb, d = blocks.shape
        codes, _ = _beam_encode(blocks.reshape(-1, d), self.codebooks_.astype(np.float32),
                                self.beam_size)
        return codes.reshape(out, nb, -1).astype(code_dtype(self.n_bits))

    def decode(self, codes) -> np.ndarray:
        """float32 matrix (out_features, in_features) from codes (out, n_blocks, n_stages)."""
        self._check_fitted()
        n_stages, k, d = self.codebooks_.shape
        codes = check_codes(codes, n_entries=k, shape=(None, self.n_blocks_, n_stages))
        rec = _reconstruct(self.codebooks_.astype(np.float32), codes.reshape(-1, n_stages))
        return rec.reshape(codes.shape[0], -1)[:, : self.in_features_]

    def _code_shape(self):
        return (self.n_weights_ // self.in_features_, self.n_blocks_, self.n_stages)

    def _n_books(self):
        return self.n_stages


# --- private core ---------------------------------------------------------------------------


def _beam_encode(X, books, beam):
    """Beam search codes (n, M) int32 and squared errors (n,) for X (n, d) float32."""
    books_t = np.ascontiguousarray(np.transpose(books, (0, 2, 1)).astype(np.float32))
    codes = np.empty((X.shape[0], books.shape[0]), dtype=np.int32)
    errs = np.empty(X.shape[0])
    rq_beam_encode(np.ascontiguousarray(X, dtype=np.float32), books_t, beam, codes, errs)
    return codes, errs


def _reconstruct(books, codes):
    """Sum over stages of the selected codewords: (n, d) from codes (n, M)."""
    out = books[0][codes[:, 0]].astype(np.float32)
    for s in range(1, books.shape[0]):
        out += books[s][codes[:, s]]
    return out


def _least_squares_codebooks(X, codes, books):
    """All stage codebooks refitted jointly for fixed codes.

    Minimises ||X - B C||^2 + eps ||C - C_old||^2 over C (M*K, d), where B is the one-hot
    code matrix; the small ridge keeps unused codewords and fixes the offset that the
    stages could trade between them.  Solved through the (M*K)^2 normal equations.
    """
    n_stages, k, d = books.shape
    size = n_stages * k
    gram = np.zeros((size, size))
    rhs = np.zeros((size, d))
    for s in range(n_stages):
        for t in range(s, n_stages):
            block = np.bincount(codes[:, s] * k + codes[:, t], minlength=k * k).reshape(k, k)
            gram[s * k:(s + 1) * k, t * k:(t + 1) * k] = block
            gram[t * k:(t + 1) * k, s * k:(s + 1) * k] = block.T
        for j in range(d):
            rhs[s * k:(s + 1) * k, j] = np.bincount(codes[:, s], weights=X[:, j], minlength=k)
    eps = 1e-6 * max(np.trace(gram) / size, 1.0)
    old = books.reshape(size, d).astype(np.float64)
    new = scipy.linalg.solve(gram + eps * np.eye(size), rhs + eps * old, assume_a="pos")
    return new.reshape(n_stages, k, d).astype(np.float32)
