"""What every quantizer shares: parameter handling, shapes, code dtypes and size accounting."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .._validation import as_float_array, check_choice, check_int
from ..coding.bitpack import code_dtype, packed_bytes  # noqa: F401  (re-exported)
from ..errors import InputError, TooFewValuesError

CODEBOOK_DTYPES = ("float32", "float16")


def as_matrix(W, *, name: str = "W") -> np.ndarray:
    """View a weight tensor as a float32 matrix (out_features, in_features).

    1-D tensors are one row; (out, in, kh, kw) convolutions become (out, in*kh*kw).
    """
    W = as_float_array(W, name=name, dtype=np.float32)
    if W.ndim == 0:
        raise InputError(f"{name}: a 0-d scalar cannot be quantized")
    return W.reshape(1, -1) if W.ndim == 1 else W.reshape(W.shape[0], -1)


def too_few_distinct(where: str, n: int, noun: str, k: int) -> TooFewValuesError:
    """The error for a codebook of k entries fitted to only n distinct ``noun``s."""
    return TooFewValuesError(f"{where} {n} distinct {noun}{'' if n == 1 else 's'}, fewer "
                             f"than the {k} codewords asked for (use fewer bits)")


def check_codes(codes, *, n_entries: int, shape: tuple | None = None,
                name: str = "codes") -> np.ndarray:
    """Validate codes before they index a codebook: integer dtype, shape, range.

    ``shape`` may hold None for any length; None alone accepts any shape.
    """
    codes = np.asarray(codes)
    if codes.dtype.kind not in "ui":
        raise InputError(f"{name}: dtype {codes.dtype} is not an integer type")
    if shape is not None and (codes.ndim != len(shape) or any(
            s is not None and s != c for s, c in zip(shape, codes.shape))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name}: expected shape {want}, got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_entries):
        raise InputError(f"{name}: values must lie in [0, {n_entries}), got "
                         f"[{codes.min()}, {codes.max()}]")
    return np.ascontiguousarray(codes)


class BaseQuantizer(BaseEstimator):
    """Shared behaviour; subclasses implement ``fit``, ``encode``, ``decode`` and the storage
    hooks ``_code_shape``, ``_arrays``, ``_restore_arrays``.

    After ``fit`` every quantizer knows the byte sizes of what it would store for the
    fitted tensor (``nbytes_breakdown()``) and so its ``bits_per_weight``.
    """

    def _check_n_bits(self, high: int = 16) -> int:
        return check_int(self.n_bits, name="n_bits", low=1, high=high)

    def _check_params(self):
        """Validate the constructor parameters (InputError); returns what ``fit`` needs."""
        raise NotImplementedError

    def _check_vector_params(self) -> tuple[int, int, int, np.dtype]:
        """(n_bits, block_size, max_iter, codebook dtype) of a block quantizer, validated."""
        from ..cluster import INITS

        check_choice(self.init, name="init", choices=INITS)
        return (self._check_n_bits(), check_int(self.block_size, name="block_size", low=1),
                check_int(self.max_iter, name="max_iter", low=1), self._check_codebook_dtype())

    def _train_codebook(self, X, k, max_iter, rng, *, sample=True, what="W") -> np.ndarray:
        """k centers (k, d) by Lloyd on the rows of X (a random sample of at most
        k * max_points_per_centroid of them when ``sample``).  Too few distinct rows for
        k codewords raise TooFewValuesError counting them, with ``what`` saying whose
        blocks they are (the pipeline then stores the tensor raw and warns with it)."""
        from ..cluster import _check_enough_points, _lloyd

        if sample:
            X = training_sample(X, k, self.max_points_per_centroid, rng)
        X = np.ascontiguousarray(X)
        w = np.ones(X.shape[0])
        try:
            _check_enough_points(w, k)
            return _lloyd(X, w, k, self.init, max_iter, float(self.tol), rng).centers
        except TooFewValuesError:
            raise too_few_distinct(f"{what}: {X.shape[0]} blocks of {X.shape[1]} hold",
                                   np.unique(X, axis=0).shape[0], "vector", k) from None

    def _check_codebook_dtype(self) -> np.dtype:
        return np.dtype(check_choice(self.codebook_dtype, name="codebook_dtype",
                                     choices=CODEBOOK_DTYPES))

    def _check_in_features(self, Wm: np.ndarray):
        if Wm.shape[1] != self.in_features_:
            raise InputError(f"W: has {Wm.shape[1]} input features; this "
                             f"{type(self).__name__} was fitted on {self.in_features_}")

    def _check_fitted(self):
        if not hasattr(self, "n_weights_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def nbytes_breakdown(self) -> dict:
        """Bytes of each part stored for the fitted tensor: the codes bit-packed at n_bits,
        and every learned array in its stored form (codebooks, scales, zero points)."""
        self._check_fitted()
        parts = {"codes": packed_bytes(int(np.prod(self._code_shape())), self.n_bits)}
        parts.update({k: int(v.nbytes) for k, v in self._arrays().items()})
        parts["total"] = sum(parts.values())
        return parts

    @property
    def bits_per_weight(self) -> float:
        """Stored bits (codes packed at their width, plus codebooks and scales) per weight."""
        return self.nbytes_breakdown()["total"] * 8 / self.n_weights_

    # -- serialization: what a file stores besides the codes --------------------------------
    _STATE_META = ("shape_", "n_weights_")  # learned scalars, stored as JSON
    _DECODE_PARAMS = ("n_bits", "codebook_dtype")  # the parameters decoding depends on

    def decode_params(self) -> dict:
        """The constructor parameters decoding depends on (what a file records; training
        settings such as init, iterations or seeds do not change what is decoded)."""
        params = self.get_params()
        return {k: params[k] for k in self._DECODE_PARAMS}

    def to_parts(self) -> tuple[dict, dict]:
        """(meta, arrays): JSON-able learned scalars and the learned arrays in the form they
        are stored (integer arrays bit-packed), so their bytes are the bytes a file holds."""
        self._check_fitted()
        meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                ((k, getattr(self, k)) for k in self._STATE_META)}
        return meta, self._arrays()

    def state_for_shape(self, shape) -> dict:
        """The learned scalars (``to_parts``'s meta) of this quantizer fitted on a tensor of
        ``shape``: they follow from the shape and the parameters, so files need not store
        them."""
        shape = [int(x) for x in shape]
        n = int(np.prod(shape, dtype=np.int64))
        in_features = shape[-1] if len(shape) == 1 else int(np.prod(shape[1:], dtype=np.int64))
        values = {"shape_": shape, "n_weights_": n, "in_features_": in_features}
        if "n_blocks_" in self._STATE_META:
            values["n_blocks_"] = -(-in_features // int(self.block_size))
        return {k: values[k] for k in self._STATE_META}

    @classmethod
    def from_parts(cls, params: dict, meta: dict | None, arrays: dict, *, shape=None):
        """Rebuild a fitted quantizer from ``to_parts`` output: the parameters pass the same
        checks as ``fit``, the learned scalars must be in range, and every array's dtype and
        shape must match the parameters (FormatError on any mismatch).  With ``meta`` None
        the learned scalars are derived from ``shape`` (``state_for_shape``)."""
        from ..errors import FormatError, VQCompressError

        try:
            q = cls(**params)
            q._check_params()
            if meta is None:
                meta = q.state_for_shape(shape)
            for k in cls._STATE_META:
                v = meta[k]
                if k == "shape_":
                    v = tuple(v)
                    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                               for x in v):
                        raise ValueError(f"bad shape {v!r}")
                elif not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "n_weights_" else 1):
                    raise ValueError(f"{k} = {v!r}")
                setattr(q, k, v)
            q._restore_arrays(arrays)
        except VQCompressError as exc:
            raise FormatError(f"{cls.__name__}: bad stored parameters ({exc})") from None
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise FormatError(f"{cls.__name__}: bad stored state ({exc})") from None
        return q

    def decode_rows(self, codes, rows) -> np.ndarray:
        """float32 rows (len(rows), in_features) of the weight matrix from the codes of
        those rows (codes[rows] of the full code array); ``rows`` is an index array or a
        slice.  Core: codes and rows are trusted (they come from a validated file)."""
        dense = self.decode(codes)
        return dense.reshape(dense.shape[0], -1) if dense.ndim != 2 else dense

    def code_shape(self) -> tuple:
        """Shape of ``encode``'s output for the fitted tensor."""
        self._check_fitted()
        return self._code_shape()

    def fit_encode(self, W, *args, **kwargs) -> np.ndarray:
        """``fit(W)`` then ``encode(W)``."""
        return self.fit(W, *args, **kwargs).encode(W)

    def __repr__(self, N_CHAR_MAX=700):
        base = super().__repr__(N_CHAR_MAX)
        if hasattr(self, "n_weights_"):
            base += f"  # {self.bits_per_weight:.3f} bits/weight"
        return base


def to_blocks(Wm: np.ndarray, block_size: int) -> np.ndarray:
    """Split each row of a (out, in) matrix into blocks of ``block_size`` consecutive inputs.

    The input dimension is zero-padded to a multiple of ``block_size``.  Returns an array
    of shape (out, n_blocks, block_size), C-contiguous.
    """
    out, n_in = Wm.shape
    pad = (-n_in) % block_size
    if pad:
        Wm = np.pad(Wm, ((0, 0), (0, pad)))
    return np.ascontiguousarray(Wm.reshape(out, -1, block_size))


def training_sample(X: np.ndarray, k: int, max_points_per_centroid, rng) -> np.ndarray:
    """At most ``k * max_points_per_centroid`` rows of X drawn without replacement (all if None)."""
    if max_points_per_centroid is None:
        return X
    limit = k * check_int(max_points_per_centroid, name="max_points_per_centroid", low=1)
    if X.shape[0] <= limit:
        return X
    return X[np.sort(rng.choice(X.shape[0], size=limit, replace=False))]


def restore_check(arr, *, name: str, shape: tuple, dtypes) -> np.ndarray:
    """Check a stored array against what the parameters imply (FormatError otherwise)."""
    from ..errors import FormatError

    arr = np.asarray(arr)
    if arr.dtype not in [np.dtype(d) for d in dtypes]:
        raise FormatError(f"{name}: dtype {arr.dtype}, expected one of {list(dtypes)}")
    if arr.shape != tuple(shape):
        raise FormatError(f"{name}: shape {arr.shape}, expected {tuple(shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FormatError(f"{name}: contains NaN or infinite values")
    return arr


class BlockQuantizer(BaseQuantizer):
    """Shared by product and residual quantization: blocks of ``block_size`` consecutive
    input weights, codebooks of shape (n_books, 2**n_bits, block_size)."""

    _STATE_META = ("shape_", "n_weights_", "in_features_", "n_blocks_")
    _DECODE_PARAMS = ("n_bits", "block_size", "codebook_dtype")

    def _n_books(self) -> int:
        raise NotImplementedError

    def _arrays(self):
        return {"codebook": self.codebooks_}

    def _restore_arrays(self, arrays):
        if self.n_blocks_ != -(-self.in_features_ // self.block_size) or \
                self.n_weights_ % self.in_features_:
            raise ValueError("inconsistent block layout")
        self.codebooks_ = restore_check(arrays["codebook"], name="codebook",
                                        shape=(self._n_books(), 1 << self.n_bits,
                                               self.block_size),
                                        dtypes=("float32", "float16"))
