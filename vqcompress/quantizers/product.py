"""Product quantization: each block of ``block_size`` consecutive input weights is one code."""
from __future__ import annotations

import numpy as np

from .._kernels.assign import assign_nearest
from .._validation import rng_from
from ._base import (
    BlockQuantizer,
    as_matrix,
    check_codes,
    code_dtype,
    to_blocks,
)


class ProductQuantizer(BlockQuantizer):
    """Product quantization of a weight matrix (out_features, in_features).

    Blocks run along the input dimension (block ``j`` of a row meets block ``j`` of the
    input), which is what lookup-table inference needs.  The input dimension is zero-padded
    to a multiple of ``block_size``.

    Parameters
    ----------
    block_size : int
        Weights per block (vector dimension).
    n_bits : int in [1, 16]
        Each codebook has ``2**n_bits`` entries.
    codebook_per_block : bool
        False (default): one codebook shared by the whole tensor.  True: one codebook per
        block position (as faiss's ProductQuantizer).
    init : {'kmeans++', 'random', 'linear', 'density'}
    max_iter, tol : Lloyd settings (default 25 iterations, as faiss).
    max_points_per_centroid : int or None
        Train on a random sample of at most this many blocks per codeword (None: all).
    random_state : seed.
    codebook_dtype : {'float32', 'float16'}

    Attributes
    ----------
    codebooks_ : ndarray of shape (n_codebooks, 2**n_bits, block_size)
    in_features_, n_blocks_ : int
    shape_ : tuple, n_weights_ : int
    """

    def __init__(self, block_size=8, n_bits=8, codebook_per_block=False, init="kmeans++",
                 max_iter=25, tol=1e-4, max_points_per_centroid=None, random_state=None,
                 codebook_dtype="float32"):
        self.block_size = block_size
        self.n_bits = n_bits
        self.codebook_per_block = codebook_per_block
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.max_points_per_centroid = max_points_per_centroid
        self.random_state = random_state
        self.codebook_dtype = codebook_dtype

    def fit(self, W):
        """Learn the codebook(s) from W of shape (out_features, in_features) (or N-D, see
        ``as_matrix``)."""
        n_bits, d, max_iter, cb_dtype = self._check_params()
        Wm = as_matrix(W)
        blocks = to_blocks(Wm, d)  # (out, nb, d)
        out, nb, _ = blocks.shape
        k = 1 << n_bits
        rng = rng_from(self.random_state)
        groups = [blocks[:, j, :] for j in range(nb)] if self.codebook_per_block \
            else [blocks.reshape(-1, d)]
        books = [self._train_codebook(X, k, max_iter, rng,
                                      what=f"W, block column {j}" if len(groups) > 1 else "W")
                 for j, X in enumerate(groups)]
        self.codebooks_ = np.stack(books).astype(cb_dtype)
        self.in_features_ = Wm.shape[1]
        self.n_blocks_ = nb
        self.shape_ = np.shape(W)
        self.n_weights_ = int(Wm.size)
        return self

    _DECODE_PARAMS = BlockQuantizer._DECODE_PARAMS + ("codebook_per_block",)

    def _check_params(self):
        return self._check_vector_params()

    def encode(self, W) -> np.ndarray:
        """Codes of shape (out_features, n_blocks): the nearest codeword of each block."""
        self._check_fitted()
        Wm = as_matrix(W)
        self._check_in_features(Wm)
        blocks = to_blocks(Wm, self.block_size)
        out, nb, d = blocks.shape
        labels = np.empty((nb, out) if self.codebook_per_block else out * nb, dtype=np.int32)
        dists = np.empty(out if self.codebook_per_block else out * nb)
        books = self.codebooks_.astype(np.float32)
        if self.codebook_per_block:
            for j in range(nb):
                assign_nearest(np.ascontiguousarray(blocks[:, j, :]), books[j], labels[j], dists)
            labels = labels.T
        else:
            assign_nearest(blocks.reshape(-1, d), books[0], labels, dists)
        return labels.reshape(out, nb).astype(code_dtype(self.n_bits))

    def decode(self, codes) -> np.ndarray:
        """float32 matrix (out_features, in_features) from codes (out_features, n_blocks)."""
        self._check_fitted()
        codes = check_codes(codes, n_entries=self.codebooks_.shape[1],
                            shape=(None, self.n_blocks_))
        books = self.codebooks_.astype(np.float32)
        if self.codebook_per_block:
            blocks = books[np.arange(self.n_blocks_)[None, :], codes]
        else:
            blocks = books[0][codes]
        return blocks.reshape(codes.shape[0], -1)[:, : self.in_features_]

    def _code_shape(self):
        return (self.n_weights_ // self.in_features_, self.n_blocks_)

    def _n_books(self):
        return self.n_blocks_ if self.codebook_per_block else 1
