"""Scalar weight sharing: one codebook of 2**n_bits values for the whole tensor."""
from __future__ import annotations

import numpy as np

from .. import ecsq
from .._kernels.kmeans1d import label_by_midpoints
from .._validation import as_float_array, as_sample_weight, check_choice, check_int, rng_from
from ..cluster import INITS, _kmeans_sorted, kmeans_1d_optimal
from ..errors import InputError, TooFewValuesError
from ._base import BaseQuantizer, check_codes, code_dtype, restore_check, too_few_distinct


class KMeansQuantizer(BaseQuantizer):
    """k-means weight sharing (Deep Compression §3): each weight becomes an n_bits index
    into a shared codebook of scalars.

    Parameters
    ----------
    n_bits : int in [1, 16]
        Codebook of ``2**n_bits`` values.
    init : {'optimal', 'linear', 'density', 'random', 'kmeans++'}
        'optimal' (default) returns the globally optimal codebook by exact 1-D dynamic
        programming, under a second for a million weights.  The others seed Lloyd
        iterations on the sorted values, which stop at a local optimum: 'linear' is Deep
        Compression's choice (it keeps the large weights represented); 'kmeans++' costs
        O(k n) in 1-D.
    max_iter, tol : Lloyd settings (ignored by 'optimal').
    random_state : seed for 'random' and 'kmeans++'.
    codebook_dtype : {'float32', 'float16'} how the codebook is stored.
    zero_codeword : bool
        Reserve code 0 for the value 0.0 (pruned weights and the filler entries of sparse
        storage decode to exact zeros): weights equal to 0 get code 0, the other
        2**n_bits - 1 codewords are learned on the nonzero weights.
    entropy_lambda : float >= 0
        0 (default): each weight takes its nearest codeword.  Above 0: entropy-constrained
        quantization (``vqcompress.ecsq``): codes minimise squared error / mean square
        weight + entropy_lambda × code length in bits, and the codebook is refitted for
        that cost, so an entropy-coded stream shrinks below n_bits per weight; larger
        values give smaller files.

    Attributes
    ----------
    codebook_ : ndarray of shape (2**n_bits,), in ``codebook_dtype``; sorted, after a leading
        0.0 when ``zero_codeword``
    shape_ : tuple, shape of the fitted tensor
    n_weights_ : int
    inertia_ : float, weighted squared error of the fitted tensor with the stored codebook
    code_lengths_ : ndarray (2**n_bits,), bits per codeword the encoder assumes (set with
        entropy_lambda > 0)
    """

    def __init__(self, n_bits=4, init="optimal", max_iter=300, tol=1e-4, random_state=None,
                 codebook_dtype="float32", zero_codeword=False, entropy_lambda=0.0):
        self.n_bits = n_bits
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.codebook_dtype = codebook_dtype
        self.zero_codeword = zero_codeword
        self.entropy_lambda = entropy_lambda

    def fit(self, W, sample_weight=None):
        """Learn the codebook from W (any shape; weights with sample_weight 0 are ignored)."""
        n_bits, cb_dtype, max_iter = self._check_params()
        W = as_float_array(W, name="W")
        x = W.reshape(-1)
        w = as_sample_weight(None if sample_weight is None else np.ravel(sample_weight),
                             x.shape[0])
        k = 1 << n_bits
        zero = bool(self.zero_codeword)
        if zero:
            w = np.where(x != 0, w, 0.0)
            k -= 1
            if not (w > 0).any():
                raise TooFewValuesError("W: no nonzero weights to learn a codebook from")
        try:
            if self.init == "optimal":
                res = kmeans_1d_optimal(x, k, w)
            else:
                res = _kmeans_sorted(x, w, k, self.init, max_iter, float(self.tol),
                                     rng_from(self.random_state))
        except TooFewValuesError:
            raise too_few_distinct("W:", np.unique(x[w > 0]).size,
                                   "nonzero value" if zero else "value", k) from None
        book = np.sort(res.centers.astype(cb_dtype))
        if self.entropy_lambda:
            book, self.code_lengths_, self.penalty_ = ecsq.fit(
                x.astype(np.float64), w, book.astype(np.float64), float(self.entropy_lambda))
            book = book.astype(cb_dtype)
        self.codebook_ = np.concatenate([np.zeros(1, cb_dtype), book]) if zero else book
        self.shape_ = W.shape
        self.n_weights_ = int(x.shape[0])
        codes = self.encode(W).reshape(-1)
        err = (self.codebook_.astype(np.float64)[codes] - x) ** 2
        self.inertia_ = float(w @ err)
        return self

    _DECODE_PARAMS = ("n_bits", "codebook_dtype", "zero_codeword")

    def _check_params(self):
        n_bits = self._check_n_bits()
        cb_dtype = self._check_codebook_dtype()
        check_choice(self.init, name="init", choices=INITS + ("optimal",))
        max_iter = check_int(self.max_iter, name="max_iter", low=1)
        if self.zero_codeword and n_bits < 2:
            raise InputError("zero_codeword needs n_bits >= 2")
        lam = self.entropy_lambda
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam < 1e6:
            raise InputError(f"entropy_lambda must be a number >= 0, got {lam!r}")
        if lam and self.zero_codeword:
            raise InputError("entropy_lambda does not combine with zero_codeword (pruning)")
        return n_bits, cb_dtype, max_iter

    def encode(self, W) -> np.ndarray:
        """Index of the nearest codebook value for each weight; same shape as W."""
        self._check_fitted()
        W = as_float_array(W, name="W")
        zero = bool(self.zero_codeword)
        cb = self.codebook_.astype(np.float64)[1 if zero else 0:]
        labels = np.empty(W.size, dtype=np.int32)
        x = W.reshape(-1)
        if self.entropy_lambda and hasattr(self, "code_lengths_"):
            labels = ecsq.assign(x, cb, self.code_lengths_, self.penalty_)
        else:
            label_by_midpoints(x, 0.5 * (cb[1:] + cb[:-1]), labels)
        if zero:
            labels = np.where(x == 0, 0, labels + 1)
        return labels.astype(code_dtype(self.n_bits)).reshape(W.shape)

    def decode(self, codes) -> np.ndarray:
        """float32 weights from codes of any shape."""
        self._check_fitted()
        codes = check_codes(codes, n_entries=self.codebook_.shape[0])
        return self.codebook_.astype(np.float32)[codes]


    def _code_shape(self):
        return self.shape_

    def _arrays(self):
        return {"codebook": self.codebook_}

    def _restore_arrays(self, arrays):
        self.codebook_ = restore_check(arrays["codebook"], name="codebook",
                                       shape=(1 << self.n_bits,), dtypes=("float32", "float16"))
        if self.zero_codeword and self.codebook_[0] != 0:
            raise ValueError("a zero-codeword codebook must start with 0.0")
